//! Building a file's writes from its records: the operation the sink gets
//! and the object the journal keeps, per planned row.

use std::fs::File;
use std::path::Path;

use super::apply::{changed, file_error, writes};
use super::RunError;
use crate::diff::Fingerprinter;
use crate::model::{Action, Field, FieldKind, FieldName, ObjectKind};
use crate::plan::{self, Plan};
use crate::profile::{Cell, Layout, MappedRow, Profile};
use crate::reader::Record;
use crate::sink::{Operation, Value};
use crate::snapshot::RecordsAt;
use crate::store::FieldHash;
use crate::store::{PendingOp, StoredObject};

/// The fields of a row as an operation carries them: every field the file
/// states that `wanted` says yes to.
pub(super) fn fields_of(
    profile: &Profile,
    row: &MappedRow,
    wanted: impl Fn(Field) -> bool,
) -> Vec<(FieldName, Value)> {
    let mut out = Vec::new();
    for (slot, spec) in profile.slots.iter().enumerate() {
        if !wanted(spec.name) {
            continue;
        }
        let value = match row.cell(slot) {
            Cell::Absent => continue,
            Cell::Empty if profile.empty == crate::profile::EmptyCell::Keep => continue,
            Cell::Empty if spec.kind == FieldKind::List => Value::List(Vec::new()),
            Cell::Empty => Value::Text(String::new()),
            Cell::Value { .. } if spec.kind == FieldKind::List => {
                Value::List(row.items(slot).map(str::to_string).collect())
            }
            Cell::Value { .. } => Value::Text(row.get(slot).unwrap_or_default().to_string()),
        };
        out.push((spec.name, value));
    }
    out
}

/// One planned write: what the sink gets, and what the journal keeps.
pub(super) fn planned_write(
    id: u64,
    kind: ObjectKind,
    action: Action,
    key: String,
    fields: Vec<(FieldName, Value)>,
    invite: bool,
    object: StoredObject,
) -> (Operation, PendingOp) {
    let op = Operation {
        op: id,
        kind,
        action,
        key: key.clone(),
        fields,
        invite,
        reactivate: false,
        lms_id: object.lms_id.clone(),
        ids: Vec::new(),
        fresh: action == Action::Create,
    };
    (
        op,
        PendingOp {
            id,
            kind,
            key,
            action,
            invite,
            object,
        },
    )
}

/// Removes from an operation's fields the references the plan found
/// unresolved: a manager or parent id, and group or segment names the
/// tenant's files do not have.
pub(super) fn drop_unresolved(
    fields: &mut Vec<(FieldName, Value)>,
    refs: plan::ListRefs<'_>,
    reference_unresolved: bool,
) {
    fields.retain(|(field, _)| {
        !(reference_unresolved && matches!(field, Field::ManagerId | Field::ParentId))
    });
    for (field, value) in fields.iter_mut() {
        let known = match field {
            Field::Groups | Field::AdminGroups => refs.groups,
            Field::Segments => refs.segments,
            _ => None,
        };
        if let (Some(known), Value::List(items)) = (known, value) {
            items.retain(|i| known.get(i).is_some());
        }
    }
}

/// What mapping a record read again reuses from record to record.
pub(super) struct RowScratch {
    pub(super) row: MappedRow,
    fingerprinter: Fingerprinter,
}

impl RowScratch {
    pub(super) fn new(profile: &Profile) -> RowScratch {
        RowScratch {
            row: MappedRow::new(),
            fingerprinter: Fingerprinter::new(profile),
        }
    }

    /// Maps `rec`, the record of plan row `idx` read again, into `row`;
    /// `false` if it is not what the row was planned from (it no longer
    /// maps, or its fingerprint moved): a file rewritten in place under
    /// the run, whose rows are then never sent with another version's
    /// values.
    pub(super) fn map_as_planned(
        &mut self,
        profile: &Profile,
        (rec, layout): (&Record, &Layout),
        plan: &Plan,
        idx: usize,
    ) -> bool {
        profile.map(rec, layout, &mut self.row).is_ok()
            && self.fingerprinter.fingerprint(&self.row) == plan.fingerprint(idx)
    }
}

/// Rows of the first wave read and built at a time by [`FirstWave::read`].
pub(super) const FIRST_CHUNK: usize = 1024;

