//! `muster.toml`: the tenants, each with a source, the files it expects, a
//! sink, a state store and safety limits (SPEC §6). Unknown keys are an
//! error that names the key; [`Config::load`] validates everything (every
//! profile compiles, every path is usable) before anything runs. Relative
//! paths are relative to the config file's folder.
//!
//! ```toml
//! [[tenant]]
//! name = "acme"
//! state = "state/acme.redb"
//!
//! [tenant.source]
//! type = "dir"
//! path = "inbox/acme"          # processed/ is created inside it
//!
//! [[tenant.files]]
//! pattern = "wt_users*.csv"
//! profile = "winningtemp-users" # a preset, or a profile TOML file
//!
//! [tenant.sink]
//! type = "jsonl"
//! path = "outbox/acme.jsonl"
//! ```
//!
//! An SFTP inbox instead of a folder (secrets only from an environment
//! variable or a file, never in the config itself):
//!
//! ```toml
//! [tenant.source]
//! type = "sftp"
//! host = "sftp.example.com"
//! port = 22                          # default 22
//! user = "acme"
//! password_env = "ACME_SFTP_PASSWORD" # or password_file, or key_file / key_env
//! # key_file = "keys/acme_ed25519"   # an OpenSSH private key
//! # passphrase_env = "ACME_KEY_PASSPHRASE"  # or passphrase_file
//! known_hosts = "known_hosts"        # default ~/.ssh/known_hosts; or:
//! # host_key_sha256 = "SHA256:…"     # the server key's fingerprint, as ssh-keygen -lf prints it
//! path = "/upload"                   # the remote inbox
//! processed = "processed"            # relative to the inbox; default processed
//! timeout_ms = 30000                 # connect and I/O timeout
//! ```
//!
//! A SCIM 2.0 LMS instead of the outbox (`docs/scim.md` has the mapping):
//!
//! ```toml
//! [tenant.sink]
//! type = "scim"
//! url = "https://lms.example.com/scim/v2"
//! token_env = "ACME_SCIM_TOKEN"      # or token_file; the bearer token
//! senders = 4                        # requests in flight
//! writes_per_second = 50             # token bucket; default: no limit
//! max_attempts = 6                   # 408, 429, 5xx and lost connections are retried
//! backoff_ms = 500                   # full-jitter exponential backoff from here…
//! max_backoff_ms = 60000             # …up to here (Retry-After wins when given)
//! connect_timeout_ms = 10000
//! timeout_ms = 30000                 # longest wait for an answer
//! bulk = "auto"                      # or "never"
//! user_name = "email"                # the field that is the SCIM userName
//! invite_attribute = "urn:muster:params:scim:schemas:extension:2.0:User:invite"
//! segments = "groups"                # or "attribute"
//! create_missing_groups = true       # groups named by users, without a group file
//! [tenant.sink.attributes]
//! "custom.cost_center" = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter"
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::profile::{Profile, SafetyConfig};

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    tenant: Vec<TenantFile>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantFile {
    /// Names the tenant in logs, `--tenant` and summaries. Required, unique.
    name: String,
    /// The state store file (redb). Required.
    state: PathBuf,
    source: SourceFile,
    files: Vec<FileSpec>,
    sink: SinkFile,
    /// Cron expression for the daemon. Default `0 4 * * *`.
    #[serde(default = "default_schedule")]
    schedule: String,
    /// Time zone of the schedule. Default `UTC`.
    #[serde(default = "default_tz")]
    time_zone: String,
    /// Replaces the profiles' safety limits for this tenant when set.
    #[serde(default)]
    safety: Option<SafetyConfig>,
    /// Operations per batch sent to the sink. Default 1000.
    #[serde(default = "default_batch")]
    batch_size: usize,
}

// Read once per config load: the size of the variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "lowercase")]
enum SourceFile {
    Dir {
        /// The inbox folder.
        path: PathBuf,
        /// Where done files go, relative to the inbox. Default `processed`.
        #[serde(default = "default_processed")]
        processed: PathBuf,
        /// A file is taken once its size is the same across two looks this
        /// many milliseconds apart. Default 1000.
        #[serde(default = "default_settle")]
        settle_ms: u64,
    },
    Sftp {
        host: String,
        #[serde(default = "default_port")]
        port: u16,
        user: String,
        password_env: Option<String>,
        password_file: Option<PathBuf>,
        key_env: Option<String>,
        key_file: Option<PathBuf>,
        passphrase_env: Option<String>,
        passphrase_file: Option<PathBuf>,
        known_hosts: Option<PathBuf>,
        host_key_sha256: Option<String>,
        /// The remote inbox.
        path: String,
        #[serde(default = "default_processed")]
        processed: PathBuf,
        #[serde(default = "default_settle")]
        settle_ms: u64,
        #[serde(default = "default_timeout")]
        timeout_ms: u64,
    },
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    /// A file name pattern (`*` and `?` wildcards).
    pattern: String,
    /// A preset name, or a profile TOML file.
    profile: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "lowercase")]
