//! The profile file format: a documented serde type, validated into a
//! [`Profile`](super::Profile) by [`Profile::compile`](super::Profile::compile).
//!
//! Every key is optional unless marked; unknown keys are an error that names
//! the key. See `docs/profiles.md` for the reference with examples.

use serde::Deserialize;

use crate::model::ObjectKind;

/// A profile as written in TOML.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    /// `user`, `group` or `segment`. Required.
    pub object: ObjectKind,
    /// `csv` (delimited text, the default) or `json`: JSON Lines, one
    /// object per line, each column's `name` a dot path into it (SPEC §10).
    #[serde(default)]
    pub format: FileFormat,
    /// One character (`","`, `";"`, `"\t"`, `"|"`), or `"auto"`: whichever of
    /// `,` and `;` the first line holds more of. Default `","`.
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
    /// Quote character. Default `"`.
    #[serde(default = "default_quote")]
    pub quote: char,
    /// Escape character inside quoted fields, besides doubled quotes. Default none.
    #[serde(default)]
    pub escape: Option<char>,
    /// `none` (the first line is data), `position` (the first line is a header,
    /// columns mean what their position says), or `name` (columns are found by
    /// header name or alias, case- and space-insensitive). Default `none`.
    #[serde(default)]
    pub header: HeaderMode,
    /// The columns, in file order for `none` / `position`. Each is a field name
    /// (`external_id`, `custom.cost_center`, `-` to ignore a column) or a table
    /// `{ field, name, aliases, optional, date_formats }`. Required.
    pub columns: Vec<ColumnSpec>,
    /// The key field. Default `external_id`.
    #[serde(default = "default_key")]
    pub key: String,
    /// Separator of list cells (`groups`, `admin_groups`, `segments`). Default `;`.
    #[serde(default)]
    pub list_separator: Option<char>,
    /// Date formats tried in order for every date column (`%Y`, `%m`, `%d`,
    /// `%-m`, `%-d` and literal characters). Default `["%Y-%m-%d"]`.
    #[serde(default = "default_date_formats")]
    pub date_formats: Vec<String>,
    /// Which strings mean active and inactive (case-insensitive).
    #[serde(default)]
    pub status: StatusConfig,
    /// Trim spaces and tabs around unquoted values. Default true.
    #[serde(default = "yes")]
    pub trim: bool,
    /// `windows-1252` to decode fields that are not UTF-8 (each such row is
    /// reported); default none: such a row is rejected `invalid_utf8`.
    #[serde(default)]
    pub encoding_fallback: Option<String>,
    /// What an empty cell means: `clear` the field (default) or `keep` the old value.
    #[serde(default)]
    pub empty: EmptyCell,
    /// Fields that must not be empty. Default: `external_id` (plus the
    /// object's names: `first_name`, `last_name` for users; `name` otherwise).
    #[serde(default)]
    pub required: Vec<String>,
    /// Groups of fields of which at least one must be present, e.g. `[["email", "phone"]]`.
    #[serde(default)]
    pub required_any: Vec<Vec<String>>,
    /// A key in the store that is missing from the file: `ignore` (default),
    /// `deactivate` or `delete`. Anything but `ignore` makes the file a full snapshot.
    #[serde(default)]
    pub missing: MissingRule,
    /// Status inactive: `deactivate` (default) or `delete`.
    #[serde(default)]
    pub inactive_action: EndAction,
    /// An end-date field and what a date on or before today does.
    #[serde(default)]
    pub end_date: Option<EndDateConfig>,
    /// IANA time zone in which "today" is taken. Default `UTC`.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// Accept rows with fewer fields than columns (the missing ones are empty). Default false.
    #[serde(default)]
    pub allow_short_rows: bool,
    /// A new user is invited once, when created. Default false.
    #[serde(default)]
    pub invite_on_create: bool,
    /// In a run, the rows rejected or failed are also written, as they
    /// were, to `processed/<stem>.<timestamp>.retry.csv`. Default true.
    #[serde(default = "yes")]
    pub retry_file: bool,
    /// A date field (e.g. `employed_since`): a new user whose date is after
    /// today is created without an invitation, and invited by the first run
    /// on or after it. Needs `invite_on_create`. Default none.
    #[serde(default)]
    pub invite_from: Option<String>,
    /// Deactivate first what would be deleted, and delete it only after it
    /// has been missing (ended, inactive) this many days. Default none.
    #[serde(default)]
    pub delete_after_days: Option<u32>,
    /// Keys (exact, or glob patterns such as `svc-*`) never deactivated or
    /// deleted. Default none.
    #[serde(default)]
    pub protected: Vec<String>,
    /// The fields updates write; a change to another is recorded but not
    /// sent. Default: all.
    #[serde(default)]
    pub owned_fields: Option<Vec<String>>,
    /// Safety limits checked before any write.
    #[serde(default)]
    pub safety: SafetyConfig,
    /// Largest raw record in bytes; a longer one is rejected. Default 1 MiB.
    #[serde(default = "default_max_record")]
    pub max_record_bytes: usize,
    /// Largest field in bytes; a longer one is rejected. Default 64 KiB.
    #[serde(default = "default_max_field")]
    pub max_field_bytes: usize,
}

