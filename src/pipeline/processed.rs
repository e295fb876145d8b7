//! Naming and publishing into `processed/`: `<stem>.<UTC timestamp>` names
//! never taken before, results and summaries written through a temporary
//! name, the original moved beside them last.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use super::{io, InboxFile, RunError, RunOptions};
use crate::model::ObjectKind;
use crate::source::Source;
use crate::store::StateStore;

/// The extension an inbox file keeps in `processed/`, with its retry
/// file: `jsonl` for JSON Lines (`*.jsonl`, as the http source names its
/// pulls), `csv` for every other file (SPEC §4).
pub(super) fn extension(name: &str) -> &'static str {
    if name.to_ascii_lowercase().ends_with(".jsonl") {
        "jsonl"
    } else {
        "csv"
    }
}

/// `<stem>.<UTC timestamp>`, not taken yet in the source's `processed/`
/// (for an original named `<stem>.<UTC timestamp><suffix>.<ext>`).
pub(super) fn stamped(
    source: &mut dyn Source,
    (stem, ext): (&str, &str),
    suffix: &str,
) -> Result<String, RunError> {
    let ts = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let mut name = format!("{stem}.{ts}");
    let mut n = 1;
    while source.processed_exists(&format!("{name}{suffix}.{ext}"))?
        || source.processed_exists(&format!("{name}{suffix}.results.csv"))?
    {
        n += 1;
        name = format!("{stem}.{ts}-{n}");
    }
    Ok(name)
}

/// The names a file's results and summary are staged under, and the
/// `<stem>.<UTC timestamp>` the original takes in `processed/`.
pub(super) struct Staged {
    /// `<stem>.<timestamp>`.
    pub(super) stamp: String,
    /// `.dry-run` on a dry run, `.held` for a held file, else empty.
    suffix: &'static str,
    pub(super) results: PathBuf,
    pub(super) summary: PathBuf,
    /// The retry file, when the run writes one (SPEC §11).
    pub(super) retry: PathBuf,
    /// The original's extension ([`extension`]).
    ext: &'static str,
}

impl Staged {
    /// Names not taken yet in `processed/` for inbox file `name`: those
    /// of a dry run (`.dry-run`), of a held file (`.held`) or of a file
    /// applied.
    pub(super) fn new(
        source: &mut dyn Source,
        name: &str,
        dry_run: bool,
        held: bool,
    ) -> Result<Staged, RunError> {
        let stem = Path::new(name)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("file");
        let suffix = match (dry_run, held) {
            (true, _) => ".dry-run",
            (false, true) => ".held",
            (false, false) => "",
        };
        let ext = extension(name);
        let stamp = stamped(source, (stem, ext), suffix)?;
        Ok(Staged {
            results: source
                .staging()
                .join(format!("{stamp}{suffix}.results.csv")),
            summary: source
                .staging()
                .join(format!("{stamp}{suffix}.summary.json")),
            retry: source.staging().join(format!("{stamp}.retry.{ext}")),
            stamp,
            suffix,
            ext,
        })
    }

    /// The results file's name in `processed/`.
    pub(super) fn results_name(&self) -> String {
        format!("{}{}.results.csv", self.stamp, self.suffix)
    }
}

/// Publishes the staged results and summary of a file, records its
/// content as applied (`applied`: not a file refused or held, which
/// `--force` or a fix may send again) and forgets the first plan kept for
/// its kind (its results told it whole), and moves the original beside
/// them (not on a dry run, nor when `keep`: a file whose sink was
/// unavailable, for the next run).
pub(super) fn finish_file(
    (source, store): (&mut dyn Source, &mut dyn StateStore),
    opts: &RunOptions,
    (file, kind): (&InboxFile<'_>, ObjectKind),
    staged: &Staged,
    applied: bool,
    keep: bool,
) -> Result<(), RunError> {
    let retry = staged.retry.exists().then_some(&staged.retry);
    for local in [&staged.results, &staged.summary].into_iter().chain(retry) {
        let name = local
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        source.publish(local, &name)?;
    }
    if !opts.dry_run {
        let to = format!("{}.{}", staged.stamp, staged.ext);
        if applied {
            // Forgotten first: the content's record makes it durable.
            store.keep_plan(kind, file.fetched.hash, None)?;
            store.set_released(file.name, false)?;
            store.remember_content(file.fetched.hash, &to)?;
        }
        if !keep {
            source.archive(file.name, &to)?;
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temporary name and a rename.
pub(super) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<(), RunError> {
    let tmp = path.with_extension("tmp");
    let mut w = BufWriter::new(File::create(&tmp).map_err(io(&tmp))?);
    write(&mut w).map_err(io(&tmp))?;
    let f = w.into_inner().map_err(|e| io(&tmp)(e.into_error()))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}
