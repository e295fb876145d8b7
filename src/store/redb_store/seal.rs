//! The seal of a store: how a clean close left its database file, so
//! that the next open can tell whether the file was changed since (and
//! must be checked whole) without reading it (decision 68).

use std::path::{Path, PathBuf};

/// `<store>.seal`: the database file's length and modification time as a
/// run that closed it cleanly left it. Not synced: a seal lost in a crash
/// only costs the next open a whole check.
pub(super) fn seal_path(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.seal", path.display()))
}

/// The seal the database file at `path` has now.
pub(super) fn seal_of(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    let modified = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some(format!("{} {}\n", meta.len(), modified.as_nanos()))
}

/// The seal the last clean close wrote, if any.
pub(super) fn read_seal(path: &Path) -> Option<String> {
    std::fs::read_to_string(seal_path(path)).ok()
}
