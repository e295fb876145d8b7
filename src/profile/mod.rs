//! Profiles: how to read one kind of file and what its rows mean (SPEC §2).
//!
//! A [`ProfileConfig`] is the TOML a user writes; [`Profile::compile`] checks
//! it and builds everything the row loop needs (slots, date formats, status
//! table) once. The header line of a file then gives a [`Layout`]: which
//! file column fills which slot. [`Profile::map`] turns one record into a
//! [`MappedRow`] through that layout, or a [`RowIssue`].

pub mod config;
mod date;
mod lifecycle;
mod map;
mod masks;

pub use crate::model::{field_name, Field, FieldKind, FieldName, ObjectKind};
pub use config::{
    EmptyCell, EndAction, FileFormat, HeaderMode, MissingRule, ProfileConfig, SafetyConfig,
};
pub use date::{Date, DateFormat};
pub use lifecycle::Lifecycle;
pub use map::{is_valid_email, Cell, MappedRow, RowIssue};

use std::fmt;
use std::path::Path;

use crate::reader::{JsonColumns, ReaderOptions, Record};

/// The built-in presets, usable by name. Their TOML is shipped in `profiles/`
/// so each can be copied and edited.
pub const PRESETS: &[(&str, &str)] = &[
    ("mobietrain", include_str!("../../profiles/mobietrain.toml")),
    (
        "winningtemp-users",
        include_str!("../../profiles/winningtemp-users.toml"),
    ),
    (
        "winningtemp-groups",
        include_str!("../../profiles/winningtemp-groups.toml"),
    ),
    (
        "winningtemp-segments",
        include_str!("../../profiles/winningtemp-segments.toml"),
    ),
    (
        "lucca-360learning",
        include_str!("../../profiles/lucca-360learning.toml"),
    ),
];

/// A profile that could not be loaded or compiled.
#[derive(Debug, thiserror::Error)]
#[error("profile {source_name}: {message}")]
pub struct ProfileError {
    pub source_name: String,
    pub message: String,
}

/// A file whose header does not fit the profile: refused whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderError {
    /// 0-based column of the header the problem is at, when there is one.
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.column {
            Some(c) => write!(f, "header, line 1, column {}: {}", c + 1, self.message),
            None => write!(f, "header, line 1: {}", self.message),
        }
    }
}

/// The delimiter, fixed or detected from the first line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delimiter {
    Fixed(u8),
    /// Whichever of `,` and `;` the first line holds more of (`,` on a tie).
    Auto,
}

/// One field the profile reads, with everything needed to check it.
#[derive(Clone, Debug)]
pub struct Slot {
    pub field: Field,
    /// The field's name as operations, field hashes and the store carry
    /// it (`custom.x` spelled out).
    pub name: FieldName,
    pub kind: FieldKind,
    /// Header name and aliases, normalised (lower case, no spaces).
    pub names: Vec<String>,
    /// The header name as configured, for messages.
    pub display_name: String,
    /// Column index for `none` / `position` profiles.
    pub position: usize,
    pub optional: bool,
    pub date_formats: Vec<DateFormat>,
    /// The only date format is ISO `%Y-%m-%d` (a fast path, nothing to rewrite).
    pub iso_only: bool,
}

/// A compiled profile.
#[derive(Clone, Debug)]
pub struct Profile {
    pub name: String,
    pub object: ObjectKind,
    pub delimiter: Delimiter,
    pub quote: u8,
    pub escape: Option<u8>,
    pub header: HeaderMode,
    pub slots: Vec<Slot>,
    /// Columns configured, ignored ones (`-`) included.
    pub columns: usize,
    pub key_slot: usize,
    pub email_slot: Option<usize>,
    pub status_slot: Option<usize>,
    pub reference_slot: Option<usize>,
    pub end_date_slot: Option<usize>,
    pub required: Vec<usize>,
    /// Per slot: whether it is in `required`.
    pub is_required: Vec<bool>,
    pub required_any: Vec<Vec<usize>>,
    pub list_separator: u8,
    pub active: Vec<String>,
    pub inactive: Vec<String>,
    pub trim: bool,
    pub windows_1252: bool,
    pub empty: EmptyCell,
    pub missing: MissingRule,
    pub inactive_action: EndAction,
    pub end_date_action: EndAction,
    pub time_zone: jiff::tz::TimeZone,
    pub allow_short_rows: bool,
    /// Rows rejected or failed in a run go to a retry file too (SPEC §11).
    pub retry_file: bool,
    pub invite_on_create: bool,
    /// The lifecycle keys of SPEC §11.
    pub lifecycle: Lifecycle,
    pub safety: SafetyConfig,
    pub max_record_bytes: usize,
    pub max_field_bytes: usize,
    /// A JSON profile's paths (`format = "json"`): its files are JSON
    /// Lines, each line decoded into the columns. `None`: CSV.
    pub json: Option<std::sync::Arc<JsonColumns>>,
}

