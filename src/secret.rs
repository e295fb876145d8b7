//! Passwords, keys and tokens: read from an environment variable or a file,
//! never from the config itself, and never shown by `Debug`.

use std::path::{Path, PathBuf};

/// A password, key or token: its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
    /// The secret itself, for the one call that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Reads a secret from the environment variable `env` or the file `file`
/// (at most one given); `what` names it in errors, which never hold it.
/// `rel` resolves a relative file path (against the config's folder).
pub(crate) fn read(
    what: &str,
    env: &Option<String>,
    file: &Option<PathBuf>,
    rel: &dyn Fn(&Path) -> PathBuf,
) -> Result<Option<Secret>, String> {
    match (env, file) {
        (Some(_), Some(_)) => Err(format!("give {what}_env or {what}_file, not both")),
        (Some(var), None) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Some(Secret(v))),
            _ => Err(format!(
                "{what}_env names the environment variable {var:?}, which is not set"
            )),
        },
        (None, Some(f)) => {
            let f = rel(f);
            std::fs::read_to_string(&f)
                .map(|s| Some(Secret(s.trim_end_matches(['\r', '\n']).to_string())))
                .map_err(|e| format!("{what}_file {}: {e}", f.display()))
        }
        (None, None) => Ok(None),
    }
}
