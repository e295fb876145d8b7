//! A run's commits on a thread and a connection of their own: the run
//! hands a batch's acknowledged writes over and goes on reading,
//! journalling and sending on its own connection while PostgreSQL writes
//! the objects on a second one (two server processes at work, not one
//! waiting on the other).
//!
//! Commits land in the order handed over. What is handed over and not
//! yet visible to a new read is kept here, the latest object of each key
//! (the overlay): reads answer those keys from it, so a run reads what it
//! wrote whether or not the commit has landed. A commit that fails stops
//! the commits after it (their operations stay in the journal, for the
//! next run's recovery, in order) and is reported by the next call.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use ahash::AHashMap;

use super::PostgresStore;
use crate::model::Action;
use crate::store::{kind_code, PendingOp, StoreError, StoreErrorKind, StoredObject};

/// A key of the overlay: the kind's code and the key.
type Key = (u8, String);

/// Commits handed over and not started, past which handing one more over
/// waits: a run that writes faster than the database commits (a first
/// import) holds a few batches in memory, not all of them.
const QUEUED: usize = 4;

pub(super) struct Committer {
    jobs: Option<crossbeam_channel::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    shared: Arc<Shared>,
}

struct Job {
    seq: u64,
    acked: Vec<PendingOp>,
    dropped: Vec<u64>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    landed: Condvar,
}

#[derive(Default)]
struct State {
    /// The latest object handed over of each key (none: deleted), with
    /// the commit that wrote it.
    overlay: AHashMap<Key, (u64, Option<StoredObject>)>,
    /// The keys of each commit handed over, oldest first, until every
    /// read sees it.
    handed: VecDeque<(u64, Vec<Key>)>,
    /// Commits handed over, and landed (or passed over after a failure).
    sent: u64,
    landed: u64,
    /// Reads under way: a commit that lands during one stays in the
    /// overlay until the next read begins (the read may not see it).
    reads: usize,
    /// The first failure; the commits after it are not made.
    failed: Option<StoreError>,
}

impl State {
    /// Forgets the commits that landed before now: any read that begins
    /// from now sees them in the database.
    fn forget_landed(&mut self) {
        while self
            .handed
            .front()
            .is_some_and(|(seq, _)| *seq <= self.landed)
        {
            let (seq, keys) = self.handed.pop_front().expect("a front");
            for key in keys {
                if self.overlay.get(&key).is_some_and(|(s, _)| *s == seq) {
                    self.overlay.remove(&key);
                }
            }
        }
    }

    /// The failure, for the caller that finds it first; later callers
    /// get the same words.
    fn failure(&mut self) -> Option<StoreError> {
        let e = self.failed.as_ref()?;
        let kind = match &e.kind {
            StoreErrorKind::LeaseLost => StoreErrorKind::LeaseLost,
            StoreErrorKind::Damaged(s) => StoreErrorKind::Damaged(s.clone()),
            other => StoreErrorKind::Database(other.to_string()),
        };
        Some(StoreError {
            path: e.path.clone(),
            kind,
        })
    }
}

impl Committer {
    /// Starts the thread that commits through `store` (a second
    /// connection, fenced as the run's).
    pub(super) fn start(mut store: PostgresStore) -> Committer {
        let shared = Arc::new(Shared::default());
        let (jobs, todo) = crossbeam_channel::bounded::<Job>(QUEUED);
        let on_thread = shared.clone();
        let thread = std::thread::spawn(move || {
            for job in todo {
                let failed = on_thread.lock().failed.is_some();
                let result = match failed {
                    true => Ok(()),
                    false => store.commit_now(&job.acked, &job.dropped),
                };
                let mut state = on_thread.lock();
                if let Err(e) = result {
                    state.failed.get_or_insert(e);
                }
                state.landed = job.seq;
                if state.reads == 0 {
                    state.forget_landed();
                }
                drop(state);
                on_thread.landed.notify_all();
            }
        });
        Committer {
            jobs: Some(jobs),
            thread: Some(thread),
            shared,
        }
    }

    /// Hands a commit over: its objects are in the overlay at once. Waits
    /// while [`QUEUED`] commits are waiting already.
    pub(super) fn send(&self, acked: &[PendingOp], dropped: &[u64]) -> Result<(), StoreError> {
        let mut state = self.shared.lock();
        if let Some(e) = state.failure() {
            return Err(e);
        }
        state.sent += 1;
        let seq = state.sent;
        let mut keys = Vec::with_capacity(acked.len());
        for op in acked {
            let key = (kind_code(op.kind), op.key.clone());
            let object = (op.action != Action::Delete).then(|| op.object.clone());
            state.overlay.insert(key.clone(), (seq, object));
            keys.push(key);
        }
        state.handed.push_back((seq, keys));
        drop(state);
        let job = Job {
            seq,
            acked: acked.to_vec(),
            dropped: dropped.to_vec(),
        };
        let sent = self.jobs.as_ref().map(|jobs| jobs.send(job));
        debug_assert!(matches!(sent, Some(Ok(()))), "the committer runs");
        Ok(())
    }

    /// Waits until every commit handed over has landed; the first
    /// failure, if one did not.
    pub(super) fn flush(&self) -> Result<(), StoreError> {
        let mut state = self.shared.lock();
        while state.landed < state.sent {
            state = self
                .shared
                .landed
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
        match state.failure() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Reads `keys` of `kind` with `read` (from the database), then
    /// answers from the overlay the keys it holds.
    pub(super) fn read(
        &self,
        kind: u8,
        keys: &[&str],
        read: impl FnOnce() -> Result<Vec<Option<StoredObject>>, StoreError>,
    ) -> Result<Vec<Option<StoredObject>>, StoreError> {
        {
            let mut state = self.shared.lock();
            state.forget_landed();
            state.reads += 1;
        }
        let found = read();
        let mut state = self.shared.lock();
        state.reads -= 1;
        // A commit that failed is not in the database: nothing read now
        // stands for what the run wrote.
        if let Some(e) = state.failure() {
            return Err(e);
        }
        let mut found = found?;
        if !state.overlay.is_empty() {
            for (key, found) in keys.iter().zip(found.iter_mut()) {
                if let Some((_, object)) = state.overlay.get(&(kind, key.to_string())) {
                    found.clone_from(object);
                }
            }
        }
        Ok(found)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Committer {
    /// Lands what was handed over, then ends the thread.
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
