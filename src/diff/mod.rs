//! Comparing a snapshot with what was applied last time.
//!
//! The differ needs, per key, only what the last applied state says in a few
//! bytes — its [`PriorEntry`]: the fingerprint and whether the object is
//! active. Which fields of a changed row differ is asked afterwards, for the
//! few rows whose fingerprint moved (see [`Plan::resolve_updates`](crate::plan::Plan::resolve_updates)).

mod fingerprint;

pub use fingerprint::{changed_fields, FieldHash, Fingerprinter};

use ahash::{AHashMap, AHashSet, RandomState};
use hashbrown::HashTable;

/// What the last applied state says about one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PriorEntry {
    pub fingerprint: u128,
    pub active: bool,
}

/// The last applied state of one object kind, as the differ reads it.
///
/// Each key has an index below [`Prior::slots`], so the differ can mark the
/// keys a file names in a plain vector and find the missing ones with a
/// sequential scan instead of a lookup per key.
pub trait Prior {
    fn get(&self, key: &str) -> Option<PriorEntry> {
        self.get_indexed(key).map(|(e, _)| e)
    }
    /// The entry of `key` and its index.
    fn get_indexed(&self, key: &str) -> Option<(PriorEntry, usize)>;
    /// One more than the largest index.
    fn slots(&self) -> usize;
    /// Calls `f` with every key and its index.
    fn for_each_indexed(&self, f: &mut dyn FnMut(usize, &str));
    /// Number of objects.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Calls `f` with every key.
    fn for_each_key(&self, f: &mut dyn FnMut(&str)) {
        self.for_each_indexed(&mut |_, k| f(k));
    }
}

/// Nothing applied yet (`muster check`).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPrior;

impl Prior for NoPrior {
    fn get_indexed(&self, _: &str) -> Option<(PriorEntry, usize)> {
        None
    }
    fn slots(&self) -> usize {
        0
    }
    fn for_each_indexed(&self, _: &mut dyn FnMut(usize, &str)) {}
    fn len(&self) -> usize {
        0
    }
}

/// A prior state held in memory: keys in one string arena, an entry per
/// key, and a hash index holding each key's hash (no allocation per key).
#[derive(Clone, Debug)]
pub struct MemoryPrior {
    arena: String,
    slots: Vec<Slot>,
    index: HashTable<(u64, u32)>,
    hasher: RandomState,
    live: usize,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    start: u32,
    len: u32,
    fingerprint: [u64; 2],
    active: bool,
    live: bool,
}

impl Default for MemoryPrior {
    fn default() -> Self {
        MemoryPrior::with_arena(String::new())
    }
}

impl MemoryPrior {
    pub fn new() -> MemoryPrior {
        MemoryPrior::default()
    }

    /// A prior whose keys will be spans of `arena` ([`MemoryPrior::insert_span`]).
    pub(crate) fn with_arena(arena: String) -> MemoryPrior {
        MemoryPrior {
            arena,
            slots: Vec::new(),
            index: HashTable::new(),
            hasher: RandomState::with_seeds(5, 6, 7, 8),
            live: 0,
        }
    }

    fn key(&self, slot: &Slot) -> &str {
        &self.arena[slot.start as usize..(slot.start + slot.len) as usize]
    }

    fn find(&self, key: &str) -> Option<u32> {
        let h = self.hasher.hash_one(key);
        self.index
            .find(h, |&(eh, i)| {
                eh == h && self.key(&self.slots[i as usize]) == key
            })
            .map(|&(_, i)| i)
    }

    pub fn insert(&mut self, key: &str, entry: PriorEntry) {
        if let Some(i) = self.find(key) {
            self.set(i, entry);
            return;
        }
        let start = self.arena.len() as u32;
        self.arena.push_str(key);
        self.insert_span(start, key.len() as u32, entry);
    }

    /// Inserts the key at `arena[start..start + len]`.
    pub(crate) fn insert_span(&mut self, start: u32, len: u32, entry: PriorEntry) {
        let key = &self.arena[start as usize..(start + len) as usize];
        if let Some(i) = self.find(key) {
            self.set(i, entry);
            return;
        }
        let h = self.hasher.hash_one(key);
        let i = self.slots.len() as u32;
        self.slots.push(Slot {
            start,
            len,
            fingerprint: split(entry.fingerprint),
            active: entry.active,
            live: true,
        });
        self.index.insert_unique(h, (h, i), |&(eh, _)| eh);
        self.live += 1;
    }

    fn set(&mut self, i: u32, entry: PriorEntry) {
        let slot = &mut self.slots[i as usize];
        if !slot.live {
            self.live += 1;
        }
        *slot = Slot {
            fingerprint: split(entry.fingerprint),
            active: entry.active,
            live: true,
            ..*slot
        };
    }

    pub fn reserve(&mut self, n: usize) {
        self.slots.reserve(n);
        self.index.reserve(n, |&(h, _)| h);
    }

    pub fn remove(&mut self, key: &str) {
        if let Some(i) = self.find(key) {
            let slot = &mut self.slots[i as usize];
            if slot.live {
                slot.live = false;
                self.live -= 1;
            }
        }
    }
}