/// A row of the first wave as its builder's thread hands it over.
pub(super) enum FirstItem {
    /// A create, built.
    Built(usize, Built),
    /// A row the store has something for: its record, built by the
    /// thread that has the store.
    Raw(usize, Record),
}

/// Rows of the first wave, read and built at a time.
pub(super) type FirstChunk = Result<Vec<FirstItem>, RunError>;

/// A row of the first wave, built from its record and what the store has
/// for it.
pub(super) enum Built {
    /// The record is not what its row was planned from: the file was
    /// rewritten in place under the run (see [`RowScratch::map_as_planned`]).
    Changed,
    Write {
        fields: Vec<(FieldName, Value)>,
        invite: bool,
        object: StoredObject,
        /// Its links, sent in the second wave.
        link: Option<LinkRow>,
    },
}

/// What building a first-wave row reads.
pub(super) struct FirstWave<'a> {
    pub(super) profile: &'a Profile,
    pub(super) plan: &'a Plan,
    pub(super) refs: plan::ListRefs<'a>,
    pub(super) fingerprinter: Fingerprinter,
}

impl FirstWave<'_> {
    /// Reads the write rows of `file` in order and builds the creates, a
    /// chunk at a time, into `out`; other rows go raw. Stops at a read
    /// error (sent) or when the receiver is gone.
    pub(super) fn read(
        &self,
        mut file: RecordsAt<File>,
        layout: &Layout,
        path: &Path,
        out: crossbeam_channel::Sender<FirstChunk>,
    ) {
        let plan = self.plan;
        let mut rec = Record::new();
        let mut scratch = RowScratch::new(self.profile);
        let mut chunk = Vec::with_capacity(FIRST_CHUNK);
        for idx in 0..plan.records as usize {
            let action = plan.row(idx).action;
            if !writes(plan, idx) {
                continue;
            }
            match file.read_at(plan.record_start(idx), &mut rec) {
                Ok(true) => {}
                Ok(false) => {
                    let _ = out.send(Err(changed(path, plan.row(idx).line)));
                    return;
                }
                Err(e) => {
                    let _ = out.send(Err(file_error(path)(e)));
                    return;
                }
            }
            chunk.push(if action == Action::Create {
                FirstItem::Built(idx, self.build((&rec, layout), &mut scratch, idx, None))
            } else {
                FirstItem::Raw(idx, rec.clone())
            });
            if chunk.len() == FIRST_CHUNK {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(FIRST_CHUNK));
                if out.send(Ok(full)).is_err() {
                    return;
                }
            }
        }
        let _ = out.send(Ok(chunk));
    }

    /// Builds the write of plan row `idx` from its record; `stored` is
    /// what the store has for its key (none for a create).
    pub(super) fn build(
        &self,
        read: (&Record, &Layout),
        scratch: &mut RowScratch,
        idx: usize,
        stored: Option<StoredObject>,
    ) -> Built {
        let (profile, plan) = (self.profile, self.plan);
        if !scratch.map_as_planned(profile, read, plan, idx) {
            return Built::Changed;
        }
        let row = &scratch.row;
        let invite = plan.invites(idx);
        let object = self.object_after(row, idx, invite, stored.as_ref());
        self.with_links(idx, self.fields(row, idx), invite, object, stored.as_ref())
    }

    /// The fields row `idx` sends: all for a create, what changed for an
    /// update (settled with the plan: `Plan::settle_updates`), none for a
    /// deactivation or a deletion; never a link that resolves to nothing.
    fn fields(&self, row: &MappedRow, idx: usize) -> Vec<(FieldName, Value)> {
        let (profile, plan) = (self.profile, self.plan);
        let mut fields = match plan.row(idx).action {
            Action::Create => fields_of(profile, row, |_| true),
            Action::Update => {
                let changed = plan.changed_fields(idx).unwrap_or_default();
                fields_of(profile, row, |field| changed.contains(&field))
            }
            _ => Vec::new(),
        };
        drop_unresolved(&mut fields, self.refs, plan.reference_unresolved(idx));
        fields
    }

    /// What the store keeps for row `idx` once its write is acknowledged.
    fn object_after(
        &self,
        row: &MappedRow,
        idx: usize,
        invite: bool,
        stored: Option<&StoredObject>,
    ) -> StoredObject {
        let (profile, plan) = (self.profile, self.plan);
        let parent = match (profile.object, profile.reference_slot) {
            (ObjectKind::Group, Some(slot)) if !plan.reference_unresolved(idx) => {
                row.get(slot).map(str::to_string)
            }
            _ => None,
        };
        let action = plan.row(idx).action;
        // A deletion delayed counts from the first day; an invitation
        // waits for its date, and is never sent to someone who left.
        let since = plan
            .delays_deletion(idx)
            .then(|| stored.and_then(|s| s.since).unwrap_or(plan.today()));
        let invite_due = match action {
            Action::Create => plan.invite_later(idx),
            Action::Update | Action::Unchanged => stored.is_some_and(|s| s.invite_due) && !invite,
            _ => false,
        };
        StoredObject {
            fingerprint: plan.fingerprint(idx),
            active: plan.active_after(idx),
            invited: invite || stored.is_some_and(|s| s.invited),
            lms_id: stored.and_then(|s| s.lms_id.clone()),
            parent,
            fields: self.fingerprinter.field_hashes(row),
            since,
            invite_due,
        }
    }

    /// The write, a user's manager and memberships taken out of it for the
    /// second wave, once every user of the file exists (SPEC §3 step 4).
    fn with_links(
        &self,
        idx: usize,
        mut fields: Vec<(FieldName, Value)>,
        invite: bool,
        object: StoredObject,
        stored: Option<&StoredObject>,
    ) -> Built {
        let action = self.plan.row(idx).action;
        let mut links = match (self.profile.object, action) {
            (ObjectKind::User, Action::Create | Action::Update) => take_links(&mut fields),
            _ => Vec::new(),
        };
        if action == Action::Create {
            // A new user with no manager or membership has nothing to link
            // (an update that empties one does: it removes the link).
            links.retain(|(_, v)| !v.is_empty());
        }
        if links.is_empty() {
            return Built::Write {
                fields,
                invite,
                object,
                link: None,
            };
        }
        // Until the links are acknowledged the store says they are not
        // applied: after a crash between the waves, the next run sees the
        // row changed and sends them again.
        let link = LinkRow {
            row: idx as u32,
            links: LINK_FIELDS
                .iter()
                .enumerate()
                .filter(|(_, f)| links.iter().any(|(field, _)| field == *f))
                .fold(0u8, |m, (k, _)| m | 1 << k),
            invited: object.invited,
            invite_due: object.invite_due,
            // A user whose links were never written (created by a run a
            // crash cut short between the waves) has none to undo: its
            // memberships are added without asking the LMS for them.
            fresh: action == Action::Create
                || stored.is_some_and(|s| !s.fields.iter().any(|f| f.field.is_link())),
        };
        let first = StoredObject {
            fingerprint: stored.map_or(0, |s| s.fingerprint),
            fields: without_links(&object.fields, stored.map(|s| &s.fields[..])),
            ..object
        };
        Built::Write {
            fields,
            invite,
            object: first,
            link: Some(link),
        }
    }
}

