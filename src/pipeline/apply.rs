//! The write pass of a file: its planned writes built from its records
//! and sent in the order SPEC §3 step 4 sets — groups parent first, the
//! rows of the file, the rows the missing rule adds, the users' links,
//! deletions last (groups children first).

use std::fs::File;
use std::path::Path;

use super::build::{planned_write, Built, FirstItem, FirstWave, LinkRow, RowScratch};
use super::links::LinkWave;
use super::writer::{Line, WriteProgress, Writer};
use super::{io, InboxFile, RunError, RunOptions, WritePhase};
use crate::diff::Fingerprinter;
use crate::model::{Action, ObjectKind};
use crate::plan::{self, FileError, Plan};
use crate::profile::Profile;
use crate::results::Outcome;
use crate::sink::{Operation, Sink};
use crate::snapshot::RecordsAt;
use crate::store::{PendingOp, StateStore, StoredObject};

/// The write pass of one file: what it reads and how it batches.
pub(super) struct WritePass<'a> {
    pub(super) profile: &'a Profile,
    /// The file, its snapshot read again for the rows to write.
    pub(super) file: &'a InboxFile<'a>,
    pub(super) batch_size: usize,
    /// What the users' list fields may name (see [`plan::ListRefs`]).
    pub(super) refs: plan::ListRefs<'a>,
    pub(super) opts: &'a RunOptions,
}

/// What the store has for some keys of a file, read once for two steps
/// (the updates settled, then written).
#[derive(Default)]
pub(super) struct StoredCache(ahash::AHashMap<Box<str>, Option<StoredObject>>);

impl StoredCache {
    /// Objects kept at most: memory stays bounded on a day that updates
    /// every row (the others are read again).
    pub(super) const MAX: usize = 1 << 16;

    pub(super) fn keep(&mut self, key: &str, object: Option<StoredObject>) {
        if self.0.len() < Self::MAX {
            self.0.insert(key.into(), object);
        }
    }

    /// What the store has for `key`, if it was kept.
    fn take(&mut self, key: &str) -> Option<Option<StoredObject>> {
        self.0.remove(key)
    }
}

/// What the first wave leaves for later: the writes held back (groups, sent
/// parent first once all are built), the deletions, and the rows whose
/// links go in the second wave.
#[derive(Default)]
struct Deferred {
    held: Vec<PlannedWrite>,
    deletions: Vec<PlannedWrite>,
    links: Vec<LinkRow>,
}

