//! One record through a profile: decode, check, normalise (SPEC §3 step 2).
//!
//! A [`MappedRow`] is one string holding every normalised value plus a
//! [`Cell`] per slot pointing into it, reused from row to row. Normalised
//! means: e-mails lower-cased, dates as `YYYY-MM-DD`, status `active` /
//! `inactive`, lists with items trimmed, empties dropped, duplicates removed
//! and joined with [`LIST_JOIN`]. Two rows that mean the same thing map to
//! the same values, which is what the differ compares.

use super::{FieldKind, Layout, Profile};
use crate::code::Code;
use crate::reader::{Record, RecordProblem};

/// The separator of list items inside a [`MappedRow`] (ASCII unit separator).
pub const LIST_JOIN: char = '\u{1f}';

/// The value of one slot in a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cell {
    /// The file has no column for this slot (an optional by-name column).
    Absent,
    /// The cell is empty (after trimming).
    Empty,
    /// `text[start..end]`.
    Value { start: u32, end: u32 },
}

/// A row mapped through a profile. Reuse one across rows.
#[derive(Clone, Debug, Default)]
pub struct MappedRow {
    pub text: String,
    pub cells: Vec<Cell>,
    key: Option<(u32, u32)>,
    /// The first column decoded with the windows-1252 fallback, if any.
    pub decoded_column: Option<usize>,
    scratch: String,
}

/// Why a row was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowIssue {
    pub code: Code,
    /// 0-based file column, when the problem is in one.
    pub column: Option<usize>,
    /// For humans: what and why (the column is added by [`RowIssue::describe`]).
    pub message: String,
}

impl RowIssue {
    /// The message with its column named, for the results file.
    pub fn describe(&self, layout: &Layout) -> String {
        match self.column {
            Some(c) => {
                let name = layout.column_names.get(c).map(String::as_str).unwrap_or("");
                if name.is_empty() {
                    format!("column {}: {}", c + 1, self.message)
                } else {
                    format!("column {} ({name}): {}", c + 1, self.message)
                }
            }
            None => self.message.clone(),
        }
    }
}

impl MappedRow {
    pub fn new() -> MappedRow {
        MappedRow::default()
    }

    /// The value of a slot, `None` when empty or absent.
    #[inline]
    pub fn get(&self, slot: usize) -> Option<&str> {
        match self.cells.get(slot)? {
            Cell::Value { start, end } => Some(&self.text[*start as usize..*end as usize]),
            _ => None,
        }
    }

    #[inline]
    pub fn cell(&self, slot: usize) -> Cell {
        self.cells.get(slot).copied().unwrap_or(Cell::Absent)
    }

    /// The items of a list slot.
    pub fn items(&self, slot: usize) -> impl Iterator<Item = &str> {
        self.get(slot).into_iter().flat_map(|v| v.split(LIST_JOIN))
    }

    /// The key as read from the file (for the results line), when the
    /// parser reached the key column and it was valid text — set even when
    /// the row is rejected.
    pub fn key_as_read(&self) -> Option<&str> {
        self.key.map(|(s, e)| &self.text[s as usize..e as usize])
    }

    fn clear(&mut self, slots: usize) {
        self.text.clear();
        self.cells.clear();
        self.cells.resize(slots, Cell::Absent);
        self.key = None;
        self.decoded_column = None;
    }

    fn push(&mut self, s: &str) -> Cell {
        let start = self.text.len() as u32;
        self.text.push_str(s);
        Cell::Value {
            start,
            end: self.text.len() as u32,
        }
    }
}

fn issue(code: Code, column: Option<usize>, message: String) -> RowIssue {
    RowIssue { code, column, message }
}

/// Whether `v` is one of `list` (lower-cased), ignoring case.
fn status_in(list: &[String], v: &str) -> bool {
    if v.is_ascii() {
        list.iter().any(|a| a.eq_ignore_ascii_case(v))
    } else {
        let lower = v.to_lowercase();
        list.iter().any(|a| *a == lower)
    }
}

