//! Where a tenant's files come from and where they go when done: a local
//! folder ([`DirSource`]), an SFTP folder ([`SftpSource`]) or an FTP
//! folder ([`FtpSource`]).
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
pub mod ftp;
pub mod http;
pub mod sftp;

pub use dir::DirSource;
#[cfg(feature = "ftp")]
pub use ftp::FtpSource;
#[cfg(feature = "http")]
pub use http::HttpSource;
#[cfg(feature = "sftp")]
pub use sftp::SftpSource;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The inbox entries a source does not take, each said once in the log
/// (a run lists the inbox twice), not skipped in silence: symbolic links
/// and files whose name is not UTF-8. Folders (`processed/` among them)
/// are passed over without a word.
#[derive(Debug, Default)]
pub(crate) struct NotTaken(std::collections::HashSet<std::ffi::OsString>);

impl NotTaken {
    /// Whether the entry `name` of `inbox` is not taken (said the first
    /// time it is seen).
    pub(crate) fn check(
        &mut self,
        inbox: &str,
        name: &std::ffi::OsStr,
        is_file: bool,
        is_symlink: bool,
    ) -> bool {
        let why = if is_symlink {
            "a symbolic link in the inbox is not taken (only regular files are); left where it is"
        } else if is_file && name.to_str().is_none() {
            "a file whose name is not UTF-8 is not taken; rename it"
        } else {
            return false;
        };
        if self.0.insert(name.to_os_string()) {
            tracing::warn!(inbox, name = ?name, "{why}");
        }
        true
    }
}

/// A file of `processed/` that shows a file was taken before: an original
/// moved there after its run (`<stem>.<UTC timestamp>.csv`, or `.jsonl`;
/// not a held, dry-run or superseded one, nor a results file).
pub fn applied_original(names: &[String]) -> Option<&str> {
    names.iter().map(String::as_str).find(|name| {
        let Some(stem) = name
            .strip_suffix(".csv")
            .or_else(|| name.strip_suffix(".jsonl"))
        else {
            return false;
        };
        let stamp = stem.rsplit('.').next().unwrap_or_default();
        let stamp = stamp.split('-').next().unwrap_or_default();
        stamp.len() == 16
            && stamp.ends_with('Z')
            && stamp.as_bytes()[8] == b'T'
            && !stem.ends_with(".results")
            && ![".held.", ".dry-run.", ".superseded"]
                .iter()
                .any(|m| name.contains(m))
    })
}

/// Where a tenant's files come from.
#[derive(Clone, Debug)]
pub enum SourceConfig {
    /// A local folder; `processed` inside it. `create`: make the inbox
    /// when it does not exist (else that is an error).
    Dir {
        inbox: PathBuf,
        processed: PathBuf,
        create: bool,
    },
    Sftp(sftp::SftpConfig),
    Ftp(ftp::FtpConfig),
    Http(http::HttpConfig),
}

impl SourceConfig {
    /// For messages: the folder, or `user@host:port/path`.
    pub fn describe(&self) -> String {
        match self {
            SourceConfig::Dir { inbox, .. } => inbox.display().to_string(),
            SourceConfig::Sftp(s) => format!("{}@{}:{}{}", s.user, s.host, s.port, s.inbox),
            SourceConfig::Ftp(s) => format!("ftp {}@{}:{}{}", s.user, s.host, s.port, s.inbox),
            SourceConfig::Http(s) => format!("http {}", s.base_url),
        }
    }
}

/// A source that cannot be listed, read or written.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {kind}")]
pub struct SourceError {
    pub source_name: String,
    pub kind: SourceErrorKind,
}

/// Why a source failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceErrorKind {
    /// The server could not be reached (resolved, connected, a session
    /// started): retrying may help.
    #[error("{0}")]
    Unreachable(String),
    /// The server or muster refused the other: an unknown or changed host
    /// key, a wrong password or key. Retrying will not help.
    #[error("{0}")]
    Refused(String),
    /// A local file or folder (the inbox, the spool, `processed/`) could
    /// not be read or written.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// An operation on the server's files failed.
    #[error("{0}")]
    Remote(String),
    /// A file changed while it was being taken: left for the next run.
    #[error("{0}")]
    Changed(String),
    /// The inbox named in the configuration does not exist: a
    /// configuration error, not one the next run gets over.
    #[error("{0}")]
    Missing(String),
    /// This muster cannot open such a source (built without its feature).
    #[error("{0}")]
    Unsupported(String),
}

