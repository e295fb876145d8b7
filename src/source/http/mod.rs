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
        /// The OAuth2 access token, until it expires.
        token: Option<(crate::secret::Secret, std::time::Instant)>,
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
                token: None,
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

        /// The `Authorization` header's value, if any (an OAuth2 token
        /// fetched when there is none, or it expired).
        fn authorization(&mut self) -> Result<Option<String>, SourceErrorKind> {
            Ok(match &self.config.auth {
                HttpAuth::None => None,
                HttpAuth::Bearer(token) => Some(format!("Bearer {}", token.expose())),
                HttpAuth::Basic { user, password } => {
                    Some(format!("Basic {}", basic(user, password.expose())))
                }
                HttpAuth::OAuth2 { .. } => {
                    let fresh = self
                        .token
                        .as_ref()
                        .is_some_and(|(_, until)| std::time::Instant::now() < *until);
                    if !fresh {
                        self.token = Some(self.fetch_token()?);
                    }
                    self.token
                        .as_ref()
                        .map(|(token, _)| format!("Bearer {}", token.expose()))
                }
            })
        }

        /// An OAuth2 access token for the client credentials (RFC 6749
        /// §4.4; the client authenticated with HTTP Basic), and until when
        /// to use it (a minute before it expires; an hour when the answer
        /// does not say).
        fn fetch_token(
            &self,
        ) -> Result<(crate::secret::Secret, std::time::Instant), SourceErrorKind> {
            let HttpAuth::OAuth2 {
                token_url,
                client_id,
                client_secret,
                scope,
            } = &self.config.auth
            else {
                return Err(SourceErrorKind::Refused("no OAuth2 settings".into()));
            };
            let mut form = vec![("grant_type", "client_credentials")];
            if let Some(scope) = scope {
                form.push(("scope", scope.as_str()));
            }
            let answer = self
                .agent
                .post(token_url)
                .header(
                    "Authorization",
                    &format!("Basic {}", basic(client_id, client_secret.expose())),
                )
                .send_form(form);
            let failed = |why: String| format!("POST {token_url} (the OAuth2 token): {why}");
            let mut resp = match answer {
                Ok(resp) => resp,
                Err(e) => return Err(SourceErrorKind::Unreachable(failed(e.to_string()))),
            };
            let status = resp.status().as_u16();
            if !resp.status().is_success() {
                let why = match status {
                    400 | 401 | 403 => " (the client id or secret was refused: check `auth`)",
                    _ => "",
                };
                let message = failed(format!("HTTP {status}{why}"));
                return Err(match status {
                    408 | 429 | 500..=599 => SourceErrorKind::Unreachable(message),
                    _ => SourceErrorKind::Refused(message),
                });
            }
            let body: serde_json::Value = resp.body_mut().read_json().map_err(|e| {
                SourceErrorKind::Refused(failed(format!("not a token answer ({e})")))
            })?;
            let token = body["access_token"].as_str().ok_or_else(|| {
                SourceErrorKind::Refused(failed("the answer has no access_token".into()))
            })?;
            let lasts = body["expires_in"]
                .as_u64()
                .unwrap_or(3600)
                .saturating_sub(60);
            let until = std::time::Instant::now() + Duration::from_secs(lasts);
            Ok((crate::secret::Secret::new(token.to_string()), until))
        }

        /// One snapshot's body into `to`, with retries; its size. An OAuth2
        /// token the API refuses (401) is fetched again, once.
        fn pull(&mut self, path: &str, to: &Path) -> Result<u64, SourceErrorKind> {
            let url = format!("{}/{}", self.config.base_url, path.trim_start_matches('/'));
            let shown = format!("GET {url}");
            let oauth2 = matches!(self.config.auth, HttpAuth::OAuth2 { .. });
            let mut refreshed = false;
            let mut last = String::new();
            let mut attempt = 0;
            while attempt < ATTEMPTS {
                attempt += 1;
                let mut req = self.agent.get(&url);
                if let Some(value) = self.authorization()? {
                    req = req.header("Authorization", &value);
                }
                let wait = match req.call() {
                    Ok(resp) if resp.status() == 401 && oauth2 && !refreshed => {
                        tracing::info!(
                            "http: the API refused the OAuth2 token; fetching a new one"
                        );
                        self.token = None;
                        refreshed = true;
                        attempt -= 1;
                        continue;
                    }
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

    /// `user:password` for HTTP Basic.
    fn basic(user: &str, password: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
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