/// Which file column fills which slot, from the header (or the profile alone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Per slot: its 0-based file column, or `None` for an optional column
    /// absent from the file.
    pub column_of_slot: Vec<Option<usize>>,
    /// Slots in file-column order (for "value checks in column order").
    pub order: Vec<usize>,
    /// The slots of `order` whose values are checked or normalised (not plain text).
    pub checked: Vec<usize>,
    /// Fields a row must have.
    pub fields: usize,
    /// The file column names, for messages (from the header, else the profile).
    pub column_names: Vec<String>,
    /// Whether the first record is a header line.
    pub has_header: bool,
    /// Columns are JSON paths (`column_names`), named by path alone in
    /// messages.
    pub by_path: bool,
    /// `order` as the row loop reads it: per slot in column order, its
    /// column and whether it is required.
    pub(crate) steps: Vec<Step>,
}

/// One slot of [`Layout::steps`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Step {
    pub slot: u32,
    pub col: u32,
    pub required: bool,
}

impl Layout {
    fn with_steps(mut self, profile: &Profile) -> Layout {
        self.steps = self
            .order
            .iter()
            .filter_map(|&slot| {
                let col = self.column_of_slot[slot]?;
                Some(Step {
                    slot: slot as u32,
                    col: col as u32,
                    required: profile.is_required[slot],
                })
            })
            .collect();
        self
    }
}