impl SourceError {
    pub fn new(source_name: impl Into<String>, kind: SourceErrorKind) -> SourceError {
        SourceError {
            source_name: source_name.into(),
            kind,
        }
    }
}

/// An inbox file fetched for a run: the local file the run plans and
/// applies (the file's one snapshot, SPEC §7), the xxh3-128 of its bytes,
/// and its version (size and modification time) when they were hashed.
#[derive(Clone, Debug)]
pub struct Fetched {
    pub local: PathBuf,
    pub hash: u128,
    version: Version,
}

/// What tells one version of a file from another without reading it: its
/// size and modification time.
pub(crate) type Version = (u64, Option<std::time::SystemTime>);

pub(crate) fn version_of(path: &Path) -> std::io::Result<Version> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.len(), meta.modified().ok()))
}

impl Fetched {
    /// `local` with its bytes' hash, as they are now.
    pub fn new(local: PathBuf, hash: u128) -> std::io::Result<Fetched> {
        let version = version_of(&local)?;
        Ok(Fetched {
            local,
            hash,
            version,
        })
    }

    /// Whether the local file is still the version that was hashed. A copy
    /// always is (no one else writes it); a local inbox file linked rather
    /// than copied is not if the client rewrote it in place, and the run
    /// stops rather than mix two versions.
    pub fn unchanged(&self) -> bool {
        version_of(&self.local).is_ok_and(|v| v == self.version)
    }
}

/// xxh3-128 of a file's bytes.
pub(crate) fn hash_file(path: &Path) -> std::io::Result<u128> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(hasher.digest128())
}

/// Copies `from` to a new file `to`, hashing the bytes on the way: this
/// thread reads and hashes while a second one writes, so the copy costs
/// little more than the read. Returns the bytes copied and their
/// xxh3-128.
pub(crate) fn copy_hashed(from: &mut dyn Read, to: &Path) -> std::io::Result<(u64, u128)> {
    const BUF: usize = 1 << 20;
    let mut out = std::fs::File::create(to)?;
    let (full, to_write) = crossbeam_channel::bounded::<Vec<u8>>(2);
    let (empty, to_fill) = crossbeam_channel::bounded::<Vec<u8>>(3);
    for _ in 0..3 {
        let _ = empty.send(vec![0; BUF]);
    }
    std::thread::scope(|s| {
        let writer = s.spawn(move || -> std::io::Result<()> {
            for buf in to_write {
                out.write_all(&buf)?;
                let _ = empty.send(buf);
            }
            // Not fsynced: after a crash the next run fetches the file again.
            Ok(())
        });
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        let mut total = 0u64;
        let read = (|| -> std::io::Result<()> {
            for mut buf in to_fill.iter() {
                buf.resize(BUF, 0);
                let n = loop {
                    match from.read(&mut buf) {
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        other => break other?,
                    }
                };
                if n == 0 {
                    return Ok(());
                }
                buf.truncate(n);
                hasher.update(&buf);
                total += n as u64;
                if full.send(buf).is_err() {
                    return Ok(()); // the writer failed: its error is returned
                }
            }
            Ok(())
        })();
        drop(full);
        let written = writer
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        read.and(written)?;
        Ok((total, hasher.digest128()))
    })
}

/// A tenant's inbox and its `processed/` folder.
pub trait Source {
    /// For logs and summaries: `dir /path` or `sftp user@host:port/path`.
    fn describe(&self) -> String;
    /// The files of the inbox (not folders), with their sizes.
    fn list(&mut self) -> Result<Vec<(String, u64)>, SourceError>;
    /// Inbox file `name` in the spool: the bytes the run plans and
    /// applies (a copy, or a link that keeps the version taken if the
    /// client replaces the file; [`Fetched::unchanged`] tells whether it was
    /// rewritten in place).
    fn fetch(&mut self, name: &str) -> Result<Fetched, SourceError>;
    /// Done with what [`Source::fetch`] gave (a spooled copy is removed).
    fn release(&mut self, local: &Path);
    /// A local folder for results and summaries before they are published.
    fn staging(&self) -> &Path;
    /// Whether `processed/name` exists.
    fn processed_exists(&mut self, name: &str) -> Result<bool, SourceError>;
    /// The names in `processed/` (none when it does not exist yet): what a
    /// tenant whose store went missing applied before. Default: none known.
    fn processed_names(&mut self) -> Result<Vec<String>, SourceError> {
        Ok(Vec::new())
    }
    /// Reads `processed/name` (a results CSV for a notification or the
    /// operations endpoint).
    fn read_processed(&mut self, name: &str) -> Result<Box<dyn Read + Send>, SourceError>;
    /// Puts the staged file `local` into `processed/name`.
    fn publish(&mut self, local: &Path, name: &str) -> Result<(), SourceError>;
    /// Moves inbox file `name` to `processed/to`.
    fn archive(&mut self, name: &str, to: &str) -> Result<(), SourceError>;
    /// Where `processed/name` is, for messages.
    fn location(&self, name: &str) -> PathBuf;
}

