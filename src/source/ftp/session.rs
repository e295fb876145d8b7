//! An FTP inbox, over suppaftp with rustls (ring; the system's roots and
//! an optional `ca_file`).
//!
//! One control connection per run, opened on first use: explicit TLS
//! (`AUTH TLS`, then `PBSZ 0` / `PROT P` so the files are encrypted too),
//! implicit TLS (from the first byte), or none when the config says
//! `allow_plain`. Passive mode, with the data connections to the control
//! connection's address (servers behind NAT announce private ones).
//! Connecting is retried with backoff (1 s, then 2 s); a refused login or
//! certificate is not. Every read and write has the configured timeout.
//! The password is only handed to the `PASS` command: no message holds
//! it.
//!
//! As with SFTP, files are spooled while streamed; uploads go under a
//! `.tmp` name (ignored by pickup), then are renamed.

use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use suppaftp::types::FileType;
use suppaftp::{FtpError, Mode, RustlsConnector, RustlsFtpStream, Status};

use super::{FtpConfig, FtpTls};
use crate::source::{copy_hashed, Fetched, Source, SourceError, SourceErrorKind};

pub struct FtpSource {
    cfg: FtpConfig,
    spool: PathBuf,
    conn: Option<RustlsFtpStream>,
    not_taken: crate::source::NotTaken,
}

impl FtpSource {
    pub fn new(cfg: FtpConfig, spool: PathBuf) -> Result<FtpSource, SourceError> {
        let s = FtpSource {
            cfg,
            spool,
            conn: None,
            not_taken: Default::default(),
        };
        std::fs::create_dir_all(&s.spool)
            .map_err(|e| s.io(format!("spool {}", s.spool.display()), e))?;
        Ok(s)
    }

    fn err(&self, message: String) -> SourceError {
        SourceError::new(self.describe(), SourceErrorKind::Remote(message))
    }

    fn io(&self, what: String, source: std::io::Error) -> SourceError {
        SourceError::new(self.describe(), SourceErrorKind::Io { what, source })
    }

