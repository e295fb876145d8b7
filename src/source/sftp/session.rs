//! An SFTP inbox, over libssh2 (the `ssh2` crate).
//!
//! One session per run, opened on first use and kept on the thread that
//! owns the source (libssh2 sessions are not shared across threads). The
//! server's host key is checked before anything is sent: against a
//! known_hosts file, or a pinned SHA-256 fingerprint; an unknown or changed
//! key is refused. Connecting is retried with backoff (1 s, then 2 s); every
//! blocking call has the configured timeout. Passwords, keys and
//! passphrases are only handed to libssh2: no message holds them.
//!
//! Files are spooled to a local folder while streamed (the reader then
//! reads a local file twice, as a run does), and removed after the run.
//! Uploads go under a `.tmp` name (ignored by pickup), then are renamed:
//! OpenSSH's server never overwrites on rename, and the processed names
//! are unique.

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use ssh2::{CheckResult, HashType, KnownHostFileKind, Session, Sftp};

use super::{HostKeyCheck, SftpAuth, SftpConfig};
use crate::source::{copy_hashed, Fetched, Source, SourceError, SourceErrorKind};

pub struct SftpSource {
    cfg: SftpConfig,
    spool: PathBuf,
    /// The session (kept alive with its SFTP channel).
    conn: Option<(Session, Sftp)>,
    not_taken: crate::source::NotTaken,
}

impl SftpSource {
    pub fn new(cfg: SftpConfig, spool: PathBuf) -> Result<SftpSource, SourceError> {
        let s = SftpSource {
            cfg,
            spool,
            conn: None,
            not_taken: Default::default(),
        };
        std::fs::create_dir_all(&s.spool)
            .map_err(|e| s.io(format!("spool {}", s.spool.display()), e))?;
        Ok(s)
    }

    /// An operation on the server failed.
    fn err(&self, message: String) -> SourceError {
        SourceError::new(self.describe(), SourceErrorKind::Remote(message))
    }

    /// A local file could not be read or written.
    fn io(&self, what: String, source: std::io::Error) -> SourceError {
        SourceError::new(self.describe(), SourceErrorKind::Io { what, source })
    }

    /// The SFTP channel, connecting (with retries) when there is none.
    fn sftp(&mut self) -> Result<&Sftp, SourceError> {
        if self.conn.is_none() {
            // A refused host key or bad credentials do not get better by
            // trying again.
            let conn = crate::source::connect_with_retries("sftp", || self.connect())?;
            self.conn = Some(conn);
        }
        Ok(&self.conn.as_ref().expect("connected above").1)
    }

