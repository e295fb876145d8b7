//! A local inbox folder.

use std::path::{Path, PathBuf};

use super::{Source, SourceError};

pub struct DirSource {
    inbox: PathBuf,
    processed: PathBuf,
}

impl DirSource {
    pub fn new(inbox: PathBuf, processed: PathBuf) -> Result<DirSource, SourceError> {
        let s = DirSource { inbox, processed };
        std::fs::create_dir_all(&s.processed).map_err(|e| s.err(&s.processed, e))?;
        Ok(s)
    }

    fn err(&self, path: &Path, e: std::io::Error) -> SourceError {
        SourceError {
            source_name: self.describe(),
            message: format!("{}: {e}", path.display()),
        }
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
        Ok(self.inbox.join(name))
    }

    fn release(&mut self, _: &Path) {}

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
        let to = self.processed.join(to);
        std::fs::rename(self.inbox.join(name), &to).map_err(|e| self.err(&to, e))
    }
}
