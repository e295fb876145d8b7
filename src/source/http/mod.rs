//! A source that is an HR system's HTTP API (SPEC §10, `type = "http"`):
//! each snapshot the tenant names (`[[tenant.files]] name`, `path`) is
//! pulled, its body streamed to a file, and then run like an inbox file.
//!
//! The pull is all or nothing: a request that still fails after its
//! retries (408, 429 — waiting for its `Retry-After` —, 5xx, a lost
//! connection) or whose body is cut short fails the run before anything is
//! planned, and the partial body is kept in the archive as
//! `<name>.incomplete.csv`, never as a snapshot. The archive folder is the
//! source's `processed/`: the snapshots pulled, their results and
//! summaries, named as `processed/` names them (SPEC §4), so the
//! same-content rule (decision 29) spares an unchanged answer its writes.
//!
//! Built here: CSV bodies of one request each (a Workday-style report).
//! JSON bodies, JSON profiles and paging are the next steps of issue #30.

mod config;

pub(crate) use config::HttpFile;
pub use config::{HttpAuth, HttpConfig, HttpSnapshot};

#[cfg(feature = "http")]
pub use source::HttpSource;

#[cfg(feature = "http")]
mod source {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::{HttpAuth, HttpConfig};
    use crate::source::{DirSource, Fetched, Source, SourceError, SourceErrorKind};

    /// Tries of each request; the waits between them (a `Retry-After` of
    /// up to a minute is taken instead).
    const ATTEMPTS: u32 = 3;
    const BACKOFF_MS: [u64; 2] = [500, 2000];

    pub struct HttpSource {
        config: HttpConfig,
        agent: ureq::Agent,
        /// The pulled snapshots as an inbox (`<archive>/.pulled`) whose
        /// `processed/` is the archive.
        dir: DirSource,
        pulled: bool,
    }

