//! One CSV record: a byte buffer plus field end offsets, reused across reads.

use std::fmt;

/// [`Record`] flags: the record was read by the plain-line scan (the other
/// flags are its findings).
pub(crate) const SCANNED: u8 = 0x80;

/// Where a record (or a problem) starts in its input.
///
/// `byte` counts from the first byte of the input (a byte-order mark counts),
/// `line` is 1-based and names the line the record *starts* on, `record` is the
/// 0-based index of the record among those the reader yielded (blank lines are
/// not records).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub byte: u64,
    pub line: u64,
    pub record: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {} (byte {})", self.line, self.byte)
    }
}

/// A problem with one record that the reader found while reading it. The
/// record is still yielded (with the fields it could read) so the caller can
/// report it and go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordProblem {
    /// A quote was opened and never closed: the record ran to the end of the
    /// input. It is always the last record.
    UnterminatedQuote,
    /// The raw record was longer than `max_record_bytes`; only its first
    /// fields were kept.
    RecordTooLarge { limit: usize },
    /// Field `field` (0-based) was longer than `max_field_bytes`.
    FieldTooLarge { field: usize, limit: usize },
    /// A JSON Lines record whose line, or one of whose values, is not
    /// what the profile reads (see [`super::json`]).
    Json(super::JsonProblem),
}

/// A record read by [`SnapshotReader`](super::SnapshotReader).
///
/// Fields are unescaped bytes; nothing is decoded. The record is one byte
/// buffer plus the bounds of each field in it (a plain line is copied as is,
/// delimiters included, and its fields are ranges of it). Reading into the
/// same `Record` again reuses its buffers, so the steady state allocates
/// nothing.
#[derive(Clone, Debug, Default)]
pub struct Record {
    pub(crate) bytes: Vec<u8>,
    pub(crate) len: usize,
    pub(crate) bounds: Vec<(usize, usize)>,
    pub(crate) quoted: Vec<bool>,
    pub(crate) position: Position,
    pub(crate) problem: Option<RecordProblem>,
    /// What the reader's scan of a line without quotes found
    /// ([`Record::is_plain_ascii`], [`Record::has_blank_edge`]); 0 when the
    /// record was read another way.
    pub(crate) flags: u8,
    /// Scratch for the reader: where a quoted line's delimiters and quotes are.
    pub(crate) marks: Vec<u32>,
}

impl Record {
    pub fn new() -> Record {
        Record::default()
    }

    /// Number of fields.
    #[inline]
    pub fn len(&self) -> usize {
        self.bounds.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.bounds.is_empty()
    }

    /// Field `i`, unescaped, or `None` past the last field.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let &(start, end) = self.bounds.get(i)?;
        Some(&self.bytes[start..end])
    }

    /// The byte range of field `i` within [`Record::as_bytes`].
    #[inline]
    pub fn range(&self, i: usize) -> Option<std::ops::Range<usize>> {
        let &(start, end) = self.bounds.get(i)?;
        Some(start..end)
    }

    /// The record's bytes: every field lies in it (see [`Record::range`]).
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The record as one string when every field is valid UTF-8 (one
    /// validation for the whole record instead of one per field).
    pub fn as_str(&self) -> Option<&str> {
        let all = simdutf8::basic::from_utf8(self.as_bytes()).ok()?;
        // Valid as a whole, but a field could still end inside a character.
        let b = all.as_bytes();
        let boundary = |i: usize| i >= b.len() || (b[i] as i8) >= -0x40;
        self.bounds
            .iter()
            .all(|&(s, e)| boundary(s) && boundary(e))
            .then_some(all)
    }

    /// Whether field `i` was written in quotes in the input.
    #[inline]
    pub fn is_quoted(&self, i: usize) -> bool {
        self.quoted.get(i).copied().unwrap_or(false)
    }

    pub fn position(&self) -> Position {
        self.position
    }

    pub fn problem(&self) -> Option<RecordProblem> {
        self.problem
    }

    /// The fields in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.len()).map(move |i| self.get(i).unwrap_or_default())
    }

    /// Whether the record was read by the plain-line scan and is ASCII
    /// throughout (so valid UTF-8, with every field on a character
    /// boundary). `false` says nothing.
    #[inline]
    pub fn is_plain_ascii(&self) -> bool {
        self.flags & (SCANNED | super::scan::ASCII) == SCANNED | super::scan::ASCII
    }

    /// Whether some field may start or end with a space or a tab: `false`
    /// only when the plain-line scan saw that none does.
    #[inline]
    pub fn has_blank_edge(&self) -> bool {
        self.flags & (SCANNED | super::scan::NO_BLANK_EDGE) != SCANNED | super::scan::NO_BLANK_EDGE
    }

    /// A hash of what the record says: two records with the same hash, read
    /// with the same options and layout, map to the same row. (A plain line
    /// is hashed as it was read, delimiters included; any other record by its
    /// unescaped bytes, its field bounds and which fields were quoted.) It
    /// stands for the row's fingerprint where both sides of a comparison
    /// were read alike (`muster diff`); rows whose hashes differ are then
    /// compared field by field.
    pub fn content_hash(&self) -> u128 {
        use xxhash_rust::xxh3::{xxh3_128, Xxh3};
        if self.flags & SCANNED != 0 && self.problem.is_none() {
            return xxh3_128(self.as_bytes());
        }
        // The bytes, then how they are cut into fields, then the problem.
        let mut h = Xxh3::new();
        h.update(self.as_bytes());
        for (i, &(start, end)) in self.bounds.iter().enumerate() {
            let quoted = self.is_quoted(i) as u64;
            h.update(&((start as u64) << 33 | (end as u64) << 1 | quoted).to_le_bytes());
        }
        let problem = match self.problem {
            None => 0u64,
            Some(RecordProblem::UnterminatedQuote) => 1,
            Some(RecordProblem::RecordTooLarge { .. }) => 2,
            Some(RecordProblem::FieldTooLarge { field, .. }) => 3 << 32 | field as u64,
            Some(RecordProblem::Json(_)) => 4 << 32,
        };
        h.update(&problem.to_le_bytes());
        h.digest128()
    }

    pub(crate) fn clear(&mut self) {
        self.flags = 0;
        self.len = 0;
        self.bounds.clear();
        self.quoted.clear();
        self.problem = None;
    }

    /// Makes room for at least `more` bytes after `len`.
    #[inline]
    pub(crate) fn reserve_bytes(&mut self, more: usize) {
        let need = self.len + more;
        if self.bytes.len() < need {
            let new_len = need.max(self.bytes.len() * 2).max(256);
            self.bytes.resize(new_len, 0);
        }
    }
}