/// Waits before the 2nd and 3rd connection attempts of a remote source.
#[cfg(any(feature = "sftp", feature = "ftp"))]
const BACKOFF_MS: [u64; 2] = [1000, 2000];

/// Connects with `connect`, trying again after 1 s, then 2 s, while its
/// error says trying again may help (`true`: the server was unreachable);
/// a refused login, key or certificate is returned at once. `what` names
/// the protocol in the log.
#[cfg(any(feature = "sftp", feature = "ftp"))]
pub(crate) fn connect_with_retries<T>(
    what: &str,
    mut connect: impl FnMut() -> Result<T, (SourceError, bool)>,
) -> Result<T, SourceError> {
    let mut attempt = 0;
    loop {
        match connect() {
            Ok(c) => return Ok(c),
            Err((e, false)) => return Err(e),
            Err((e, true)) if attempt == BACKOFF_MS.len() => return Err(e),
            Err((e, true)) => {
                tracing::warn!(error = %e, "{what} connection failed; retrying");
                std::thread::sleep(std::time::Duration::from_millis(BACKOFF_MS[attempt]));
                attempt += 1;
            }
        }
    }
}

/// Opens the source `config` names. The files a run reads are copied into
/// `spool` (a tenant's is `<state>.spool/`, beside its state store): the
/// run's snapshot of each file, which the client cannot touch.
pub fn open(config: &SourceConfig, spool: &Path) -> Result<Box<dyn Source>, SourceError> {
    Ok(match config {
        SourceConfig::Dir {
            inbox,
            processed,
            create,
        } => {
            if !inbox.is_dir() && !create {
                let message = format!(
                    "{}: no such folder (a mistyped path? `create = true` under [tenant.source] has muster make it)",
                    inbox.display()
                );
                return Err(SourceError::new(
                    config.describe(),
                    SourceErrorKind::Missing(message),
                ));
            }
            Box::new(DirSource::new(
                inbox.clone(),
                processed.clone(),
                spool.to_path_buf(),
            )?)
        }
        #[cfg(feature = "ftp")]
        SourceConfig::Ftp(cfg) => Box::new(FtpSource::new(cfg.clone(), spool.to_path_buf())?),
        #[cfg(not(feature = "ftp"))]
        SourceConfig::Ftp(_) => return Err(built_without(config, "ftp")),
        #[cfg(feature = "http")]
        SourceConfig::Http(cfg) => Box::new(HttpSource::new(cfg.clone(), spool.to_path_buf())?),
        #[cfg(not(feature = "http"))]
        SourceConfig::Http(_) => return Err(built_without(config, "http")),
        #[cfg(feature = "sftp")]
        SourceConfig::Sftp(cfg) => Box::new(SftpSource::new(cfg.clone(), spool.to_path_buf())?),
        #[cfg(not(feature = "sftp"))]
        SourceConfig::Sftp(_) => return Err(built_without(config, "sftp")),
    })
}

/// The error of a source this muster was built without (its `feature`).
#[cfg_attr(
    all(feature = "ftp", feature = "http", feature = "sftp"),
    allow(dead_code)
)]
fn built_without(config: &SourceConfig, feature: &str) -> SourceError {
    SourceError::new(
        config.describe(),
        SourceErrorKind::Unsupported(format!(
            "this muster was built without the `{feature}` feature"
        )),
    )
}

/// Where done files go, relative to the inbox, unless a source says.
pub(crate) fn default_processed() -> PathBuf {
    "processed".into()
}

/// How long a file's size must hold still before it is taken (ms).
pub(crate) fn default_settle() -> u64 {
    1000
}

/// Whether a name is never picked up: dot files and `.part` / `.tmp` names
/// (files still being written, by convention).
pub fn ignored(name: &str) -> bool {
    name.starts_with('.') || name.ends_with(".part") || name.ends_with(".tmp")
}
