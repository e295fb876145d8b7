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
//! # create = true              # make the inbox if it is missing (default: a missing inbox is an error)
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
//! Every key, with its default and meaning, is `docs/config.md` (a test
//! keeps it in step with the types below); complete tenants, one per seed
//! integration, are in `examples/tenants/`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::profile::{Profile, SafetyConfig};
use crate::sink::scim::ScimFile;
use crate::source::ftp::FtpFile;
use crate::source::http::HttpFile;
use crate::source::sftp::SftpFile;

pub use crate::secret::Secret;
pub use crate::sink::scim::{BulkMode, ScimConfig, SegmentMapping};
pub use crate::sink::SinkConfig;
pub use crate::source::ftp::{FtpConfig, FtpTls};
pub use crate::source::sftp::{HostKeyCheck, SftpAuth, SftpConfig};
pub use crate::source::SourceConfig;

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    daemon: DaemonSettings,
    /// The tenants' state in PostgreSQL (SPEC §9). Default: each tenant's
    /// own embedded store (`state`).
    #[serde(default)]
    cluster: Option<ClusterFile>,
    tenant: Vec<TenantFile>,
}

/// `[cluster]`, as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterFile {
    /// The environment variable holding the database's URL
    /// (`postgres://user:password@host:port/db`); or `postgres_file`.
    #[serde(default)]
    postgres_env: Option<String>,
    /// A file holding the database's URL.
    #[serde(default)]
    postgres_file: Option<PathBuf>,
    /// How long a run's lease lasts unrenewed. Default 30000.
    #[serde(default = "default_lease_ms")]
    lease_ms: u64,
}

fn default_lease_ms() -> u64 {
    30_000
}

/// `[cluster]`, checked: where the tenants' state is.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// The database's URL (it may hold the password).
    pub url: crate::secret::Secret,
    pub lease_ms: u64,
}

/// `[daemon]`: how `muster daemon` runs the tenants (SPEC §8).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSettings {
    /// Tenants run at once. Default 4.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// The operations HTTP endpoint's address (`host:port`). Default: none.
    #[serde(default)]
    listen: Option<String>,
    /// The endpoint's bearer token (required unless `listen` is loopback).
    #[serde(default)]
    token_env: Option<String>,
    #[serde(default)]
    token_file: Option<PathBuf>,
}

impl Default for DaemonSettings {
    fn default() -> DaemonSettings {
        DaemonSettings {
            workers: default_workers(),
            listen: None,
            token_env: None,
            token_file: None,
        }
    }
}

/// The daemon's operations endpoint, validated (`[daemon] listen`).
#[derive(Clone, Debug)]
pub struct Listen {
    pub addr: std::net::SocketAddr,
    /// The bearer token; `None` only on a loopback address (then every
    /// POST is refused).
    pub token: Option<Secret>,
}

impl DaemonSettings {
    /// The endpoint, if `listen` asks for one; what is wrong names the key.
    fn endpoint(&self, rel: &dyn Fn(&Path) -> PathBuf) -> Result<Option<Listen>, String> {
        let Some(listen) = &self.listen else {
            return Ok(None);
        };
        let addr: std::net::SocketAddr = listen.parse().map_err(|_| {
            format!("daemon.listen {listen:?} is not an address and port (e.g. \"127.0.0.1:9464\")")
        })?;
        let token = crate::secret::read("token", &self.token_env, &self.token_file, rel)?;
        if token.is_none() && !addr.ip().is_loopback() {
            return Err(format!(
                "daemon.listen {listen:?} is not loopback: the endpoint needs a bearer token (daemon.token_env or daemon.token_file)"
            ));
        }
        Ok(Some(Listen { addr, token }))
    }
}

