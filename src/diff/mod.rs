//! Comparing a snapshot with what was applied last time.
//!
//! The differ needs, per key, only what the last applied state says in a few
//! bytes — its [`PriorEntry`]: the fingerprint and whether the object is
//! active. Which fields of a changed row differ is asked afterwards, for the
//! few rows whose fingerprint moved (see [`Plan::resolve_updates`](crate::plan::Plan::resolve_updates)).

mod fingerprint;

pub use fingerprint::{changed_fields, FieldHash, Fingerprinter};

use ahash::AHashMap;

/// What the last applied state says about one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PriorEntry {
    pub fingerprint: u128,
    pub active: bool,
}

/// The last applied state of one object kind, as the differ reads it.
pub trait Prior {
    fn get(&self, key: &str) -> Option<PriorEntry>;
    /// Number of objects.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Calls `f` with every key (for keys missing from a full snapshot).
    fn for_each_key(&self, f: &mut dyn FnMut(&str));
}

/// Nothing applied yet (`muster check`).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPrior;

impl Prior for NoPrior {
    fn get(&self, _: &str) -> Option<PriorEntry> {
        None
    }
    fn len(&self) -> usize {
        0
    }
    fn for_each_key(&self, _: &mut dyn FnMut(&str)) {}
}

/// A prior state held in memory.
#[derive(Clone, Debug, Default)]
pub struct MemoryPrior {
    map: AHashMap<Box<str>, PriorEntry>,
}

impl MemoryPrior {
    pub fn new() -> MemoryPrior {
        MemoryPrior::default()
    }

    pub fn insert(&mut self, key: &str, entry: PriorEntry) {
        self.map.insert(key.into(), entry);
    }

    pub fn remove(&mut self, key: &str) {
        self.map.remove(key);
    }

    pub fn reserve(&mut self, n: usize) {
        self.map.reserve(n);
    }
}

impl Prior for MemoryPrior {
    fn get(&self, key: &str) -> Option<PriorEntry> {
        self.map.get(key).copied()
    }
    fn len(&self) -> usize {
        self.map.len()
    }
    fn for_each_key(&self, f: &mut dyn FnMut(&str)) {
        for k in self.map.keys() {
            f(k);
        }
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
/// Returns the plan and OLD's record count (the last accepted file, for the
/// shrink guard).
pub fn diff_files(
    profile: &Profile,
    old: &Path,
    new: &Path,
    today: Date,
) -> Result<(Plan, u64, MemoryPrior), DiffError> {
    let open = |p: &Path| {
        File::open(p).map_err(|e| DiffError {
            path: p.display().to_string(),
            error: FileError::Read(e.into()),
        })
    };
    let named = |p: &Path| {
        let path = p.display().to_string();
        move |error| DiffError { path, error }
    };
    let old_plan =
        plan::build(profile, open(old)?, today, &NoPrior, &mut |_| {}).map_err(named(old))?;
    let mut prior = MemoryPrior::new();
    prior.reserve(old_plan.len());
    old_plan.apply_to(&mut prior);
    let old_records = old_plan.records;
    drop(old_plan);
    let mut new_plan =
        plan::build(profile, open(new)?, today, &prior, &mut |_| {}).map_err(named(new))?;
    // Which fields changed: read OLD again for the rows whose fingerprint moved.
    let wanted: ahash::AHashSet<String> =
        new_plan.update_candidates().map(str::to_string).collect();
    let mut old_fields: AHashMap<String, Vec<FieldHash>> = AHashMap::new();
    if !wanted.is_empty() {
        let mut snapshot = Snapshot::open(profile, open(old)?).map_err(named(old))?;
        let layout = snapshot.layout().clone();
        let fingerprinter = Fingerprinter::new(profile);
        let mut rec = Record::new();
        let mut row = MappedRow::new();
        while snapshot.read_record(&mut rec).map_err(named(old))? {
            let Some(key) = profile
                .key_of(&rec, &layout)
                .filter(|k| wanted.contains(*k))
            else {
                continue;
            };
            let key = key.to_string();
            if profile.map(&rec, &layout, &mut row).is_ok() {
                old_fields.insert(key, fingerprinter.field_hashes(&row));
            }
        }
    }
    new_plan.resolve_updates(&mut |k| old_fields.remove(k));
    Ok((new_plan, old_records, prior))
}
