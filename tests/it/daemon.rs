//! `muster daemon` as a process: schedules a few seconds ahead (a six-field
//! schedule with seconds), a missed run made up at start, a clean stop on
//! SIGTERM in the middle of a run, and one run of a tenant at a time.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use muster::store::{RedbStore, StateStore};

use crate::run::{gen, stderr, Tenant};

/// A running daemon whose log lines are collected.
pub struct Daemon {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    fn start(t: &Tenant) -> Daemon {
        Daemon::start_with(&t.path("muster.toml"), &[])
    }

    /// A daemon of the config at `config`, with extra environment.
    pub fn start_with(config: &std::path::Path, env: &[(&str, &str)]) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_muster"))
            .args(["daemon", "--config"])
            .arg(config)
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Daemon { child, log }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn wait_for(&self, what: &str, secs: u64, ok: impl Fn() -> bool) {
        let started = Instant::now();
        while !ok() {
            assert!(
                started.elapsed() < Duration::from_secs(secs),
                "timed out waiting for {what}; daemon log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the daemon did not stop; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The seconds of a log line's timestamp (`2026-11-21T16:40:02.001Z …`).
fn second_of(line: &str) -> u32 {
    let ts = line.split_whitespace().next().unwrap();
    ts[17..19].parse().unwrap()
}

#[test]
fn the_daemon_runs_at_the_scheduled_second_and_not_twice() {
    let t = Tenant::with_extra(100, false, "schedule = \"*/3 * * * * *\"");
    t.drop_file("wt_users.csv", &gen(50, 21));
    let d = Daemon::start(&t);
    d.wait_for("the file to be processed", 15, || t.processed().len() == 3);
    let first = t.outbox().len();
    assert!(first > 40, "{first}");
    // Started on a multiple of 3 seconds (a run may begin a moment after
    // its slot, never before).
    let log = d.log();
    let started = log.lines().find(|l| l.contains("run started")).unwrap();
    assert_eq!(second_of(started) % 3, 0, "{started}");
    // Two more slots pass: the inbox is empty, nothing is written again.
    let runs = || d.log().matches("run started").count();
    let seen = runs();
    d.wait_for("two more scheduled runs", 15, || runs() >= seen + 2);
    assert_eq!(t.outbox().len(), first);
    assert_eq!(t.processed().len(), 3);
    assert_eq!(d.terminate(), Some(0));
}

#[test]
fn a_run_missed_while_the_daemon_was_down_is_made_up_at_start() {
    let t = Tenant::with_extra(100, false, "schedule = \"0 4 * * *\"");
    // The state says a run was due yesterday.
    {
        let mut store = RedbStore::open(&t.path("state.redb")).unwrap();
        store
            .set_daemon_value("next_due", "2026-11-20T04:00:00Z")
            .unwrap();
    }
    t.drop_file("wt_users.csv", &gen(30, 22));
    let d = Daemon::start(&t);
    d.wait_for("the missed run", 15, || t.processed().len() == 3);
    assert!(d.log().contains("missed"), "{}", d.log());
    // The next run is tomorrow's (or today's) 04:00 UTC, recorded.
    d.wait_for("the next slot to be recorded", 10, || {
        d.log().contains("next=") && d.log().matches("scheduled").count() >= 2
    });
    assert_eq!(d.terminate(), Some(0));
    let store = RedbStore::open(&t.path("state.redb")).unwrap();
    let due = store.daemon_value("next_due").unwrap().unwrap();
    assert!(due.ends_with("T04:00:00Z"), "{due}");
    assert!(due.as_str() > "2026-11-20T04:00:00Z");
}

#[test]
fn sigterm_mid_run_stops_cleanly_and_the_next_run_resumes() {
    // One operation per batch: each is synced to disk, so the run lasts.
    let t = Tenant::with_extra(1, false, "schedule = \"* * * * * *\"");
    let rows = 3000;
    t.drop_file("wt_users.csv", &gen(rows, 23));
    let d = Daemon::start(&t);
    d.wait_for("the run to be writing", 30, || t.outbox().len() > 50);
    assert_eq!(d.terminate(), Some(0), "not a clean stop");
    // What was sent is committed; nothing is left in the journal; the
    // file waits in the inbox.
    let written = t.outbox().len();
    assert!(written < rows as usize, "the run was not stopped mid-way");
    assert!(t.path("inbox/wt_users.csv").exists());
    {
        let store = RedbStore::open(&t.path("state.redb")).unwrap();
        assert!(store.pending().unwrap().is_empty(), "journal left behind");
    }
    // The next run resumes: every user once.
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut creates: HashMap<String, usize> = HashMap::new();
    for l in t.outbox().iter().filter(|l| l["action"] == "create") {
        *creates
            .entry(l["key"].as_str().unwrap().into())
            .or_default() += 1;
    }
    assert!(
        creates.values().all(|&n| n == 1),
        "a user was created twice"
    );
    let store = RedbStore::open(&t.path("state.redb")).unwrap();
    let prior = store.prior(muster::profile::ObjectKind::User).unwrap();
    assert_eq!(muster::store::Prior::len(&prior), creates.len());
}

#[test]
fn a_tenant_being_run_is_not_run_again_at_the_same_time() {
    let t = Tenant::new(100);
    t.drop_file("wt_users.csv", &gen(10, 24));
    // Another process holds the tenant's lock.
    let lock = std::fs::File::create(t.path("state.redb.lock")).unwrap();
    lock.lock().unwrap();
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("being run by another muster process"),
        "{}",
        stderr(&o)
    );
    assert!(t.outbox().is_empty());
    drop(lock);
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}