/// `local@domain`: one `@`, no white space, a dot inside the domain.
pub fn is_valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !s.chars().any(char::is_whitespace)
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
}

impl Profile {
    /// Maps one record into `row` through `layout`. On `Err`, `row` still
    /// carries the key as read when it could be read.
    pub fn map(&self, rec: &Record, layout: &Layout, row: &mut MappedRow) -> Result<(), RowIssue> {
        row.clear(self.slots.len());
        // The key first, so even a rejected row's results line names it.
        if let Some(col) = layout.column_of_slot[self.key_slot] {
            if let Some(raw) = rec.get(col) {
                if let Ok(s) = std::str::from_utf8(self.trimmed(raw, rec.is_quoted(col))) {
                    if let Cell::Value { start, end } = row.push(s) {
                        row.key = Some((start, end));
                    }
                }
            }
        }
        // Parse errors.
        match rec.problem() {
            Some(RecordProblem::UnterminatedQuote) => {
                return Err(issue(
                    Code::UnterminatedQuote,
                    Some(rec.len().saturating_sub(1)),
                    "a quote opened here is never closed; the record runs to the end of the file and nothing after it was read".into(),
                ))
            }
            Some(RecordProblem::RecordTooLarge { limit }) => {
                return Err(issue(
                    Code::RecordTooLarge,
                    None,
                    format!("the record is longer than {limit} bytes (max_record_bytes)"),
                ))
            }
            Some(RecordProblem::FieldTooLarge { field, limit }) => {
                return Err(issue(
                    Code::FieldTooLarge,
                    Some(field),
                    format!("the field is longer than {limit} bytes (max_field_bytes)"),
                ))
            }
            None => {}
        }
        let n = rec.len();
        if n > layout.fields {
            if let Some(extra) = (layout.fields..n).find(|&i| !rec.get(i).unwrap_or_default().iter().all(|b| *b == b' ' || *b == b'\t')) {
                return Err(issue(
                    Code::FieldCount,
                    Some(extra),
                    format!("{n} fields, expected {}", layout.fields),
                ));
            }
        } else if n < layout.fields && !self.allow_short_rows {
            return Err(issue(
                Code::FieldCount,
                None,
                format!("{n} fields, expected {}", layout.fields),
            ));
        }
        // Decode every used cell.
        for &slot in &layout.order {
            let Some(col) = layout.column_of_slot[slot] else {
                continue;
            };
            let raw = match rec.get(col) {
                Some(raw) => self.trimmed(raw, rec.is_quoted(col)),
                None => &[][..],
            };
            if raw.is_empty() {
                row.cells[slot] = Cell::Empty;
                continue;
            }
            row.cells[slot] = match std::str::from_utf8(raw) {
                Ok(s) => row.push(s),
                Err(e) if !self.windows_1252 => {
                    return Err(issue(
                        Code::InvalidUtf8,
                        Some(col),
                        format!("not valid UTF-8 at byte {} of the field", e.valid_up_to()),
                    ))
                }
                Err(_) => {
                    let (decoded, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(raw);
                    row.decoded_column.get_or_insert(col);
                    row.push(&decoded)
                }
            };
        }
        // Required fields, in column order.
        for &slot in &layout.order {
            if self.required.contains(&slot) && row.get(slot).is_none() {
                return Err(self.missing(slot, layout));
            }
        }
        if let Some(&slot) = self.required.iter().find(|&&s| layout.column_of_slot[s].is_none()) {
            return Err(self.missing(slot, layout));
        }
        for group in &self.required_any {
            if group.iter().all(|&s| row.get(s).is_none()) {
                let names: Vec<String> = group.iter().map(|&s| self.slots[s].field.to_string()).collect();
                return Err(issue(
                    Code::MissingField,
                    None,
                    format!("one of {} is required, all are empty", names.join(", ")),
                ));
            }
        }
        // Value checks and normalisation, in column order.
        for &slot in &layout.order {
            let col = layout.column_of_slot[slot];
            let kind = self.slots[slot].kind;
            if kind == FieldKind::Status && matches!(row.cells[slot], Cell::Empty) {
                row.cells[slot] = row.push("active");
                continue;
            }
            let Cell::Value { start, end } = row.cells[slot] else {
                continue;
            };
            let (start, end) = (start as usize, end as usize);
            match kind {
                FieldKind::Text | FieldKind::Reference => {}
                FieldKind::Email => {
                    let v = &row.text[start..end];
                    if !is_valid_email(v) {
                        return Err(issue(
                            Code::InvalidEmail,
                            col,
                            format!("{v:?} is not an e-mail address (local@domain, no spaces, a dot in the domain)"),
                        ));
                    }
                    if v.is_ascii() {
                        row.text[start..end].make_ascii_lowercase();
                    } else {
                        let lower = v.to_lowercase();
                        row.cells[slot] = row.push(&lower);
                    }
                }
                FieldKind::Date => {
                    let v = &row.text[start..end];
                    let formats = &self.slots[slot].date_formats;
                    match formats.iter().find_map(|f| f.parse(v)) {
                        Some(date) => {
                            if formats.len() > 1 || formats[0].source() != "%Y-%m-%d" {
                                let at = row.text.len() as u32;
                                date.write_iso(&mut row.text);
                                row.cells[slot] = Cell::Value {
                                    start: at,
                                    end: row.text.len() as u32,
                                };
                            }
                        }
                        None => {
                            let expected: Vec<&str> = formats.iter().map(|f| f.source()).collect();
                            return Err(issue(
                                Code::InvalidDate,
                                col,
                                format!("{v:?} is not a date in the format {}", expected.join(" or ")),
                            ));
                        }
                    }
                }
                FieldKind::Status => {
                    let v = &row.text[start..end];
                    let normal = if status_in(&self.active, v) {
                        "active"
                    } else if status_in(&self.inactive, v) {
                        "inactive"
                    } else {
                        return Err(issue(
                            Code::UnknownStatus,
                            col,
                            format!(
                                "{v:?} is not a known status (active: {}; inactive: {})",
                                self.active.join(", "),
                                self.inactive.join(", ")
                            ),
                        ));
                    };
                    row.cells[slot] = row.push(normal);
                }
                FieldKind::List => {
                    // Items are read from a copy, since normalised values
                    // are appended to the same string.
                    let mut raw = std::mem::take(&mut row.scratch);
                    raw.clear();
                    raw.push_str(&row.text[start..end]);
                    let at = row.text.len();
                    for item in raw.split(self.list_separator as char).map(str::trim) {
                        if item.is_empty() || row.text[at..].split(LIST_JOIN).any(|e| e == item) {
                            continue;
                        }
                        if row.text.len() > at {
                            row.text.push(LIST_JOIN);
                        }
                        row.text.push_str(item);
                    }
                    row.scratch = raw;
                    row.cells[slot] = if row.text.len() == at {
                        Cell::Empty
                    } else {
                        Cell::Value {
                            start: at as u32,
                            end: row.text.len() as u32,
                        }
                                        };
                }
            }
        }
        Ok(())
    }

    fn missing(&self, slot: usize, layout: &Layout) -> RowIssue {
        let field = &self.slots[slot].field;
        issue(
            Code::MissingField,
            layout.column_of_slot[slot],
            format!("{field} is required and empty"),
        )
    }

    #[inline]
    fn trimmed<'a>(&self, raw: &'a [u8], quoted: bool) -> &'a [u8] {
        if !self.trim || quoted {
            return raw;
        }
        let is_space = |b: &u8| *b == b' ' || *b == b'\t';
        let start = raw.iter().position(|b| !is_space(b)).unwrap_or(raw.len());
        let end = raw.iter().rposition(|b| !is_space(b)).map_or(start, |e| e + 1);
        &raw[start..end]
    }
}
