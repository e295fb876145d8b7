//! What the store hands the differ: per key of one object kind, the
//! fingerprint of the row last applied and whether the object is active
//! ([`PriorEntry`]), behind the [`Prior`] trait; [`MemoryPrior`] holds it in
//! memory, and its digest is how the embedded store keeps it beside its
//! tables so that a run loads it in one read.

use std::sync::OnceLock;

use crate::index::{hash_run, key_hash, prefetch, prefetch_text, sort_index};
use crate::profile::Date;

/// What the last applied state says about one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PriorEntry {
    pub fingerprint: u128,
    pub active: bool,
    /// Deactivated for a deletion `delete_after_days` delays: since when
    /// the object is missing (ended, inactive).
    pub since: Option<Date>,
    /// A user created without an invitation, whose `invite_from` date is
    /// yet to come.
    pub invite_due: bool,
}

impl PriorEntry {
    /// An entry without lifecycle marks.
    pub fn new(fingerprint: u128, active: bool) -> PriorEntry {
        PriorEntry {
            fingerprint,
            active,
            since: None,
            invite_due: false,
        }
    }
}

/// The last applied state of one object kind, as the differ reads it: an
/// index of `(key_hash(key), slot)` for every key, sorted, and per slot its
/// key and entry.
pub trait Prior: Sync {
    /// Every key once, as `(key_hash(key), slot)`, sorted.
    fn index(&self) -> &[(u64, u32)];
    fn key(&self, slot: u32) -> &str;
    fn entry(&self, slot: u32) -> PriorEntry;
    /// One more than the largest slot.
    fn slots(&self) -> usize;
    /// A hint that `slot`'s entry will be read soon (`index::prefetch`); with
    /// `key`, its key too (call it first without, some iterations earlier,
    /// as finding the key reads the entry).
    fn prefetch(&self, _slot: u32, _key: bool) {}

    /// The entry of `key` and its slot.
    fn get_indexed(&self, key: &str) -> Option<(PriorEntry, u32)> {
        hash_run(self.index(), key_hash(key))
            .iter()
            .find(|&&(_, s)| self.key(s) == key)
            .map(|&(_, s)| (self.entry(s), s))
    }
    fn get(&self, key: &str) -> Option<PriorEntry> {
        self.get_indexed(key).map(|(e, _)| e)
    }
    /// Number of objects.
    fn len(&self) -> usize {
        self.index().len()
    }
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Nothing applied yet (`muster check`).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPrior;

impl Prior for NoPrior {
    fn index(&self) -> &[(u64, u32)] {
        &[]
    }
    fn key(&self, _: u32) -> &str {
        ""
    }
    fn entry(&self, _: u32) -> PriorEntry {
        PriorEntry::new(0, false)
    }
    fn slots(&self) -> usize {
        0
    }
}

/// A prior state held in memory: keys in one string arena and a slot per
/// insert or removal. The sorted index is built on first use after a
/// change; a later slot of a key wins over an earlier one, and a removal is
/// a slot that is not live.
#[derive(Debug, Default)]
pub struct MemoryPrior {
    arena: String,
    slots: Vec<Slot>,
    index: OnceLock<Vec<(u64, u32)>>,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    start: u32,
    len: u32,
    fingerprint: [u64; 2],
    /// [`PriorEntry::since`], packed ([`Date::pack`]); 0 for none.
    since: u32,
    active: bool,
    live: bool,
    invite_due: bool,
}

impl Clone for MemoryPrior {
    fn clone(&self) -> Self {
        MemoryPrior {
            arena: self.arena.clone(),
            slots: self.slots.clone(),
            index: self
                .index
                .get()
                .cloned()
                .map(OnceLock::from)
                .unwrap_or_default(),
        }
    }
}

impl MemoryPrior {
    pub fn new() -> MemoryPrior {
        MemoryPrior::default()
    }

    fn slot_key(&self, slot: &Slot) -> &str {
        &self.arena[slot.start as usize..(slot.start + slot.len) as usize]
    }

