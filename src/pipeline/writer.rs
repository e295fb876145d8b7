//! The writer: journal → durable → sink → commit, for batches of planned
//! writes, each line's outcome recorded as the sink answers.

use super::apply::PlannedWrite;
use super::{RunError, RunOptions, WritePhase};
use crate::model::Code;
use crate::model::ObjectKind;
use crate::results::Outcome;
use crate::sink::{Ack, KnownId, Operation, Sink};
use crate::store::{JournalSync, PendingOp, StateStore};

/// Per plan row: what happened. 16 bytes a row: the rest, which few rows
/// have, is boxed (a million rows' lines are then 16 MB of fresh memory,
/// not 56).
#[derive(Clone, Debug)]
pub(super) struct Line {
    pub(super) outcome: Outcome,
    pub(super) more: Option<Box<LineMore>>,
}

/// What a [`Line`] keeps apart.
#[derive(Clone, Debug, Default)]
pub(super) struct LineMore {
    /// The sink's code and message for a write it failed.
    pub(super) code: Option<Code>,
    pub(super) message: Option<String>,
    /// The LMS's id for the object, when the sink's acknowledgement gave
    /// one: the row's second-wave write carries it on to the store.
    pub(super) lms_id: Option<String>,
}

const _: () = assert!(std::mem::size_of::<Line>() == 16);

impl Line {
    pub(super) fn new(outcome: Outcome) -> Line {
        Line {
            outcome,
            more: None,
        }
    }

    /// A write the sink failed: its code and message.
    pub(super) fn failed(code: Code, message: String) -> Line {
        Line {
            outcome: Outcome::Failed,
            more: Some(Box::new(LineMore {
                code: Some(code),
                message: Some(message),
                lms_id: None,
            })),
        }
    }

    pub(super) fn code(&self) -> Option<Code> {
        self.more.as_ref().and_then(|m| m.code)
    }

    pub(super) fn message(&self) -> Option<&str> {
        self.more.as_ref().and_then(|m| m.message.as_deref())
    }

    pub(super) fn lms_id(&self) -> Option<&String> {
        self.more.as_ref().and_then(|m| m.lms_id.as_ref())
    }

    pub(super) fn set_lms_id(&mut self, lms_id: Option<String>) {
        if lms_id.is_some() || self.more.is_some() {
            self.more.get_or_insert_default().lms_id = lms_id;
        }
    }
}

/// How far the writes of a file have come, after each batch the sink
/// answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteProgress {
    pub phase: WritePhase,
    /// Writes of this phase answered (applied or failed).
    pub done: u64,
    /// Writes this phase plans (an estimate: a few may turn out to need none).
    pub total: u64,
    /// Writes sent and not answered yet.
    pub in_flight: u64,
}

/// A batch the sink answered: its acknowledgements, and its operations.
pub(super) type Applied = (Vec<Ack>, Vec<Operation>);

/// Journals, sends and commits batches of writes, in a pipeline of three
/// threads: this one builds and journals batch k+2 while a second makes
/// batch k+1's journal records durable (its fsync) and the sink applies
/// batch k on a third. Batches reach the sink in the order sent, each
/// only once its records are durable; each is committed when its
/// acknowledgements come back, in that order.
pub(super) struct Writer<'a> {
    pub(super) store: &'a mut dyn StateStore,
    pub(super) lines: &'a mut [Line],
    pub(super) opts: &'a RunOptions,
    pub(super) on_write: &'a mut dyn FnMut(WriteProgress),
    /// The phase being written, and how far it has come.
    pub(super) progress: WriteProgress,
    pub(super) wants_ids: bool,
    pub(super) to_sync: Option<crossbeam_channel::Sender<(JournalSync, Vec<Operation>)>>,
    /// Each batch's acknowledgements, with its operations handed back to be
    /// freed here (the sink's thread is a first import's slowest stage).
    pub(super) from_sink: crossbeam_channel::Receiver<Result<Applied, RunError>>,
    /// Sent and not yet committed, oldest first: each batch's plan rows
    /// and journal records.
    pub(super) in_flight: std::collections::VecDeque<(Vec<usize>, Vec<PendingOp>)>,
    /// The sink was unavailable for some write.
    pub(super) unavailable: bool,
}

