//! One record through a profile: decode, check, normalise (SPEC §3 step 2).
//!
//! A [`MappedRow`] is one string holding every normalised value plus a
//! [`Cell`] per slot pointing into it, reused from row to row. Normalised
//! means: e-mails lower-cased, dates as `YYYY-MM-DD`, status `active` /
//! `inactive`, lists with items trimmed, empties dropped, duplicates removed
//! and joined with the profile's list separator (an item never holds it). Two rows that mean the same thing map to
//! the same values, which is what the differ compares.

use super::masks::Masks;
use super::{Date, FieldKind, Layout, Profile};
use crate::model::Code;
use crate::reader::{JsonProblem, Record, RecordProblem};

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
    /// The list separator of the profile that mapped the row.
    pub list_separator: char,
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
                if layout.by_path {
                    format!("{name}: {}", self.message)
                } else if name.is_empty() {
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
        let sep = self.list_separator;
        self.get(slot).into_iter().flat_map(move |v| v.split(sep))
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
    RowIssue {
        code,
        column,
        message,
    }
}

/// Whether `v` is one of `list` (lower-cased), ignoring case. Equal but
/// for ASCII capitals is equal (the list is lower-cased already), and is
/// the common case; only a non-ASCII value that is not is lowered whole.
fn status_in(list: &[String], v: &str) -> bool {
    list.iter().any(|a| a.eq_ignore_ascii_case(v))
        || (!v.is_ascii() && list.contains(&v.to_lowercase()))
}

/// A list already in normal form: no empty items, no spaces around items,
/// no duplicates, at most eight items (a longer one is rebuilt, to the same
/// result). Most cells are, and keep their bytes as they are. The items'
/// ends are read off bit masks ([`Masks`]); only items of the same length
/// are compared.
fn list_is_normal(v: &str, sep: char) -> bool {
    let b = v.as_bytes();
    if b.is_empty() {
        return false;
    }
    let Some(m) = Masks::of(b, sep as u8, sep as u8) else {
        return list_is_normal_long(v, sep);
    };
    let seps = m.a;
    let last = 1u64 << (b.len() - 1);
    // An empty item: a separator first, last or after another.
    if seps & 1 != 0 || seps & last != 0 || seps & (seps >> 1) != 0 {
        return false;
    }
    let starts = 1 | (seps << 1);
    let ends = (seps >> 1) | last;
    if m.space & (starts | ends) != 0 {
        // A space, tab or control byte at an item's end: decide byte by byte.
        return list_is_normal_long(v, sep);
    }
    if seps.count_ones() >= 8 {
        return false;
    }
    let mut items: [(usize, usize); 8] = [(0, 0); 8];
    let (mut n, mut start, mut rest) = (0, 0, seps);
    loop {
        let end = if rest == 0 {
            b.len()
        } else {
            rest.trailing_zeros() as usize
        };
        let item = &b[start..end];
        if items[..n]
            .iter()
            .any(|&(s, e)| e - s == item.len() && &b[s..e] == item)
        {
            return false;
        }
        items[n] = (start, end);
        n += 1;
        if rest == 0 {
            return true;
        }
        (start, rest) = (end + 1, rest & (rest - 1));
    }
}

/// [`list_is_normal`] byte by byte: for lists longer than [`Masks::MAX`] and
/// items with a space or control byte at an end.
fn list_is_normal_long(v: &str, sep: char) -> bool {
    let b = v.as_bytes();
    let sep = sep as u8;
    let mut items: [(usize, usize); 8] = [(0, 0); 8];
    let mut n = 0;
    let mut start = 0;
    for end in 0..=b.len() {
        if end < b.len() && b[end] != sep {
            continue;
        }
        let item = &b[start..end];
        let (Some(&first), Some(&last)) = (item.first(), item.last()) else {
            return false;
        };
        if n == items.len() || matches!(first, b' ' | b'\t') || matches!(last, b' ' | b'\t') {
            return false;
        }
        if items[..n].iter().any(|&(s, e)| &b[s..e] == item) {
            return false;
        }
        items[n] = (start, end);
        n += 1;
        start = end + 1;
    }
    true
}

/// `local@domain`: one `@`, no white space, a dot inside the domain (not
/// at its ends, never two in a row).
pub fn is_valid_email(s: &str) -> bool {
    email_check(s).is_some()
}