    /// Sets `key`'s entry (a later insert of a key replaces the earlier).
    pub fn insert(&mut self, key: &str, entry: PriorEntry) {
        let start = self.arena.len() as u32;
        self.arena.push_str(key);
        self.push(start, key.len() as u32, entry, true);
    }

    pub fn remove(&mut self, key: &str) {
        let start = self.arena.len() as u32;
        self.arena.push_str(key);
        let gone = PriorEntry::new(0, false);
        self.push(start, key.len() as u32, gone, false);
    }

    fn push(&mut self, start: u32, len: u32, entry: PriorEntry, live: bool) {
        self.index.take();
        self.slots.push(Slot {
            start,
            len,
            fingerprint: split(entry.fingerprint),
            since: entry.since.map_or(0, Date::pack),
            active: entry.active,
            live,
            invite_due: entry.invite_due,
        });
    }

    pub fn reserve(&mut self, n: usize) {
        self.slots.reserve(n);
    }

    fn build_index(&self) -> Vec<(u64, u32)> {
        self.merged(&[], 0)
    }

    /// `old` — the index of the slots before `from` — with the slots from
    /// `from` on merged in: within a run of equal hashes, a later slot of a
    /// key replaces an earlier one (an old one included), and a removal
    /// leaves its key out. The new slots alone are hashed and sorted.
    fn merged(&self, old: &[(u64, u32)], from: usize) -> Vec<(u64, u32)> {
        // Which new slots are removals, as bits: after the sort the slots
        // come in hash order, and these 128 KB (for 1M) stay in cache where
        // the slots themselves (32 MB) would be a cache miss each.
        let mut dead = vec![0u64; (self.slots.len() - from).div_ceil(64)];
        let mut new: Vec<(u64, u32)> = Vec::with_capacity(self.slots.len() - from);
        for (i, s) in self.slots[from..].iter().enumerate() {
            new.push((key_hash(self.slot_key(s)), (from + i) as u32));
            if !s.live {
                dead[i / 64] |= 1 << (i % 64);
            }
        }
        sort_index(&mut new);
        let live = |s: u32| {
            let i = s as usize - from;
            dead[i / 64] & 1 << (i % 64) == 0
        };
        let key = |s: u32| self.slot_key(&self.slots[s as usize]);
        let mut index = Vec::with_capacity(old.len() + new.len());
        let (mut i, mut j) = (0, 0);
        while i < old.len() || j < new.len() {
            let h = match (old.get(i), new.get(j)) {
                (Some(a), Some(b)) => a.0.min(b.0),
                (Some(a), None) => a.0,
                (None, Some(b)) => b.0,
                (None, None) => unreachable!(),
            };
            let a_end = i + old[i..].iter().take_while(|e| e.0 == h).count();
            let b_end = j + new[j..].iter().take_while(|e| e.0 == h).count();
            let (olds, news) = (&old[i..a_end], &new[j..b_end]);
            // An old slot stays unless a new one names its key; a new one
            // goes in unless a later one names its key, or it removes.
            for &(h, s) in olds {
                if !news.iter().any(|&(_, t)| key(t) == key(s)) {
                    index.push((h, s));
                }
            }
            for (n, &(h, s)) in news.iter().enumerate() {
                let later = news[n + 1..].iter().any(|&(_, t)| key(t) == key(s));
                if !later && live(s) {
                    index.push((h, s));
                }
            }
            (i, j) = (a_end, b_end);
        }
        index
    }
}

/// Changes to a [`MemoryPrior`] whose index is merged, not sorted again,
/// when the update is finished ([`MemoryPrior::begin_update`]).
pub struct Update<'p> {
    prior: &'p mut MemoryPrior,
    old: Vec<(u64, u32)>,
    from: usize,
}