enum SinkFile {
    Jsonl {
        /// The outbox file.
        path: PathBuf,
    },
    Scim(ScimFile),
}

/// `[tenant.sink]` with `type = "scim"` (see the module documentation).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScimFile {
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

fn default_schedule() -> String {
    "0 4 * * *".into()
}
fn default_tz() -> String {
    "UTC".into()
}
fn default_processed() -> PathBuf {
    "processed".into()
}
fn default_settle() -> u64 {
    1000
}
fn default_batch() -> usize {
    1000
}
fn default_port() -> u16 {
    22
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
    crate::sink::scim::INVITE_ATTRIBUTE.into()
}
fn default_true() -> bool {
    true
}

/// A configuration error: what, where, why.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub tenants: Vec<Tenant>,
}

/// A validated tenant.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub name: String,
    pub state: PathBuf,
    pub source: SourceConfig,
    pub settle_ms: u64,
    pub files: Vec<(glob::Pattern, Profile)>,
    pub sink: SinkConfig,
    /// When the daemon runs the tenant, in `time_zone`.
    pub schedule: crate::schedule::Schedule,
    pub time_zone: jiff::tz::TimeZone,
    pub batch_size: usize,
}

#[derive(Clone, Debug)]
pub enum SinkConfig {
    Jsonl { path: PathBuf },
    Scim(ScimConfig),
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

/// Where a tenant's files come from.
#[derive(Clone, Debug)]
pub enum SourceConfig {
    /// A local folder; `processed` inside it.
    Dir {
        inbox: PathBuf,
        processed: PathBuf,
    },
    Sftp(SftpConfig),
}

impl SourceConfig {
    /// For messages: the folder, or `user@host:port/path`.
    pub fn describe(&self) -> String {
        match self {
            SourceConfig::Dir { inbox, .. } => inbox.display().to_string(),
            SourceConfig::Sftp(s) => format!("{}@{}:{}{}", s.user, s.host, s.port, s.inbox),
        }
    }
}

/// An SFTP inbox (see the module documentation).
#[derive(Clone, Debug)]
pub struct SftpConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub auth: SftpAuth,
    pub host_key: HostKeyCheck,
    /// Remote inbox and processed folders.
    pub inbox: String,
    pub processed: String,
    pub timeout_ms: u64,
}

/// How muster proves who it is to the SFTP server.
#[derive(Clone, Debug)]
pub enum SftpAuth {
    Password(Secret),
    /// An OpenSSH private key (its text) and its passphrase.
    Key {
        key: Secret,
        passphrase: Option<Secret>,
    },
}

/// How the server's host key is checked. An unknown or changed key is
/// refused.
#[derive(Clone, Debug)]
pub enum HostKeyCheck {
    /// An OpenSSH known_hosts file.
    KnownHosts(PathBuf),
    /// The key's SHA-256 fingerprint as OpenSSH prints it (`SHA256:…`).
    Sha256(String),
}

/// A password, key or token: its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
    /// The secret itself, for the one call that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Reads a secret from the environment variable `env` or the file `file`
/// (exactly one given); `what` names it in errors, which never hold it.
fn secret(
    what: &str,
    env: &Option<String>,
    file: &Option<PathBuf>,
    rel: &dyn Fn(&Path) -> PathBuf,
) -> Result<Option<Secret>, String> {
    match (env, file) {
        (Some(_), Some(_)) => Err(format!("give {what}_env or {what}_file, not both")),
        (Some(var), None) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Some(Secret(v))),
            _ => Err(format!(
                "{what}_env names the environment variable {var:?}, which is not set"
            )),
        },
        (None, Some(f)) => {
            let f = rel(f);
            std::fs::read_to_string(&f)
                .map(|s| Some(Secret(s.trim_end_matches(['\r', '\n']).to_string())))
                .map_err(|e| format!("{what}_file {}: {e}", f.display()))
        }
        (None, None) => Ok(None),
    }
}

