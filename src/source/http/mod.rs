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
//! A CSV body is the file, in one request (a Workday-style report). JSON
//! answers come in pages (one, or linked by a next link in the body, the
//! `Link` header, a cursor, or an offset): each page's records are written
//! to the pulled file as they arrive, one record a line (JSON Lines, read
//! by a JSON profile), so memory holds one page whatever the pages.

mod config;
#[cfg(feature = "http")]
mod page;

pub(crate) use config::HttpFile;
pub use config::{Body, HttpAuth, HttpConfig, HttpSnapshot, Paging};

#[cfg(feature = "http")]
pub use source::HttpSource;

#[cfg(feature = "http")]
mod source {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use std::io::Write;

    use super::{page, Body, HttpAuth, HttpConfig, Paging};
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
                let name = HttpConfig::file_name(&snapshot.name, &snapshot.body);
                let part = self
                    .config
                    .archive
                    .join(".pulled")
                    .join(format!(".{name}.part"));
                let pulled = match &snapshot.body {
                    Body::Csv => self.pull_csv(&snapshot.path, &part),
                    Body::Json { records, paging } => {
                        self.pull_json(&snapshot.path, records, paging, &part)
                    }
                };
                match pulled {
                    Ok(bytes) => {
                        let to = self.config.archive.join(".pulled").join(&name);
                        std::fs::rename(&part, &to).map_err(|e| self.io(&to, e))?;
                        tracing::info!(snapshot = %snapshot.name, bytes, "http: pulled");
                    }
                    Err(kind) => {
                        let extension = name.rsplit('.').next().unwrap_or("csv");
                        let kept = self
                            .config
                            .archive
                            .join(format!("{}.incomplete.{extension}", snapshot.name));
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
                    Some(format!("Basic {}", basic(user.expose(), password.expose())))
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

        /// A CSV snapshot's body into `to`; its size.
        fn pull_csv(&mut self, path: &str, to: &Path) -> Result<u64, SourceErrorKind> {
            let url = format!("{}/{}", self.config.base_url, path.trim_start_matches('/'));
            self.get(&url, |resp| {
                let mut body = resp.into_body().into_reader();
                crate::source::copy_hashed(&mut body, to)
                    .map(|(bytes, _)| bytes)
                    .map_err(|e| format!("the body was cut short ({e})"))
            })
        }

        /// A JSON snapshot's pages into `to`, one record a line, each page
        /// written as it arrives; the bytes written. A page that is not
        /// what `records` says, or paging that loops or leaves the API's
        /// host, fails the pull.
        fn pull_json(
            &mut self,
            path: &str,
            records: &str,
            paging: &Paging,
            to: &Path,
        ) -> Result<u64, SourceErrorKind> {
            let first = format!("{}/{}", self.config.base_url, path.trim_start_matches('/'));
            let first = url::Url::parse(&first)
                .map_err(|e| SourceErrorKind::Refused(format!("{first}: {e}")))?;
            let write_err = |e: std::io::Error| {
                SourceErrorKind::Refused(format!("writing {}: {e}", to.display()))
            };
            let mut out = std::io::BufWriter::with_capacity(
                1 << 20,
                std::fs::File::create(to).map_err(write_err)?,
            );
            let next_path = match paging {
                Paging::NextLink { next } | Paging::Cursor { next, .. } => Some(next.as_str()),
                _ => None,
            };
            let mut url = match paging {
                Paging::Offset {
                    offset_param,
                    limit_param,
                    limit,
                } => with_params(
                    &first,
                    &[(offset_param, "0"), (limit_param, &limit.to_string())],
                ),
                _ => first.clone(),
            };
            // What pages were asked for (their URLs' hashes), and the
            // previous page's records: paging that loops is an error.
            let mut seen = std::collections::HashSet::from([hash(url.as_str())]);
            let mut previous = None;
            let (mut pages, mut total, mut bytes) = (0u64, 0u64, 0u64);
            let mut line = Vec::new();
            let started = std::time::Instant::now();
            loop {
                pages += 1;
                let (body, link) = self.get(url.as_str(), |resp| {
                    let link = resp
                        .headers()
                        .get("Link")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let mut body = Vec::new();
                    std::io::Read::read_to_end(&mut resp.into_body().into_reader(), &mut body)
                        .map_err(|e| format!("the body was cut short ({e})"))?;
                    Ok((body, link))
                })?;
                let at = |why: String| format!("page {pages} (GET {url}): {why}");
                let page = page::parse(&body, records, next_path)
                    .map_err(|e| SourceErrorKind::Refused(at(e)))?;
                let this = hash_records(&page.records);
                if !page.records.is_empty() && previous == Some(this) {
                    return Err(SourceErrorKind::Refused(at(
                        "the same records as the page before: the API's paging loops".into(),
                    )));
                }
                previous = Some(this);
                for record in &page.records {
                    line.clear();
                    page::compact(record.get(), &mut line);
                    line.push(b'\n');
                    out.write_all(&line).map_err(write_err)?;
                    bytes += line.len() as u64;
                }
                total += page.records.len() as u64;
                if pages.is_multiple_of(100) {
                    tracing::info!(pages, records = total, "http: pulling");
                }
                let next = match paging {
                    Paging::None => None,
                    Paging::NextLink { .. } => page.next.clone(),
                    Paging::LinkHeader => link.as_deref().and_then(page::link_next),
                    Paging::Cursor { param, .. } => page
                        .next
                        .as_ref()
                        .map(|c| with_params(&first, &[(param, c)]).to_string()),
                    Paging::Offset {
                        offset_param,
                        limit_param,
                        limit,
                    } => ((page.records.len() as u64) >= *limit).then(|| {
                        let offset = total.to_string();
                        with_params(
                            &first,
                            &[(offset_param, &offset), (limit_param, &limit.to_string())],
                        )
                        .to_string()
                    }),
                };
                let Some(next) = next else { break };
                let next = url.join(&next).map_err(|e| {
                    SourceErrorKind::Refused(at(format!("next page {next:?}: {e}")))
                })?;
                if next.origin() != first.origin() {
                    return Err(SourceErrorKind::Refused(at(format!(
                        "the next page is on another host ({}): muster sends its credentials to base_url's host only",
                        next.origin().ascii_serialization()
                    ))));
                }
                if !seen.insert(hash(next.as_str())) {
                    return Err(SourceErrorKind::Refused(at(format!(
                        "the next page ({next}) was asked for before: the API's paging loops"
                    ))));
                }
                url = next;
            }
            out.flush().map_err(write_err)?;
            tracing::info!(
                pages,
                records = total,
                bytes,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "http: all pages pulled"
            );
            Ok(bytes)
        }

        /// A GET of `url` with retries, its answer read by `read` (whose
        /// error is a body cut short: tried again). An OAuth2 token the API
        /// refuses (401) is fetched again, once.
        fn get<T>(
            &mut self,
            url: &str,
            mut read: impl FnMut(ureq::http::Response<ureq::Body>) -> Result<T, String>,
        ) -> Result<T, SourceErrorKind> {
            let shown = format!("GET {url}");
            let oauth2 = matches!(self.config.auth, HttpAuth::OAuth2 { .. });
            let mut refreshed = false;
            let mut last = String::new();
            let mut attempt = 0;
            while attempt < ATTEMPTS {
                attempt += 1;
                let mut req = self.agent.get(url);
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
                    Ok(resp) if resp.status().is_success() => match read(resp) {
                        Ok(value) => return Ok(value),
                        Err(e) => {
                            last = format!("{shown}: {e}");
                            None
                        }
                    },
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

    /// `url` with each of `params` set (replacing any of the same name).
    fn with_params(url: &url::Url, params: &[(&String, &str)]) -> url::Url {
        let mut url = url.clone();
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| !params.iter().any(|(name, _)| *name == k))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(kept)
            .extend_pairs(params.iter().map(|(k, v)| (k.as_str(), *v)));
        url
    }

    fn hash(text: &str) -> u64 {
        xxhash_rust::xxh3::xxh3_64(text.as_bytes())
    }

    /// A hash of a page's records, to tell a page repeated.
    fn hash_records(records: &[&serde_json::value::RawValue]) -> u64 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for r in records {
            h.update(r.get().as_bytes());
            h.update(b"\n");
        }
        h.digest()
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