impl Update<'_> {
    /// Sets `key`'s entry, or removes it (`None`).
    pub fn set(&mut self, key: &str, entry: Option<PriorEntry>) {
        match entry {
            Some(entry) => self.prior.insert(key, entry),
            None => self.prior.remove(key),
        }
    }

    /// Merges the changes into the index. (An update not finished leaves
    /// the index to be sorted again on next use.)
    pub fn finish(self) {
        let index = if self.from == self.prior.slots.len() {
            self.old
        } else {
            self.prior.merged(&self.old, self.from)
        };
        self.prior.index = OnceLock::from(index);
    }
}

/// The first bytes of a [`MemoryPrior::digest`].
const DIGEST_MAGIC: &[u8; 4] = b"MPD2";
/// Those of a digest without lifecycle marks (read, no longer written).
const DIGEST_MAGIC_1: &[u8; 4] = b"MPD1";

impl MemoryPrior {
    /// Replaces or removes (`None`) the entries of `changes`' keys, a later
    /// change of a key winning, and keeps the index: the changes' keys are
    /// sorted on their own and merged into it, where an insert or removal
    /// would have the whole index sorted again on next use.
    pub fn update<'k>(&mut self, changes: impl IntoIterator<Item = (&'k str, Option<PriorEntry>)>) {
        let mut update = self.begin_update();
        for (key, entry) in changes {
            update.set(key, entry);
        }
        update.finish();
    }

    /// [`MemoryPrior::update`], a change at a time ([`Update::set`]); the
    /// index is merged by [`Update::finish`].
    pub fn begin_update(&mut self) -> Update<'_> {
        let old = match self.index.take() {
            Some(index) => index,
            None => self.build_index(),
        };
        let from = self.slots.len();
        Update {
            prior: self,
            old,
            from,
        }
    }

    /// The live entries as one buffer, in index order and, within a run of
    /// equal hashes, in key order — what [`MemoryPrior::from_digest`] reads
    /// back with its index ready. The state store keeps one per object
    /// kind beside its tables, so a run loads its prior in one read.
    ///
    /// Layout (little-endian): `MPD2`, the entry count `n` and the key
    /// bytes `k` (u32 each), `n` fingerprints (16 bytes), `n` key ends in
    /// the keys (u32), `n` flags (1: active, 2: invitation due, 4: a
    /// `since` date), the `k` bytes of the keys, one after the other, then
    /// the `since` date of each entry flagged 4, in order ([`Date::pack`],
    /// u32). (`MPD1` is the same without flags 2 and 4.)
    pub fn digest(&self) -> Vec<u8> {
        let mut order: Vec<(u64, u32)> = self.index().to_vec();
        let key = |s: u32| self.slot_key(&self.slots[s as usize]);
        let mut run = 0;
        while run < order.len() {
            let h = order[run].0;
            let end = run + order[run..].iter().take_while(|e| e.0 == h).count();
            order[run..end].sort_unstable_by(|a, b| key(a.1).cmp(key(b.1)));
            run = end;
        }
        let n = order.len();
        let mut since = Vec::new();
        // The fixed-size parts at their places, the keys appended.
        let mut out = vec![0; 12 + n * 21];
        out.reserve(self.arena.len().min(n * 64));
        out[..4].copy_from_slice(DIGEST_MAGIC);
        out[4..8].copy_from_slice(&(n as u32).to_le_bytes());
        // One pass, each slot and key fetched a few entries ahead: in hash
        // order they are a cache miss each.
        for (i, &(_, s)) in order.iter().enumerate() {
            if let Some(&(_, ahead)) = order.get(i + 16) {
                self.prefetch(ahead, false);
            }
            if let Some(&(_, ahead)) = order.get(i + 8) {
                self.prefetch(ahead, true);
            }
            let slot = &self.slots[s as usize];
            let at = 12 + i * 16;
            out[at..at + 8].copy_from_slice(&slot.fingerprint[0].to_le_bytes());
            out[at + 8..at + 16].copy_from_slice(&slot.fingerprint[1].to_le_bytes());
            out[12 + n * 20 + i] = u8::from(slot.active)
                | u8::from(slot.invite_due) << 1
                | u8::from(slot.since != 0) << 2;
            if slot.since != 0 {
                since.push(slot.since);
            }
            out.extend_from_slice(self.slot_key(slot).as_bytes());
            let end = (out.len() - 12 - n * 21) as u32;
            let at = 12 + n * 16 + i * 4;
            out[at..at + 4].copy_from_slice(&end.to_le_bytes());
        }
        let keys = (out.len() - 12 - n * 21) as u32;
        out[8..12].copy_from_slice(&keys.to_le_bytes());
        for s in since {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out
    }

    /// Reads a [`MemoryPrior::digest`] back; `None` if it is not one. The
    /// keys are hashed again, and the index taken as it comes only if they
    /// come in (hash, key) order; otherwise it is sorted on first use.
    pub fn from_digest(bytes: &[u8]) -> Option<MemoryPrior> {
        let (rest, marks) = match bytes.strip_prefix(DIGEST_MAGIC) {
            Some(rest) => (rest, true),
            None => (bytes.strip_prefix(DIGEST_MAGIC_1)?, false),
        };
        let u32_at = |b: &[u8], i: usize| -> Option<u32> {
            Some(u32::from_le_bytes(
                b.get(i * 4..i * 4 + 4)?.try_into().ok()?,
            ))
        };
        let n = u32_at(rest, 0)? as usize;
        let keys = u32_at(rest, 1)? as usize;
        let rest = &rest[8..];
        let (fps, rest) = rest.split_at_checked(n.checked_mul(16)?)?;
        let (ends, rest) = rest.split_at_checked(n * 4)?;
        let (flags, rest) = rest.split_at_checked(n)?;
        let flags_of = |i: usize| if marks { flags[i] } else { flags[i] & 1 };
        let dated = (0..n).filter(|&i| flags_of(i) & 4 != 0).count();
        let (rest, sinces) = rest.split_at_checked(keys)?;
        if sinces.len() != dated * 4 {
            return None;
        }
        let mut sinces = sinces.chunks_exact(4);
        let arena = simdutf8::basic::from_utf8(rest).ok()?;
        let mut slots = Vec::with_capacity(n);
        let mut index = Vec::with_capacity(n);
        let mut sorted = true;
        let (mut start, mut last) = (0u32, None::<(u64, &str)>);
        for i in 0..n {
            let end = u32_at(ends, i)?;
            if end < start || !arena.is_char_boundary(end as usize) {
                return None;
            }
            let fp = &fps[i * 16..i * 16 + 16];
            slots.push(Slot {
                start,
                len: end - start,
                fingerprint: [
                    u64::from_le_bytes(fp[..8].try_into().ok()?),
                    u64::from_le_bytes(fp[8..].try_into().ok()?),
                ],
                since: match flags_of(i) & 4 {
                    0 => 0,
                    _ => u32::from_le_bytes(sinces.next()?.try_into().ok()?),
                },
                active: flags_of(i) & 1 != 0,
                live: true,
                invite_due: flags_of(i) & 2 != 0,
            });
            let key = &arena[start as usize..end as usize];
            let h = key_hash(key);
            sorted &= last.is_none_or(|l| l < (h, key));
            index.push((h, i as u32));
            (start, last) = (end, Some((h, key)));
        }
        if start as usize != arena.len() {
            return None;
        }
        Some(MemoryPrior {
            arena: arena.to_string(),
            slots,
            index: if sorted {
                OnceLock::from(index)
            } else {
                OnceLock::new()
            },
        })
    }
}