    /// One connection attempt; the flag says whether retrying may help.
    fn connect(&self) -> Result<(Session, Sftp), (SourceError, bool)> {
        let cfg = &self.cfg;
        let timeout = Duration::from_millis(cfg.timeout_ms.max(1));
        let kind = |k| SourceError::new(self.describe(), k);
        let transient = |m: String| (kind(SourceErrorKind::Unreachable(m)), true);
        let fatal = |m: String| (kind(SourceErrorKind::Refused(m)), false);
        let addr = (cfg.host.as_str(), cfg.port)
            .to_socket_addrs()
            .map_err(|e| transient(format!("cannot resolve {}: {e}", cfg.host)))?
            .next()
            .ok_or_else(|| transient(format!("{} resolves to no address", cfg.host)))?;
        let tcp = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| transient(format!("cannot connect to {addr}: {e}")))?;
        let _ = tcp.set_read_timeout(Some(timeout));
        let _ = tcp.set_write_timeout(Some(timeout));
        let mut session =
            Session::new().map_err(|e| transient(format!("cannot start SSH: {e}")))?;
        session.set_tcp_stream(tcp);
        session.set_timeout(u32::try_from(cfg.timeout_ms).unwrap_or(u32::MAX));
        session
            .handshake()
            .map_err(|e| transient(format!("SSH handshake failed: {e}")))?;
        self.check_host_key(&session).map_err(fatal)?;
        let user = cfg.user.as_str();
        let auth = match &cfg.auth {
            SftpAuth::Password(p) => session.userauth_password(user, p.expose()),
            SftpAuth::Key { key, passphrase } => session.userauth_pubkey_memory(
                user,
                None,
                key.expose(),
                passphrase.as_ref().map(|p| p.expose()),
            ),
        };
        let how = match cfg.auth {
            SftpAuth::Password(_) => "password",
            SftpAuth::Key { .. } => "private key",
        };
        if let Err(e) = auth {
            // libssh2's message names no secret; say which method failed.
            return Err(fatal(format!(
                "authentication of user {user:?} by {how} failed: {}",
                e.message()
            )));
        }
        if !session.authenticated() {
            return Err(fatal(format!("user {user:?} is not authenticated")));
        }
        let sftp = session
            .sftp()
            .map_err(|e| transient(format!("cannot open the SFTP channel: {e}")))?;
        tracing::info!(source = %self.describe(), "sftp connected");
        Ok((session, sftp))
    }

    fn check_host_key(&self, session: &Session) -> Result<(), String> {
        let (host, port) = (&self.cfg.host, self.cfg.port);
        match &self.cfg.host_key {
            HostKeyCheck::Sha256(want) => {
                let got = session
                    .host_key_hash(HashType::Sha256)
                    .map(|h| {
                        format!(
                            "SHA256:{}",
                            base64::engine::general_purpose::STANDARD_NO_PAD.encode(h)
                        )
                    })
                    .ok_or("the server sent no host key")?;
                if &got != want {
                    return Err(format!(
                        "host key of {host}:{port} is {got}, not the pinned {want}: refused (a changed key may mean someone is in the middle; check it with the server's owner)"
                    ));
                }
                Ok(())
            }
            HostKeyCheck::KnownHosts(path) => {
                let (key, _) = session.host_key().ok_or("the server sent no host key")?;
                let mut known = session
                    .known_hosts()
                    .map_err(|e| format!("known_hosts: {e}"))?;
                known
                    .read_file(path, KnownHostFileKind::OpenSSH)
                    .map_err(|e| format!("known_hosts {}: {e}", path.display()))?;
                let fingerprint = session
                    .host_key_hash(HashType::Sha256)
                    .map(|h| base64::engine::general_purpose::STANDARD_NO_PAD.encode(h))
                    .unwrap_or_default();
                match known.check_port(host, port, key) {
                    CheckResult::Match => Ok(()),
                    CheckResult::NotFound => Err(format!(
                        "host key of {host}:{port} (SHA256:{fingerprint}) is not in {}: unknown hosts are refused (add its line, e.g. from ssh-keyscan, once you have checked the fingerprint)",
                        path.display()
                    )),
                    CheckResult::Mismatch => Err(format!(
                        "host key of {host}:{port} (SHA256:{fingerprint}) does not match {}: refused (a changed key may mean someone is in the middle; check it with the server's owner)",
                        path.display()
                    )),
                    CheckResult::Failure => Err(format!(
                        "host key of {host}:{port} could not be checked against {}",
                        path.display()
                    )),
                }
            }
        }
    }

    /// Runs `f` on the SFTP channel; on failure drops the session, so the
    /// next call reconnects.
    fn with<T>(
        &mut self,
        what: &str,
        f: impl FnOnce(&Sftp) -> Result<T, ssh2::Error>,
    ) -> Result<T, SourceError> {
        let result = f(self.sftp()?);
        result.map_err(|e| {
            self.conn = None;
            self.err(format!("{what}: {e}"))
        })
    }

    fn inbox_path(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("{}/{name}", self.cfg.inbox))
    }

    fn processed_path(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("{}/{name}", self.cfg.processed))
    }

    fn ensure_processed(&mut self) -> Result<(), SourceError> {
        let dir = PathBuf::from(&self.cfg.processed);
        let exists = self.sftp()?.stat(&dir).is_ok();
        if !exists {
            self.with(&format!("mkdir {}", dir.display()), |s| {
                s.mkdir(&dir, 0o755)
            })?;
        }
        Ok(())
    }
}

impl Source for SftpSource {
    fn describe(&self) -> String {
        format!(
            "sftp {}@{}:{}{}",
            self.cfg.user, self.cfg.host, self.cfg.port, self.cfg.inbox
        )
    }

