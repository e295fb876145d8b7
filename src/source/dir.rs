//! A local inbox folder.
//!
//! The client can write to the inbox at any time, so a run never reads the
//! inbox file itself: [`DirSource::fetch`] copies it into the spool (the
//! kernel's `copy_file_range`, a reflink where the file system has them)
//! and the run plans and applies that copy, its one snapshot of the file
//! (SPEC §7). A file that changes while it is copied is refused for this
//! run. When the file is done, the original is moved to `processed/` only
//! if it is still the version that was copied; a file rewritten meanwhile
//! stays in the inbox for the next run, and the copy that was applied goes
//! to `processed/` in its place.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{Source, SourceError};

pub struct DirSource {
    inbox: PathBuf,
    processed: PathBuf,
    spool: PathBuf,
    /// The version of each file fetched: its size and modification time.
    fetched: HashMap<String, Version>,
}

/// What tells one version of an inbox file from another without reading it.
type Version = (u64, Option<SystemTime>);

impl DirSource {
    /// The inbox `inbox`, done files to `processed`, snapshots copied into
    /// `spool` (removed once the file is done).
    pub fn new(
        inbox: PathBuf,
        processed: PathBuf,
        spool: PathBuf,
    ) -> Result<DirSource, SourceError> {
        let s = DirSource {
            inbox,
            processed,
            spool,
            fetched: HashMap::new(),
        };
        std::fs::create_dir_all(&s.processed).map_err(|e| s.err(&s.processed, e))?;
        Ok(s)
    }

    fn err(&self, path: &Path, e: std::io::Error) -> SourceError {
        SourceError {
            source_name: self.describe(),
            message: format!("{}: {e}", path.display()),
        }
    }

    fn version(&self, path: &Path) -> Result<Version, SourceError> {
        let meta = std::fs::metadata(path).map_err(|e| self.err(path, e))?;
        Ok((meta.len(), meta.modified().ok()))
    }
}

impl Source for DirSource {
    fn describe(&self) -> String {
        format!("dir {}", self.inbox.display())
    }

    fn list(&mut self) -> Result<Vec<(String, u64)>, SourceError> {
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&self.inbox).map_err(|e| self.err(&self.inbox, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| self.err(&self.inbox, e))?;
            let meta = entry.metadata().map_err(|e| self.err(&entry.path(), e))?;
            if let (true, Some(name)) = (meta.is_file(), entry.file_name().to_str()) {
                out.push((name.to_string(), meta.len()));
            }
        }
        Ok(out)
    }

    fn fetch(&mut self, name: &str) -> Result<PathBuf, SourceError> {
        let from = self.inbox.join(name);
        std::fs::create_dir_all(&self.spool).map_err(|e| self.err(&self.spool, e))?;
        let to = self.spool.join(name);
        let before = self.version(&from)?;
        let copied = std::fs::copy(&from, &to).map_err(|e| self.err(&from, e))?;
        if self.version(&from)? != before || copied != before.0 {
            let _ = std::fs::remove_file(&to);
            return Err(SourceError {
                source_name: self.describe(),
                message: format!(
                    "{}: changed while it was being copied for this run; it is left for the next run",
                    from.display()
                ),
            });
        }
        self.fetched.insert(name.to_string(), before);
        Ok(to)
    }

    fn release(&mut self, local: &Path) {
        let _ = std::fs::remove_file(local);
    }

    fn staging(&self) -> &Path {
        &self.processed
    }

    fn processed_exists(&mut self, name: &str) -> Result<bool, SourceError> {
        Ok(self.processed.join(name).exists())
    }

    fn publish(&mut self, _: &Path, _: &str) -> Result<(), SourceError> {
        Ok(()) // staged in processed/ already
    }

    fn location(&self, name: &str) -> PathBuf {
        self.processed.join(name)
    }

    fn archive(&mut self, name: &str, to: &str) -> Result<(), SourceError> {
        let from = self.inbox.join(name);
        let to = self.processed.join(to);
        let unchanged = match self.fetched.get(name) {
            Some(fetched) => self.version(&from).ok().as_ref() == Some(fetched),
            None => true,
        };
        if unchanged {
            return std::fs::rename(&from, &to).map_err(|e| self.err(&to, e));
        }
        // Rewritten since it was copied: the new version waits for the
        // next run, and what was applied is what processed/ keeps.
        tracing::warn!(
            file = %from.display(),
            "the file was rewritten while it was being run; the version applied goes to processed/, the new one is left for the next run"
        );
        let copy = self.spool.join(name);
        if std::fs::rename(&copy, &to).is_err() {
            std::fs::copy(&copy, &to).map_err(|e| self.err(&to, e))?;
        }
        Ok(())
    }
}