    impl HttpSource {
        pub fn new(config: HttpConfig, spool: PathBuf) -> Result<HttpSource, SourceError> {
            let pulled = config.archive.join(".pulled");
            let describe = describe(&config);
            std::fs::create_dir_all(&pulled).map_err(|source| {
                SourceError::new(
                    describe,
                    SourceErrorKind::Io {
                        what: pulled.display().to_string(),
                        source,
                    },
                )
            })?;
            let dir = DirSource::new(pulled, config.archive.clone(), spool)?;
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(config.timeout_s)))
                .user_agent(concat!("muster/", env!("CARGO_PKG_VERSION")))
                .build()
                .into();
            Ok(HttpSource {
                config,
                agent,
                dir,
                pulled: false,
            })
        }

        fn err(&self, kind: SourceErrorKind) -> SourceError {
            SourceError::new(self.describe(), kind)
        }

        /// Pulls every snapshot into the pickup folder, or fails (the
        /// partial body kept as `<name>.incomplete.csv` in the archive).
        fn pull_all(&mut self) -> Result<(), SourceError> {
            for snapshot in self.config.snapshots.clone() {
                let name = HttpConfig::file_name(&snapshot.name);
                let part = self
                    .config
                    .archive
                    .join(".pulled")
                    .join(format!(".{name}.part"));
                match self.pull(&snapshot.path, &part) {
                    Ok(bytes) => {
                        let to = self.config.archive.join(".pulled").join(&name);
                        std::fs::rename(&part, &to).map_err(|e| self.io(&to, e))?;
                        tracing::info!(snapshot = %snapshot.name, bytes, "http: pulled");
                    }
                    Err(kind) => {
                        let kept = self
                            .config
                            .archive
                            .join(format!("{}.incomplete.csv", snapshot.name));
                        let kept_note = match std::fs::rename(&part, &kept) {
                            Ok(()) => format!("; what came is kept in {}", kept.display()),
                            Err(_) => String::new(),
                        };
                        let message = format!(
                            "snapshot {:?} not pulled, so nothing is planned: {kind}{kept_note}",
                            snapshot.name
                        );
                        return Err(self.err(match kind {
                            SourceErrorKind::Refused(_) => SourceErrorKind::Refused(message),
                            _ => SourceErrorKind::Unreachable(message),
                        }));
                    }
                }
            }
            Ok(())
        }

        fn io(&self, path: &Path, source: std::io::Error) -> SourceError {
            self.err(SourceErrorKind::Io {
                what: path.display().to_string(),
                source,
            })
        }

        /// One snapshot's body into `to`, with retries; its size.
        fn pull(&self, path: &str, to: &Path) -> Result<u64, SourceErrorKind> {
            let url = format!("{}/{}", self.config.base_url, path.trim_start_matches('/'));
            let shown = format!(
                "GET {}/{}",
                self.config.base_url,
                path.trim_start_matches('/')
            );
            let mut last = String::new();
            for attempt in 1..=ATTEMPTS {
                let mut req = self.agent.get(&url);
                match &self.config.auth {
                    HttpAuth::None => {}
                    HttpAuth::Bearer(token) => {
                        req = req.header("Authorization", &format!("Bearer {}", token.expose()))
                    }
                    HttpAuth::Basic { user, password } => {
                        use base64::Engine;
                        let pair = format!("{user}:{}", password.expose());
                        let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                        req = req.header("Authorization", &format!("Basic {encoded}"));
                    }
                }
                let wait = match req.call() {
                    Ok(resp) if resp.status().is_success() => {
                        let mut body = resp.into_body().into_reader();
                        match crate::source::copy_hashed(&mut body, to) {
                            Ok((bytes, _)) => return Ok(bytes),
                            Err(e) => {
                                last = format!("{shown}: the body was cut short ({e})");
                                None
                            }
                        }
                    }
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        last = format!("{shown}: HTTP {status}");
                        if !matches!(status, 408 | 429 | 500..=599) {
                            let why = match status {
                                401 | 403 => {
                                    " (the API refused muster's credentials: check `auth`)"
                                }
                                404 => " (no such path: check the file's `path`)",
                                _ => "",
                            };
                            return Err(SourceErrorKind::Refused(format!("{last}{why}")));
                        }
                        resp.headers()
                            .get("Retry-After")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .map(|s| Duration::from_secs(s.min(60)))
                    }
                    Err(e) => {
                        last = format!("{shown}: {e}");
                        None
                    }
                };
                if attempt < ATTEMPTS {
                    let wait =
                        wait.unwrap_or(Duration::from_millis(BACKOFF_MS[attempt as usize - 1]));
                    tracing::warn!(attempt, error = %last, "http: retrying");
                    std::thread::sleep(wait);
                }
            }
            Err(SourceErrorKind::Unreachable(format!(
                "{last} (after {ATTEMPTS} tries)"
            )))
        }
    }

    fn describe(config: &HttpConfig) -> String {
        format!("http {}", config.base_url)
    }

    impl Source for HttpSource {
        fn describe(&self) -> String {
            describe(&self.config)
        }
        fn list(&mut self) -> Result<Vec<(String, u64)>, SourceError> {
            if !self.pulled {
                self.pull_all()?;
                self.pulled = true;
            }
            self.dir.list()
        }
        fn fetch(&mut self, name: &str) -> Result<Fetched, SourceError> {
            self.dir.fetch(name)
        }
        fn release(&mut self, local: &Path) {
            self.dir.release(local)
        }
        fn staging(&self) -> &Path {
            self.dir.staging()
        }
        fn processed_exists(&mut self, name: &str) -> Result<bool, SourceError> {
            self.dir.processed_exists(name)
        }
        fn processed_names(&mut self) -> Result<Vec<String>, SourceError> {
            self.dir.processed_names()
        }
        fn read_processed(
            &mut self,
            name: &str,
        ) -> Result<Box<dyn std::io::Read + Send>, SourceError> {
            self.dir.read_processed(name)
        }
        fn publish(&mut self, local: &Path, name: &str) -> Result<(), SourceError> {
            self.dir.publish(local, name)
        }
        fn archive(&mut self, name: &str, to: &str) -> Result<(), SourceError> {
            self.dir.archive(name, to)
        }
        fn location(&self, name: &str) -> PathBuf {
            self.dir.location(name)
        }
    }
}
