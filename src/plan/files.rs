//! `muster diff OLD NEW`: the plan a run of NEW would make right after OLD
//! had been applied to an empty store, computed from the two files alone.

use std::fs::File;
use std::path::Path;

use super::{self as plan, Plan};
use crate::diff::{Fingerprinter, PositionHashes};
use crate::profile::{Date, MappedRow, Profile};
use crate::snapshot::{records_at, FileError, Snapshot};
use crate::store::{NoPrior, Prior};

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
/// which fields of an update changed is read afterwards, from the records
/// of those rows only (each side remembers where its rows start). When both
/// files are read alike ([`Snapshot::reads_like`]: same delimiter, quoting
/// and columns), a row's record hash stands for its fingerprint, so
/// "update" first means "the record changed"; the field comparison then
/// turns the updates with no changed field into `unchanged`.
pub fn diff_files(
    profile: &Profile,
    old: &Path,
    new: &Path,
    today: Date,
) -> Result<DiffOutcome, DiffError> {
    let alike = {
        let o = Snapshot::open(profile, open(old)?).map_err(named(old))?;
        let n = Snapshot::open(profile, open(new)?).map_err(named(new))?;
        o.reads_like(&n)
    };
    diff_files_as(profile, old, new, today, alike)
}

/// [`diff_files`], told whether the files read alike (`false` always gives
/// the right plan, by the normalised fingerprints: the tests compare the
/// two).
pub(crate) fn diff_files_as(
    profile: &Profile,
    old: &Path,
    new: &Path,
    today: Date,
    alike: bool,
) -> Result<DiffOutcome, DiffError> {
    // Record hashes stand for fingerprints when the files read alike: no
    // row is normalised to be compared (BENCHMARKS.md has the figures).
    let fingerprints = if alike {
        plan::Fingerprints::Record
    } else {
        plan::Fingerprints::Normalised
    };
    let read = |path: &Path| -> Result<Plan, DiffError> {
        let file = open(path)?;
        let size = file.metadata().ok().map(|m| m.len());
        let opts = plan::ReadOptions {
            size_hint: size,
            serial: true,
            fingerprints,
            ..plan::ReadOptions::default()
        };
        plan::read_with(profile, file, today, opts, &mut |_| {}).map_err(named(path))
    };
    let started = std::time::Instant::now();
    let ms = || started.elapsed().as_millis() as u64;
    // The two files are read at once, one thread each (faster, with less
    // memory, than each file in pieces on both cores: BENCHMARKS.md).
    let (old_side, new_plan) = std::thread::scope(|s| {
        let old_side = s.spawn(|| {
            read(old).map(|mut old_plan| {
                old_plan.against(profile, &NoPrior);
                tracing::debug!(ms = ms(), "diff: OLD read");
                (old_plan.records, old_plan.into_prior())
            })
        });
        let new_plan = read(new);
        tracing::debug!(ms = ms(), "diff: NEW read");
        let old_side = old_side
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (old_side, new_plan)
    });
    let (old_records, prior) = old_side?;
    let mut new_plan = new_plan?;
    new_plan.against(profile, &prior);
    tracing::debug!(ms = ms(), "diff: compared");
    // Per update row: where its record starts in NEW and in OLD.
    let mut folded = String::new();
    let updates: Vec<(usize, u64, u64)> = new_plan
        .update_rows()
        .filter_map(|i| {
            let key = new_plan.row(i).key?;
            let key = if profile.slots[profile.key_slot].kind == crate::profile::FieldKind::Email {
                folded = key.to_lowercase();
                folded.as_str()
            } else {
                key
            };
            let (_, slot) = prior.get_indexed(key)?;
            Some((i, new_plan.record_start(i), prior.origin(slot)))
        })
        .collect();
    // In chunks, so the field hashes held at once stay few; on this
    // thread (another thread's first allocations cost fresh memory).
    let fingerprinter = Fingerprinter::new(profile);
    for chunk in updates.chunks(2048) {
        let new_at: Vec<u64> = chunk.iter().map(|u| u.1).collect();
        let old_at: Vec<u64> = chunk.iter().map(|u| u.2).collect();
        let new_fields = field_hashes_at(profile, new, &new_at)?;
        let old_fields = field_hashes_at(profile, old, &old_at)?;
        for ((&(i, _, _), o), n) in chunk.iter().zip(&old_fields).zip(&new_fields) {
            if let (Some(o), Some(n)) = (o, n) {
                new_plan.resolve_update(i, fingerprinter.changed_positions(o, n));
            }
        }
    }
    tracing::debug!(
        ms = ms(),
        updates = updates.len(),
        "diff: update fields read"
    );
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

/// The field hashes ([`Fingerprinter::position_hashes`]) of the records of
/// `path` that start at `offsets` (in the same order; `None` for a record
/// that does not map). The offsets are visited in file order.
pub fn field_hashes_at(
    profile: &Profile,
    path: &Path,
    offsets: &[u64],
) -> Result<Vec<Option<PositionHashes>>, DiffError> {
    let mut order: Vec<usize> = (0..offsets.len()).collect();
    order.sort_unstable_by_key(|&i| offsets[i]);
    let sorted: Vec<u64> = order.iter().map(|&i| offsets[i]).collect();
    let fingerprinter = Fingerprinter::new(profile);
    let mut row = MappedRow::new();
    let mut found = vec![None; offsets.len()];
    let file = open(path)?;
    records_at(profile, file, &sorted, |k, rec, layout| {
        if profile.map(rec, layout, &mut row).is_ok() {
            found[order[k]] = Some(fingerprinter.position_hashes(&row));
        }
    })
    .map_err(named(path))?;
    Ok(found)
}