fn split(fp: u128) -> [u64; 2] {
    [fp as u64, (fp >> 64) as u64]
}

impl Prior for MemoryPrior {
    fn get_indexed(&self, key: &str) -> Option<(PriorEntry, usize)> {
        let i = self.find(key)? as usize;
        let slot = &self.slots[i];
        slot.live.then(|| {
            let fingerprint =
                u128::from(slot.fingerprint[0]) | u128::from(slot.fingerprint[1]) << 64;
            (
                PriorEntry {
                    fingerprint,
                    active: slot.active,
                },
                i,
            )
        })
    }
    fn slots(&self) -> usize {
        self.slots.len()
    }
    fn for_each_indexed(&self, f: &mut dyn FnMut(usize, &str)) {
        for (i, slot) in self.slots.iter().enumerate().filter(|(_, s)| s.live) {
            f(i, self.key(slot));
        }
    }
    fn len(&self) -> usize {
        self.live
    }
}

use std::fs::File;
use std::path::Path;

use crate::plan::{self, Plan};
use crate::profile::{Date, MappedRow, Profile};
use crate::reader::Record;
use crate::snapshot::{FileError, Snapshot};

/// A file of a diff that could not be used, with its path.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {error}")]
pub struct DiffError {
    pub path: String,
    pub error: FileError,
}

/// What `muster diff OLD NEW` computes: the plan a run of NEW would make
/// right after OLD had been applied to an empty store with the same
/// `today` (so OLD's rejected, inactive or ended rows never entered it).
/// Returns the plan, OLD's record count (the last accepted file, for the
/// shrink guard) and the number of objects OLD left in the store.
///
/// OLD is read and becomes the prior, then NEW is read and compared with it;
/// which fields of an update changed is read afterwards for those rows only
/// (both files at once, as that pass is light).
pub fn diff_files(
    profile: &Profile,
    old: &Path,
    new: &Path,
    today: Date,
) -> Result<DiffOutcome, DiffError> {
    let read = |path: &Path| -> Result<Plan, DiffError> {
        let file = open(path)?;
        let size = file.metadata().ok().map(|m| m.len());
        plan::read(profile, file, today, size, &mut |_| {}).map_err(named(path))
    };
    // One file after the other: on a 2-core machine the two reads barely
    // overlap (they are bound by hash-table memory access), and reading them
    // at once doubles the peak memory (BENCHMARKS.md).
    let mut old_plan = read(old)?;
    let old_records = old_plan.records;
    old_plan.against(profile, &NoPrior);
    let prior = old_plan.into_prior();
    let mut new_plan = read(new)?;
    new_plan.against(profile, &prior);
    let wanted: AHashSet<String> = new_plan.update_candidates().map(str::to_string).collect();
    if !wanted.is_empty() {
        let (old_fields, new_fields) = std::thread::scope(|s| {
            let old_fields = s.spawn(|| field_hashes_of(profile, old, &wanted));
            let new_fields = field_hashes_of(profile, new, &wanted);
            (
                old_fields
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p)),
                new_fields,
            )
        });
        let (mut old_fields, mut new_fields) = (old_fields?, new_fields?);
        new_plan.resolve_updates(&mut |k| old_fields.remove(k), &mut |k| new_fields.remove(k));
    }
    Ok(DiffOutcome {
        objects: prior.len(),
        plan: new_plan,
        old_records,
    })
}

/// The result of [`diff_files`].
#[derive(Debug)]
pub struct DiffOutcome {
    pub plan: Plan,
    /// Records of OLD: the last accepted file, for the shrink guard.
    pub old_records: u64,
    /// Objects OLD left in the store.
    pub objects: usize,
}

fn open(path: &Path) -> Result<File, DiffError> {
    File::open(path).map_err(|e| DiffError {
        path: path.display().to_string(),
        error: FileError::Read(e.into()),
    })
}

fn named(path: &Path) -> impl Fn(FileError) -> DiffError {
    let path = path.display().to_string();
    move |error| DiffError {
        path: path.clone(),
        error,
    }
}

/// The field hashes of the valid rows of `path` whose key is in `keys`.
/// Rows are mapped only when their key is wanted.
pub fn field_hashes_of(
    profile: &Profile,
    path: &Path,
    keys: &AHashSet<String>,
) -> Result<AHashMap<String, Vec<FieldHash>>, DiffError> {
    let mut snapshot = Snapshot::open(profile, open(path)?).map_err(named(path))?;
    let layout = snapshot.layout().clone();
    let fingerprinter = Fingerprinter::new(profile);
    let mut rec = Record::new();
    let mut row = MappedRow::new();
    let mut found = AHashMap::new();
    while snapshot.read_record(&mut rec).map_err(named(path))? {
        let Some(key) = profile.key_of(&rec, &layout).filter(|k| keys.contains(*k)) else {
            continue;
        };
        let key = key.to_string();
        if profile.map(&rec, &layout, &mut row).is_ok() {
            found.insert(key, fingerprinter.field_hashes(&row));
        }
    }
    Ok(found)
}
