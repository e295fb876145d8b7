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

use crate::profile::{Cell, EmptyCell, FieldKind, FieldName, MappedRow, Profile};

/// One field's name and value hash, for telling which fields changed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FieldHash {
    pub field: FieldName,
    pub hash: u64,
}

/// The fingerprint of a row and, optionally, its per-field hashes.
#[derive(Clone)]
pub struct Fingerprinter {
    /// Slots in canonical order (by field name).
    order: Vec<usize>,
    names: Vec<FieldName>,
    /// In canonical order: each name and a NUL, as the fingerprint takes it.
    names0: Vec<Vec<u8>>,
    lists: Vec<bool>,
    keep_empty: bool,
    buf: Vec<u8>,
}

impl Fingerprinter {
    pub fn new(profile: &Profile) -> Fingerprinter {
        let mut order: Vec<usize> = (0..profile.slots.len()).collect();
        order.sort_by_key(|&s| profile.slots[s].name);
        let names: Vec<FieldName> = profile.slots.iter().map(|s| s.name).collect();
        let names0 = order
            .iter()
            .map(|&s| {
                let mut n = names[s].as_bytes().to_vec();
                n.push(0);
                n
            })
            .collect();
        Fingerprinter {
            names0,
            names,
            lists: profile
                .slots
                .iter()
                .map(|s| s.kind == FieldKind::List)
                .collect(),
            order,
            keep_empty: profile.empty == EmptyCell::Keep,
            buf: Vec::with_capacity(512),
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
    pub fn fingerprint(&mut self, row: &MappedRow) -> u128 {
        let buf = &mut self.buf;
        buf.clear();
        let text = row.text.as_bytes();
        let sep = row.list_separator as u8;
        for (&slot, name0) in self.order.iter().zip(&self.names0) {
            let value: &[u8] = match row.cells.get(slot) {
                None | Some(Cell::Absent) => continue,
                Some(Cell::Empty) if self.keep_empty => continue,
                Some(Cell::Empty) => b"",
                Some(&Cell::Value { start, end }) => &text[start as usize..end as usize],
            };
            buf.extend_from_slice(name0);
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
        xxh3_128(buf)
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