impl WritePass<'_> {
    /// Builds and sends the planned writes in batches, deletions last.
    /// Returns whether the sink was unavailable for some.
    pub(super) fn run(
        &self,
        plan: &Plan,
        lines: &mut [Line],
        store: &mut dyn StateStore,
        sink: &mut dyn Sink,
        stored: &mut StoredCache,
        on_write: &mut dyn FnMut(WriteProgress),
    ) -> Result<bool, RunError> {
        std::thread::scope(|scope| {
            let mut w = Writer::start(scope, store, sink, lines, self.opts, on_write);
            let sent = self.send(plan, stored, &mut w);
            // What was sent is committed, whatever stopped the pass.
            let settled = w.finish();
            sent.and(settled)
        })
    }

    /// The writes in their order (SPEC §3 step 4), sent through `w`.
    fn send(
        &self,
        plan: &Plan,
        stored: &mut StoredCache,
        w: &mut Writer<'_>,
    ) -> Result<(), RunError> {
        let kind = self.profile.object;
        let size = self.batch_size;
        let objects = (0..plan.len())
            .filter(|&i| writes(plan, i) && plan.row(i).action != Action::Delete)
            .count();
        w.phase(WritePhase::Objects, objects);
        let mut later = self.first_wave(plan, stored, w)?;
        if kind == ObjectKind::Group {
            let depth = plan.parent_depths();
            later.held.sort_by_key(|(idx, _, _)| depth[*idx]);
        }
        w.send_all(std::mem::take(&mut later.held), size)?;
        // Rows the missing rule adds, after the file's rows.
        // A protected key, or a deletion still waiting: no write. What the
        // store has for them is read a few thousand keys at a time (one
        // query each for a store behind a network).
        let missing: Vec<usize> = (plan.records as usize..plan.len())
            .filter(|&idx| is_write(plan.row(idx).action))
            .collect();
        let mut batch = Vec::new();
        for chunk in missing.chunks(4096) {
            let keys: Vec<&str> = chunk
                .iter()
                .map(|&idx| plan.row(idx).key.unwrap_or_default())
                .collect();
            let stored = w.store.get_many(kind, &keys)?;
            for ((&idx, key), stored) in chunk.iter().zip(keys).zip(stored) {
                let Some(stored) = stored else {
                    continue;
                };
                let id = self.op_id(w)?;
                let action = plan.row(idx).action;
                let since = plan
                    .delays_deletion(idx)
                    .then(|| stored.since.unwrap_or(plan.today()));
                let object = StoredObject {
                    active: false,
                    since,
                    invite_due: false,
                    ..stored
                };
                let key = key.to_string();
                let (op, pending) = planned_write(id, kind, action, key, Vec::new(), false, object);
                match action {
                    Action::Delete => later.deletions.push((idx, op, pending)),
                    _ => batch.push((idx, op, pending)),
                }
            }
        }
        w.send_all(batch, size)?;
        // The links of the users written (not of those whose write failed):
        // every write of the first wave settled.
        w.settle_all()?;
        tracing::debug!(links = later.links.len(), "run: first wave written");
        later
            .links
            .retain(|l| w.lines[l.row as usize].outcome != Outcome::Failed);
        self.file.unchanged()?;
        let links = LinkWave {
            profile: self.profile,
            path: self.file.local(),
            plan,
            refs: self.refs,
        };
        w.phase(WritePhase::Links, later.links.len());
        links.send(later.links, w, size)?;
        // Deletions last; groups children first.
        w.settle_all()?;
        tracing::debug!("run: links written");
        if kind == ObjectKind::Group {
            children_first(&mut later.deletions, w.store)?;
        }
        w.phase(WritePhase::Deletions, later.deletions.len());
        w.send_all(later.deletions, size)?;
        w.settle_all()?;
        if !self.opts.dry_run {
            w.store.sync_journal()?;
        }
        Ok(())
    }

    /// A fresh operation id (0 on a dry run, which journals nothing).
    fn op_id(&self, w: &mut Writer<'_>) -> Result<u64, RunError> {
        Ok(if self.opts.dry_run {
            0
        } else {
            w.store.next_op_id()?
        })
    }

    /// The first wave: the file's rows read again in order and their
    /// writes built and sent (deletions, groups and links kept for later).
    /// The rows are read and their creates built on a thread of their own
    /// while this one journals and sends them; a row the store has
    /// something for comes raw, built here (the store is this thread's).
    fn first_wave(
        &self,
        plan: &Plan,
        cache: &mut StoredCache,
        w: &mut Writer<'_>,
    ) -> Result<Deferred, RunError> {
        let (profile, path) = (self.profile, self.file.local());
        self.file.unchanged()?;
        let records = plan.records as usize;
        let writes = (0..records).filter(|&i| writes(plan, i)).count();
        if !self.opts.dry_run {
            w.store.reserve_writes(profile.object, writes);
        }
        let file = RecordsAt::open(
            profile,
            File::open(path).map_err(io(path))?,
            sparse(writes, records),
        )
        .map_err(file_error(path))?;
        let layout = file.layout().clone();
        let first = FirstWave {
            profile,
            plan,
            refs: self.refs,
            fingerprinter: Fingerprinter::new(profile),
        };
        let mut later = Deferred::default();
        std::thread::scope(|scope| -> Result<(), RunError> {
            let (tx, built) = crossbeam_channel::bounded(2);
            let (first, layout) = (&first, &layout);
            scope.spawn(move || first.read(file, layout, path, tx));
            let mut scratch = RowScratch::new(profile);
            for chunk in built {
                let chunk = chunk?;
                // What the store has for the chunk's raw rows: kept from
                // when the updates were settled, or read now in one read.
                let key = |idx: usize| first.plan.row(idx).key.unwrap_or_default();
                let mut kept: Vec<Option<Option<StoredObject>>> = chunk
                    .iter()
                    .map(|item| match item {
                        FirstItem::Raw(idx, _) => cache.take(key(*idx)),
                        FirstItem::Built(..) => None,
                    })
                    .collect();
                let missing: Vec<&str> = chunk
                    .iter()
                    .zip(&kept)
                    .filter_map(|(item, kept)| match (item, kept) {
                        (FirstItem::Raw(idx, _), None) => Some(key(*idx)),
                        _ => None,
                    })
                    .collect();
                let mut read = w.store.get_many(profile.object, &missing)?.into_iter();
                for (item, kept) in chunk.into_iter().zip(kept.iter_mut()) {
                    let (idx, built) = match item {
                        FirstItem::Built(idx, built) => (idx, built),
                        FirstItem::Raw(idx, rec) => {
                            let stored = match kept.take() {
                                Some(stored) => stored,
                                None => read.next().flatten(),
                            };
                            (idx, first.build((&rec, layout), &mut scratch, idx, stored))
                        }
                    };
                    self.take(first.plan, idx, built, w, &mut later)?;
                }
            }
            Ok(())
        })?;
        Ok(later)
    }

    /// Takes one built row of the first wave: sent in the current batch,
    /// or kept for later (a deletion, a group, its links).
    fn take(
        &self,
        plan: &Plan,
        idx: usize,
        built: Built,
        w: &mut Writer<'_>,
        later: &mut Deferred,
    ) -> Result<(), RunError> {
        let planned = plan.row(idx);
        let action = planned.action;
        let (fields, invite, object) = match built {
            Built::Changed => return Err(changed(self.file.local(), planned.line)),
            Built::Write {
                fields,
                invite,
                object,
                link,
            } => {
                if let Some(link) = link {
                    later.links.push(link);
                    if w.lines[idx].lms_id().is_none() {
                        w.lines[idx].set_lms_id(object.lms_id.clone());
                    }
                    // An update of links only: nothing for this wave.
                    if action == Action::Update && fields.is_empty() {
                        return Ok(());
                    }
                }
                (fields, invite, object)
            }
        };
        let id = self.op_id(w)?;
        let key = planned.key.unwrap_or_default().to_string();
        let kind = self.profile.object;
        let (mut op, pending) = planned_write(id, kind, action, key, fields, invite, object);
        op.reactivate = plan.reactivates(idx);
        if action == Action::Delete {
            later.deletions.push((idx, op, pending));
        } else if kind == ObjectKind::Group {
            // Groups are written parent first: held until the file is read.
            later.held.push((idx, op, pending));
        } else {
            later.held.push((idx, op, pending));
            if later.held.len() >= self.batch_size {
                w.send(std::mem::take(&mut later.held))?;
            }
        }
        Ok(())
    }
}

