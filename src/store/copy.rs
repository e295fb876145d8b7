//! `muster state copy` (SPEC §9): a tenant's state moved from one store
//! to another — its embedded store into the cluster, or back out — and
//! then checked, key by key, to hold the same objects.

use super::{PendingOp, Prior, StateStore, StoreError};
use crate::model::{Action, ObjectKind};

/// Objects written per transaction.
const BATCH: usize = 5000;

/// What a copy moved.
#[derive(Debug, Default)]
pub struct Copied {
    /// Objects per kind: users, groups, segments.
    pub objects: [usize; 3],
    /// Runs of the history.
    pub runs: usize,
}

/// Why a copy was not made, or does not hold what it should.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writes were in flight when the source was last used: the tenant's
    /// next run settles them (recovery asks the LMS) before it is copied.
    #[error("the source's journal holds {0} writes not settled: run the tenant once (its recovery settles them), then copy")]
    Unsettled(usize),
    /// The destination holds state of this tenant already.
    #[error("the destination already holds {0} objects of this tenant: copy into an empty store")]
    NotEmpty(usize),
    /// The check after the copy found objects that differ.
    #[error("the copy differs from the source in {0} objects (for example {1:?})")]
    Differs(usize, String),
}

const KINDS: [ObjectKind; 3] = [ObjectKind::User, ObjectKind::Group, ObjectKind::Segment];

/// The live keys of a store's kind.
fn keys(store: &dyn StateStore, kind: ObjectKind) -> Result<Vec<String>, StoreError> {
    let prior = store.prior(kind)?;
    Ok(prior
        .index()
        .iter()
        .map(|&(_, slot)| prior.key(slot).to_string())
        .collect())
}

/// Copies everything `from` keeps of a tenant into `to`: each kind's
/// objects, record counts, the run history (keeping `keep_runs`), the
/// daemon's next due time, and the operation counter, raised past
/// `from`'s so that no id is used twice; then checks that `to` holds the
/// same objects. `from`'s journal must be settled and `to` empty.
pub fn copy(
    from: &mut dyn StateStore,
    to: &mut dyn StateStore,
    keep_runs: usize,
) -> Result<Copied, CopyError> {
    let unsettled = from.pending()?.len();
    if unsettled > 0 {
        return Err(CopyError::Unsettled(unsettled));
    }
    let held: usize = KINDS
        .iter()
        .map(|&k| to.prior(k).map(|p| p.len()))
        .sum::<Result<usize, _>>()?;
    if held > 0 {
        return Err(CopyError::NotEmpty(held));
    }
    let mut copied = Copied::default();
    for (i, kind) in KINDS.into_iter().enumerate() {
        let keys = keys(from, kind)?;
        for chunk in keys.chunks(BATCH) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let objects = from.get_many(kind, &refs)?;
            let mut ops = Vec::with_capacity(chunk.len());
            for (key, object) in chunk.iter().zip(objects) {
                let Some(object) = object else { continue };
                ops.push(PendingOp {
                    id: to.next_op_id()?,
                    kind,
                    key: key.clone(),
                    action: Action::Create,
                    invite: false,
                    object,
                });
            }
            to.begin(&ops)?;
            to.commit(&ops, &[])?;
            copied.objects[i] += ops.len();
        }
        if let Some(records) = from.last_records(kind)? {
            to.set_last_records(kind, records)?;
        }
    }
    let mut runs = from.runs(usize::MAX)?;
    runs.reverse();
    for record in &runs {
        // The record names its run's id: the new one.
        to.push_run(
            keep_runs,
            &mut |id| match serde_json::from_slice::<serde_json::Value>(record) {
                Ok(serde_json::Value::Object(mut o)) => {
                    o.insert("id".into(), id.into());
                    serde_json::to_vec(&o).unwrap_or_else(|_| record.clone())
                }
                _ => record.clone(),
            },
        )?;
    }
    copied.runs = runs.len();
    if let Some(due) = from.daemon_value("next_due")? {
        to.set_daemon_value("next_due", &due)?;
    }
    let past = from.next_op_id()?;
    to.raise_op_ids(past)?;
    to.sync()?;
    check(from, to)?;
    Ok(copied)
}

/// Whether `to` holds the objects `from` holds, key by key.
pub fn check(from: &dyn StateStore, to: &dyn StateStore) -> Result<(), CopyError> {
    let mut differ = 0;
    let mut example = None;
    for kind in KINDS {
        let mut all = keys(from, kind)?;
        all.extend(keys(to, kind)?);
        all.sort_unstable();
        all.dedup();
        for chunk in all.chunks(BATCH) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let (a, b) = (from.get_many(kind, &refs)?, to.get_many(kind, &refs)?);
            for ((key, a), b) in chunk.iter().zip(a).zip(b) {
                if a != b {
                    differ += 1;
                    example.get_or_insert_with(|| key.clone());
                }
            }
        }
    }
    match example {
        None => Ok(()),
        Some(key) => Err(CopyError::Differs(differ, key)),
    }
}
