//! Where a tenant's files come from and where they go when done: a local
//! folder ([`DirSource`]) or an SFTP folder ([`SftpSource`]).
//!
//! The run works on local files: [`Source::fetch`] gives a local path with
//! the file's bytes (the file itself, or a copy spooled from the server),
//! the run writes its results and summary into [`Source::staging`], and
//! [`Source::publish`] puts each into the `processed/` folder of the source
//! under its final name (on SFTP: uploaded under a temporary name, then
//! renamed, so a reader never sees half a file). [`Source::archive`] moves
//! the original beside them last.

mod dir;
mod sftp;

pub use dir::DirSource;
pub use sftp::SftpSource;

use std::path::{Path, PathBuf};

use crate::config::{SourceConfig, Tenant};

/// A source that cannot be listed, read or written.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct SourceError {
    pub source_name: String,
    pub message: String,
}

/// A tenant's inbox and its `processed/` folder.
pub trait Source {
    /// For logs and summaries: `dir /path` or `sftp user@host:port/path`.
    fn describe(&self) -> String;
    /// The files of the inbox (not folders), with their sizes.
    fn list(&mut self) -> Result<Vec<(String, u64)>, SourceError>;
    /// A local path holding the bytes of inbox file `name`.
    fn fetch(&mut self, name: &str) -> Result<PathBuf, SourceError>;
    /// Done with what [`Source::fetch`] gave (a spooled copy is removed).
    fn release(&mut self, local: &Path);
    /// A local folder for results and summaries before they are published.
    fn staging(&self) -> &Path;
    /// Whether `processed/name` exists.
    fn processed_exists(&mut self, name: &str) -> Result<bool, SourceError>;
    /// Puts the staged file `local` into `processed/name`.
    fn publish(&mut self, local: &Path, name: &str) -> Result<(), SourceError>;
    /// Moves inbox file `name` to `processed/to`.
    fn archive(&mut self, name: &str, to: &str) -> Result<(), SourceError>;
    /// Where `processed/name` is, for messages.
    fn location(&self, name: &str) -> PathBuf;
}

/// The tenant's source. SFTP files are spooled beside the state store, in
/// `<state>.spool/`.
pub fn open(tenant: &Tenant) -> Result<Box<dyn Source>, SourceError> {
    Ok(match &tenant.source {
        SourceConfig::Dir { inbox, processed } => {
            Box::new(DirSource::new(inbox.clone(), processed.clone())?)
        }
        SourceConfig::Sftp(cfg) => {
            let spool = PathBuf::from(format!("{}.spool", tenant.state.display()));
            Box::new(SftpSource::new(cfg.clone(), spool)?)
        }
    })
}

/// Whether a name is never picked up: dot files and `.part` / `.tmp` names
/// (files still being written, by convention).
pub fn ignored(name: &str) -> bool {
    name.starts_with('.') || name.ends_with(".part") || name.ends_with(".tmp")
}
