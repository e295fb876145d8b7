//! HTTP for the SCIM sink: one `ureq` agent shared by the sender threads,
//! the bearer token, a token-bucket rate limit, timeouts, and retries as
//! data — 408, 429, 5xx and lost connections are tried again after a
//! full-jitter exponential backoff (or the server's `Retry-After`), up to
//! `max_attempts`; every other answer goes back to the caller.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::config::ScimConfig;
use crate::secret::Secret;

/// The longest `Retry-After` honoured; a server asking for more is told
/// "unavailable" sooner and the next run tries again.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(900);

/// Answers larger than this are refused (a list page of 1000 users is
/// about 1 MB).
const MAX_BODY: u64 = 256 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Method {
    Get,
    Post,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// One request, relative to the base URL.
pub(super) struct Request {
    pub method: Method,
    /// Starts with `/`, query included.
    pub path: String,
    pub body: Option<Vec<u8>>,
    pub if_match: Option<String>,
    /// Tokens taken from the rate limit: the writes it carries.
    pub writes: u32,
}

impl Request {
    pub fn get(path: String) -> Request {
        Request {
            method: Method::Get,
            path,
            body: None,
            if_match: None,
            writes: 0,
        }
    }

    /// A write of `writes` operations, its body serialised.
    pub fn write(
        method: Method,
        path: String,
        body: Option<&serde_json::Value>,
        writes: u32,
    ) -> Request {
        Request {
            method,
            path,
            body: body.map(|b| serde_json::to_vec(b).unwrap_or_default()),
            if_match: None,
            writes,
        }
    }
}

/// A final answer (not one that is retried).
pub(super) struct Response {
    pub status: u16,
    pub etag: Option<String>,
    pub location: Option<String>,
    pub body: Vec<u8>,
    /// The server's `Retry-After`, when it gave one.
    pub retry_after: Option<Duration>,
    /// How many times the request was sent: an answer after a lost one
    /// may describe the effect of the earlier try.
    pub attempts: u32,
}

impl Response {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The LMS's own words: a SCIM error's `detail` (and `scimType`), or
    /// the start of the body.
    pub fn message(&self) -> String {
        describe(self.status, &self.body)
    }
}

/// `HTTP 409 (uniqueness): detail`, from a SCIM error body.
fn describe(status: u16, body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let detail = v.get("detail").and_then(|d| d.as_str());
    let kind = v.get("scimType").and_then(|d| d.as_str());
    match (detail, kind) {
        (Some(d), Some(k)) => format!("HTTP {status} ({k}): {d}"),
        (Some(d), None) => format!("HTTP {status}: {d}"),
        _ => {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
            let text = text.trim();
            if text.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {text}")
            }
        }
    }
}

