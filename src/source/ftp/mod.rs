//! An FTP inbox (SPEC §10: 360Learning hands its clients one): its
//! settings ([`FtpConfig`], always built, so a config naming an FTP
//! source is checked by any muster) and the source itself ([`FtpSource`],
//! suppaftp over rustls: the `ftp` feature).

mod config;
#[cfg(feature = "ftp")]
mod session;

pub(crate) use config::FtpFile;
pub use config::{FtpConfig, FtpTls};
#[cfg(feature = "ftp")]
pub use session::FtpSource;
