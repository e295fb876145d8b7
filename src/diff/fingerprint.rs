//! Stable fingerprints of normalised rows.
//!
//! A row's fingerprint is xxh3-128 over its fields in a canonical order
//! (by field name), each as `name, 0, value, 0` — neither holds a NUL, as a
//! text file never does — where a list's value is the wrapping sum of its
//! items' xxh3-64 hashes (8 bytes, little-endian), so a new order alone is
//! not a change. One hash over the row costs a fraction of a hash per
//! field. A field's own hash, to tell which fields changed, is xxh3-64 of
//! its normalised value (a list's: the same sum). xxh3 is a fixed
//! specification: fingerprints written by one process, or one version of
//! muster, mean the same to the next. (`ahash` is not stable across
//! processes and is kept for in-memory maps.)
//!
//! Which fields take part: every column the file has, except empty cells of
//! a profile whose `empty = "keep"` (the file says nothing about those).
//! An absent column says nothing either.

use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

use crate::model::{FieldKind, FieldName};
use crate::profile::{Cell, EmptyCell, MappedRow, Profile};
use crate::sink::Value;
use crate::store::FieldHash;

/// A name and its NUL are copied as this many bytes when they fit.
const NAME_PAD: usize = 32;
/// A value this short is copied as this many bytes when the row's text
/// holds them.
const VALUE_PAD: usize = 16;

/// The fingerprint of a row and, optionally, its per-field hashes.
#[derive(Clone)]
pub struct Fingerprinter {
    /// Slots in canonical order (by field name).
    order: Vec<usize>,
    names: Vec<FieldName>,
    /// In canonical order: each name and a NUL, as the fingerprint takes
    /// it, padded with zeros to at least [`NAME_PAD`] bytes.
    names0: Vec<(Vec<u8>, usize)>,
    lists: Vec<bool>,
    keep_empty: bool,
    buf: Vec<u8>,
}

impl Fingerprinter {
    pub fn new(profile: &Profile) -> Fingerprinter {
        Fingerprinter::of_slots(
            profile.slots.iter().map(|s| s.name).collect(),
            profile
                .slots
                .iter()
                .map(|s| s.kind == FieldKind::List)
                .collect(),
            profile.empty == EmptyCell::Keep,
        )
    }

    /// A fingerprinter for slots of these names, lists where `lists` says.
    fn of_slots(names: Vec<FieldName>, lists: Vec<bool>, keep_empty: bool) -> Fingerprinter {
        let mut order: Vec<usize> = (0..names.len()).collect();
        order.sort_by_key(|&s| names[s]);
        let names0: Vec<(Vec<u8>, usize)> = order
            .iter()
            .map(|&s| {
                let mut n = names[s].as_str().as_bytes().to_vec();
                n.push(0);
                let len = n.len();
                n.resize(len.max(NAME_PAD), 0);
                (n, len)
            })
            .collect();
        Fingerprinter {
            names0,
            names,
            lists,
            order,
            keep_empty,
            buf: Vec::new(),
        }
    }

    /// The hash of one slot's value, or `None` when the row says nothing
    /// about it.
    #[inline]
    pub fn field_hash(&self, row: &MappedRow, slot: usize) -> Option<u64> {
        match row.cell(slot) {
            Cell::Absent => None,
            Cell::Empty if self.keep_empty => None,
            Cell::Empty => Some(xxh3_64(b"")),
            Cell::Value { .. } => {
                let v = row.get(slot).unwrap_or_default();
                Some(if self.lists[slot] {
                    row.items(slot)
                        .fold(0u64, |acc, item| acc.wrapping_add(xxh3_64(item.as_bytes())))
                } else {
                    xxh3_64(v.as_bytes())
                })
            }
        }
    }

    /// The row's fingerprint.
    ///
    /// The input is laid out in a buffer longer than it can be, so that
    /// names and short values go in as copies of a fixed size (a vector
    /// move, where `extend_from_slice` calls `memcpy` and checks capacity
    /// for each): the padding a copy writes past its end is overwritten by
    /// the next, and what ends up past the input is not hashed. Same bytes
    /// as `Fingerprinter::fingerprint_simply` (a property test holds
    /// them equal).
    pub fn fingerprint(&mut self, row: &MappedRow) -> u128 {
        let text = row.text.as_bytes();
        let sep = row.list_separator as u8;
        // Room for a field: its name, its value or an 8-byte sum, a NUL,
        // then the widest fixed copy's overhang. (The buffer keeps its size
        // from row to row: it grows in the first rows only.)
        const PAD: usize = if NAME_PAD > VALUE_PAD {
            NAME_PAD
        } else {
            VALUE_PAD
        };
        let buf = &mut self.buf;
        let mut at = 0;
        for (&slot, (name0, name_len)) in self.order.iter().zip(&self.names0) {
            let (start, end) = match row.cells.get(slot) {
                None | Some(Cell::Absent) => continue,
                Some(Cell::Empty) if self.keep_empty => continue,
                Some(Cell::Empty) => (0, 0),
                Some(&Cell::Value { start, end }) => (start as usize, end as usize),
            };
            let len = end - start;
            if at + name_len + len + 9 + PAD > buf.len() {
                buf.resize(at + name_len + len + 9 + PAD, 0);
            }
            if *name_len <= NAME_PAD {
                buf[at..at + NAME_PAD].copy_from_slice(&name0[..NAME_PAD]);
            } else {
                buf[at..at + name_len].copy_from_slice(&name0[..*name_len]);
            }
            at += name_len;
            if self.lists[slot] && len > 0 {
                let value = &text[start..end];
                let mut sum = 0u64;
                let mut from = 0;
                for i in memchr::memchr_iter(sep, value) {
                    sum = sum.wrapping_add(xxh3_64(&value[from..i]));
                    from = i + 1;
                }
                sum = sum.wrapping_add(xxh3_64(&value[from..]));
                buf[at..at + 8].copy_from_slice(&sum.to_le_bytes());
                at += 8;
            } else {
                if len <= VALUE_PAD && start + VALUE_PAD <= text.len() {
                    buf[at..at + VALUE_PAD].copy_from_slice(&text[start..start + VALUE_PAD]);
                } else {
                    buf[at..at + len].copy_from_slice(&text[start..end]);
                }
                at += len;
            }
            buf[at] = 0;
            at += 1;
        }
        xxh3_128(&buf[..at])
    }

