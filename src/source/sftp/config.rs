//! The SFTP source's settings: `[tenant.source]` with `type = "sftp"` as
//! the config file has it ([`SftpFile`], checked by [`SftpFile::validate`])
//! and as the source uses it ([`SftpConfig`]).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::secret::Secret;

/// `[tenant.source]` with `type = "sftp"` (the key reference is in
/// `src/config.rs`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SftpFile {
    pub(crate) host: String,
    #[serde(default = "default_port")]
    pub(crate) port: u16,
    pub(crate) user: String,
    pub(crate) password_env: Option<String>,
    pub(crate) password_file: Option<PathBuf>,
    pub(crate) key_env: Option<String>,
    pub(crate) key_file: Option<PathBuf>,
    pub(crate) passphrase_env: Option<String>,
    pub(crate) passphrase_file: Option<PathBuf>,
    pub(crate) known_hosts: Option<PathBuf>,
    pub(crate) host_key_sha256: Option<String>,
    /// The remote inbox.
    pub(crate) path: String,
    #[serde(default = "crate::source::default_processed")]
    pub(crate) processed: PathBuf,
    #[serde(default = "crate::source::default_settle")]
    pub(crate) settle_ms: u64,
    #[serde(default = "default_timeout")]
    pub(crate) timeout_ms: u64,
}

fn default_port() -> u16 {
    22
}
fn default_timeout() -> u64 {
    30_000
}

impl SftpFile {
    /// Checks every setting and reads the secrets: the source's
    /// configuration, or what is wrong, naming the key. `rel` resolves
    /// relative paths.
    pub(crate) fn validate(&self, rel: &dyn Fn(&Path) -> PathBuf) -> Result<SftpConfig, String> {
        let password =
            crate::secret::read("password", &self.password_env, &self.password_file, rel)?;
        let key = crate::secret::read("key", &self.key_env, &self.key_file, rel)?;
        let passphrase = crate::secret::read(
            "passphrase",
            &self.passphrase_env,
            &self.passphrase_file,
            rel,
        )?;
        let auth = match (password, key) {
            (Some(p), None) => SftpAuth::Password(p),
            (None, Some(key)) => SftpAuth::Key { key, passphrase },
            _ => {
                return Err(
                    "an sftp source needs a password (password_env / password_file) or a private key (key_env / key_file), exactly one".into(),
                )
            }
        };
        let host_key = match (&self.known_hosts, &self.host_key_sha256) {
            (Some(_), Some(_)) => {
                return Err("give known_hosts or host_key_sha256, not both".into())
            }
            (None, Some(fp)) if fp.starts_with("SHA256:") => HostKeyCheck::Sha256(fp.clone()),
            (None, Some(fp)) => {
                return Err(format!(
                "host_key_sha256 {fp:?} should look like ssh-keygen -lf prints it: SHA256:<base64>"
            ))
            }
            (Some(k), None) => HostKeyCheck::KnownHosts(rel(k)),
            (None, None) => {
                let home = std::env::var_os("HOME")
                    .ok_or("no known_hosts given and no HOME for ~/.ssh/known_hosts")?;
                HostKeyCheck::KnownHosts(Path::new(&home).join(".ssh/known_hosts"))
            }
        };
        if let HostKeyCheck::KnownHosts(k) = &host_key {
            if !k.is_file() {
                return Err(format!(
                    "known_hosts {} does not exist (an unknown host key is refused)",
                    k.display()
                ));
            }
        }
        let inbox = self.path.trim_end_matches('/').to_string();
        let processed = if self.processed.is_absolute() {
            self.processed.display().to_string()
        } else {
            format!("{inbox}/{}", self.processed.display())
        };
        Ok(SftpConfig {
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
            auth,
            host_key,
            inbox,
            processed,
            timeout_ms: self.timeout_ms,
        })
    }
}

/// An SFTP inbox (see the module documentation).
#[derive(Clone, Debug)]
pub struct SftpConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub auth: SftpAuth,
    pub host_key: HostKeyCheck,
    /// Remote inbox and processed folders.
    pub inbox: String,
    pub processed: String,
    pub timeout_ms: u64,
}

/// How muster proves who it is to the SFTP server.
#[derive(Clone, Debug)]
pub enum SftpAuth {
    Password(Secret),
    /// An OpenSSH private key (its text) and its passphrase.
    Key {
        key: Secret,
        passphrase: Option<Secret>,
    },
}

/// How the server's host key is checked. An unknown or changed key is
/// refused.
#[derive(Clone, Debug)]
pub enum HostKeyCheck {
    /// An OpenSSH known_hosts file.
    KnownHosts(PathBuf),
    /// The key's SHA-256 fingerprint as OpenSSH prints it (`SHA256:…`).
    Sha256(String),
}
