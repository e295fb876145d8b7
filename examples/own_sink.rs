//! The differ with your own sink: muster reads the inbox, compares each
//! file with what was applied last time, and hands only the difference, in
//! batches, to a [`Sink`] of yours — here one that keeps the operations in
//! a list; in a service, your API client or message queue. The state store
//! is muster's in-memory one ([`MemoryStore`]); any [`StateStore`] works
//! (the embedded [`RedbStore`](muster::store::RedbStore) keeps it across
//! restarts).
//!
//! `cargo run --example own_sink` runs day 1 then day 2 of a small tenant
//! and prints what reached the sink; `cargo test` runs it too.

use std::sync::{Arc, Mutex};

use muster::pipeline::{Job, Pipeline, RunOptions};
use muster::profile::{Date, Profile};
use muster::sink::{Ack, Operation, Sink, SinkError};
use muster::source::DirSource;
use muster::store::{MemoryStore, PendingOp, StateStore};

/// Your sink: applies each operation (here: notes it) and answers one
/// acknowledgement per operation, in order.
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<String>>>,
}

impl Sink for Recorder {
    fn apply(&mut self, batch: &[Operation]) -> Result<Vec<Ack>, SinkError> {
        let mut seen = self.seen.lock().expect("not poisoned");
        for op in batch {
            let fields: Vec<String> = op
                .fields
                .iter()
                .map(|(f, v)| format!("{f}={v:?}"))
                .collect();
            seen.push(format!(
                "{} {} {}",
                op.action.as_str(),
                op.key,
                fields.join(" ")
            ));
        }
        // An Ack per operation: applied, rejected (reported, not retried),
        // or unavailable (retried by the next run).
        Ok(vec![Ack::APPLIED; batch.len()])
    }

    /// After a crash: which journalled operations your system already has
    /// (none here: nothing is ever left half-sent in this example).
    fn recover(&mut self, _pending: &[PendingOp]) -> Result<Vec<u64>, SinkError> {
        Ok(Vec::new())
    }
}

/// Six users (the MobieTrain layout: id, first and last name, e-mail,
/// phone, title, groups, language, end of contract).
const DAY1: &str = "\
u1,Ann,Lee,ann@example.com,,,,fr,
u2,Bob,Ray,bob@example.com,,,,en,
u4,Dee,Fox,dee@example.com,,,,en,
u5,Eve,Gil,eve@example.com,,,,nl,
u6,Fay,Hu,fay@example.com,,,,nl,
u7,Gus,Ito,gus@example.com,,,,fr,
";
/// Ann's contract ended (a deletion: 1 of 6, under the guard's 20 %);
/// Bob's e-mail changed; Cy is new.
const DAY2: &str = "\
u1,Ann,Lee,ann@example.com,,,,fr,2026-11-01
u2,Bob,Ray,bob@corp.example,,,,en,
u3,Cy,Poe,cy@example.com,,,,en,
u4,Dee,Fox,dee@example.com,,,,en,
u5,Eve,Gil,eve@example.com,,,,nl,
u6,Fay,Hu,fay@example.com,,,,nl,
u7,Gus,Ito,gus@example.com,,,,fr,
";

/// Runs `days` through the pipeline, one file a day, and returns what
/// reached the sink each day.
fn run(days: &[&str]) -> Vec<Vec<String>> {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).expect("an inbox");
    let files = [(
        glob::Pattern::new("*.csv").expect("a pattern"),
        Profile::preset("mobietrain").expect("a preset"),
    )];
    let job = Job {
        name: "example",
        files: &files,
        batch_size: 100,
        settle_ms: 0,
    };
    let mut source = DirSource::new(
        inbox.clone(),
        inbox.join("processed"),
        dir.path().join("spool"),
    )
    .expect("a source");
    let mut store = MemoryStore::new();
    let mut sink = Recorder::default();
    let opts = RunOptions {
        today: Date::new(2026, 11, 21),
        ..RunOptions::default()
    };
    let mut out = Vec::new();
    for (n, day) in days.iter().enumerate() {
        std::fs::write(inbox.join(format!("users-{n}.csv")), day).expect("a file");
        let mut pipeline = Pipeline {
            job,
            source: &mut source,
            store: &mut store,
            sink: &mut sink,
        };
        let reports = pipeline.run(&opts, &mut |_| {}).expect("a run");
        for r in &reports {
            eprintln!("{}: {}", r.file.display(), r.summary);
        }
        out.push(std::mem::take(
            &mut *sink.seen.lock().expect("not poisoned"),
        ));
    }
    assert_eq!(store.pending().expect("a journal").len(), 0);
    out
}

#[cfg_attr(test, allow(dead_code))]
fn main() {
    for (n, ops) in run(&[DAY1, DAY2]).iter().enumerate() {
        println!("day {}:", n + 1);
        for op in ops {
            println!("  {op}");
        }
    }
}

#[test]
fn only_the_difference_reaches_the_sink() {
    let days = run(&[DAY1, DAY2]);
    let actions = |ops: &[String]| -> Vec<String> {
        let mut a: Vec<String> = ops
            .iter()
            .map(|o| o.split(' ').take(2).collect::<Vec<_>>().join(" "))
            .collect();
        a.sort();
        a
    };
    assert_eq!(actions(&days[0]).len(), 6);
    assert_eq!(actions(&days[1]), ["create u3", "delete u1", "update u2"]);
    // An update carries only what changed.
    let update = days[1].iter().find(|o| o.starts_with("update")).unwrap();
    assert_eq!(update, "update u2 email=Text(\"bob@corp.example\")");
    main();
}
