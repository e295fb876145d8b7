//! Notifications after a run (SPEC §8, `[[tenant.notify]]`): an event per
//! file of the run (or one for a run that failed), sent to each target
//! that asks for its kind. A webhook gets the event as JSON in a POST,
//! signed with HMAC-SHA256 when it has a secret
//! (`X-Muster-Signature: sha256=<hex>`). Delivery is tried a few times and
//! logged; it never fails a run, and it comes after the run is recorded.
//! Events carry no secret: counts, reasons and the results file's path.

use std::path::{Path, PathBuf};
#[cfg(feature = "notify")]
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// The events a target takes unless it names others.
const DEFAULT_ON: [&str; 4] = ["held", "refused", "failed", "rows_failed"];
const EVENTS: [&str; 5] = ["ok", "rows_failed", "held", "refused", "failed"];

/// `[[tenant.notify]]` as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "lowercase")]
pub(crate) enum NotifyFile {
    Webhook {
        /// Where the event is POSTed.
        url: String,
        /// The HMAC-SHA256 key of the signature header (optional).
        secret_env: Option<String>,
        secret_file: Option<PathBuf>,
        /// The events sent. Default: held, refused, failed, rows_failed.
        on: Option<Vec<String>>,
    },
}

/// A validated notification target.
#[derive(Clone, Debug)]
pub struct Notify {
    pub target: Target,
    /// The events it takes.
    pub on: Vec<String>,
}

/// Where an event goes.
#[derive(Clone, Debug)]
pub enum Target {
    Webhook { url: String, secret: Option<Secret> },
}

impl NotifyFile {
    /// Checks the target and reads its secret; what is wrong names the key.
    pub(crate) fn validate(&self, rel: &dyn Fn(&Path) -> PathBuf) -> Result<Notify, String> {
        match self {
            NotifyFile::Webhook {
                url,
                secret_env,
                secret_file,
                on,
            } => {
                let shown = crate::secret::redact_url(url);
                if crate::secret::has_user_info(url) {
                    return Err(format!(
                        "notify url {shown:?}: a user name or password in the url is not allowed; a signing key goes in secret_env or secret_file"
                    ));
                }
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(format!(
                        "notify url {shown:?} should start with https:// (or http://)"
                    ));
                }
                let on = match on {
                    None => DEFAULT_ON.iter().map(|s| s.to_string()).collect(),
                    Some(on) => {
                        if let Some(bad) = on.iter().find(|e| !EVENTS.contains(&e.as_str())) {
                            return Err(format!(
                                "notify on: unknown event {bad:?} (events: {})",
                                EVENTS.join(", ")
                            ));
                        }
                        on.clone()
                    }
                };
                let secret = crate::secret::read("secret", secret_env, secret_file, rel)?;
                Ok(Notify {
                    target: Target::Webhook {
                        url: url.clone(),
                        secret,
                    },
                    on,
                })
            }
        }
    }
}

/// One event (SPEC §8).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    pub event: String,
    pub tenant: String,
    /// The run's id in the tenant's history.
    pub run_id: Option<u64>,
    /// The file; none for a run that failed before or between files.
    pub file: Option<String>,
    pub profile: Option<String>,
    pub records: u64,
    /// `{action: {outcome: n}}`.
    pub counts: serde_json::Map<String, serde_json::Value>,
    pub reasons: Vec<String>,
    /// The results CSV, where the source keeps it.
    pub results: Option<String>,
}

/// Tries a delivery this many times.
#[cfg(feature = "notify")]
const ATTEMPTS: u32 = 3;

/// Sends each event to each target that takes it. Never fails: what
/// could not be delivered is logged.
pub fn send(targets: &[Notify], events: &[Event]) {
    for event in events {
        for n in targets.iter().filter(|n| n.on.contains(&event.event)) {
            match &n.target {
                Target::Webhook { url, secret } => webhook(url, secret.as_ref(), event),
            }
        }
    }
}

/// The signature header's value: `sha256=<hex HMAC-SHA256 of body>`.
pub fn signature(secret: &Secret, body: &[u8]) -> String {
    #[cfg(feature = "notify")]
    {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.expose().as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(body);
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("sha256={hex}")
    }
    #[cfg(not(feature = "notify"))]
    {
        let _ = (secret, body);
        String::new()
    }
}

#[cfg(feature = "notify")]
fn webhook(url: &str, secret: Option<&Secret>, event: &Event) {
    let shown = crate::secret::redact_url(url);
    let body = serde_json::to_vec(event).unwrap_or_default();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .user_agent(concat!("muster/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        let mut req = agent
            .post(url)
            .header("Content-Type", "application/json")
            .header("X-Muster-Event", &event.event);
        if let Some(secret) = secret {
            req = req.header("X-Muster-Signature", &signature(secret, &body));
        }
        match req.send(&body[..]) {
            Ok(resp) if resp.status().is_success() => {
                tracing::info!(url = %shown, event = %event.event, "notification delivered");
                return;
            }
            Ok(resp) => last = format!("HTTP {}", resp.status().as_u16()),
            Err(e) => last = e.to_string(),
        }
        if attempt < ATTEMPTS {
            std::thread::sleep(Duration::from_millis(500 << attempt));
        }
    }
    tracing::warn!(url = %shown, event = %event.event, error = %last, attempts = ATTEMPTS, "notification not delivered");
}

#[cfg(not(feature = "notify"))]
fn webhook(url: &str, _: Option<&Secret>, event: &Event) {
    tracing::warn!(url = %crate::secret::redact_url(url), event = %event.event, "notification not sent: this muster was built without the `notify` feature");
}