fn scim_config(s: &ScimFile, rel: &dyn Fn(&Path) -> PathBuf) -> Result<ScimConfig, String> {
    let url = s.url.trim_end_matches('/').to_string();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!(
            "sink url {url:?} should start with https:// (or http://)"
        ));
    }
    let token = secret("token", &s.token_env, &s.token_file, rel)?
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
        if !(field.starts_with("custom.") || crate::sink::scim::is_text_field(field)) {
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

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let err = |message: String| ConfigError {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let file: ConfigFile = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let rel = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let mut tenants = Vec::new();
        for t in file.tenant {
            let at = |m: String| err(format!("tenant {:?}: {m}", t.name));
            if t.name.trim().is_empty() {
                return Err(err("a tenant has an empty `name`".into()));
            }
            if tenants.iter().any(|x: &Tenant| x.name == t.name) {
                return Err(at("the name is used twice".into()));
            }
            if t.files.is_empty() {
                return Err(at("`files` is empty".into()));
            }
            if t.batch_size == 0 {
                return Err(at("`batch_size` must be at least 1".into()));
            }
            let (source, settle_ms) = match &t.source {
                SourceFile::Dir {
                    path,
                    processed,
                    settle_ms,
                } => {
                    let inbox = rel(path);
                    let processed = inbox.join(processed);
                    (SourceConfig::Dir { inbox, processed }, *settle_ms)
                }
                SourceFile::Sftp {
                    host,
                    port,
                    user,
                    password_env,
                    password_file,
                    key_env,
                    key_file,
                    passphrase_env,
                    passphrase_file,
                    known_hosts,
                    host_key_sha256,
                    path,
                    processed,
                    settle_ms,
                    timeout_ms,
                } => {
                    let password =
                        secret("password", password_env, password_file, &rel).map_err(at)?;
                    let key = secret("key", key_env, key_file, &rel).map_err(at)?;
                    let passphrase =
                        secret("passphrase", passphrase_env, passphrase_file, &rel).map_err(at)?;
                    let auth = match (password, key) {
                        (Some(p), None) => SftpAuth::Password(p),
                        (None, Some(key)) => SftpAuth::Key { key, passphrase },
                        _ => {
                            return Err(at(
                                "an sftp source needs a password (password_env / password_file) or a private key (key_env / key_file), exactly one".into(),
                            ))
                        }
                    };
                    let host_key = match (known_hosts, host_key_sha256) {
                        (Some(_), Some(_)) => {
                            return Err(at("give known_hosts or host_key_sha256, not both".into()))
                        }
                        (None, Some(fp)) if fp.starts_with("SHA256:") => {
                            HostKeyCheck::Sha256(fp.clone())
                        }
                        (None, Some(fp)) => {
                            return Err(at(format!(
                                "host_key_sha256 {fp:?} should look like ssh-keygen -lf prints it: SHA256:<base64>"
                            )))
                        }
                        (Some(k), None) => HostKeyCheck::KnownHosts(rel(k)),
                        (None, None) => {
                            let home = std::env::var_os("HOME").ok_or_else(|| {
                                at("no known_hosts given and no HOME for ~/.ssh/known_hosts".into())
                            })?;
                            HostKeyCheck::KnownHosts(Path::new(&home).join(".ssh/known_hosts"))
                        }
                    };
                    if let HostKeyCheck::KnownHosts(k) = &host_key {
                        if !k.is_file() {
                            return Err(at(format!(
                                "known_hosts {} does not exist (an unknown host key is refused)",
                                k.display()
                            )));
                        }
                    }
                    let inbox = path.trim_end_matches('/').to_string();
                    let processed = if processed.is_absolute() {
                        processed.display().to_string()
                    } else {
                        format!("{inbox}/{}", processed.display())
                    };
                    let sftp = SftpConfig {
                        host: host.clone(),
                        port: *port,
                        user: user.clone(),
                        auth,
                        host_key,
                        inbox,
                        processed,
                        timeout_ms: *timeout_ms,
                    };
                    (SourceConfig::Sftp(sftp), *settle_ms)
                }
            };
            let mut files = Vec::new();
            for f in &t.files {
                let pattern = glob::Pattern::new(&f.pattern)
                    .map_err(|e| at(format!("files pattern {:?}: {e}", f.pattern)))?;
                let profile_arg = if crate::profile::PRESETS.iter().any(|(n, _)| *n == f.profile) {
                    f.profile.clone()
                } else {
                    rel(Path::new(&f.profile)).display().to_string()
                };
                let mut profile = Profile::load(&profile_arg).map_err(|e| at(e.to_string()))?;
                if let Some(safety) = &t.safety {
                    profile.safety = safety.clone();
                }
                files.push((pattern, profile));
            }
            let time_zone = jiff::tz::TimeZone::get(&t.time_zone)
                .map_err(|e| at(format!("time_zone {:?}: {e}", t.time_zone)))?;
            let schedule: crate::schedule::Schedule =
                t.schedule.parse().map_err(|e| at(format!("{e}")))?;
            let sink = match &t.sink {
                SinkFile::Jsonl { path } => SinkConfig::Jsonl { path: rel(path) },
                SinkFile::Scim(s) => SinkConfig::Scim(scim_config(s, &rel).map_err(at)?),
            };
            tenants.push(Tenant {
                name: t.name.clone(),
                state: rel(&t.state),
                source,
                settle_ms,
                files,
                sink,
                schedule,
                time_zone,
                batch_size: t.batch_size,
            });
        }
        if tenants.is_empty() {
            return Err(err("no [[tenant]]".into()));
        }
        Ok(Config { tenants })
    }
}
