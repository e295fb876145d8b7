//! The second wave of a users file: each user's manager and memberships,
//! once every user of the file exists (SPEC §3 step 4).

use std::fs::File;
use std::path::Path;

use super::apply::{changed, file_error, sparse, PlannedWrite};
use super::build::{drop_unresolved, fields_of, planned_write, LinkRow, RowScratch, LINK_FIELDS};
use super::writer::Writer;
use super::{io, RunError};
use crate::diff::Fingerprinter;
use crate::model::{Action, FieldName};
use crate::plan::{self, Plan};
use crate::profile::Profile;
use crate::reader::Record;
use crate::sink::Value;
use crate::snapshot::RecordsAt;
use crate::store::StoredObject;

/// The second wave of a file: its rows' links, built from the file read
/// once more (only the link rows are mapped), sent in batches.
pub(super) struct LinkWave<'a> {
    pub(super) profile: &'a Profile,
    pub(super) path: &'a Path,
    pub(super) plan: &'a Plan,
    pub(super) refs: plan::ListRefs<'a>,
}

impl LinkWave<'_> {
    pub(super) fn send(
        &self,
        rows: Vec<LinkRow>,
        w: &mut Writer<'_>,
        size: usize,
    ) -> Result<(), RunError> {
        if rows.is_empty() {
            return Ok(());
        }
        let opts = w.opts;
        let plan = self.plan;
        // The links are built from the file on a thread of their own, a
        // chunk at a time, while this one journals and sends them.
        std::thread::scope(|scope| {
            let (tx, built) = crossbeam_channel::bounded(2);
            let rows = &rows;
            scope.spawn(move || self.build(rows, tx));
            let mut batch: Vec<PlannedWrite> = Vec::new();
            for chunk in built {
                for (link, fields, mut object) in chunk? {
                    let i = link.row as usize;
                    // Known once the first wave was acknowledged.
                    object.lms_id = w.lines[i].lms_id().cloned();
                    let id = if opts.dry_run {
                        0
                    } else {
                        w.store.next_op_id()?
                    };
                    let key = plan.row(i).key.unwrap_or_default().to_string();
                    let kind = self.profile.object;
                    let (mut op, pending) =
                        planned_write(id, kind, Action::Update, key, fields, false, object);
                    op.fresh = link.fresh;
                    batch.push((i, op, pending));
                    if batch.len() >= size {
                        w.send(std::mem::take(&mut batch))?;
                    }
                }
            }
            w.send(batch)
        })
    }

    /// Reads the rows' records and builds their links' fields and objects
    /// (without the LMS id), in chunks, into `out`. Stops at a read error
    /// (sent) or when the receiver is gone.
    pub(super) fn build<'r>(
        &self,
        rows: &'r [LinkRow],
        out: crossbeam_channel::Sender<LinkChunk<'r>>,
    ) {
        let (profile, path, plan) = (self.profile, self.path, self.plan);
        let read_err = file_error(path);
        let seek = sparse(rows.len(), plan.records as usize);
        let file = File::open(path)
            .map_err(io(path))
            .and_then(|f| RecordsAt::open(profile, f, seek).map_err(&read_err));
        let mut file = match file {
            Ok(file) => file,
            Err(e) => {
                let _ = out.send(Err(e));
                return;
            }
        };
        let layout = file.layout().clone();
        let fingerprinter = Fingerprinter::new(profile);
        let (mut rec, mut scratch) = (Record::new(), RowScratch::new(profile));
        for chunk in rows.chunks(LINK_CHUNK) {
            let mut built = Vec::with_capacity(chunk.len());
            for link in chunk {
                let i = link.row as usize;
                match file.read_at(plan.record_start(i), &mut rec) {
                    Ok(true) => {}
                    Ok(false) => {
                        let _ = out.send(Err(changed(path, plan.row(i).line)));
                        return;
                    }
                    Err(e) => {
                        let _ = out.send(Err(read_err(e)));
                        return;
                    }
                }
                if !scratch.map_as_planned(profile, (&rec, &layout), plan, i) {
                    let _ = out.send(Err(changed(path, plan.row(i).line)));
                    return;
                }
                let row = &scratch.row;
                let wanted = |field| {
                    LINK_FIELDS
                        .iter()
                        .position(|f| *f == field)
                        .is_some_and(|k| link.links & 1 << k != 0)
                };
                let mut fields = fields_of(profile, row, wanted);
                drop_unresolved(&mut fields, self.refs, plan.reference_unresolved(i));
                let object = StoredObject {
                    fingerprint: plan.fingerprint(i),
                    active: plan.active_after(i),
                    invited: link.invited,
                    lms_id: None,
                    parent: None,
                    fields: fingerprinter.field_hashes(row),
                    since: None,
                    invite_due: link.invite_due,
                };
                built.push((link, fields, object));
            }
            if out.send(Ok(built)).is_err() {
                return;
            }
        }
    }
}

/// Link rows built at a time by [`LinkWave::build`].
pub(super) const LINK_CHUNK: usize = 1024;

/// Links built from the file: the row, the link fields, the object after.
pub(super) type LinkChunk<'r> =
    Result<Vec<(&'r LinkRow, Vec<(FieldName, Value)>, StoredObject)>, RunError>;