/// [`is_valid_email`], and whether the address holds capitals to lower:
/// `Some(has_capitals)` when valid (always `true` for a non-ASCII address,
/// which `to_lowercase` lowers). The structure is read off bit masks of the
/// `@`s, dots and spaces ([`Masks`]), without a branch per byte.
fn email_check(s: &str) -> Option<bool> {
    let b = s.as_bytes();
    let Some(m) = Masks::of(b, b'@', b'.') else {
        return email_check_long(s);
    };
    if m.space != 0 || m.a.count_ones() != 1 || m.a & 1 != 0 {
        return None;
    }
    let at = m.a.trailing_zeros() as usize;
    let domain_len = b.len() - at - 1;
    if domain_len < 3 {
        return None;
    }
    // Dots of the domain: at least one, not first or last, never two in a row.
    let dots = m.b >> (at + 1);
    if dots == 0 || dots & 1 != 0 || dots >> (domain_len - 1) != 0 || dots & (dots >> 1) != 0 {
        return None;
    }
    let ascii = m.high == 0;
    if !ascii && s.chars().any(char::is_whitespace) {
        return None;
    }
    Some(m.upper != 0 || !ascii)
}

/// [`email_check`] for addresses longer than [`Masks::MAX`]: one pass over
/// the bytes.
fn email_check_long(s: &str) -> Option<bool> {
    let b = s.as_bytes();
    let mut at = usize::MAX;
    let (mut non_ascii, mut capitals, mut dot, mut prev) = (false, false, false, 0u8);
    for (i, &c) in b.iter().enumerate() {
        if c <= b' ' {
            return None;
        }
        non_ascii |= c >= 0x80;
        capitals |= c.is_ascii_uppercase();
        if c == b'@' {
            if at != usize::MAX {
                return None;
            }
            at = i;
        } else if c == b'.' && at != usize::MAX {
            // Not the domain's first character, never two in a row.
            if i == at + 1 || prev == b'.' {
                return None;
            }
            dot = true;
        }
        prev = c;
    }
    if at == usize::MAX || at == 0 || b.len() - at - 1 < 3 || prev == b'.' || !dot {
        return None;
    }
    if non_ascii && s.chars().any(char::is_whitespace) {
        return None;
    }
    Some(capitals || non_ascii)
}

/// Why a record with too few fields is rejected; when it is one field
/// that another common delimiter cuts into as many fields as the profile
/// expects, a hint that the file's delimiter differs.
#[cold]
fn field_count_message(rec: &Record, expected: usize) -> String {
    let n = rec.len();
    let mut message = format!(
        "{}, expected {expected}",
        crate::model::counted(n as u64, "field")
    );
    if n == 1 {
        let bytes = rec.get(0).unwrap_or_default();
        let other = [b';', b',', b'\t', b'|']
            .into_iter()
            .find(|&d| bytes.iter().filter(|&&b| b == d).count() + 1 == expected);
        if let Some(d) = other {
            let shown = if d == b'\t' {
                "tab".to_string()
            } else {
                format!("'{}'", d as char)
            };
            message.push_str(&format!(
                "; the line splits into {expected} fields at {shown}: the file's delimiter may be {shown} (the profile's `delimiter`)"
            ));
        }
    }
    message
}

impl Profile {
    /// Maps one record into `row` through `layout`. On `Err`, `row` still
    /// carries the key as read when it could be read.
    pub fn map(&self, rec: &Record, layout: &Layout, row: &mut MappedRow) -> Result<(), RowIssue> {
        self.map_with(rec, layout, row, true)
    }