fn default_workers() -> usize {
    4
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantFile {
    /// Names the tenant in logs, `--tenant` and summaries. Required, unique.
    name: String,
    /// The state store file (redb). Required, unless `[cluster]` keeps
    /// the state in PostgreSQL (then refused).
    #[serde(default)]
    state: Option<PathBuf>,
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
    /// Runs kept in the run history. Default 100.
    #[serde(default = "default_keep_runs")]
    keep_runs: usize,
    /// Notifications after a run.
    #[serde(default)]
    notify: Vec<crate::notify::NotifyFile>,
}

fn default_keep_runs() -> usize {
    100
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
        #[serde(default = "crate::source::default_processed")]
        processed: PathBuf,
        /// A file is taken once its size is the same across two looks this
        /// many milliseconds apart. Default 1000.
        #[serde(default = "crate::source::default_settle")]
        settle_ms: u64,
        /// Make the inbox folder when it does not exist. Default false: a
        /// missing inbox (a mistyped path) is a configuration error.
        #[serde(default)]
        create: bool,
    },
    Sftp(SftpFile),
    Ftp(FtpFile),
    Http(HttpFile),
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    /// A file name pattern (`*` and `?` wildcards). Required, except for
    /// an `http` source.
    #[serde(default)]
    pattern: Option<String>,
    /// A preset name, or a profile TOML file.
    profile: String,
    /// `http` sources: the snapshot's name (`users`: the archive's
    /// `users.<timestamp>.csv`).
    #[serde(default)]
    name: Option<String>,
    /// `http` sources: the snapshot's path under `base_url`.
    #[serde(default)]
    path: Option<String>,
    /// `http` sources: `csv` (the body is the file) or `json` (pages of
    /// records). Default `csv`.
    #[serde(default)]
    format: Option<String>,
    /// `http` sources, `json`: the dot path of each page's array of
    /// records (`""`: the page is the array). Default `""`.
    #[serde(default)]
    records: Option<String>,
    /// `http` sources, `json`: how pages follow each other. Default: one page.
    #[serde(default)]
    paging: Option<crate::source::http::Paging>,
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

/// The file name pattern of `f`: its `pattern`, or for an `http` source
/// the file its snapshot is pulled to (the snapshot added to `source`).
fn file_pattern(f: &FileSpec, source: &mut SourceConfig) -> Result<String, String> {
    let SourceConfig::Http(http) = source else {
        for (key, set) in [
            ("name", f.name.is_some()),
            ("path", f.path.is_some()),
            ("format", f.format.is_some()),
            ("records", f.records.is_some()),
            ("paging", f.paging.is_some()),
        ] {
            if set {
                return Err(format!("`{key}` is for files of an http source"));
            }
        }
        return f
            .pattern
            .clone()
            .ok_or_else(|| "`pattern` is required".to_string());
    };
    if f.pattern.is_some() {
        return Err("an http source's files have a `name` and a `path`, not a `pattern`".into());
    }
    let name = f
        .name
        .clone()
        .ok_or("an http source's file needs a `name`")?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
    {
        return Err(format!(
            "name {name:?}: letters, digits, `-` and `_` only (it names archive files)"
        ));
    }
    if http.snapshots.iter().any(|s| s.name == name) {
        return Err(format!("name {name:?} is given twice"));
    }
    let path = f
        .path
        .clone()
        .ok_or("an http source's file needs a `path`")?;
    let body = crate::source::http::Body::from_file(
        f.format.as_deref(),
        f.records.as_deref(),
        f.paging.as_ref(),
    )?;
    let file = crate::source::http::HttpConfig::file_name(&name, &body);
    http.snapshots
        .push(crate::source::http::HttpSnapshot { name, path, body });
    Ok(glob::Pattern::escape(&file))
}

fn default_schedule() -> String {
    "0 4 * * *".into()
}
fn default_tz() -> String {
    "UTC".into()
}
fn default_batch() -> usize {
    1000
}

/// A configuration error: which file, and what is wrong where.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {kind}")]
pub struct ConfigError {
    pub path: String,
    pub kind: ConfigErrorKind,
}

/// What is wrong with a configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The file could not be read.
    #[error("{0}")]
    Io(#[source] std::io::Error),
    /// The file is not the TOML muster reads: a syntax error, an unknown
    /// key, a value of the wrong type (toml's message names the key; the
    /// line and column are 1-based).
    #[error("{message}")]
    Syntax {
        message: String,
        line: Option<usize>,
        column: Option<usize>,
    },
    /// A value muster refuses: out of its range, missing, contradicting
    /// another (the message names the tenant and the key).
    #[error("{0}")]
    Invalid(String),
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub daemon: DaemonSettings,
    /// The daemon's operations endpoint, when `[daemon] listen` is set.
    pub listen: Option<Listen>,
    pub tenants: Vec<Tenant>,
}

/// A validated tenant.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub name: String,
    /// The embedded state store; under `[cluster]`, a local path beside
    /// the config (`.muster/<name>`) whose `.spool` and `.lock` the runs
    /// of this machine use, the state being in PostgreSQL.
    pub state: PathBuf,
    /// The cluster holding the state, under `[cluster]`.
    pub cluster: Option<std::sync::Arc<Cluster>>,
    pub source: SourceConfig,
    pub settle_ms: u64,
    pub files: Vec<(glob::Pattern, Profile)>,
    pub sink: SinkConfig,
    /// When the daemon runs the tenant, in `time_zone`.
    pub schedule: crate::schedule::Schedule,
    pub time_zone: jiff::tz::TimeZone,
    pub batch_size: usize,
    /// Runs kept in the run history (at least 1).
    pub keep_runs: usize,
    /// Where the events of its runs go.
    pub notify: Vec<crate::notify::Notify>,
}