    /// The fingerprint as its definition reads (the module's note): the
    /// oracle [`Fingerprinter::fingerprint`] is tested against.
    #[cfg(test)]
    fn fingerprint_simply(&self, row: &MappedRow) -> u128 {
        let mut buf = Vec::new();
        let text = row.text.as_bytes();
        let sep = row.list_separator as u8;
        for (&slot, (name0, name_len)) in self.order.iter().zip(&self.names0) {
            let value: &[u8] = match row.cells.get(slot) {
                None | Some(Cell::Absent) => continue,
                Some(Cell::Empty) if self.keep_empty => continue,
                Some(Cell::Empty) => b"",
                Some(&Cell::Value { start, end }) => &text[start as usize..end as usize],
            };
            buf.extend_from_slice(&name0[..*name_len]);
            if self.lists[slot] && !value.is_empty() {
                let sum = value
                    .split(|&b| b == sep)
                    .fold(0u64, |acc, item| acc.wrapping_add(xxh3_64(item)));
                buf.extend_from_slice(&sum.to_le_bytes());
            } else {
                buf.extend_from_slice(value);
            }
            buf.push(0);
        }
        xxh3_128(&buf)
    }

    /// The fingerprint and field hashes of a row whose values are known
    /// only as written (the JSONL outbox: `muster state rebuild`): a slot
    /// `values` does not name counts as an empty cell, as a create leaves
    /// empty fields out. Same bytes as [`Fingerprinter::fingerprint`] of
    /// the row those values came from.
    pub fn of_values(&self, values: &[(FieldName, Value)]) -> (u128, Vec<FieldHash>) {
        let mut buf = Vec::new();
        let mut hashes = Vec::new();
        for (&slot, (name0, name_len)) in self.order.iter().zip(&self.names0) {
            let name = self.names[slot];
            let value = values
                .iter()
                .rev()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v)
                .filter(|v| !v.is_empty());
            if value.is_none() && self.keep_empty {
                continue;
            }
            buf.extend_from_slice(&name0[..*name_len]);
            let hash = match value {
                None => xxh3_64(b""),
                Some(Value::List(items)) => {
                    let sum = items
                        .iter()
                        .fold(0u64, |acc, i| acc.wrapping_add(xxh3_64(i.as_bytes())));
                    buf.extend_from_slice(&sum.to_le_bytes());
                    sum
                }
                Some(Value::Text(t)) => {
                    buf.extend_from_slice(t.as_bytes());
                    xxh3_64(t.as_bytes())
                }
            };
            buf.push(0);
            hashes.push(FieldHash { field: name, hash });
        }
        (xxh3_128(&buf), hashes)
    }

    /// Per-field hashes, sorted by field name.
    pub fn field_hashes(&self, row: &MappedRow) -> Vec<FieldHash> {
        self.order
            .iter()
            .filter_map(|&slot| {
                self.field_hash(row, slot).map(|hash| FieldHash {
                    field: self.names[slot],
                    hash,
                })
            })
            .collect()
    }
}

/// The names of the fields that differ between two sorted hash lists. A
/// field only the new side has is a change; one only the old side has is
/// not (the new file says nothing about it: an absent column, or an empty
/// cell the profile keeps).
pub fn changed_fields(old: &[FieldHash], new: &[FieldHash]) -> Vec<FieldName> {
    changed_by(old, new, |f| (f.field, f.hash))
        .map(|n| n.field)
        .collect()
}