/// Whether a planned action is a write (to the sink and the store).
pub(super) fn is_write(a: Action) -> bool {
    matches!(
        a,
        Action::Create | Action::Update | Action::Deactivate | Action::Delete
    )
}

/// Whether plan row `i` writes: to the sink and the store, or to the store
/// alone (a change of fields muster does not own, recorded).
pub(super) fn writes(plan: &Plan, i: usize) -> bool {
    is_write(plan.row(i).action) || plan.records_only(i)
}

/// A file that could not be read again for its writes, as the run's error.
pub(super) fn file_error(path: &Path) -> impl Fn(FileError) -> RunError + '_ {
    move |e| io(path)(std::io::Error::other(e.to_string()))
}

/// A record read again for its write that is not what was planned from:
/// the file's snapshot changed under the run, which it cannot (the run
/// reads a copy no one else writes). Nothing more of the file is sent.
pub(super) fn changed(path: &Path, line: u64) -> RunError {
    io(path)(std::io::Error::other(format!(
        "line {line} is not what was planned from; the file changed under the run, which stops here (what was sent is committed; the next run plans the file again)"
    )))
}

/// Whether `wanted` records of a file of `records` are few enough to seek
/// to each rather than read the file through (a day 2 writes about 2 % of
/// its rows; a first import, all).
pub(super) fn sparse(wanted: usize, records: usize) -> bool {
    wanted * 16 < records
}

/// One planned write: its plan row, what the sink gets, what the journal keeps.
pub(super) type PlannedWrite = (usize, Operation, PendingOp);

/// Orders group deletions children first: deepest in the hierarchy the
/// store holds (what was applied) first.
pub(super) fn children_first(
    deletions: &mut Vec<PlannedWrite>,
    store: &dyn StateStore,
) -> Result<(), RunError> {
    let mut depths = Vec::with_capacity(deletions.len());
    for (_, op, _) in deletions.iter() {
        let mut depth = 0usize;
        let mut seen = std::collections::HashSet::new();
        let mut at = store
            .get(ObjectKind::Group, &op.key)?
            .and_then(|o| o.parent);
        while let Some(parent) = at {
            if !seen.insert(parent.clone()) {
                break; // a cycle in what was applied: stop counting
            }
            depth += 1;
            at = store
                .get(ObjectKind::Group, &parent)?
                .and_then(|o| o.parent);
        }
        depths.push(depth);
    }
    let mut order: Vec<(usize, PlannedWrite)> =
        depths.into_iter().zip(deletions.drain(..)).collect();
    order.sort_by_key(|(depth, _)| std::cmp::Reverse(*depth));
    deletions.extend(order.into_iter().map(|(_, w)| w));
    Ok(())
}