    /// The TLS settings: the system's roots, and `ca_file`'s.
    fn tls(&self) -> Result<RustlsConnector, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::CertificateDer;
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(pem) = &self.cfg.ca {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("ca_file: not a PEM certificate: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("ca_file: a certificate rustls refuses: {e}"))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(RustlsConnector::from(Arc::new(config)))
    }

    /// A new logged-in connection; the error says whether trying again
    /// could help.
    fn connect(&self) -> Result<RustlsFtpStream, (SourceError, bool)> {
        let kind = |k| SourceError::new(self.describe(), k);
        let fail = |m: String, again: bool| match again {
            true => (kind(SourceErrorKind::Unreachable(m)), true),
            false => (kind(SourceErrorKind::Refused(m)), false),
        };
        let timeout = Duration::from_millis(self.cfg.timeout_ms);
        let addr = (self.cfg.host.as_str(), self.cfg.port)
            .to_socket_addrs()
            .map_err(|e| fail(format!("resolve {}: {e}", self.cfg.host), true))?
            .next()
            .ok_or_else(|| fail(format!("resolve {}: no address", self.cfg.host), true))?;
        let tls_failed = |e: FtpError| {
            fail(
                format!(
                    "TLS with {}: {e} (is its certificate trusted? ca_file adds a CA)",
                    self.cfg.host
                ),
                false,
            )
        };
        let mut ftp = match self.cfg.tls {
            FtpTls::Implicit => {
                // Reachable first, within the timeout (suppaftp's implicit
                // connect has none of its own).
                TcpStream::connect_timeout(&addr, timeout)
                    .map_err(|e| fail(format!("connect to {addr}: {e}"), true))?;
                let connector = self.tls().map_err(|m| fail(m, false))?;
                let mut ftp =
                    RustlsFtpStream::connect_secure_implicit(addr, connector, &self.cfg.host)
                        .map_err(tls_failed)?;
                for command in ["PBSZ 0", "PROT P"] {
                    ftp.custom_command(command, &[Status::CommandOk])
                        .map_err(|e| fail(format!("{command}: {e}"), false))?;
                }
                ftp
            }
            FtpTls::Explicit => {
                let ftp = RustlsFtpStream::connect_timeout(addr, timeout)
                    .map_err(|e| fail(format!("connect to {addr}: {e}"), true))?;
                let connector = self.tls().map_err(|m| fail(m, false))?;
                ftp.into_secure(connector, &self.cfg.host)
                    .map_err(tls_failed)?
            }
            FtpTls::None => RustlsFtpStream::connect_timeout(addr, timeout)
                .map_err(|e| fail(format!("connect to {addr}: {e}"), true))?,
        };
        ftp.get_ref().set_read_timeout(Some(timeout)).ok();
        ftp.get_ref().set_write_timeout(Some(timeout)).ok();
        ftp.set_mode(Mode::Passive);
        ftp.set_passive_nat_workaround(true);
        ftp.login(self.cfg.user.as_str(), self.cfg.password.expose())
            .map_err(|e| fail(format!("login as {} refused: {e}", self.cfg.user), false))?;
        ftp.transfer_type(FileType::Binary)
            .map_err(|e| fail(format!("TYPE I: {e}"), true))?;
        Ok(ftp)
    }

    /// The connection, made (with retries) when there is none.
    fn ftp(&mut self) -> Result<&mut RustlsFtpStream, SourceError> {
        if self.conn.is_none() {
            let conn = crate::source::connect_with_retries("ftp", || self.connect())?;
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    /// Runs `f` on the connection; an error names `what`. A connection
    /// whose failure was not the server's answer is not used again.
    fn with<T>(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut RustlsFtpStream) -> Result<T, FtpError>,
    ) -> Result<T, SourceError> {
        let result = f(self.ftp()?);
        result.map_err(|e| {
            if !matches!(e, FtpError::UnexpectedResponse(_)) {
                self.conn = None;
            }
            self.err(format!("{what}: {e}"))
        })
    }

    fn inbox_path(&self, name: &str) -> String {
        format!("{}/{name}", self.cfg.inbox)
    }

    fn processed_path(&self, name: &str) -> String {
        format!("{}/{name}", self.cfg.processed)
    }

    /// The entries of a remote folder; `None` when it does not exist.
    fn entries(&mut self, dir: &str) -> Result<Option<Vec<Entry>>, SourceError> {
        let listed = self.ftp()?.list(Some(dir));
        let lines = match listed {
            Ok(lines) => lines,
            Err(FtpError::UnexpectedResponse(r)) if r.status == Status::FileUnavailable => {
                return Ok(None)
            }
            Err(e) => {
                self.conn = None;
                return Err(self.err(format!("list {dir}: {e}")));
            }
        };
        let mut out = Vec::new();
        for line in lines {
            let Ok(entry) = suppaftp::list::File::try_from(line.as_str()) else {
                tracing::debug!(line = %line, "ftp: a LIST line not understood; passed over");
                continue;
            };
            let name = entry
                .name()
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string();
            if name == "." || name == ".." {
                continue;
            }
            out.push(Entry(
                name,
                entry.is_file(),
                entry.is_symlink(),
                entry.size() as u64,
            ));
        }
        Ok(Some(out))
    }

    fn ensure_processed(&mut self) -> Result<(), SourceError> {
        let dir = self.cfg.processed.clone();
        let parent = dir.rsplit_once('/').map_or(".", |(p, _)| p).to_string();
        let base = dir.rsplit('/').next().unwrap_or_default().to_string();
        let exists = self
            .entries(if parent.is_empty() { "/" } else { &parent })?
            .is_some_and(|e| e.iter().any(|Entry(n, file, ..)| *n == base && !file));
        if !exists {
            self.with(&format!("mkdir {dir}"), |f| f.mkdir(&dir))?;
        }
        Ok(())
    }
}

/// A folder's entry: name, whether a file, whether a link, size.
struct Entry(String, bool, bool, u64);

/// A data connection being read, and how it is closed.
trait Transfer: Read + Send {
    fn end(self: Box<Self>) -> Result<(), FtpError>;
}

impl<T> Transfer for suppaftp::TransferStream<T>
where
    T: suppaftp::TlsStream + Send,
    suppaftp::TransferStream<T>: Read,
{
    fn end(self: Box<Self>) -> Result<(), FtpError> {
        (*self).finish()
    }
}

/// A processed file read on a connection of its own, closed at its end.
struct ProcessedReader {
    stream: Option<Box<dyn Transfer>>,
    _conn: RustlsFtpStream,
}

impl Read for ProcessedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(stream) = &mut self.stream else {
            return Ok(0);
        };
        let n = stream.read(buf)?;
        if n == 0 && !buf.is_empty() {
            if let Some(stream) = self.stream.take() {
                stream.end().map_err(std::io::Error::other)?;
            }
        }
        Ok(n)
    }
}

