//! The pipeline as a library runs it, over a caller's store and sink: the
//! same tests through the embedded store and the in-memory one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use muster::pipeline::{Job, Pipeline, RunError, RunOptions};
use muster::plan::Action;
use muster::profile::{Date, Profile};
use muster::sink::{Ack, Operation, Sink, SinkError, Value};
use muster::source::DirSource;
use muster::store::{MemoryStore, PendingOp, RedbStore, StateStore};

/// What the LMS holds: per key, its fields as last written, and every
/// operation it applied (by id), in order.
#[derive(Default)]
struct Lms {
    users: BTreeMap<String, BTreeMap<String, String>>,
    applied: Vec<(u64, Action, String)>,
}

/// A sink writing to an [`Lms`]. `fail_at`: the batch (counting from 1)
/// that fails as a whole, after it was applied when `lose_answer` (the LMS
/// did the work, the answer was lost) or before. `on_first_batch` runs
/// once, before the first batch is applied.
struct LmsSink {
    lms: Arc<Mutex<Lms>>,
    batches: usize,
    fail_at: Option<usize>,
    lose_answer: bool,
    on_first_batch: Option<Box<dyn FnOnce() + Send>>,
}

impl LmsSink {
    fn new(lms: &Arc<Mutex<Lms>>) -> LmsSink {
        LmsSink {
            lms: lms.clone(),
            batches: 0,
            fail_at: None,
            lose_answer: false,
            on_first_batch: None,
        }
    }
}

impl Sink for LmsSink {
    fn apply(&mut self, batch: &[Operation]) -> Result<Vec<Ack>, SinkError> {
        if let Some(hook) = self.on_first_batch.take() {
            hook();
        }
        self.batches += 1;
        let failing = self.fail_at == Some(self.batches);
        if failing && !self.lose_answer {
            return Err(SinkError::other("test", "unreachable"));
        }
        let mut lms = self.lms.lock().unwrap();
        for op in batch {
            lms.applied.push((op.op, op.action, op.key.clone()));
            match op.action {
                Action::Delete => {
                    lms.users.remove(&op.key);
                }
                _ => {
                    let user = lms.users.entry(op.key.clone()).or_default();
                    for (name, value) in &op.fields {
                        let text = match value {
                            Value::Text(t) => t.clone(),
                            Value::List(items) => items.join(","),
                        };
                        user.insert(name.to_string(), text);
                    }
                }
            }
        }
        if failing {
            return Err(SinkError::other("test", "connection reset"));
        }
        Ok(vec![Ack::APPLIED; batch.len()])
    }

    fn recover(&mut self, pending: &[PendingOp]) -> Result<Vec<u64>, SinkError> {
        let lms = self.lms.lock().unwrap();
        Ok(pending
            .iter()
            .filter(|p| lms.applied.iter().any(|(id, _, _)| *id == p.id))
            .map(|p| p.id)
            .collect())
    }
}

/// A tenant of the MobieTrain profile in a temporary folder.
struct Inbox {
    dir: tempfile::TempDir,
    files: Vec<(glob::Pattern, Profile)>,
}

impl Inbox {
    fn new() -> Inbox {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
        Inbox {
            dir,
            files: vec![(
                glob::Pattern::new("*.csv").unwrap(),
                Profile::preset("mobietrain").unwrap(),
            )],
        }
    }

    fn inbox(&self, name: &str) -> PathBuf {
        self.dir.path().join("inbox").join(name)
    }

    fn source(&self) -> DirSource {
        let inbox = self.dir.path().join("inbox");
        DirSource::new(
            inbox.clone(),
            inbox.join("processed"),
            self.dir.path().join("spool"),
        )
        .unwrap()
    }

    /// One run over `store` and `sink`.
    fn run(
        &self,
        store: &mut dyn StateStore,
        sink: &mut dyn Sink,
    ) -> Result<Vec<muster::pipeline::FileReport>, RunError> {
        let mut source = self.source();
        let job = Job {
            name: "test",
            files: &self.files,
            batch_size: 7,
            settle_ms: 0,
        };
        let opts = RunOptions {
            today: Date::new(2026, 11, 21),
            ..RunOptions::default()
        };
        Pipeline {
            job,
            source: &mut source,
            store,
            sink,
        }
        .run(&opts, &mut |_| {})
    }