    /// [`Profile::map`]; without `fast`, every cell goes the field-by-field
    /// way (the oracle of the fast loop in the tests).
    #[inline(always)]
    fn map_with(
        &self,
        rec: &Record,
        layout: &Layout,
        row: &mut MappedRow,
        fast: bool,
    ) -> Result<(), RowIssue> {
        row.clear(self.slots.len());
        row.list_separator = self.list_separator as char;
        // When the record is valid UTF-8 (one check for all of it, none
        // when the reader saw it is ASCII), `text` starts with a copy of it
        // and plain values are ranges of that copy.
        let whole = if rec.is_plain_ascii() {
            // SAFETY: ASCII bytes are valid UTF-8.
            row.text
                .push_str(unsafe { std::str::from_utf8_unchecked(rec.as_bytes()) });
            true
        } else {
            match rec.as_str() {
                Some(all) => {
                    row.text.push_str(all);
                    true
                }
                None => false,
            }
        };
        let bytes = rec.as_bytes();
        let (bounds, quoted) = (&rec.bounds[..], &rec.quoted[..]);
        // A cell's range, trimmed when the profile trims and it was not
        // quoted; empty past the record's last field.
        let range_of = |col: usize| match bounds.get(col) {
            Some(&(s, e)) if self.trim && !quoted[col] => trim_blanks(bytes, s, e),
            Some(&(s, e)) => (s, e),
            None => (0, 0),
        };
        // The key first, so even a rejected row's results line names it.
        if let Some(r) = self.key_range(rec, layout) {
            if whole {
                row.key = Some((r.start as u32, r.end as u32));
            } else if let Ok(s) = std::str::from_utf8(&bytes[r]) {
                if let Cell::Value { start, end } = row.push(s) {
                    row.key = Some((start, end));
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
            Some(RecordProblem::Json(p)) => {
                let column = match p {
                    JsonProblem::Object { field } | JsonProblem::NotParent { field } => Some(field),
                    JsonProblem::Syntax { .. } | JsonProblem::NotObject => None,
                };
                return Err(issue(Code::InvalidJson, column, p.to_string()));
            }
            None => {}
        }
        let n = rec.len();
        if n > layout.fields {
            let blank = |i: usize| {
                rec.get(i)
                    .unwrap_or_default()
                    .iter()
                    .all(|b| *b == b' ' || *b == b'\t')
            };
            if let Some(extra) = (layout.fields..n).find(|&i| !blank(i)) {
                return Err(issue(
                    Code::FieldCount,
                    Some(extra),
                    format!(
                        "{} fields, expected {}; this one is not empty",
                        n, layout.fields
                    ),
                ));
            }
        } else if n < layout.fields && !self.allow_short_rows {
            return Err(issue(
                Code::FieldCount,
                None,
                field_count_message(rec, layout.fields),
            ));
        }
        // Decode every used cell; note the first required one that is empty.
        let mut first_missing = None;
        if fast && whole && rec.len() == layout.fields && !(self.trim && rec.has_blank_edge()) {
            // Every column is there, and no cell has blanks to trim (a
            // quoted one is never trimmed): cells are the fields' ranges.
            self.decode_cells(
                rec,
                layout,
                row,
                true,
                &|col| bounds[col],
                &mut first_missing,
            )?;
        } else {
            self.decode_cells(rec, layout, row, whole, &range_of, &mut first_missing)?;
        }
        if let Some(slot) = first_missing {
            return Err(self.missing(slot, layout));
        }
        if let Some(&slot) = self
            .required
            .iter()
            .find(|&&s| layout.column_of_slot[s].is_none())
        {
            return Err(self.missing(slot, layout));
        }
        for group in &self.required_any {
            if group.iter().all(|&s| row.get(s).is_none()) {
                let names: Vec<String> = group
                    .iter()
                    .map(|&s| self.slots[s].field.to_string())
                    .collect();
                return Err(issue(
                    Code::MissingField,
                    None,
                    format!("one of {} is required, all are empty", names.join(", ")),
                ));
            }
        }
        // Value checks and normalisation, in column order.
        for &slot in &layout.checked {
            self.check_value(slot, layout, row)?;
        }
        Ok(())
    }

    /// The cells of a record, each the range `range_of` gives its column:
    /// ranges of `text` when the record as a whole is UTF-8 (`whole`), else
    /// decoded field by field (with the windows-1252 fallback when
    /// configured).
    #[inline(always)]
    fn decode_cells(
        &self,
        rec: &Record,
        layout: &Layout,
        row: &mut MappedRow,
        whole: bool,
        range_of: &impl Fn(usize) -> (usize, usize),
        first_missing: &mut Option<usize>,
    ) -> Result<(), RowIssue> {
        let bytes = rec.as_bytes();
        for step in &layout.steps {
            let (slot, col) = (step.slot as usize, step.col as usize);
            let (start, end) = range_of(col);
            if start == end {
                row.cells[slot] = Cell::Empty;
                if step.required && first_missing.is_none() {
                    *first_missing = Some(slot);
                }
                continue;
            }
            if whole {
                row.cells[slot] = Cell::Value {
                    start: start as u32,
                    end: end as u32,
                };
                continue;
            }
            let raw = &bytes[start..end];
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
        Ok(())
    }

    fn check_value(
        &self,
        slot: usize,
        layout: &Layout,
        row: &mut MappedRow,
    ) -> Result<(), RowIssue> {
        let col = layout.column_of_slot[slot];
        let spec = &self.slots[slot];
        let (start, end) = match row.cells[slot] {
            Cell::Value { start, end } => (start as usize, end as usize),
            Cell::Empty if spec.kind == FieldKind::Status => {
                // An empty status means active.
                row.cells[slot] = row.push("active");
                return Ok(());
            }
            _ => return Ok(()),
        };
        match spec.kind {
            FieldKind::Text | FieldKind::Reference => {}
            FieldKind::Email => {
                let v = &row.text[start..end];
                match email_check(v) {
                    None => {
                        return Err(issue(
                            Code::InvalidEmail,
                            col,
                            format!("{v:?} is not an e-mail address (local@domain, no spaces, a dot in the domain)"),
                        ))
                    }
                    Some(false) => {}
                    Some(true) if v.is_ascii() => row.text[start..end].make_ascii_lowercase(),
                    Some(true) => {
                        let lower = v.to_lowercase();
                        row.cells[slot] = row.push(&lower);
                    }
                }
            }
            FieldKind::Date => {
                let v = &row.text[start..end];
                if spec.iso_only {
                    if Date::parse_iso(v).is_some() {
                        return Ok(());
                    }
                } else if let Some(date) = spec.date_formats.iter().find_map(|f| f.parse(v)) {
                    let at = row.text.len() as u32;
                    date.write_iso(&mut row.text);
                    row.cells[slot] = Cell::Value {
                        start: at,
                        end: row.text.len() as u32,
                    };
                    return Ok(());
                }
                let expected: Vec<&str> = spec.date_formats.iter().map(|f| f.source()).collect();
                return Err(issue(
                    Code::InvalidDate,
                    col,
                    format!(
                        "{v:?} is not a date in the format {}",
                        expected.join(" or ")
                    ),
                ));
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
                let sep = self.list_separator as char;
                if list_is_normal(&row.text[start..end], sep) {
                    return Ok(());
                }
                // Rebuild from a copy, since the normal form is appended to
                // the same string.
                let mut raw = std::mem::take(&mut row.scratch);
                raw.clear();
                raw.push_str(&row.text[start..end]);
                let at = row.text.len();
                for item in raw.split(sep).map(|i| i.trim_matches([' ', '\t'])) {
                    if item.is_empty() || row.text[at..].split(sep).any(|e| e == item) {
                        continue;
                    }
                    if row.text.len() > at {
                        row.text.push(sep);
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
        Ok(())
    }

    /// The byte range of the key in `rec` (trimmed as `map` trims it), when
    /// the record reaches the key column.
    #[inline]
    fn key_range(&self, rec: &Record, layout: &Layout) -> Option<std::ops::Range<usize>> {
        let col = layout.column_of_slot[self.key_slot]?;
        let r = rec.range(col)?;
        Some(self.trimmed_range(rec.as_bytes(), r, rec.is_quoted(col)))
    }

    /// The key of a record as read, without mapping the rest of it: for
    /// passes that only need to find some rows.
    pub fn key_of<'r>(&self, rec: &'r Record, layout: &Layout) -> Option<&'r str> {
        std::str::from_utf8(&rec.as_bytes()[self.key_range(rec, layout)?]).ok()
    }

    fn missing(&self, slot: usize, layout: &Layout) -> RowIssue {
        let field = &self.slots[slot].field;
        issue(
            Code::MissingField,
            layout.column_of_slot[slot],
            format!("{field} is required and empty"),
        )
    }

    /// `range` of `bytes` without surrounding spaces and tabs, for unquoted
    /// fields when the profile trims.
    #[inline(always)]
    fn trimmed_range(
        &self,
        bytes: &[u8],
        range: std::ops::Range<usize>,
        quoted: bool,
    ) -> std::ops::Range<usize> {
        if !self.trim || quoted {
            return range;
        }
        let (s, e) = trim_blanks(bytes, range.start, range.end);
        s..e
    }
}

/// `bytes[s..e]` without spaces and tabs at its ends. Most cells have none:
/// their two end bytes are looked at first.
#[inline(always)]
fn trim_blanks(bytes: &[u8], mut s: usize, mut e: usize) -> (usize, usize) {
    // Both ends above the space (so neither a space nor a tab): one test,
    // without a branch per comparison.
    if s == e || (bytes[s] > b' ') & (bytes[e - 1] > b' ') {
        return (s, e);
    }
    let blank = |c: u8| c == b' ' || c == b'\t';
    while s < e && blank(bytes[s]) {
        s += 1;
    }
    while e > s && blank(bytes[e - 1]) {
        e -= 1;
    }
    (s, e)
}

#[cfg(test)]
mod email_tests {
    use proptest::prelude::*;

    /// The first version, in three passes: the oracle of the one-pass one.
    fn oracle(s: &str) -> bool {
        let b = s.as_bytes();
        let mut at = None;
        let mut ats = 0;
        let mut control_or_space = false;
        for (i, &c) in b.iter().enumerate() {
            if c == b'@' {
                ats += 1;
                at = Some(i);
            }
            control_or_space |= c <= b' ';
        }
        let Some(at) = at else {
            return false;
        };
        if ats != 1 || control_or_space || at == 0 {
            return false;
        }
        if !s.is_ascii() && s.chars().any(char::is_whitespace) {
            return false;
        }
        let domain = &b[at + 1..];
        if domain.len() < 3 || domain[0] == b'.' || domain[domain.len() - 1] == b'.' {
            return false;
        }
        let mut dot = false;
        for w in domain.windows(2) {
            if w[0] == b'.' {
                if w[1] == b'.' {
                    return false;
                }
                dot = true;
            }
        }
        dot
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        #[test]
        fn one_pass_email_check_agrees_with_the_oracle(s in prop_oneof![
            "[a.@ \tx\u{e9}\u{a0}]{0,12}",
            // Near-valid: a local part, one or two @, a domain of letters and dots.
            "[ax.\u{e9}]{0,3}(@[ax.\u{e9}]{0,6}){1,2}[ \u{a0}]?",
            "a@[x.]{2,5}",
            // Around the length where the check goes byte by byte.
            "[ax.@]{55,75}",
            "[aX]{50,66}@[x.]{1,9}",
            "[ax]{1,5}@[x.]{50,66}",
        ]) {
            prop_assert_eq!(super::is_valid_email(&s), oracle(&s), "{:?}", s);
            // And whether there is anything to lower.
            let to_lower = s.bytes().any(|c| c.is_ascii_uppercase()) || !s.is_ascii();
            prop_assert_eq!(super::email_check(&s), oracle(&s).then_some(to_lower), "{:?}", s);
        }
    }
}

#[cfg(test)]
mod list_tests {
    use proptest::prelude::*;

    /// Normal form as the normalisation defines it, capped at eight items.
    fn oracle(v: &str, sep: char) -> bool {
        let items: Vec<&str> = v.split(sep).collect();
        items.len() <= 8
            && items
                .iter()
                .all(|i| !i.is_empty() && *i == i.trim_matches([' ', '\t']))
            && (1..items.len()).all(|k| !items[..k].contains(&items[k]))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        #[test]
        fn list_check_agrees_with_the_oracle(v in prop_oneof![
            "[ab,]{0,12}",
            "[ab, \t\u{1}\u{e9}]{0,12}",
            "(grp-0[0-3]{2},){0,9}grp-0[0-3]{2}",
            // Around the length where the check goes byte by byte.
            "[ab,]{60,70}",
            "[abc]{20,30},[abc]{20,30},[ab ]{10,20}",
        ]) {
            prop_assert_eq!(super::list_is_normal(&v, ','), oracle(&v, ','), "{:?}", v);
        }
    }
}

#[cfg(test)]
mod status_tests {
    use proptest::prelude::*;

    /// The first version: ASCII values compared ignoring ASCII case, others
    /// lowered whole.
    fn oracle(list: &[String], v: &str) -> bool {
        if v.is_ascii() {
            list.iter().any(|a| a.eq_ignore_ascii_case(v))
        } else {
            list.contains(&v.to_lowercase())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        #[test]
        fn status_check_agrees_with_the_oracle(
            list in proptest::collection::vec("[aeé\u{130}i\u{3a3}\u{3c3}]{1,3}", 0..4),
            v in "[aAeEéÉ\u{130}iI\u{3a3}\u{3c3}]{1,3}",
        ) {
            // Lists are lower-cased when the profile is read.
            let list: Vec<String> = list.iter().map(|s| s.to_lowercase()).collect();
            prop_assert_eq!(super::status_in(&list, &v), oracle(&list, &v), "{:?} in {:?}", v, list);
        }
    }
}

#[cfg(test)]
mod fast_path_tests {
    use crate::profile::{MappedRow, Profile, PRESETS};
    use crate::reader::{Record, SnapshotReader};
    use proptest::prelude::*;

    /// Cells HR files hold, and the ones that go wrong: blanks at the
    /// edges, accents, quotes, bad e-mails and dates, list oddities.
    fn cell() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just(" ".to_string()),
            "[a-c]{1,4}",
            "[ \t]?[a-cé]{1,4}[ \t]?",
            "[a-c]{1,3}@[a-c]{1,3}\\.[a-c]{2}",
            "[A-C]{1,3}@[a-c]{1,3}\\.[a-c]{2}",
            "[a-c@.]{1,8}",
            "(19|20)[0-9]{2}-[01][0-9]-[0-3][0-9]",
            "[0-3][0-9]/[01][0-9]/20[0-9]{2}",
            "(Active|inactive|ACTIVE|yes|0|1|maybe)",
            "[a-c]{1,2}([,;] ?[a-c]{1,2}){0,3},?",
            "\"[a-c;, ]{0,4}\"",
            "\"[a-c]{0,2}\"\"[a-c]{0,2}\"",
        ]
    }

    /// A preset and rows for it: most with its number of columns, some
    /// with one more or one less.
    fn file() -> impl Strategy<Value = (String, Vec<Vec<String>>)> {
        let names: Vec<String> = PRESETS.iter().map(|(n, _)| n.to_string()).collect();
        proptest::sample::select(names).prop_flat_map(|name| {
            let columns = Profile::preset(&name).unwrap().columns;
            let width = prop_oneof![
                6 => Just(columns),
                1 => Just(columns + 1),
                1 => Just(columns.saturating_sub(1)),
            ];
            let row = width.prop_flat_map(|n| proptest::collection::vec(cell(), n));
            (Just(name), proptest::collection::vec(row, 1..6))
        })
    }

    /// What mapping a record gave, for comparing.
    fn mapped(
        profile: &Profile,
        rec: &Record,
        layout: &crate::profile::Layout,
        fast: bool,
    ) -> String {
        let mut row = MappedRow::new();
        let result = profile.map_with(rec, layout, &mut row, fast);
        let values: Vec<Option<&str>> = (0..profile.slots.len()).map(|s| row.get(s)).collect();
        format!(
            "{result:?} {values:?} {:?} {:?} {:?}",
            row.cells
                .iter()
                .map(|c| matches!(c, super::Cell::Empty))
                .collect::<Vec<_>>(),
            row.key_as_read(),
            row.decoded_column
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]
        /// A record mapped with what the reader's scan found about it maps
        /// as it does without (the field-by-field path, which trims and
        /// validates every cell).
        #[test]
        fn the_fast_path_maps_as_the_general_one((preset, rows) in file()) {
            let profile = Profile::preset(&preset).unwrap();
            let delimiter = [b',', b';'][usize::from(preset.starts_with("winningtemp"))] as char;
            let text: String = rows
                .iter()
                .map(|r| r.join(&delimiter.to_string()) + "\n")
                .collect();
            let header = match profile.header {
                crate::profile::HeaderMode::None => None,
                _ => {
                    let names: Vec<&str> = profile.slots.iter().map(|s| s.display_name.as_str()).collect();
                    Some(names.join(&delimiter.to_string()) + "\n")
                }
            };
            let input = header.clone().unwrap_or_default() + &text;
            let mut reader = SnapshotReader::new(input.as_bytes(), profile.reader_options(input.as_bytes()));
            let mut rec = Record::new();
            let layout = if header.is_some() {
                reader.read_record(&mut rec).unwrap();
                profile.layout(Some(&rec)).unwrap()
            } else {
                profile.layout(None).unwrap()
            };
            while reader.read_record(&mut rec).unwrap() {
                // The general way, without what the scan found.
                let mut plain = rec.clone();
                plain.flags = 0;
                let general = mapped(&profile, &plain, &layout, false);
                prop_assert_eq!(mapped(&profile, &rec, &layout, true), general, "{:?}", input);
            }
        }
    }
}