impl Source for FtpSource {
    fn describe(&self) -> String {
        format!(
            "ftp {}@{}:{}{}",
            self.cfg.user, self.cfg.host, self.cfg.port, self.cfg.inbox
        )
    }

    fn list(&mut self) -> Result<Vec<(String, u64)>, SourceError> {
        let inbox = self.cfg.inbox.clone();
        let Some(entries) = self.entries(&inbox)? else {
            return Err(self.err(format!("list {inbox}: no such folder")));
        };
        let mut out = Vec::new();
        for Entry(name, file, link, size) in entries {
            if self
                .not_taken
                .check(&inbox, std::ffi::OsStr::new(&name), file, link)
            {
                continue;
            }
            if file {
                out.push((name, size));
            }
        }
        Ok(out)
    }

    fn fetch(&mut self, name: &str) -> Result<Fetched, SourceError> {
        let remote = self.inbox_path(name);
        let local = self.spool.join(name);
        let mut stream = self.with(&format!("RETR {remote}"), |f| f.retr_as_stream(&remote))?;
        let copied = copy_hashed(&mut stream, &local);
        let finished = stream.finish();
        match (copied, finished) {
            (Ok((_, hash)), Ok(())) => {
                let shown = local.display().to_string();
                Fetched::new(local, hash).map_err(|e| self.io(format!("spool {shown}"), e))
            }
            (Err(e), _) => {
                self.conn = None;
                Err(self.err(format!("fetch {remote} into {}: {e}", local.display())))
            }
            (_, Err(e)) => {
                self.conn = None;
                Err(self.err(format!(
                    "fetch {remote}: the transfer did not end well: {e}"
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
        let dir = self.cfg.processed.clone();
        Ok(self
            .entries(&dir)?
            .is_some_and(|e| e.iter().any(|Entry(n, ..)| n == name)))
    }

    fn processed_names(&mut self) -> Result<Vec<String>, SourceError> {
        let dir = self.cfg.processed.clone();
        Ok(self
            .entries(&dir)?
            .unwrap_or_default()
            .into_iter()
            .filter(|Entry(_, file, ..)| *file)
            .map(|Entry(n, ..)| n)
            .collect())
    }

    fn read_processed(&mut self, name: &str) -> Result<Box<dyn Read + Send>, SourceError> {
        let path = self.processed_path(name);
        let mut conn = self.connect().map_err(|(e, _)| e)?;
        let stream = conn
            .retr_as_stream(&path)
            .map_err(|e| self.err(format!("RETR {path}: {e}")))?;
        Ok(Box::new(ProcessedReader {
            stream: Some(Box::new(stream)),
            _conn: conn,
        }))
    }

    fn publish(&mut self, local: &Path, name: &str) -> Result<(), SourceError> {
        self.ensure_processed()?;
        let tmp = self.processed_path(&format!(".{name}.tmp"));
        let to = self.processed_path(name);
        let mut from =
            std::fs::File::open(local).map_err(|e| self.io(local.display().to_string(), e))?;
        self.with(&format!("STOR {tmp}"), |f| f.put_file(&tmp, &mut from))?;
        self.with(&format!("rename {tmp} to {to}"), |f| f.rename(&tmp, &to))?;
        let _ = std::fs::remove_file(local);
        Ok(())
    }

    fn archive(&mut self, name: &str, to: &str) -> Result<(), SourceError> {
        self.ensure_processed()?;
        let from = self.inbox_path(name);
        let to = self.processed_path(to);
        self.with(&format!("rename {from} to {to}"), |f| f.rename(&from, &to))
    }

    fn location(&self, name: &str) -> PathBuf {
        PathBuf::from(format!(
            "ftp://{}@{}:{}{}",
            self.cfg.user,
            self.cfg.host,
            self.cfg.port,
            self.processed_path(name)
        ))
    }
}