    fn processed(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.inbox("processed"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
    }
}

/// `n` users whose first names all carry `version`.
fn users(n: usize, version: &str) -> String {
    (0..n)
        .map(|i| format!("u{i:04},{version}{i},Last{i},u{i}@example.com,,,,en,\n"))
        .collect()
}

/// Both stores, fresh: each test runs through each.
fn stores(dir: &Path) -> Vec<(&'static str, Box<dyn StateStore>)> {
    vec![
        ("memory", Box::new(MemoryStore::new())),
        (
            "redb",
            Box::new(RedbStore::open(&dir.join("state.redb")).unwrap()),
        ),
    ]
}

/// How a client puts a new version of a file in the inbox.
#[derive(Clone, Copy, Debug)]
enum Rewrite {
    /// Written beside it and renamed over it (what careful clients do).
    Rename,
    /// Truncated and written again in place.
    InPlace,
}

/// SPEC §7: a client putting a new version of the inbox file (here a
/// shorter one, every user renamed) while a run of it is under way cannot
/// make the run mix two versions. Replaced by a rename, the run applies
/// the version it started with, whole; `processed/` keeps that version and
/// the new one waits in the inbox. Rewritten in place, the run stops before
/// sending anything of the new version. Either way the next run applies
/// the new version.
#[test]
fn a_file_rewritten_mid_run_is_applied_in_one_version() {
    // More rows than the write pass reads ahead, so that a run reading the
    // inbox file itself would meet the new version.
    let (v1, v2) = (users(10_000, "One"), users(9_500, "Two"));
    for rewrite in [Rewrite::Rename, Rewrite::InPlace] {
        for (name, mut store) in stores(tempfile::tempdir().unwrap().path()) {
            let case = format!("{name}, {rewrite:?}");
            let t = Inbox::new();
            std::fs::write(t.inbox("users.csv"), &v1).unwrap();
            let lms = Arc::new(Mutex::new(Lms::default()));
            let mut sink = LmsSink::new(&lms);
            let (path, new) = (t.inbox("users.csv"), v2.clone());
            sink.on_first_batch = Some(Box::new(move || match rewrite {
                Rewrite::Rename => {
                    let tmp = path.with_extension("part");
                    std::fs::write(&tmp, new).unwrap();
                    std::fs::rename(tmp, path).unwrap();
                }
                Rewrite::InPlace => std::fs::write(path, new).unwrap(),
            }));
            let run = t.run(store.as_mut(), &mut sink);
            {
                let lms = lms.lock().unwrap();
                for (key, user) in &lms.users {
                    assert!(
                        user["first_name"].starts_with("One"),
                        "{case}: {key} {user:?}"
                    );
                }
                match rewrite {
                    Rewrite::Rename => {
                        let reports = run.as_ref().unwrap();
                        assert_eq!(reports[0].records, 10_000, "{case}");
                        assert_eq!(lms.users.len(), 10_000, "{case}");
                    }
                    Rewrite::InPlace => {
                        let error = run.as_ref().unwrap_err().to_string();
                        assert!(
                            error.contains("rewritten in place")
                                || error.contains("not what was planned"),
                            "{case}: {error}"
                        );
                        assert!(lms.users.len() < 10_000, "{case}: the run went on");
                    }
                }
            }
            let waiting = std::fs::read_to_string(t.inbox("users.csv")).unwrap();
            assert!(waiting == v2, "{case}: the inbox lost the new version");
            if let Rewrite::Rename = rewrite {
                // The version applied went to processed/.
                let archived: Vec<PathBuf> = t
                    .processed()
                    .into_iter()
                    .filter(|p| {
                        let p = p.to_string_lossy();
                        !p.contains(".results.") && !p.ends_with(".json")
                    })
                    .collect();
                assert_eq!(archived.len(), 1, "{case}: {archived:?}");
                let archived = std::fs::read_to_string(&archived[0]).unwrap();
                assert!(archived == v1, "{case}: processed/ holds another version");
            }
            // The next run applies the new version (shorter, within the
            // shrink guard) to every user it names.
            let mut sink = LmsSink::new(&lms);
            let reports = t.run(store.as_mut(), &mut sink).unwrap();
            assert_eq!(reports[0].records, 9_500, "{case}: {}", reports[0].summary);
            let lms = lms.lock().unwrap();
            for i in 0..9_500 {
                let user = &lms.users[&format!("u{i:04}")];
                assert_eq!(user["first_name"], format!("Two{i}"), "{case}");
            }
        }
    }
}

/// Journal, recovery and resume through the same pipeline over either
/// store: a sink that fails at each batch in turn, its answer lost after it
/// applied the batch or refused before, then a run that recovers. Every
/// user reaches the LMS, each created exactly once, and the store's
/// journal ends empty.
#[test]
fn a_failed_batch_is_recovered_and_resumed_exactly_once_over_either_store() {
    let file = users(30, "One");
    for fail_at in 1..=5 {
        for lose_answer in [false, true] {
            for (name, mut store) in stores(tempfile::tempdir().unwrap().path()) {
                let case = format!("{name}, batch {fail_at}, answer lost: {lose_answer}");
                let t = Inbox::new();
                std::fs::write(t.inbox("users.csv"), &file).unwrap();
                let lms = Arc::new(Mutex::new(Lms::default()));
                let mut sink = LmsSink::new(&lms);
                sink.fail_at = Some(fail_at);
                sink.lose_answer = lose_answer;
                let failed = t.run(store.as_mut(), &mut sink);
                assert!(
                    matches!(failed, Err(RunError::Sink(_))),
                    "{case}: {failed:?}"
                );
                assert!(t.inbox("users.csv").exists(), "{case}: the file stays");
                let resumed = t.run(store.as_mut(), &mut LmsSink::new(&lms)).unwrap();
                assert_eq!(resumed.len(), 1, "{case}");
                let lms = lms.lock().unwrap();
                assert_eq!(lms.users.len(), 30, "{case}");
                let mut creates: BTreeMap<&str, usize> = BTreeMap::new();
                for (_, action, key) in &lms.applied {
                    if *action == Action::Create {
                        *creates.entry(key).or_default() += 1;
                    }
                }
                assert_eq!(creates.len(), 30, "{case}");
                assert!(creates.values().all(|&n| n == 1), "{case}: {creates:?}");
                assert!(store.pending().unwrap().is_empty(), "{case}");
            }
        }
    }
}
