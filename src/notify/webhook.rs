//! A webhook target: the event POSTed as JSON, signed with HMAC-SHA256
//! when the target has a secret (`X-Muster-Signature: sha256=<hex>`).

#[cfg(feature = "notify")]
use std::time::Duration;

use super::Event;
use crate::secret::Secret;

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
pub(super) fn send(url: &str, secret: Option<&Secret>, event: &Event) {
    let shown = crate::secret::redact_url(url);
    let body = serde_json::to_vec(event).unwrap_or_default();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .user_agent(concat!("muster/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut last = String::new();
    for attempt in 1..=super::ATTEMPTS {
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
        if attempt < super::ATTEMPTS {
            std::thread::sleep(super::backoff(attempt));
        }
    }
    tracing::warn!(url = %shown, event = %event.event, error = %last, attempts = super::ATTEMPTS, "notification not delivered");
}

#[cfg(not(feature = "notify"))]
pub(super) fn send(url: &str, _: Option<&Secret>, event: &Event) {
    tracing::warn!(url = %crate::secret::redact_url(url), event = %event.event, "notification not sent: this muster was built without the `notify` feature");
}
