//! An SFTP inbox: its settings ([`SftpConfig`], always built, so a config
//! naming an SFTP source is checked by any muster) and the source itself
//! ([`SftpSource`], libssh2 with OpenSSL: the `sftp` feature).

mod config;
#[cfg(feature = "sftp")]
mod session;

pub(crate) use config::SftpFile;
pub use config::{HostKeyCheck, SftpAuth, SftpConfig};
#[cfg(feature = "sftp")]
pub use session::SftpSource;