impl<'a> Writer<'a> {
    /// Starts the journal's fsync thread and the sink's thread in `scope`.
    pub(super) fn start<'s>(
        scope: &'s std::thread::Scope<'s, '_>,
        store: &'a mut dyn StateStore,
        sink: &'s mut dyn Sink,
        lines: &'a mut [Line],
        opts: &'a RunOptions,
        on_write: &'a mut dyn FnMut(WriteProgress),
    ) -> Writer<'a> {
        let wants_ids = sink.wants_ids();
        // Under [cluster], checked right before each batch is applied: a
        // run that lost its lease sends nothing more.
        let lease_check = store.lease_check();
        let (to_sync, journalled) = crossbeam_channel::bounded::<(JournalSync, Vec<Operation>)>(1);
        let (to_sink, batches) = crossbeam_channel::bounded::<Vec<Operation>>(1);
        let (acks, from_sink) = crossbeam_channel::unbounded();
        let sync_failed = acks.clone();
        scope.spawn(move || {
            for (journal, ops) in journalled {
                // Durable before sent. A failure is answered in the place
                // of the batch before (its acknowledgements, if it had
                // some, are then lost: like a crash, the next run's
                // recovery settles both).
                if let Err(e) = journal.sync() {
                    let _ = sync_failed.send(Err(e.into()));
                    break;
                }
                if to_sink.send(ops).is_err() {
                    break;
                }
            }
        });
        scope.spawn(move || {
            for ops in batches {
                if let Some(Err(lost)) = lease_check.as_ref().map(|check| check()) {
                    let _ = acks.send(Err(lost.into()));
                    break;
                }
                let answer = apply(sink, &ops)
                    .map_err(RunError::from)
                    .map(|acks| (acks, ops));
                let failed = answer.is_err();
                // After a failure nothing more is applied: the batches
                // behind it stay journalled for the next run's recovery.
                if acks.send(answer).is_err() || failed {
                    break;
                }
            }
        });
        Writer {
            store,
            lines,
            opts,
            on_write,
            progress: WriteProgress {
                phase: WritePhase::Objects,
                done: 0,
                total: 0,
                in_flight: 0,
            },
            wants_ids,
            to_sync: Some(to_sync),
            from_sink,
            in_flight: Default::default(),
            unavailable: false,
        }
    }

    /// Starts counting the writes of `phase`, `total` of them.
    pub(super) fn phase(&mut self, phase: WritePhase, total: usize) {
        let in_flight = self.progress.in_flight;
        self.progress = WriteProgress {
            phase,
            done: 0,
            total: total as u64,
            in_flight,
        };
    }

    /// Sends `writes` in batches of `size`, in order.
    pub(super) fn send_all(
        &mut self,
        mut writes: Vec<PlannedWrite>,
        size: usize,
    ) -> Result<(), RunError> {
        while !writes.is_empty() {
            let rest = writes.split_off(writes.len().min(size));
            self.send(std::mem::replace(&mut writes, rest))?;
        }
        Ok(())
    }

    /// Journals one batch and queues it for the sink; commits the batch
    /// before it once that one is acknowledged.
    pub(super) fn send(&mut self, batch: Vec<PlannedWrite>) -> Result<(), RunError> {
        if batch.is_empty() || self.opts.dry_run {
            return Ok(());
        }
        // A stop asked for: nothing more is sent (what was sent is
        // committed by `finish`).
        if self.opts.stopping() {
            return Err(RunError::Stopped);
        }
        let n = batch.len();
        let mut rows = Vec::with_capacity(n);
        let mut ops = Vec::with_capacity(n);
        let mut pending = Vec::with_capacity(n);
        for (idx, op, p) in batch {
            rows.push(idx);
            ops.push(op);
            pending.push(p);
        }
        if self.wants_ids {
            known_ids(&mut ops, self.store)?;
        }
        let journal = self.store.begin_deferred(&pending)?;
        if self
            .to_sync
            .as_ref()
            .and_then(|s| s.send((journal, ops)).ok())
            .is_none()
        {
            // The fsync or the sink's thread ended on an error: the batches
            // before this one tell which (this one stays journalled, never
            // sent).
            self.settle_all()?;
            return Err(self.sink_stopped());
        }
        self.in_flight.push_back((rows, pending));
        self.progress.in_flight += n as u64;
        // One being made durable, one at the sink: the next is built meanwhile.
        while self.in_flight.len() > 2 {
            self.settle_oldest()?;
        }
        Ok(())
    }

    /// Waits for every batch sent and commits it.
    pub(super) fn settle_all(&mut self) -> Result<(), RunError> {
        while !self.in_flight.is_empty() {
            self.settle_oldest()?;
        }
        Ok(())
    }

    /// Settles what was sent and stops the sink's thread; returns whether
    /// the sink was unavailable for some write. A sink error leaves its
    /// batch, and those queued behind it, journalled: the next run
    /// recovers them.
    pub(super) fn finish(mut self) -> Result<bool, RunError> {
        // Nothing more will be sent: the fsync thread ends once it has
        // handed on what it holds, and with it the last sender of
        // acknowledgements but the sink's. Waiting for acknowledgements
        // with it still waiting for batches would wait forever when the
        // sink's thread stopped on an error.
        self.to_sync = None;
        let settled = self.settle_all();
        settled.map(|()| self.unavailable)
    }

    pub(super) fn sink_stopped(&self) -> RunError {
        RunError::Sink(crate::sink::SinkError::other(
            "sink",
            "the sink's thread stopped",
        ))
    }

    /// Commits the oldest batch sent once the sink answers for it, and
    /// records each line's outcome.
    pub(super) fn settle_oldest(&mut self) -> Result<(), RunError> {
        let Some((rows, pending)) = self.in_flight.pop_front() else {
            return Ok(());
        };
        // A sink error leaves the batch journalled: the next run recovers it.
        let (acks, ops) = self.from_sink.recv().map_err(|_| self.sink_stopped())??;
        let n = rows.len();
        let lines = &mut *self.lines;
        let mut acked = Vec::with_capacity(n);
        let mut dropped = Vec::new();
        for ((idx, mut op), ack) in rows.into_iter().zip(pending).zip(acks) {
            let (code, message) = match ack {
                Ack::Applied { lms_id, linked } => {
                    if lms_id.is_some() {
                        op.object.lms_id = lms_id;
                    }
                    if linked {
                        // An existing LMS user was linked: nobody was invited.
                        op.object.invited = false;
                    }
                    if op.object.lms_id.is_some() {
                        lines[idx].set_lms_id(op.object.lms_id.clone());
                    }
                    acked.push(op);
                    continue;
                }
                Ack::Rejected { message } => (Code::SinkRejected, message),
                Ack::Unavailable { message } => {
                    self.unavailable = true;
                    (Code::SinkUnavailable, message)
                }
            };
            lines[idx] = Line::failed(code, message);
            dropped.push(op.id);
        }
        self.store.commit(&acked, &dropped)?;
        let p = &mut self.progress;
        p.done += n as u64;
        p.in_flight -= n as u64;
        // A phase's estimate may fall short (a write it did not count).
        p.total = p.total.max(p.done);
        (self.on_write)(*p);
        // Freed here rather than on the sink's thread (see `from_sink`).
        drop(ops);
        Ok(())
    }
}