fn normalise_name(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

fn one_byte(what: &str, c: char, source: &str) -> Result<u8, ProfileError> {
    if c.is_ascii() {
        Ok(c as u8)
    } else {
        Err(ProfileError {
            source_name: source.into(),
            message: format!("`{what}` must be one ASCII character, not {c:?}"),
        })
    }
}

impl Profile {
    /// A built-in preset by name.
    pub fn preset(name: &str) -> Option<Profile> {
        let (_, text) = PRESETS.iter().find(|(n, _)| *n == name)?;
        // The presets are part of the crate and covered by tests.
        Profile::from_toml(name, text).ok()
    }

    /// A preset name, or the path of a profile TOML file.
    pub fn load(name_or_path: &str) -> Result<Profile, ProfileError> {
        if let Some(p) = Profile::preset(name_or_path) {
            return Ok(p);
        }
        let path = Path::new(name_or_path);
        if !path.exists() {
            let names: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
            return Err(ProfileError {
                source_name: name_or_path.into(),
                message: format!("no such preset or file (presets: {})", names.join(", ")),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| ProfileError {
            source_name: name_or_path.into(),
            message: e.to_string(),
        })?;
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or(name_or_path);
        Profile::from_toml(stem, &text).map_err(|mut e| {
            e.source_name = name_or_path.into();
            e
        })
    }

    pub fn from_toml(name: &str, text: &str) -> Result<Profile, ProfileError> {
        let config: ProfileConfig = toml::from_str(text).map_err(|e| ProfileError {
            source_name: name.into(),
            message: e.to_string(),
        })?;
        Profile::compile(name, &config)
    }

    /// Checks a profile and builds what the row loop needs.
    pub fn compile(name: &str, c: &ProfileConfig) -> Result<Profile, ProfileError> {
        let err = |message: String| ProfileError {
            source_name: name.into(),
            message,
        };
        let delimiter = match c.delimiter.as_str() {
            "auto" => Delimiter::Auto,
            "\\t" | "tab" => Delimiter::Fixed(b'\t'),
            d if d.len() == 1 && d.is_ascii() && d != "\n" && d != "\r" => {
                Delimiter::Fixed(d.as_bytes()[0])
            }
            d => {
                return Err(err(format!(
                    "`delimiter` must be one ASCII character or \"auto\", not {d:?}"
                )))
            }
        };
        let quote = one_byte("quote", c.quote, name)?;
        let escape = c.escape.map(|e| one_byte("escape", e, name)).transpose()?;
        let list_separator = one_byte("list_separator", c.list_separator.unwrap_or(';'), name)?;
        if let Delimiter::Fixed(d) = delimiter {
            if d == quote {
                return Err(err("`delimiter` and `quote` must differ".into()));
            }
        }
        let global_formats = compile_formats(&c.date_formats).map_err(&err)?;
        if c.columns.is_empty() {
            return Err(err("`columns` is empty".into()));
        }
        let mut slots: Vec<Slot> = Vec::new();
        for (position, spec) in c.columns.iter().enumerate() {
            let table = match spec {
                config::ColumnSpec::Field(f) => config::ColumnTable {
                    field: f.clone(),
                    name: None,
                    aliases: vec![],
                    optional: false,
                    date_formats: None,
                },
                config::ColumnSpec::Table(t) => t.clone(),
            };
            if table.field == "-" {
                continue;
            }
            let field = Field::parse(c.object, &table.field)
                .map_err(|m| err(format!("columns[{position}]: {m}")))?;
            if slots.iter().any(|s| s.field == field) {
                return Err(err(format!(
                    "columns[{position}]: field `{field}` is mapped twice"
                )));
            }
            let display_name = table.name.clone().unwrap_or_else(|| field.to_string());
            let mut names = vec![normalise_name(&display_name)];
            names.extend(table.aliases.iter().map(|a| normalise_name(a)));
            let date_formats = match &table.date_formats {
                Some(f) => compile_formats(f).map_err(&err)?,
                None => global_formats.clone(),
            };
            if table.optional && c.header != HeaderMode::Name && c.format == FileFormat::Csv {
                return Err(err(format!(
                    "columns[{position}]: `optional` needs `header = \"name\"`"
                )));
            }
            slots.push(Slot {
                kind: field.kind(),
                name: field,
                field,
                names,
                display_name,
                position,
                optional: table.optional,
                iso_only: date_formats.len() == 1 && date_formats[0].source() == "%Y-%m-%d",
                date_formats,
            });
        }
        let slot_of = |fname: &str, what: &str| -> Result<usize, ProfileError> {
            let field = Field::parse(c.object, fname).map_err(|m| err(format!("{what}: {m}")))?;
            slots
                .iter()
                .position(|s| s.field == field)
                .ok_or_else(|| err(format!("{what}: field `{fname}` is not in `columns`")))
        };
        let key_slot = slot_of(&c.key, "key")?;
        let mut required: Vec<usize> = vec![key_slot];
        let defaults: &[&str] = match c.object {
            ObjectKind::User => &["first_name", "last_name"],
            ObjectKind::Group | ObjectKind::Segment => &["name"],
        };
        for f in c
            .required
            .iter()
            .map(String::as_str)
            .chain(defaults.iter().copied())
        {
            let s = slot_of(f, "required")?;
            if !required.contains(&s) {
                required.push(s);
            }
        }
        let required_any = c
            .required_any
            .iter()
            .map(|group| {
                group
                    .iter()
                    .map(|f| slot_of(f, "required_any"))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let find = |f: Field| slots.iter().position(|s| s.field == f);
        let end_date_slot = match &c.end_date {
            Some(e) => {
                let s = slot_of(&e.field, "end_date.field")?;
                if slots[s].kind != FieldKind::Date {
                    return Err(err(format!(
                        "end_date.field: `{}` is not a date field",
                        e.field
                    )));
                }
                Some(s)
            }
            None => None,
        };
        let windows_1252 = match c.encoding_fallback.as_deref() {
            None => false,
            Some(e)
                if e.eq_ignore_ascii_case("windows-1252") || e.eq_ignore_ascii_case("cp1252") =>
            {
                true
            }
            Some(e) => {
                return Err(err(format!(
                    "encoding_fallback: only \"windows-1252\" is supported, not {e:?}"
                )))
            }
        };
        let time_zone = jiff::tz::TimeZone::get(&c.time_zone)
            .map_err(|e| err(format!("time_zone {:?}: {e}", c.time_zone)))?;
        c.safety.check("safety.").map_err(err)?;
        let active: Vec<String> = c
            .status
            .active
            .iter()
            .map(|s| s.trim().to_lowercase())
            .collect();
        let inactive: Vec<String> = c
            .status
            .inactive
            .iter()
            .map(|s| s.trim().to_lowercase())
            .collect();
        if let Some(both) = active.iter().find(|a| inactive.contains(a)) {
            return Err(err(format!(
                "status value {both:?} is both active and inactive"
            )));
        }
        let json = match c.format {
            FileFormat::Csv => None,
            FileFormat::Json => Some(std::sync::Arc::new(json_columns(c, &slots).map_err(&err)?)),
        };
        let lifecycle = Lifecycle::compile(c, &slots, &|f: &str, what: &str| {
            slot_of(f, what).map_err(|e| e.message)
        })
        .map_err(&err)?;
        Ok(Profile {
            name: name.into(),
            object: c.object,
            delimiter,
            quote,
            escape,
            header: c.header,
            columns: c.columns.len(),
            key_slot,
            email_slot: find(Field::Email),
            status_slot: find(Field::Status),
            reference_slot: find(Field::ManagerId).or_else(|| find(Field::ParentId)),
            end_date_slot,
            is_required: (0..slots.len()).map(|s| required.contains(&s)).collect(),
            required,
            required_any,
            list_separator,
            active,
            inactive,
            trim: c.trim,
            windows_1252,
            empty: c.empty,
            missing: c.missing,
            inactive_action: c.inactive_action,
            end_date_action: c
                .end_date
                .as_ref()
                .map(|e| e.action)
                .unwrap_or(EndAction::Delete),
            time_zone,
            allow_short_rows: c.allow_short_rows,
            invite_on_create: c.invite_on_create,
            retry_file: c.retry_file,
            lifecycle,
            safety: c.safety.clone(),
            max_record_bytes: c.max_record_bytes,
            max_field_bytes: c.max_field_bytes,
            json,
            slots,
        })
    }

    /// This profile for a file that holds some rows only (a retry file):
    /// no key missing from it is deactivated or deleted, and no shrink
    /// holds it.
    pub fn partial(&self) -> Profile {
        let mut p = self.clone();
        p.missing = MissingRule::Ignore;
        p.safety.max_shrink_ratio = 1.0;
        p
    }

    /// Reader options for a file whose first bytes are `head` (used to detect
    /// the delimiter when it is `auto`).
    pub fn reader_options(&self, head: &[u8]) -> ReaderOptions {
        if let Some(json) = &self.json {
            return ReaderOptions {
                delimiter: crate::reader::json::LINE_DELIMITER,
                quote: crate::reader::json::LINE_QUOTE,
                escape: None,
                max_record_bytes: self.max_record_bytes,
                // The line is one field; its values are checked against
                // max_field_bytes once decoded.
                max_field_bytes: self.max_record_bytes,
                json: Some(json.clone()),
                ..ReaderOptions::default()
            };
        }
        let delimiter = match self.delimiter {
            Delimiter::Fixed(d) => d,
            Delimiter::Auto => detect_delimiter(head),
        };
        ReaderOptions {
            delimiter,
            quote: self.quote,
            escape: self.escape,
            max_record_bytes: self.max_record_bytes,
            max_field_bytes: self.max_field_bytes,
            ..ReaderOptions::default()
        }
    }

    /// The layout of a file, from its first record when the profile has a
    /// header. `header` is `None` for an empty file.
    pub fn layout(&self, header: Option<&Record>) -> Result<Layout, HeaderError> {
        let configured_names = || {
            let mut names = vec![String::new(); self.columns];
            for s in &self.slots {
                names[s.position] = s.display_name.clone();
            }
            names
        };
        let by_position = |has_header: bool| {
            Layout {
                column_of_slot: self.slots.iter().map(|s| Some(s.position)).collect(),
                order: (0..self.slots.len()).collect(),
                checked: self.checked_slots(0..self.slots.len()),
                fields: self.columns,
                column_names: configured_names(),
                has_header,
                by_path: self.json.is_some(),
                steps: Vec::new(),
            }
            .with_steps(self)
        };
        let header = match (self.header, header) {
            (HeaderMode::None, _) => return Ok(by_position(false)),
            (_, None) => return Ok(by_position(true)),
            (_, Some(h)) => h,
        };
        let mut names: Vec<String> = Vec::with_capacity(header.len());
        for (i, raw) in header.iter().enumerate() {
            match std::str::from_utf8(raw) {
                Ok(s) => names.push(s.trim().to_string()),
                Err(_) => {
                    return Err(HeaderError {
                        column: Some(i),
                        message: "header name is not valid UTF-8".into(),
                    })
                }
            }
        }
        // A trailing delimiter leaves empty names at the end: not columns.
        while names.len() > 1 && names.last().is_some_and(|n| n.is_empty()) {
            names.pop();
        }
        if self.header == HeaderMode::Position {
            if names.len() != self.columns {
                return Err(HeaderError {
                    column: None,
                    message: format!(
                        "the header has {} columns, profile `{}` expects {}",
                        names.len(),
                        self.name,
                        self.columns
                    ),
                });
            }
            let mut layout = by_position(true);
            layout.column_names = names;
            return Ok(layout);
        }
        let normalised: Vec<String> = names.iter().map(|n| normalise_name(n)).collect();
        let mut column_of_slot = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            let mut found = normalised
                .iter()
                .enumerate()
                .filter(|(_, n)| slot.names.contains(n))
                .map(|(i, _)| i);
            let first = found.next();
            if let Some(second) = found.next() {
                return Err(HeaderError {
                    column: Some(second),
                    message: format!(
                        "column `{}` is named twice (columns {} and {})",
                        slot.display_name,
                        first.map_or(0, |f| f + 1),
                        second + 1
                    ),
                });
            }
            if first.is_none() && !slot.optional {
                return Err(HeaderError {
                    column: None,
                    message: format!(
                        "required column `{}` is missing (the header has: {})",
                        slot.display_name,
                        names.join(", ")
                    ),
                });
            }
            column_of_slot.push(first);
        }
        let mut order: Vec<usize> = (0..self.slots.len())
            .filter(|&s| column_of_slot[s].is_some())
            .collect();
        order.sort_by_key(|&s| column_of_slot[s]);
        Ok(Layout {
            column_of_slot,
            checked: self.checked_slots(order.iter().copied()),
            order,
            fields: names.len(),
            column_names: names,
            has_header: true,
            by_path: false,
            steps: Vec::new(),
        }
        .with_steps(self))
    }

    fn checked_slots(&self, order: impl Iterator<Item = usize>) -> Vec<usize> {
        order
            .filter(|&s| !matches!(self.slots[s].kind, FieldKind::Text | FieldKind::Reference))
            .collect()
    }

    /// Today's date in the profile's time zone.
    pub fn today(&self) -> Date {
        let d = jiff::Timestamp::now()
            .to_zoned(self.time_zone.clone())
            .date();
        // jiff's civil dates are always valid calendar dates.
        Date::new(d.year() as u16, d.month() as u8, d.day() as u8).unwrap_or(Date {
            year: 1970,
            month: 1,
            day: 1,
        })
    }

    /// The slot of a field, if the profile reads it.
    pub fn slot(&self, field: &Field) -> Option<usize> {
        self.slots.iter().position(|s| &s.field == field)
    }
}

/// A JSON profile's columns, after checking that nothing in it is for
/// CSV files only.
fn json_columns(c: &ProfileConfig, slots: &[Slot]) -> Result<JsonColumns, String> {
    let csv_only = [
        ("header", c.header != HeaderMode::None),
        ("delimiter", c.delimiter != ","),
        ("quote", c.quote != '"'),
        ("escape", c.escape.is_some()),
        ("encoding_fallback", c.encoding_fallback.is_some()),
        ("allow_short_rows", c.allow_short_rows),
    ];
    if let Some((key, _)) = csv_only.iter().find(|(_, set)| *set) {
        return Err(format!(
            "`{key}` is for CSV files; a JSON profile (format = \"json\") reads JSON Lines"
        ));
    }
    for (i, spec) in c.columns.iter().enumerate() {
        let config::ColumnSpec::Table(t) = spec else {
            if matches!(spec, config::ColumnSpec::Field(f) if f == "-") {
                return Err(format!(
                    "columns[{i}]: a JSON profile names the fields it reads; `-` is for CSV columns"
                ));
            }
            continue;
        };
        if t.field == "-" {
            return Err(format!(
                "columns[{i}]: a JSON profile names the fields it reads; `-` is for CSV columns"
            ));
        }
        if !t.aliases.is_empty() || t.optional {
            return Err(format!(
                "columns[{i}]: `aliases` and `optional` are for CSV headers; a JSON field that is missing is empty"
            ));
        }
    }
    let paths: Vec<&str> = slots.iter().map(|s| s.display_name.as_str()).collect();
    let list_separator = c.list_separator.unwrap_or(';') as u8;
    JsonColumns::new(&paths, list_separator, c.max_field_bytes)
}

fn compile_formats(formats: &[String]) -> Result<Vec<DateFormat>, String> {
    if formats.is_empty() {
        return Err("`date_formats` is empty".into());
    }
    formats.iter().map(|f| DateFormat::compile(f)).collect()
}

/// `,` or `;`, whichever the first line holds more of (`,` on a tie).
pub fn detect_delimiter(head: &[u8]) -> u8 {
    let line_end = memchr::memchr2(b'\n', b'\r', head).unwrap_or(head.len());
    let line = &head[..line_end];
    let commas = memchr::memchr_iter(b',', line).count();
    let semis = memchr::memchr_iter(b';', line).count();
    if semis > commas {
        b';'
    } else {
        b','
    }
}
