//! `muster state rebuild` (SPEC §6): a tenant's state store made anew from
//! what its sink holds — the LMS's users and groups by `externalId`, or the
//! JSONL outbox replayed — under the tenant's lock, so no run overlaps it.
//! After it, a run of the last applied file creates nothing the LMS
//! already has.
//!
//! The new store is written beside the old one (`<store>.rebuilding`),
//! then the old store's files are moved aside (`<store>.replaced-<UTC
//! timestamp>`, nothing deleted) and the new ones put in their place, the
//! database last: a crash before that leaves no store, which a run refuses
//! while `processed/` shows applied files, and the rebuild can be run again.

use std::path::{Path, PathBuf};

use super::{lock, RunError, Tenant};
use crate::diff::Fingerprinter;
use crate::model::{Action, FieldName, ObjectKind};
use crate::profile::Profile;
use crate::sink::{Inventory, Value};
use crate::store::{PendingOp, RedbStore, StateStore, StoreError, StoreErrorKind, StoredObject};

/// Rebuilds `tenant`'s state store from its sink; the old store's files,
/// if any, are moved aside.
pub fn rebuild_tenant(tenant: &Tenant) -> Result<Rebuilt, RunError> {
    if tenant.cluster.is_some() {
        return Err(RunError::StatePath {
            path: "[cluster]".into(),
            error: std::io::Error::other(
                "`muster state rebuild` makes an embedded store; a [cluster] tenant's is not rebuilt yet",
            ),
        });
    }
    let _lock = lock(tenant)?;
    let job = tenant.job();
    let mut sink = crate::sink::open(&tenant.sink, job.has(ObjectKind::Group))?;
    let inventory = sink.inventory()?;
    // One profile per kind: the first file's of that kind.
    let mut profiles = Vec::new();
    for (_, profile) in job.files {
        if !profiles
            .iter()
            .any(|p: &&Profile| p.object == profile.object)
        {
            profiles.push(profile);
        }
    }
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    Ok(rebuild(&tenant.state, inventory, &profiles, &stamp)?)
}

/// What a rebuild made.
#[derive(Debug)]
pub struct Rebuilt {
    /// Objects written to the new store, per kind (users, groups, segments).
    pub objects: [usize; 3],
    /// Objects the sink holds of a kind the tenant has no file for (not kept).
    pub skipped: usize,
    /// Whether the store knows the objects' fields (the JSONL outbox) or
    /// only that they exist (SCIM): then the next run sends each object's
    /// fields once, as an update.
    pub fields_known: bool,
    /// Where the old store's files went, if there was one.
    pub replaced: Option<PathBuf>,
}

/// Objects committed to the new store at a time.
const CHUNK: usize = 1 << 16;

/// Writes the store at `path` anew from `inventory`: each object the sink
/// holds, of a kind one of `profiles` reads, with its fingerprint and
/// field hashes when the sink knows its fields. Operation ids continue
/// above the highest the sink has seen. `stamp` names the old store's
/// files once moved aside.
fn rebuild(
    path: &Path,
    inventory: Inventory,
    profiles: &[&Profile],
    stamp: &str,
) -> Result<Rebuilt, StoreError> {
    let io = |what: String, source| StoreError::new(path, StoreErrorKind::Io { what, source });
    let building = PathBuf::from(format!("{}.rebuilding", path.display()));
    for leftover in RedbStore::files(&building) {
        std::fs::remove_file(&leftover).map_err(|e| io(format!("{}", leftover.display()), e))?;
    }
    let fingerprinters: Vec<(&Profile, Fingerprinter)> = profiles
        .iter()
        .map(|p| (*p, Fingerprinter::new(p)))
        .collect();
    let mut rebuilt = Rebuilt {
        objects: [0; 3],
        skipped: 0,
        fields_known: true,
        replaced: None,
    };
    {
        let mut store = RedbStore::open(&building)?;
        store.continue_ids_after(inventory.last_op)?;
        let mut ops = Vec::with_capacity(CHUNK);
        for found in inventory.objects {
            let Some((profile, fp)) = fingerprinters.iter().find(|(p, _)| p.object == found.kind)
            else {
                rebuilt.skipped += 1;
                continue;
            };
            let (fingerprint, fields) = match &found.fields {
                Some(values) if found.active => fp.of_values(values),
                Some(values) => fp.of_values(&deactivated(profile, values)),
                None => {
                    rebuilt.fields_known = false;
                    (0, Vec::new())
                }
            };
            rebuilt.objects[found.kind as usize] += 1;
            ops.push(PendingOp {
                id: store.next_op_id()?,
                kind: found.kind,
                key: found.key,
                action: Action::Create,
                invite: false,
                object: StoredObject {
                    fingerprint,
                    active: found.active,
                    invited: found.invited,
                    lms_id: found.lms_id,
                    parent: found.parent,
                    fields,
                    // What the LMS cannot tell: an invitation still due
                    // is not sent, and a delayed deletion counts anew.
                    since: None,
                    invite_due: false,
                },
            });
            if ops.len() == CHUNK {
                store.commit(&ops, &[])?;
                ops.clear();
            }
        }
        store.commit(&ops, &[])?;
        store.checkpoint()?;
    }
    let old = RedbStore::files(path);
    if !old.is_empty() {
        let aside = PathBuf::from(format!("{}.replaced-{stamp}", path.display()));
        for file in &old {
            let suffix = &file.display().to_string()[path.display().to_string().len()..];
            let to = PathBuf::from(format!("{}{suffix}", aside.display()));
            std::fs::rename(file, &to)
                .map_err(|e| io(format!("moving {} aside", file.display()), e))?;
        }
        rebuilt.replaced = Some(aside);
    }
    // The database last: until it is in place, there is no store.
    let mut new = RedbStore::files(&building);
    new.rotate_left(1);
    for file in &new {
        let suffix = &file.display().to_string()[building.display().to_string().len()..];
        let to = PathBuf::from(format!("{}{suffix}", path.display()));
        std::fs::rename(file, &to)
            .map_err(|e| io(format!("putting {} in place", to.display()), e))?;
    }
    Ok(rebuilt)
}

/// The values of an object the outbox last deactivated, as the row that
/// deactivated it most likely read: its status `inactive`, unless the
/// profile has an end date and the object one (then the end date did it,
/// and the row's status was as written). A wrong guess costs one update
/// on the next run, never a create.
fn deactivated(profile: &Profile, values: &[(FieldName, Value)]) -> Vec<(FieldName, Value)> {
    let mut values = values.to_vec();
    let has = |slot: Option<usize>| {
        slot.map(|s| profile.slots[s].name)
            .filter(|name| values.iter().any(|(n, v)| n == name && !v.is_empty()))
    };
    if has(profile.end_date_slot).is_some() {
        return values;
    }
    if let Some(slot) = profile.status_slot {
        let name = profile.slots[slot].name;
        values.retain(|(n, _)| *n != name);
        values.push((name, Value::Text("inactive".into())));
    }
    values
}