/// The entries of `new` that differ from `old` (both sorted by their
/// field), by the rule of [`changed_fields`].
fn changed_by<'a, T, K: Ord>(
    old: &'a [T],
    new: &'a [T],
    key: impl Fn(&'a T) -> (K, u64),
) -> impl Iterator<Item = &'a T> {
    let mut changed = Vec::new();
    let (mut i, mut j) = (0, 0);
    while j < new.len() {
        let (nk, nh) = key(&new[j]);
        match old.get(i).map(&key) {
            Some((ok, oh)) if ok == nk => {
                if oh != nh {
                    changed.push(&new[j]);
                }
                i += 1;
                j += 1;
            }
            Some((ok, _)) if ok < nk => i += 1,
            _ => {
                changed.push(&new[j]);
                j += 1;
            }
        }
    }
    changed.into_iter()
}

/// Per-field hashes as (position among the fields in name order, hash).
pub type PositionHashes = Vec<(u16, u64)>;

impl Fingerprinter {
    /// [`Fingerprinter::field_hashes`] without a `String` per field, for
    /// comparing two rows of the same profile.
    pub fn position_hashes(&self, row: &MappedRow) -> PositionHashes {
        self.order
            .iter()
            .enumerate()
            .filter_map(|(pos, &slot)| self.field_hash(row, slot).map(|h| (pos as u16, h)))
            .collect()
    }

    /// The names of the fields that differ between two
    /// [`Fingerprinter::position_hashes`], as [`changed_fields`] names them.
    pub fn changed_positions(&self, old: &[(u16, u64)], new: &[(u16, u64)]) -> Vec<FieldName> {
        changed_by(old, new, |&(pos, hash)| (pos, hash))
            .map(|&(pos, _)| self.names[self.order[pos as usize]])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;
    use crate::snapshot::Snapshot;
    use proptest::prelude::*;

    /// A fingerprinter for fields of these names.
    fn fingerprinter(names: &[String], lists: &[bool], keep_empty: bool) -> Fingerprinter {
        let names: Vec<FieldName> = names.iter().map(|n| crate::model::field_name(n)).collect();
        Fingerprinter::of_slots(names, lists.to_vec(), keep_empty)
    }

    proptest! {
        /// The fast layout hashes the bytes the definition names: names
        /// short and long (past the 32-byte copy), values short and long,
        /// at the text's end or not, shared between cells, lists with
        /// empty items, absent and empty cells, one fingerprinter over
        /// many rows (its buffer reused).
        #[test]
        fn the_fast_fingerprint_is_the_defined_one(
            fields in proptest::collection::vec(("[a-z_]{1,40}", any::<bool>()), 1..20),
            keep_empty in any::<bool>(),
            rows in proptest::collection::vec(
                ("[a-z;, é]{0,120}", proptest::collection::vec((0u8..4, any::<u16>(), any::<u16>()), 0..22)),
                1..6,
            ),
        ) {
            let names: Vec<String> = fields.iter().map(|f| f.0.clone()).collect();
            let lists: Vec<bool> = fields.iter().map(|f| f.1).collect();
            let mut f = fingerprinter(&names, &lists, keep_empty);
            for (text, cells) in rows {
                let mut row = MappedRow::new();
                row.list_separator = ';';
                row.cells = cells
                    .iter()
                    .map(|&(kind, a, b)| {
                        // Ranges on char boundaries of the text.
                        let bounds: Vec<usize> = (0..=text.len()).filter(|&i| text.is_char_boundary(i)).collect();
                        let (a, b) = (bounds[a as usize % bounds.len()], bounds[b as usize % bounds.len()]);
                        match kind {
                            0 => Cell::Absent,
                            1 => Cell::Empty,
                            _ => Cell::Value { start: a.min(b) as u32, end: a.max(b) as u32 },
                        }
                    })
                    .collect();
                row.text = text;
                prop_assert_eq!(f.fingerprint(&row), f.fingerprint_simply(&row));
            }
        }
    }

    /// Fingerprints are stored: a change of their definition must bump the
    /// store's FORMAT. This pins the value of one row.
    #[test]
    fn the_fingerprint_of_a_row_is_pinned() {
        let profile = Profile::preset("winningtemp-users").unwrap();
        let text = "Unique ID;Firstname;Lastname;Username;Email;Phone;Title;Birthday;EmployedSince;EmployedUntil;Gender;Group member;Group admin;Segment;Status;Language\n\
                    u1;Ann;Lee;ann;Ann@X.example;;Boss;1980-01-02;2020-03-04;;F;g2, g1;;s1;Active;en\n\
                    u1;Ann;Lee;ann;ann@x.example;;Boss;1980-01-02;2020-03-04;;F;g1,g2;;s1;active;en\n";
        let mut snapshot = Snapshot::open(&profile, text.as_bytes()).unwrap();
        let layout = snapshot.layout().clone();
        let mut rec = crate::reader::Record::new();
        let mut row = crate::profile::MappedRow::new();
        let mut f = Fingerprinter::new(&profile);
        let mut fps = Vec::new();
        while snapshot.read_record(&mut rec).unwrap() {
            profile.map(&rec, &layout, &mut row).unwrap();
            fps.push(f.fingerprint(&row));
        }
        // Normalisation: e-mail case, list order and spaces, status case.
        assert_eq!(fps[0], fps[1]);
        assert_eq!(
            fps[0], 0x0b13_ad40_220d_1bb2_a24a_0266_7b17_682b,
            "{:#x}",
            fps[0]
        );
    }
}