/// Applies a batch: what is only recorded in the store (an `unchanged`
/// row whose fields muster does not own changed) is acknowledged without
/// the sink; the rest goes to the sink, in order.
fn apply(sink: &mut dyn Sink, ops: &[Operation]) -> Result<Vec<Ack>, crate::sink::SinkError> {
    let recorded = |op: &Operation| op.action == crate::model::Action::Unchanged;
    if !ops.iter().any(recorded) {
        return sink.apply(ops);
    }
    let sent: Vec<Operation> = ops.iter().filter(|op| !recorded(op)).cloned().collect();
    let mut acks = match sent.is_empty() {
        true => Vec::new(),
        false => sink.apply(&sent)?,
    }
    .into_iter();
    Ok(ops
        .iter()
        .map(|op| match recorded(op) {
            true => Ack::APPLIED,
            false => acks.next().unwrap_or(Ack::Unavailable {
                message: "the sink answered fewer operations than it was sent".into(),
            }),
        })
        .collect())
}

/// The LMS ids the store has for what each operation names (its manager,
/// parent, groups and segments), for a sink that writes references by id.
pub(super) fn known_ids(ops: &mut [Operation], store: &dyn StateStore) -> Result<(), RunError> {
    for op in ops.iter_mut() {
        let named: Vec<(ObjectKind, String)> = op
            .named()
            .into_iter()
            .map(|(k, key)| (k, key.to_string()))
            .collect();
        for (kind, key) in named {
            if let Some(lms_id) = store.get(kind, &key)?.and_then(|o| o.lms_id) {
                op.ids.push(KnownId { kind, key, lms_id });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Action;
    use crate::pipeline::build::planned_write;
    use crate::sink::SinkError;
    use crate::store::{RedbStore, StoredObject};
    use std::sync::Arc;
    use std::sync::Mutex;

    /// Applies batches until its `fail_at`-th, which fails as a whole.
    struct FailingSink {
        applied: Arc<Mutex<Vec<u64>>>,
        batches: usize,
        fail_at: usize,
    }

    impl Sink for FailingSink {
        fn apply(&mut self, batch: &[Operation]) -> Result<Vec<Ack>, SinkError> {
            self.batches += 1;
            if self.batches == self.fail_at {
                return Err(SinkError::other("test", "down"));
            }
            self.applied
                .lock()
                .unwrap()
                .extend(batch.iter().map(|o| o.op));
            Ok(vec![Ack::APPLIED; batch.len()])
        }
        fn recover(&mut self, _: &[PendingOp]) -> Result<Vec<u64>, SinkError> {
            Ok(Vec::new())
        }
    }

    fn create(store: &mut dyn StateStore, row: usize) -> PlannedWrite {
        let object = StoredObject {
            fingerprint: row as u128,
            active: true,
            invited: false,
            lms_id: None,
            parent: None,
            fields: Vec::new(),
            since: None,
            invite_due: false,
        };
        let id = store.next_op_id().unwrap();
        let key = format!("u{row}");
        let (op, pending) = planned_write(
            id,
            ObjectKind::User,
            Action::Create,
            key,
            Vec::new(),
            false,
            object,
        );
        (row, op, pending)
    }

    /// With batches queued behind the one the sink is applying, a sink
    /// failure stops the pass with the sink's error: the batches before it
    /// are committed, it and every batch begun after it stay journalled
    /// (for the next run's recovery) and none of those reached the LMS.
    /// The embedded store (which defers its journal's fsync to the
    /// writer's thread) and the in-memory one (which does not) alike.
    #[test]
    fn a_sink_failure_commits_what_came_before_and_leaves_the_rest_journalled() {
        for (fail_at, memory) in (1..=6).flat_map(|f| [(f, false), (f, true)]) {
            let dir = tempfile::tempdir().unwrap();
            let mut store: Box<dyn StateStore> = if memory {
                Box::new(crate::store::MemoryStore::new())
            } else {
                Box::new(RedbStore::open(&dir.path().join("s.redb")).unwrap())
            };
            let store = store.as_mut();
            let applied = Arc::new(Mutex::new(Vec::new()));
            let mut sink = FailingSink {
                applied: applied.clone(),
                batches: 0,
                fail_at,
            };
            let (batches, size) = (5, 3);
            let mut lines: Vec<Line> = (0..batches * size)
                .map(|_| Line::new(Outcome::Ok))
                .collect();
            let opts = RunOptions::default();
            let mut written = 0;
            let mut on_write = |p: WriteProgress| written = p.done as usize;
            let result = std::thread::scope(|scope| {
                let mut w = Writer::start(
                    scope,
                    &mut *store,
                    &mut sink,
                    &mut lines,
                    &opts,
                    &mut on_write,
                );
                let mut sent = Ok(());
                for b in 0..batches {
                    let batch = (b * size..(b + 1) * size)
                        .map(|row| create(w.store, row))
                        .collect();
                    sent = sent.and_then(|()| w.send(batch));
                }
                let settled = w.finish();
                sent.and(settled)
            });
            let applied = applied.lock().unwrap().clone();
            let pending: Vec<u64> = store.pending().unwrap().iter().map(|p| p.id).collect();
            let committed: Vec<usize> = (0..batches * size)
                .filter(|row| {
                    store
                        .get(ObjectKind::User, &format!("u{row}"))
                        .unwrap()
                        .is_some()
                })
                .collect();
            if fail_at > batches {
                assert!(matches!(result, Ok(false)), "{result:?}");
                assert_eq!(written, batches * size);
                assert!(pending.is_empty());
            } else {
                match result {
                    Err(RunError::Sink(e)) => {
                        assert_eq!(e.kind.to_string(), "down", "fail_at {fail_at}")
                    }
                    other => panic!("fail_at {fail_at}: {other:?}"),
                }
                let before = (fail_at - 1) * size;
                assert_eq!(written, before, "fail_at {fail_at}");
                assert_eq!(
                    committed,
                    (0..before).collect::<Vec<_>>(),
                    "fail_at {fail_at}"
                );
                // The failed batch and what was begun behind it: pending,
                // and never applied.
                assert!(pending.len() >= size, "fail_at {fail_at}: {pending:?}");
                assert!(pending.iter().all(|id| !applied.contains(id)));
            }
            let ids = applied.len();
            assert_eq!(
                ids,
                committed.len(),
                "fail_at {fail_at}: applied = committed"
            );
        }
    }
}
