//! Where a tenant's files come from and where they go when done: a local
//! folder ([`DirSource`]) or an SFTP folder ([`SftpSource`]).
//!
//! The run works on local files: [`Source::fetch`] gives a local path with
//! the file's bytes, a copy in the spool that the client cannot change
//! while the run reads it (SPEC §7: one snapshot per file),
//! the run writes its results and summary into [`Source::staging`], and
//! [`Source::publish`] puts each into the `processed/` folder of the source
//! under its final name (on SFTP: uploaded under a temporary name, then
//! renamed, so a reader never sees half a file). [`Source::archive`] moves
//! the original beside them last.

mod dir;
pub mod sftp;

pub use dir::DirSource;
#[cfg(feature = "sftp")]
pub use sftp::SftpSource;

use std::path::{Path, PathBuf};

/// Where a tenant's files come from.
#[derive(Clone, Debug)]
pub enum SourceConfig {
    /// A local folder; `processed` inside it.
    Dir {
        inbox: PathBuf,
        processed: PathBuf,
    },
    Sftp(sftp::SftpConfig),
}

impl SourceConfig {
    /// For messages: the folder, or `user@host:port/path`.
    pub fn describe(&self) -> String {
        match self {
            SourceConfig::Dir { inbox, .. } => inbox.display().to_string(),
            SourceConfig::Sftp(s) => format!("{}@{}:{}{}", s.user, s.host, s.port, s.inbox),
        }
    }
}

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

/// Opens the source `config` names. The files a run reads are copied into
/// `spool` (a tenant's is `<state>.spool/`, beside its state store): the
/// run's snapshot of each file, which the client cannot touch.
pub fn open(config: &SourceConfig, spool: &Path) -> Result<Box<dyn Source>, SourceError> {
    Ok(match config {
        SourceConfig::Dir { inbox, processed } => Box::new(DirSource::new(
            inbox.clone(),
            processed.clone(),
            spool.to_path_buf(),
        )?),
        #[cfg(feature = "sftp")]
        SourceConfig::Sftp(cfg) => Box::new(SftpSource::new(cfg.clone(), spool.to_path_buf())?),
        #[cfg(not(feature = "sftp"))]
        SourceConfig::Sftp(_) => {
            return Err(SourceError {
                source_name: config.describe(),
                message: "this muster was built without the `sftp` feature".into(),
            })
        }
    })
}

/// Whether a name is never picked up: dot files and `.part` / `.tmp` names
/// (files still being written, by convention).
pub fn ignored(name: &str) -> bool {
    name.starts_with('.') || name.ends_with(".part") || name.ends_with(".tmp")
}