/// What a profile's files are.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    #[default]
    Csv,
    Json,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HeaderMode {
    #[default]
    None,
    Position,
    Name,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum ColumnSpec {
    Field(String),
    Table(ColumnTable),
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnTable {
    /// The field this column fills (`-` ignores the column).
    pub field: String,
    /// Header name (for `header = "name"`). Default: the field name.
    #[serde(default)]
    pub name: Option<String>,
    /// Other header names accepted for this column.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// With `header = "name"`: the column may be absent from the file.
    #[serde(default)]
    pub optional: bool,
    /// Date formats for this column, replacing the profile's.
    #[serde(default)]
    pub date_formats: Option<Vec<String>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusConfig {
    #[serde(default = "default_active")]
    pub active: Vec<String>,
    #[serde(default = "default_inactive")]
    pub inactive: Vec<String>,
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            active: default_active(),
            inactive: default_inactive(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EmptyCell {
    #[default]
    Clear,
    Keep,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MissingRule {
    #[default]
    Ignore,
    Deactivate,
    Delete,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EndAction {
    #[default]
    Deactivate,
    Delete,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndDateConfig {
    /// A date field, e.g. `employed_until`.
    pub field: String,
    /// What a date on or before today does. Default `delete`.
    #[serde(default = "default_end_action")]
    pub action: EndAction,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SafetyConfig {
    /// Hold a file that would delete or deactivate more than this share of
    /// the objects in the store (0.0–1.0). Default 0.2.
    #[serde(default = "default_ratio")]
    pub max_delete_ratio: f64,
    /// Hold a file that would delete or deactivate more than this many objects. Default: no limit.
    #[serde(default)]
    pub max_delete_count: Option<u64>,
    /// Hold a file whose record count fell by more than this share since the
    /// last accepted file (0.0–1.0). Default 0.2.
    #[serde(default = "default_ratio")]
    pub max_shrink_ratio: f64,
    /// Release held files without `--force`. Default false.
    #[serde(default)]
    pub force: bool,
}

impl SafetyConfig {
    /// An error naming the key (`prefix` and its name) whose value is out of
    /// range: a ratio that is not a number from 0 to 1 (NaN, infinite,
    /// negative, above 1) would turn a guard off or hold every file.
    pub fn check(&self, prefix: &str) -> Result<(), String> {
        for (key, r) in [
            ("max_delete_ratio", self.max_delete_ratio),
            ("max_shrink_ratio", self.max_shrink_ratio),
        ] {
            if !(0.0..=1.0).contains(&r) {
                return Err(format!(
                    "{prefix}{key} must be a number from 0.0 to 1.0, not {r}"
                ));
            }
        }
        Ok(())
    }
}

impl Default for SafetyConfig {
    fn default() -> Self {
        SafetyConfig {
            max_delete_ratio: default_ratio(),
            max_delete_count: None,
            max_shrink_ratio: default_ratio(),
            force: false,
        }
    }
}

fn default_delimiter() -> String {
    ",".into()
}
fn default_quote() -> char {
    '"'
}
fn default_key() -> String {
    "external_id".into()
}
fn default_date_formats() -> Vec<String> {
    vec!["%Y-%m-%d".into()]
}
fn default_time_zone() -> String {
    "UTC".into()
}
fn default_active() -> Vec<String> {
    ["active", "1", "yes", "true"].map(String::from).to_vec()
}
fn default_inactive() -> Vec<String> {
    ["inactive", "0", "no", "false"].map(String::from).to_vec()
}
fn default_end_action() -> EndAction {
    EndAction::Delete
}
fn default_ratio() -> f64 {
    0.2
}
fn default_max_record() -> usize {
    1 << 20
}
fn default_max_field() -> usize {
    64 << 10
}
fn yes() -> bool {
    true
}