/// The fields that link a user to other objects: written in the second wave.
pub(super) const LINK_FIELDS: [Field; 4] = [
    Field::ManagerId,
    Field::Groups,
    Field::AdminGroups,
    Field::Segments,
];

/// A row whose links go in the second wave: which (bits of
/// [`LINK_FIELDS`]) and whether the user is invited (kept in the store).
pub(super) struct LinkRow {
    pub(super) row: u32,
    pub(super) links: u8,
    pub(super) invited: bool,
    pub(super) invite_due: bool,
    /// Created in this run, or never linked: no links to undo.
    pub(super) fresh: bool,
}

/// Moves the link fields out of `fields`.
pub(super) fn take_links(fields: &mut Vec<(FieldName, Value)>) -> Vec<(FieldName, Value)> {
    let (links, rest) = std::mem::take(fields)
        .into_iter()
        .partition(|(field, _)| field.is_link());
    *fields = rest;
    links
}

/// Field hashes as they stand after the first wave: `new` for the other
/// fields, `old` (what the store had) for the links.
pub(super) fn without_links(new: &[FieldHash], old: Option<&[FieldHash]>) -> Vec<FieldHash> {
    let is_link = |f: &FieldHash| f.field.is_link();
    let mut out: Vec<FieldHash> = new.iter().filter(|f| !is_link(f)).cloned().collect();
    out.extend(
        old.unwrap_or_default()
            .iter()
            .filter(|f| is_link(f))
            .cloned(),
    );
    out.sort();
    out
}