    fn list(&mut self) -> Result<Vec<(String, u64)>, SourceError> {
        let inbox = PathBuf::from(&self.cfg.inbox);
        let entries = self.with(&format!("list {}", inbox.display()), |s| s.readdir(&inbox))?;
        let mut out = Vec::new();
        for (path, stat) in entries {
            let Some(name) = path.file_name() else {
                continue;
            };
            let link = stat.file_type() == ssh2::FileType::Symlink;
            if self
                .not_taken
                .check(&self.cfg.inbox, name, stat.is_file(), link)
            {
                continue;
            }
            if let (true, Some(name)) = (stat.is_file(), name.to_str()) {
                out.push((name.to_string(), stat.size.unwrap_or(0)));
            }
        }
        Ok(out)
    }

    fn fetch(&mut self, name: &str) -> Result<Fetched, SourceError> {
        let remote = self.inbox_path(name);
        let local = self.spool.join(name);
        let mut file = self.with(&format!("open {}", remote.display()), |s| s.open(&remote))?;
        match copy_hashed(&mut file, &local) {
            Ok((_, hash)) => {
                let shown = local.display().to_string();
                Fetched::new(local, hash).map_err(|e| self.io(format!("spool {shown}"), e))
            }
            Err(e) => {
                // A read or a spool write failed: the connection is not
                // trusted for the next call.
                self.conn = None;
                Err(self.err(format!(
                    "fetch {} into {}: {e}",
                    remote.display(),
                    local.display()
                )))
            }
        }
    }

    fn release(&mut self, local: &Path) {
        let _ = std::fs::remove_file(local);
    }

    fn staging(&self) -> &Path {
        &self.spool
    }

    fn processed_exists(&mut self, name: &str) -> Result<bool, SourceError> {
        let path = self.processed_path(name);
        Ok(self.sftp()?.stat(&path).is_ok())
    }

    fn read_processed(&mut self, name: &str) -> Result<Box<dyn std::io::Read + Send>, SourceError> {
        let path = self.processed_path(name);
        let file = self.with(&format!("open {}", path.display()), |s| s.open(&path))?;
        Ok(Box::new(file))
    }

    fn processed_names(&mut self) -> Result<Vec<String>, SourceError> {
        let dir = PathBuf::from(&self.cfg.processed);
        if self.sftp()?.stat(&dir).is_err() {
            return Ok(Vec::new());
        }
        let entries = self.with(&format!("list {}", dir.display()), |s| s.readdir(&dir))?;
        Ok(entries
            .into_iter()
            .filter_map(|(path, _)| Some(path.file_name()?.to_str()?.to_string()))
            .collect())
    }

    fn publish(&mut self, local: &Path, name: &str) -> Result<(), SourceError> {
        self.ensure_processed()?;
        let tmp = self.processed_path(&format!(".{name}.tmp"));
        let to = self.processed_path(name);
        let mut from =
            std::fs::File::open(local).map_err(|e| self.io(local.display().to_string(), e))?;
        let mut file = self.with(&format!("create {}", tmp.display()), |s| s.create(&tmp))?;
        if let Err(e) = std::io::copy(&mut from, &mut file).and_then(|_| file.flush()) {
            self.conn = None;
            return Err(self.err(format!("write {}: {e}", tmp.display())));
        }
        drop(file);
        self.with(&format!("rename to {}", to.display()), |s| {
            s.rename(&tmp, &to, None)
        })?;
        let _ = std::fs::remove_file(local);
        Ok(())
    }

    fn location(&self, name: &str) -> PathBuf {
        PathBuf::from(format!(
            "sftp://{}@{}:{}{}",
            self.cfg.user,
            self.cfg.host,
            self.cfg.port,
            self.processed_path(name).display()
        ))
    }

    fn archive(&mut self, name: &str, to: &str) -> Result<(), SourceError> {
        self.ensure_processed()?;
        let from = self.inbox_path(name);
        let to = self.processed_path(to);
        self.with(
            &format!("rename {} to {}", from.display(), to.display()),
            |s| s.rename(&from, &to, None),
        )
    }
}