fn split(fp: u128) -> [u64; 2] {
    [fp as u64, (fp >> 64) as u64]
}

impl Prior for MemoryPrior {
    fn index(&self) -> &[(u64, u32)] {
        self.index.get_or_init(|| self.build_index())
    }
    fn key(&self, slot: u32) -> &str {
        self.slot_key(&self.slots[slot as usize])
    }
    fn slots(&self) -> usize {
        self.slots.len()
    }
    fn prefetch(&self, slot: u32, key: bool) {
        if let Some(s) = self.slots.get(slot as usize) {
            match key {
                false => prefetch(s),
                true => prefetch_text(&self.arena, s.start, s.len),
            }
        }
    }
    fn entry(&self, slot: u32) -> PriorEntry {
        let s = &self.slots[slot as usize];
        PriorEntry {
            fingerprint: u128::from(s.fingerprint[0]) | u128::from(s.fingerprint[1]) << 64,
            active: s.active,
            since: match s.since {
                0 => None,
                packed => Date::unpack(packed),
            },
            invite_due: s.invite_due,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{MemoryPrior, Prior, PriorEntry};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// A batch of changes: a key (of few, so that they repeat; the unit
    /// tests' `key_hash` keeps 3 bits, so runs of equal hashes are long)
    /// and its new entry, or a removal.
    fn changes() -> impl Strategy<Value = Vec<(String, Option<(u8, bool)>)>> {
        proptest::collection::vec(
            (
                "[a-d]{0,2}|é[a-z]",
                proptest::option::weighted(0.8, (any::<u8>(), any::<bool>())),
            ),
            0..40,
        )
    }

    /// An entry; some carry the lifecycle marks, so that the digest's
    /// `since` table and flags are walked too.
    fn entry((fp, active): (u8, bool)) -> PriorEntry {
        PriorEntry {
            fingerprint: u128::from(fp) << 60 | u128::from(fp),
            active,
            since: fp
                .is_multiple_of(5)
                .then(|| crate::profile::Date::new(2026, 1 + fp % 12, 1 + fp % 28).unwrap()),
            invite_due: fp % 3 == 1,
        }
    }

    /// The prior holds what the model holds, and its index is sorted.
    fn same(
        prior: &MemoryPrior,
        model: &BTreeMap<String, (u8, bool)>,
    ) -> Result<(), TestCaseError> {
        prop_assert_eq!(prior.len(), model.len());
        for (key, &e) in model {
            prop_assert_eq!(prior.get(key), Some(entry(e)), "{}", key);
        }
        prop_assert!(prior.index().windows(2).all(|w| w[0] < w[1]));
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Batches of changes merged into the index ([`MemoryPrior::update`])
        /// against a map; each state through a digest and back too.
        #[test]
        fn update_and_digest_match_a_map(batches in proptest::collection::vec(changes(), 1..5)) {
            let mut prior = MemoryPrior::new();
            let mut model = BTreeMap::new();
            for batch in &batches {
                for (key, change) in batch {
                    match change {
                        Some(e) => model.insert(key.clone(), *e),
                        None => model.remove(key),
                    };
                }
                prior.update(batch.iter().map(|(k, c)| (k.as_str(), c.map(entry))));
                same(&prior, &model)?;
                let back = MemoryPrior::from_digest(&prior.digest()).expect("a digest");
                // The index comes ready, not sorted again.
                prop_assert!(back.index.get().is_some());
                same(&back, &model)?;
                prop_assert_eq!(back.digest(), prior.digest());
                prior = back;
            }
        }

        /// A damaged digest is refused or read as some prior, never a panic.
        #[test]
        fn a_damaged_digest_does_not_panic(batch in changes(), at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<bool>()) {
            let mut prior = MemoryPrior::new();
            prior.update(batch.iter().map(|(k, c)| (k.as_str(), c.map(entry))));
            let mut digest = prior.digest();
            let i = at.index(digest.len());
            if cut {
                digest.truncate(i);
            } else {
                digest[i] = byte;
            }
            // What is read is a consistent prior: each key found by its
            // hash.
            if let Some(p) = MemoryPrior::from_digest(&digest) {
                prop_assert!(p.index().windows(2).all(|w| w[0] < w[1]));
                for &(h, s) in p.index() {
                    prop_assert_eq!(h, crate::index::key_hash(p.key(s)));
                    prop_assert!(p.get(p.key(s)).is_some());
                }
            }
        }
    }
}