/// Whether an answer is worth trying again.
pub(super) fn retryable(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

pub(super) struct Client {
    agent: ureq::Agent,
    base: String,
    auth: Secret,
    max_attempts: u32,
    backoff: Duration,
    max_backoff: Duration,
    bucket: Option<Mutex<Bucket>>,
    seed: AtomicU64,
    /// The requests sent, by the answer's status (`error`: none came).
    answers: Mutex<BTreeMap<String, u64>>,
}

impl Client {
    pub fn new(cfg: &ScimConfig) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_millis(cfg.connect_timeout_ms)))
            .timeout_send_request(Some(Duration::from_millis(cfg.timeout_ms)))
            .timeout_send_body(Some(Duration::from_millis(cfg.timeout_ms)))
            .timeout_recv_response(Some(Duration::from_millis(cfg.timeout_ms)))
            .timeout_recv_body(Some(Duration::from_millis(cfg.timeout_ms)))
            .max_idle_connections_per_host(cfg.senders.max(1) * 2)
            .user_agent(concat!("muster/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Client {
            agent,
            base: cfg.url.clone(),
            auth: Secret::new(format!("Bearer {}", cfg.token.expose())),
            max_attempts: cfg.max_attempts,
            backoff: Duration::from_millis(cfg.backoff_ms),
            max_backoff: Duration::from_millis(cfg.max_backoff_ms),
            bucket: cfg.writes_per_second.map(|rate| {
                Mutex::new(Bucket {
                    rate,
                    next: Instant::now(),
                })
            }),
            seed: AtomicU64::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
                    | 1,
            ),
            answers: Mutex::new(BTreeMap::new()),
        }
    }

    /// The requests sent so far, by the answer's status (`error` when no
    /// answer came).
    pub fn answers(&self) -> Vec<(String, u64)> {
        let answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        answers.iter().map(|(s, n)| (s.clone(), *n)).collect()
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends `req`, retrying what is worth retrying. `Err` is the last
    /// failure's description once the attempts are spent: the LMS is
    /// unavailable.
    pub fn send(&self, req: &Request) -> Result<Response, String> {
        self.send_looking(req, &|| None)
    }

    /// [`Client::send`] of a request that creates: after a try whose
    /// answer was lost (the connection failed, or a gateway timed out:
    /// the LMS may have applied it), `look` is asked what the LMS has
    /// before it is sent again (SPEC §3 step 5); an answer it gives is
    /// the request's. `None` (nothing found, or the look-up failed): sent
    /// again.
    pub fn send_looking(
        &self,
        req: &Request,
        look: &dyn Fn() -> Option<Response>,
    ) -> Result<Response, String> {
        let mut last = String::new();
        for attempt in 1..=self.max_attempts {
            self.take(req.writes);
            let answer = self.once(req);
            let status = match &answer {
                Ok(resp) => resp.status.to_string(),
                Err(_) => "error".to_string(),
            };
            *self
                .answers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(status)
                .or_default() += 1;
            let lost = match &answer {
                Err(_) => true,
                Ok(resp) => matches!(resp.status, 502 | 504),
            };
            if lost && attempt < self.max_attempts {
                if let Some(mut found) = look() {
                    tracing::debug!(
                        attempt,
                        "scim: an answer was lost; the look-up found what the request made"
                    );
                    found.attempts = attempt + 1;
                    return Ok(found);
                }
            }
            let wait = match answer {
                Ok(mut resp) if !retryable(resp.status) => {
                    resp.attempts = attempt;
                    return Ok(resp);
                }
                Ok(resp) => {
                    last = resp.message();
                    tracing::debug!(status = resp.status, attempt, "scim: retrying");
                    resp.retry_after.unwrap_or_else(|| self.jitter(attempt))
                }
                Err(e) => {
                    last = e;
                    tracing::debug!(error = %last, attempt, "scim: retrying");
                    self.jitter(attempt)
                }
            };
            if attempt < self.max_attempts {
                std::thread::sleep(wait);
            }
        }
        Err(format!(
            "{} {}: {last} (after {} attempts)",
            req.method.as_str(),
            req.path.split('?').next().unwrap_or_default(),
            self.max_attempts
        ))
    }

    fn once(&self, req: &Request) -> Result<Response, String> {
        let url = format!("{}{}", self.base, req.path);
        let mut builder = ureq::http::Request::builder()
            .method(req.method.as_str())
            .uri(&url)
            .header("Authorization", self.auth.expose())
            .header("Accept", "application/scim+json, application/json");
        if let Some(tag) = &req.if_match {
            builder = builder.header("If-Match", tag);
        }
        let result = match &req.body {
            Some(body) => builder
                .header("Content-Type", "application/scim+json")
                .body(&body[..])
                .map_err(|e| e.to_string())
                .and_then(|r| self.agent.run(r).map_err(transport)),
            None => builder
                .body(())
                .map_err(|e| e.to_string())
                .and_then(|r| self.agent.run(r).map_err(transport)),
        };
        let resp = result?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let status = resp.status().as_u16();
        let etag = header("etag");
        let location = header("location");
        let retry_after = header("retry-after");
        let body = resp
            .into_body()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(transport)?;
        Ok(Response {
            status,
            etag,
            location,
            body,
            retry_after: retry_after.and_then(|v| parse_retry_after(&v, jiff::Timestamp::now())),
            attempts: 1,
        })
    }

    /// Waits for `n` tokens of the rate limit (none without a limit).
    fn take(&self, n: u32) {
        let Some(bucket) = &self.bucket else { return };
        if n == 0 {
            return;
        }
        let wait = bucket
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reserve(Instant::now(), n);
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    /// Full jitter: uniform in `[0, min(max, base · 2^(attempt-1))]`.
    fn jitter(&self, attempt: u32) -> Duration {
        let cap = self
            .backoff
            .saturating_mul(1u32 << (attempt - 1).min(20))
            .min(self.max_backoff);
        // SplitMix64 over a shared counter: no RNG crate for a sleep.
        let mut z = self
            .seed
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let unit = (z >> 11) as f64 / (1u64 << 53) as f64;
        cap.mul_f64(unit)
    }
}

/// The rate limit, as the time the next token is free (GCRA).
struct Bucket {
    rate: f64,
    next: Instant,
}

impl Bucket {
    /// Takes `n` tokens at `now`: how long to wait before using them. A
    /// second's worth of writes may go at once (the burst); after that,
    /// `rate` a second.
    fn reserve(&mut self, now: Instant, n: u32) -> Duration {
        let tat = self.next.max(now);
        self.next = tat + Duration::from_secs_f64(f64::from(n) / self.rate);
        self.next
            .saturating_duration_since(now)
            .saturating_sub(Duration::from_secs(1))
    }
}

fn transport(e: ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        ureq::Error::Io(io) => format!("connection: {io}"),
        other => other.to_string(),
    }
}

/// `Retry-After`: seconds, or an HTTP date (RFC 9110 §10.2.3).
pub(super) fn parse_retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = jiff::fmt::rfc2822::DateTimeParser::new()
            .parse_timestamp(value)
            .ok()?;
        let secs = at.as_millisecond() - now.as_millisecond();
        Duration::from_millis(secs.max(0) as u64)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_lets_a_second_through_then_paces_at_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket {
            rate: 10.0,
            next: t0,
        };
        // Ten writes at once: the burst.
        for _ in 0..10 {
            assert_eq!(b.reserve(t0, 1), Duration::ZERO);
        }
        // The next ones wait 0.1 s more each.
        let waits: Vec<u128> = (0..3).map(|_| b.reserve(t0, 1).as_millis()).collect();
        assert_eq!(waits, [100, 200, 300]);
        // A Bulk request of 20 waits for its 20 tokens.
        assert_eq!(b.reserve(t0, 20).as_millis(), 2300);
        // Once time has passed the bucket refills, up to the burst only.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(b.reserve(later, 10), Duration::ZERO);
        assert_eq!(b.reserve(later, 1).as_millis(), 100);
    }

    #[test]
    fn retry_after_in_seconds_and_as_a_date() {
        let now: jiff::Timestamp = "2026-11-21T10:00:00Z".parse().unwrap();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sat, 21 Nov 2026 10:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        // A date in the past: no wait.
        assert_eq!(
            parse_retry_after("Sat, 21 Nov 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("99999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
