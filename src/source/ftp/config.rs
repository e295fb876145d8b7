//! The FTP source's settings: `[tenant.source]` with `type = "ftp"` as the
//! config file has it ([`FtpFile`], checked by [`FtpFile::validate`]) and
//! as the source uses it ([`FtpConfig`]).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::secret::Secret;

/// `[tenant.source]` with `type = "ftp"` (the key reference is in
/// `docs/config.md`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FtpFile {
    pub(crate) host: String,
    /// Default: 21, or 990 with `tls = "implicit"`.
    pub(crate) port: Option<u16>,
    pub(crate) user: String,
    pub(crate) password_env: Option<String>,
    pub(crate) password_file: Option<PathBuf>,
    #[serde(default)]
    pub(crate) tls: FtpTls,
    /// PEM certificates trusted besides the system's roots.
    pub(crate) ca_file: Option<PathBuf>,
    /// Required with `tls = "none"`.
    #[serde(default)]
    pub(crate) allow_plain: bool,
    /// The remote inbox.
    pub(crate) path: String,
    #[serde(default = "crate::source::default_processed")]
    pub(crate) processed: PathBuf,
    #[serde(default = "crate::source::default_settle")]
    pub(crate) settle_ms: u64,
    #[serde(default = "default_timeout")]
    pub(crate) timeout_ms: u64,
}

/// How the connection is encrypted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FtpTls {
    /// `AUTH TLS` on the plain port, then the data connections protected
    /// too (`PROT P`).
    #[default]
    Explicit,
    /// TLS from the first byte (FTPS, port 990).
    Implicit,
    /// Nothing encrypted: the password crosses the network in clear.
    None,
}

fn default_timeout() -> u64 {
    30_000
}

impl FtpFile {
    /// Checks every setting and reads the secrets: the source's
    /// configuration, or what is wrong, naming the key. `rel` resolves
    /// relative paths.
    pub(crate) fn validate(&self, rel: &dyn Fn(&Path) -> PathBuf) -> Result<FtpConfig, String> {
        let password =
            crate::secret::read("password", &self.password_env, &self.password_file, rel)?
                .ok_or("an ftp source needs password_env or password_file")?;
        match (self.tls, self.allow_plain) {
            (FtpTls::None, false) => {
                return Err("tls = \"none\" sends the password and the files in clear: set allow_plain = true to accept that, or use tls = \"explicit\"".into())
            }
            (FtpTls::Explicit | FtpTls::Implicit, true) => {
                return Err("allow_plain only goes with tls = \"none\"".into())
            }
            _ => {}
        }
        if self.tls == FtpTls::None && self.ca_file.is_some() {
            return Err("ca_file goes with tls = \"explicit\" or \"implicit\"".into());
        }
        let ca = match &self.ca_file {
            Some(f) => {
                let f = rel(f);
                Some(std::fs::read(&f).map_err(|e| format!("ca_file {}: {e}", f.display()))?)
            }
            None => None,
        };
        let inbox = self.path.trim_end_matches('/').to_string();
        let processed = if self.processed.is_absolute() {
            self.processed.display().to_string()
        } else {
            format!("{inbox}/{}", self.processed.display())
        };
        let port = self.port.unwrap_or(match self.tls {
            FtpTls::Implicit => 990,
            _ => 21,
        });
        Ok(FtpConfig {
            host: self.host.clone(),
            port,
            user: self.user.clone(),
            password,
            tls: self.tls,
            ca,
            inbox,
            processed,
            timeout_ms: self.timeout_ms,
        })
    }
}

/// An FTP inbox (see the module documentation).
#[derive(Clone, Debug)]
pub struct FtpConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Secret,
    pub tls: FtpTls,
    /// PEM certificates trusted besides the system's roots.
    pub ca: Option<Vec<u8>>,
    /// Remote inbox and processed folders.
    pub inbox: String,
    pub processed: String,
    pub timeout_ms: u64,
}
