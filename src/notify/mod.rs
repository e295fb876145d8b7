//! Notifications after a run (SPEC §8, `[[tenant.notify]]`): an event per
//! file of the run (or one for a run that failed), sent to each target
//! that asks for its kind: a webhook gets it as JSON ([`webhook`]), an
//! e-mail says it in words with the first failed lines and, if asked, the
//! results CSV attached ([`email`]). Delivery is tried a few times and
//! logged; it never fails a run, and it comes after the run is recorded.
//! Events carry no secret: counts, reasons and the results file's path.

mod email;
mod webhook;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

pub use email::Mail;
pub use webhook::signature;

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
    Email {
        /// `host:port` of the SMTP server (port 587 when left out; 465
        /// is TLS from the first byte, any other STARTTLS when offered).
        smtp: String,
        /// The login (optional), with password_env or password_file.
        user: Option<String>,
        password_env: Option<String>,
        password_file: Option<PathBuf>,
        from: String,
        to: Vec<String>,
        on: Option<Vec<String>>,
        /// The results CSV attached (default false).
        #[serde(default)]
        attach_results: bool,
        /// A PEM file of CA certificates trusted besides the public roots
        /// (a company's own mail server).
        ca_file: Option<PathBuf>,
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
    Email(Mail),
}

/// The events a target takes: `on` as written, checked, or the default.
fn events(on: &Option<Vec<String>>) -> Result<Vec<String>, String> {
    match on {
        None => Ok(DEFAULT_ON.iter().map(|s| s.to_string()).collect()),
        Some(on) => match on.iter().find(|e| !EVENTS.contains(&e.as_str())) {
            Some(bad) => Err(format!(
                "notify on: unknown event {bad:?} (events: {})",
                EVENTS.join(", ")
            )),
            None => Ok(on.clone()),
        },
    }
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
                let on = events(on)?;
                let secret = crate::secret::read("secret", secret_env, secret_file, rel)?;
                Ok(Notify {
                    target: Target::Webhook {
                        url: url.clone(),
                        secret,
                    },
                    on,
                })
            }
            NotifyFile::Email {
                smtp,
                user,
                password_env,
                password_file,
                from,
                to,
                on,
                attach_results,
                ca_file,
            } => {
                let on = events(on)?;
                let password = crate::secret::read("password", password_env, password_file, rel)?;
                let mail = Mail::new(
                    smtp,
                    user.clone(),
                    password,
                    from,
                    to,
                    *attach_results,
                    ca_file.as_ref().map(|f| rel(f)),
                )?;
                Ok(Notify {
                    target: Target::Email(mail),
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
#[cfg_attr(not(feature = "notify"), allow(dead_code))]
const ATTEMPTS: u32 = 3;

/// The wait before try `attempt + 1`: 1 s, then 2 s.
#[cfg_attr(not(feature = "notify"), allow(dead_code))]
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500 << attempt)
}

/// Sends each event to each target that takes it. Never fails: what
/// could not be delivered is logged. `results` opens a results CSV by
/// the location an event names (an e-mail's first failed lines and its
/// attachment come from it).
pub fn send(
    targets: &[Notify],
    events: &[Event],
    results: &mut dyn FnMut(&str) -> Option<Box<dyn Read + Send>>,
) {
    for event in events {
        for n in targets.iter().filter(|n| n.on.contains(&event.event)) {
            match &n.target {
                Target::Webhook { url, secret } => webhook::send(url, secret.as_ref(), event),
                Target::Email(mail) => mail.send(event, results),
            }
        }
    }
}
