//! The SCIM sink's settings: `[tenant.sink]` with `type = "scim"` as the
//! config file has it ([`ScimFile`], checked by [`ScimFile::validate`]) and
//! as the sink uses it ([`ScimConfig`]). The key reference is in
//! `src/config.rs` and `docs/scim.md`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::secret::Secret;

/// `[tenant.sink]` with `type = "scim"` (see the module documentation).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScimFile {
    /// The SCIM base URL, e.g. `https://lms.example.com/scim/v2`.
    url: String,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
    #[serde(default = "default_senders")]
    senders: usize,
    /// Token bucket: writes per second (a Bulk operation counts as one).
    writes_per_second: Option<f64>,
    #[serde(default = "default_attempts")]
    max_attempts: u32,
    #[serde(default = "default_backoff")]
    backoff_ms: u64,
    #[serde(default = "default_max_backoff")]
    max_backoff_ms: u64,
    #[serde(default = "default_connect_timeout")]
    connect_timeout_ms: u64,
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
    #[serde(default)]
    bulk: BulkMode,
    #[serde(default = "default_user_name")]
    user_name: String,
    #[serde(default = "default_invite_attribute")]
    invite_attribute: String,
    #[serde(default)]
    segments: SegmentMapping,
    #[serde(default = "default_true")]
    create_missing_groups: bool,
    /// Field → SCIM attribute path, for `custom.<name>` fields and to move
    /// a text field elsewhere.
    #[serde(default)]
    attributes: std::collections::BTreeMap<String, String>,
}

/// Whether the SCIM sink uses `/Bulk`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BulkMode {
    /// When `/ServiceProviderConfig` says it is supported.
    #[default]
    Auto,
    /// Never: one request per resource.
    Never,
}

/// How segments reach a SCIM LMS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SegmentMapping {
    /// A segment is a SCIM Group whose externalId is `segment:<key>`; a
    /// user's segments are memberships of those groups.
    #[default]
    Groups,
    /// Segments are not written as objects; a user's segment keys go to
    /// the muster extension attribute `segments`.
    Attribute,
}

/// A SCIM 2.0 LMS (see the module documentation and `docs/scim.md`).
#[derive(Clone, Debug)]
pub struct ScimConfig {
    /// The base URL, without a trailing `/`.
    pub url: String,
    pub token: Secret,
    /// Requests in flight at once.
    pub senders: usize,
    pub writes_per_second: Option<f64>,
    /// Tries per request, the first included.
    pub max_attempts: u32,
    pub backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub connect_timeout_ms: u64,
    /// Longest wait for an answer.
    pub timeout_ms: u64,
    pub bulk: BulkMode,
    /// The field whose value is the SCIM `userName` (the key when empty).
    pub user_name: String,
    /// The attribute set to `true` on a create that invites; empty: none.
    pub invite_attribute: String,
    pub segments: SegmentMapping,
    /// Create a group a user names when the LMS does not have it (tenants
    /// without a group file).
    pub create_missing_groups: bool,
    /// Field name → SCIM attribute path.
    pub attributes: Vec<(String, String)>,
}

fn default_timeout() -> u64 {
    30_000
}
fn default_senders() -> usize {
    4
}
fn default_attempts() -> u32 {
    6
}
fn default_backoff() -> u64 {
    500
}
fn default_max_backoff() -> u64 {
    60_000
}
fn default_connect_timeout() -> u64 {
    10_000
}
fn default_user_name() -> String {
    "email".into()
}
fn default_invite_attribute() -> String {
    super::INVITE_ATTRIBUTE.into()
}
fn default_true() -> bool {
    true
}

impl ScimFile {
    /// Checks every setting and reads the token: the sink's configuration,
    /// or what is wrong, naming the key. `rel` resolves relative paths.
    pub(crate) fn validate(&self, rel: &dyn Fn(&Path) -> PathBuf) -> Result<ScimConfig, String> {
        let s = self;
        let url = s.url.trim_end_matches('/').to_string();
        // Shown without its user info: a password there is a secret.
        let shown = crate::secret::redact_url(&url);
        if crate::secret::has_user_info(&url) {
            return Err(format!(
                "sink url {shown:?}: a user name or password in the url is not allowed (it would show wherever the url does); the bearer token goes in token_env or token_file"
            ));
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "sink url {shown:?} should start with https:// (or http://)"
            ));
        }
        let token = crate::secret::read("token", &s.token_env, &s.token_file, rel)?
            .ok_or("a scim sink needs a bearer token: token_env or token_file")?;
        if s.senders == 0 || s.senders > 64 {
            return Err("sink senders must be between 1 and 64".into());
        }
        if s.max_attempts == 0 {
            return Err("sink max_attempts must be at least 1".into());
        }
        if s.writes_per_second.is_some_and(|w| w.is_nan() || w <= 0.0) {
            return Err("sink writes_per_second must be above 0".into());
        }
        for (field, path) in &s.attributes {
            if !(field.starts_with("custom.") || super::is_text_field(field)) {
                return Err(format!(
                "sink attributes: {field:?} is not a custom.<name> field or a text field of users"
            ));
            }
            if path.is_empty() {
                return Err(format!("sink attributes: {field:?} maps to an empty path"));
            }
        }
        Ok(ScimConfig {
            url,
            token,
            senders: s.senders,
            writes_per_second: s.writes_per_second,
            max_attempts: s.max_attempts,
            backoff_ms: s.backoff_ms,
            max_backoff_ms: s.max_backoff_ms.max(s.backoff_ms),
            connect_timeout_ms: s.connect_timeout_ms,
            timeout_ms: s.timeout_ms,
            bulk: s.bulk,
            user_name: s.user_name.clone(),
            invite_attribute: s.invite_attribute.clone(),
            segments: s.segments,
            create_missing_groups: s.create_missing_groups,
            attributes: s.attributes.clone().into_iter().collect(),
        })
    }
}
