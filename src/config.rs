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
    pub inbox: PathBuf,
    pub processed: PathBuf,
    pub settle_ms: u64,
    pub files: Vec<(glob::Pattern, Profile)>,
    pub sink: SinkConfig,
    pub schedule: String,
    pub time_zone: String,
    pub batch_size: usize,
}

#[derive(Clone, Debug)]
pub enum SinkConfig {
    Jsonl { path: PathBuf },
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
            let SourceFile::Dir {
                path: inbox,
                processed,
                settle_ms,
            } = &t.source;
            let inbox = rel(inbox);
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
            jiff::tz::TimeZone::get(&t.time_zone)
                .map_err(|e| at(format!("time_zone {:?}: {e}", t.time_zone)))?;
            let SinkFile::Jsonl { path: outbox } = &t.sink;
            tenants.push(Tenant {
                name: t.name.clone(),
                state: rel(&t.state),
                processed: inbox.join(processed),
                inbox,
                settle_ms: *settle_ms,
                files,
                sink: SinkConfig::Jsonl { path: rel(outbox) },
                schedule: t.schedule.clone(),
                time_zone: t.time_zone.clone(),
                batch_size: t.batch_size,
            });
        }
        if tenants.is_empty() {
            return Err(err("no [[tenant]]".into()));
        }
        Ok(Config { tenants })
    }
}