impl Tenant {
    /// Where files fetched from a remote inbox are kept while a run reads
    /// them: `<state>.spool/`, beside the state store.
    pub fn spool(&self) -> PathBuf {
        PathBuf::from(format!("{}.spool", self.state.display()))
    }

    /// The tenant's first slot after `after`; far away if its schedule
    /// never fires.
    pub fn next_slot(&self, after: jiff::Timestamp) -> jiff::Timestamp {
        match self.schedule.next_after(after, &self.time_zone) {
            Some(z) => z.timestamp(),
            None => {
                tracing::warn!(tenant = %self.name, "the schedule never fires");
                jiff::Timestamp::MAX
            }
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let error = |kind| ConfigError {
            path: path.display().to_string(),
            kind,
        };
        let err = |message: String| error(ConfigErrorKind::Invalid(message));
        let text = std::fs::read_to_string(path).map_err(|e| error(ConfigErrorKind::Io(e)))?;
        let file: ConfigFile = toml::from_str(&text).map_err(|e| {
            let (line, column) = match e.span() {
                Some(span) => {
                    let before = &text[..span.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                    (Some(line), Some(column))
                }
                None => (None, None),
            };
            error(ConfigErrorKind::Syntax {
                message: e.to_string(),
                line,
                column,
            })
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let rel = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let cluster = match &file.cluster {
            None => None,
            Some(c) => {
                let url = crate::secret::read("postgres", &c.postgres_env, &c.postgres_file, &rel)
                    .map_err(|e| err(format!("[cluster]: {e}")))?
                    .ok_or_else(|| err("[cluster]: postgres_env or postgres_file is required (the database's URL)".into()))?;
                if c.lease_ms < 1000 {
                    return Err(err("[cluster]: lease_ms must be at least 1000".into()));
                }
                Some(std::sync::Arc::new(Cluster {
                    url,
                    lease_ms: c.lease_ms,
                }))
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
            if t.keep_runs == 0 {
                return Err(at("`keep_runs` must be at least 1".into()));
            }
            let notify = t
                .notify
                .iter()
                .map(|n| n.validate(&rel))
                .collect::<Result<Vec<_>, _>>()
                .map_err(at)?;
            if let Some(safety) = &t.safety {
                safety.check("safety.").map_err(at)?;
            }
            let (source, settle_ms) = match &t.source {
                SourceFile::Dir {
                    path,
                    processed,
                    settle_ms,
                    create,
                } => {
                    let inbox = rel(path);
                    let processed = inbox.join(processed);
                    let create = *create;
                    let dir = SourceConfig::Dir {
                        inbox,
                        processed,
                        create,
                    };
                    (dir, *settle_ms)
                }
                SourceFile::Sftp(s) => {
                    let settle_ms = s.settle_ms;
                    (SourceConfig::Sftp(s.validate(&rel).map_err(at)?), settle_ms)
                }
                SourceFile::Ftp(s) => {
                    let settle_ms = s.settle_ms;
                    (SourceConfig::Ftp(s.validate(&rel).map_err(at)?), settle_ms)
                }
                SourceFile::Http(s) => (SourceConfig::Http(s.validate(&rel).map_err(at)?), 0),
            };
            let mut source = source;
            let mut files = Vec::new();
            for (i, f) in t.files.iter().enumerate() {
                let pattern =
                    file_pattern(f, &mut source).map_err(|e| at(format!("files[{i}]: {e}")))?;
                let pattern = glob::Pattern::new(&pattern)
                    .map_err(|e| at(format!("files pattern {pattern:?}: {e}")))?;
                let profile_arg = if crate::profile::PRESETS.iter().any(|(n, _)| *n == f.profile) {
                    f.profile.clone()
                } else {
                    rel(Path::new(&f.profile)).display().to_string()
                };
                let mut profile = Profile::load(&profile_arg).map_err(|e| at(e.to_string()))?;
                if let SourceConfig::Http(http) = &source {
                    let json = matches!(
                        http.snapshots.last().map(|s| &s.body),
                        Some(crate::source::http::Body::Json { .. })
                    );
                    if json != profile.json.is_some() {
                        let (body, wants) = if json {
                            ("format = \"json\"", "a JSON profile (format = \"json\")")
                        } else {
                            ("a CSV body", "a CSV profile")
                        };
                        return Err(at(format!(
                            "files[{i}]: {body} needs {wants}; profile {:?} is not one",
                            f.profile
                        )));
                    }
                }
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
                SinkFile::Scim(s) => SinkConfig::Scim(s.validate(&rel).map_err(at)?),
            };
            tenants.push(Tenant {
                name: t.name.clone(),
                state: match (&cluster, &t.state) {
                    (None, Some(state)) => rel(state),
                    (None, None) => {
                        return Err(at("`state` is required (the state store file)".into()))
                    }
                    (Some(_), None) => {
                        let safe: String = t
                            .name
                            .chars()
                            .map(|c| {
                                if c.is_alphanumeric() || "-_".contains(c) {
                                    c
                                } else {
                                    '_'
                                }
                            })
                            .collect();
                        rel(&Path::new(".muster").join(safe))
                    }
                    (Some(_), Some(_)) => return Err(at(
                        "`state` is not for a tenant of a [cluster]: its state is in PostgreSQL"
                            .into(),
                    )),
                },
                cluster: cluster.clone(),
                source,
                settle_ms,
                files,
                sink,
                schedule,
                time_zone,
                batch_size: t.batch_size,
                keep_runs: t.keep_runs,
                notify,
            });
        }
        if tenants.is_empty() {
            return Err(err("no [[tenant]]".into()));
        }
        shared_paths(&tenants).map_err(err)?;
        if file.daemon.workers == 0 {
            return Err(err("daemon.workers must be at least 1".into()));
        }
        let listen = file.daemon.endpoint(&rel).map_err(err)?;
        Ok(Config {
            daemon: file.daemon,
            listen,
            tenants,
        })
    }
}

/// An error when two tenants share a state store or a JSONL outbox: each
/// would take the other's objects for its own (and a shared outbox gets
/// the same operation ids twice).
fn shared_paths(tenants: &[Tenant]) -> Result<(), String> {
    let outbox = |t: &Tenant| match &t.sink {
        SinkConfig::Jsonl { path } => Some(lexical(path)),
        _ => None,
    };
    for (i, a) in tenants.iter().enumerate() {
        for b in &tenants[..i] {
            if lexical(&a.state) == lexical(&b.state) {
                return Err(format!(
                    "tenants {:?} and {:?} share the state store {}; each needs its own",
                    b.name,
                    a.name,
                    a.state.display()
                ));
            }
            if outbox(a).is_some() && outbox(a) == outbox(b) {
                return Err(format!(
                    "tenants {:?} and {:?} share the outbox {}; each needs its own",
                    b.name,
                    a.name,
                    outbox(a).unwrap_or_default().display()
                ));
            }
        }
    }
    Ok(())
}

/// `path` with its `.` components dropped and each `..` taking the one
/// before it (the files may not exist yet: nothing is resolved on disk).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unknown key is a syntax error that names the key, with the line
    /// and column where it stands.
    #[test]
    fn an_unknown_key_is_named_with_its_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("muster.toml");
        let text = "[[tenant]]\nname = \"acme\"\nstate = \"s.redb\"\n  batch_sise = 3\n";
        std::fs::write(&path, text).unwrap();
        let e = Config::load(&path).unwrap_err();
        match &e.kind {
            ConfigErrorKind::Syntax {
                message,
                line,
                column,
            } => {
                assert!(message.contains("batch_sise"), "{message}");
                assert_eq!((*line, *column), (Some(4), Some(3)), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().starts_with(&path.display().to_string()));
    }

    /// A value out of range is refused naming the tenant and the key.
    #[test]
    fn a_value_out_of_range_names_the_tenant_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("muster.toml");
        let text = "[[tenant]]\nname = \"acme\"\nstate = \"s.redb\"\nbatch_size = 0\n\
            [tenant.source]\ntype = \"dir\"\npath = \"in\"\n\
            [[tenant.files]]\npattern = \"*.csv\"\nprofile = \"mobietrain\"\n\
            [tenant.sink]\ntype = \"jsonl\"\npath = \"out.jsonl\"\n";
        std::fs::write(&path, text).unwrap();
        let e = Config::load(&path).unwrap_err();
        assert!(
            matches!(&e.kind, ConfigErrorKind::Invalid(m) if m.contains("\"acme\"") && m.contains("batch_size")),
            "{e}"
        );
    }
}
