//! A local inbox folder.
//!
//! The client can write to the inbox at any time, so a run never reads the
//! inbox file by its name: [`DirSource::fetch`] links it into the spool
//! (a hard link: no bytes copied) or, where the spool is on another file
//! system, copies it there. A file the client replaces (a new file renamed
//! over it, or deleted) leaves the run's link on the version it took; a
//! file rewritten in place changes under a link too, which the run sees
//! ([`Fetched::unchanged`], and each record read again is checked against
//! its plan) and stops, so one run never mixes two versions (SPEC §7).
//! When the file is done, the original is moved to `processed/` only if it
//! is still the version that was taken; a new version stays in the inbox
//! for the next run, and the version that was applied goes to `processed/`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{copy_hashed, version_of, Fetched, Source, SourceError, SourceErrorKind, Version};

pub struct DirSource {
    inbox: PathBuf,
    processed: PathBuf,
    spool: PathBuf,
    /// The version of each file fetched: its size and modification time.
    fetched: HashMap<String, Version>,
    not_taken: super::NotTaken,
}

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
            not_taken: Default::default(),
        };
        std::fs::create_dir_all(&s.processed).map_err(|e| s.err(&s.processed, e))?;
        Ok(s)
    }

    fn err(&self, path: &Path, source: std::io::Error) -> SourceError {
        let what = path.display().to_string();
        SourceError::new(self.describe(), SourceErrorKind::Io { what, source })
    }

    fn version(&self, path: &Path) -> Result<Version, SourceError> {
        version_of(path).map_err(|e| self.err(path, e))
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
            let inbox = self.inbox.display().to_string();
            let name = entry.file_name();
            if self
                .not_taken
                .check(&inbox, &name, meta.is_file(), meta.is_symlink())
            {
                continue;
            }
            if let (true, Some(name)) = (meta.is_file(), entry.file_name().to_str()) {
                out.push((name.to_string(), meta.len()));
            }
        }
        Ok(out)
    }

    fn fetch(&mut self, name: &str) -> Result<Fetched, SourceError> {
        let from = self.inbox.join(name);
        std::fs::create_dir_all(&self.spool).map_err(|e| self.err(&self.spool, e))?;
        let to = self.spool.join(name);
        let _ = std::fs::remove_file(&to); // left by a crash
        let before = self.version(&from)?;
        let (bytes, fetched) = match std::fs::hard_link(&from, &to) {
            Ok(()) => {
                let hash = super::hash_file(&to).map_err(|e| self.err(&from, e))?;
                (before.0, Fetched::new(to.clone(), hash))
            }
            // Another file system, or one without links: a copy.
            Err(_) => {
                let mut file = std::fs::File::open(&from).map_err(|e| self.err(&from, e))?;
                let (bytes, hash) = copy_hashed(&mut file, &to).map_err(|e| self.err(&from, e))?;
                (bytes, Fetched::new(to.clone(), hash))
            }
        };
        let fetched = fetched.map_err(|e| self.err(&to, e))?;
        if self.version(&from)? != before || bytes != before.0 {
            let _ = std::fs::remove_file(&to);
            let message = format!(
                "{}: changed while it was being taken for this run; it is left for the next run",
                from.display()
            );
            return Err(SourceError::new(
                self.describe(),
                SourceErrorKind::Changed(message),
            ));
        }
        self.fetched.insert(name.to_string(), before);
        Ok(fetched)
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

    fn read_processed(&mut self, name: &str) -> Result<Box<dyn std::io::Read + Send>, SourceError> {
        let path = self.processed.join(name);
        let file = std::fs::File::open(&path).map_err(|e| self.err(&path, e))?;
        Ok(Box::new(file))
    }

    fn processed_names(&mut self) -> Result<Vec<String>, SourceError> {
        let entries = match std::fs::read_dir(&self.processed) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.err(&self.processed, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.err(&self.processed, e))?;
            names.extend(entry.file_name().to_str().map(str::to_string));
        }
        Ok(names)
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
