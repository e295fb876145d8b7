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

    /// The daemon's process id (for SIGSTOP and SIGCONT; dropping the
    /// daemon kills it with SIGKILL).
    pub fn pid(&self) -> u32 {
        self.child.id()
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

/// A `[[tenant]]` reading `{name}/inbox` every second into a JSONL outbox
/// (`{name}/outbox.jsonl`), its inbox made.
pub(crate) fn every_second(dir: &std::path::Path, name: &str) -> String {
    let head = format!("state = \"{name}/state.redb\"\nschedule = \"* * * * * *\"");
    dir_tenant(dir, name, &head)
}

/// A `[[tenant]]` named `name` with the keys `head`, its inbox
/// `<name>/inbox` (made) of `winningtemp-users` files, its JSONL outbox
/// `<name>/outbox.jsonl`.
pub(crate) fn dir_tenant(dir: &std::path::Path, name: &str, head: &str) -> String {
    std::fs::create_dir_all(dir.join(name).join("inbox")).unwrap();
    format!(
        r#"
[[tenant]]
name = "{name}"
{head}
[tenant.source]
type = "dir"
path = "{name}/inbox"
settle_ms = 0
[[tenant.files]]
pattern = "wt_users*.csv"
profile = "winningtemp-users"
[tenant.sink]
type = "jsonl"
path = "{name}/outbox.jsonl"
"#
    )
}

/// The results files in a tenant's `processed/`.
fn results_in(dir: &std::path::Path, name: &str) -> usize {
    std::fs::read_dir(dir.join(name).join("inbox/processed"))
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".results.csv"))
            })
            .count()
        })
        .unwrap_or(0)
}

/// A loopback port that accepts connections and never answers: an LMS
/// that hangs.
pub(crate) fn black_hole() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    port
}

/// SPEC §8 workers: 50 tenants on 4 workers, the first behind an LMS that
/// never answers. Every other tenant's file is applied while that run
/// still hangs: a slow LMS holds up only its own tenant.
#[cfg(feature = "scim")]
#[test]
fn fifty_tenants_on_four_workers_a_hung_lms_holds_up_only_its_own_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let slow = every_second(dir.path(), "slow").replace(
        "type = \"jsonl\"\npath = \"slow/outbox.jsonl\"",
        &format!(
            "type = \"scim\"\nurl = \"http://127.0.0.1:{}/v2\"\n\
             token_env = \"MUSTER_TEST_TOKEN\"\ntimeout_ms = 60000",
            black_hole()
        ),
    );
    assert!(slow.contains("type = \"scim\""));
    let mut config = format!("[daemon]\nworkers = 4\n{slow}");
    let users = gen(20, 31);
    std::fs::write(dir.path().join("slow/inbox/wt_users.csv"), &users).unwrap();
    for i in 0..49 {
        let name = format!("t{i:02}");
        config.push_str(&every_second(dir.path(), &name));
        std::fs::write(dir.path().join(&name).join("inbox/wt_users.csv"), &users).unwrap();
    }
    let path = dir.path().join("muster.toml");
    std::fs::write(&path, config).unwrap();
    let d = Daemon::start_with(&path, &[("MUSTER_TEST_TOKEN", "t")]);
    d.wait_for("the slow tenant's run to start", 20, || {
        d.log().contains("tenant=slow") && d.log().contains("run started")
    });
    d.wait_for("every other tenant's file applied", 90, || {
        (0..49).all(|i| results_in(dir.path(), &format!("t{i:02}")) == 1)
    });
    let log = d.log();
    let slow: Vec<&str> = log.lines().filter(|l| l.contains("tenant=slow")).collect();
    assert!(
        slow.iter().any(|l| l.contains("run started"))
            && !slow
                .iter()
                .any(|l| l.contains("run done") || l.contains("run failed")),
        "{}",
        slow.join("\n")
    );
    assert!(dir.path().join("slow/inbox/wt_users.csv").exists());
    assert!(log.contains("workers=4"), "{log}");
}

/// SPEC §8 reload: SIGHUP adds a tenant (its file is applied), removes one
/// (its new file is left alone), and a config that does not load is
/// refused with its error while the tenants run on.
#[test]
fn sighup_adds_and_removes_tenants_and_refuses_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("muster.toml");
    let users = gen(20, 32);
    let (a, b) = (every_second(dir.path(), "a"), every_second(dir.path(), "b"));
    std::fs::write(&path, &a).unwrap();
    let d = Daemon::start_with(&path, &[]);
    let hup = || {
        Command::new("kill")
            .args(["-HUP", &d.child.id().to_string()])
            .status()
            .unwrap();
    };
    std::fs::write(dir.path().join("a/inbox/wt_users.csv"), &users).unwrap();
    d.wait_for("a's file applied", 20, || results_in(dir.path(), "a") == 1);

    std::fs::write(&path, format!("{a}{b}")).unwrap();
    std::fs::write(dir.path().join("b/inbox/wt_users.csv"), &users).unwrap();
    hup();
    d.wait_for("b added and its file applied", 20, || {
        results_in(dir.path(), "b") == 1
    });
    assert!(d.log().contains("added by the config"), "{}", d.log());

    std::fs::write(&path, &b).unwrap();
    hup();
    d.wait_for("a removed", 20, || {
        d.log().contains("removed from the config")
    });
    std::fs::write(dir.path().join("a/inbox/wt_users2.csv"), &users).unwrap();

    std::fs::write(&path, format!("{b}\n[[tenant]\n")).unwrap();
    hup();
    d.wait_for("the bad config refused", 20, || {
        d.log().contains("config reload refused")
    });
    std::fs::write(dir.path().join("b/inbox/wt_users2.csv"), gen(20, 33)).unwrap();
    d.wait_for("b's next file applied", 20, || {
        results_in(dir.path(), "b") == 2
    });
    assert_eq!(results_in(dir.path(), "a"), 1, "a removed tenant was run");
    assert!(dir.path().join("a/inbox/wt_users2.csv").exists());
    assert_eq!(d.terminate(), Some(0));
}

/// `/metrics` as the Prometheus project's own parser reads it (its Python
/// client, installed by scripts/test.sh): `[(family, type, [(sample,
/// labels, value)])]`.
#[cfg(feature = "scim")]
fn parse_metrics(text: &str) -> serde_json::Value {
    let python =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/scim-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run the tests with scripts/test.sh",
        python.display()
    );
    let script = "import sys, json\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families as p\n\
        print(json.dumps([[f.name, f.type, [[s.name, s.labels, s.value] for s in f.samples]] for f in p(sys.stdin.read())]))";
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "{}\n{text}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// SPEC §8's operations endpoint: health, the tenants and their runs,
/// run now, release (token checked), and metrics a Prometheus parser reads.
#[cfg(feature = "scim")]
#[test]
fn the_operations_endpoint_shows_runs_releases_and_metrics() {
    const TOKEN: &str = "ops-token-3a9f";
    let dir = tempfile::tempdir().unwrap();
    let port = crate::scim::server::free_port();
    let tenant = every_second(dir.path(), "b").replace("* * * * * *", "0 0 0 1 1 *")
        + "[tenant.safety]\nmax_delete_ratio = 0.001\n";
    // A second tenant writes to a real SCIM server: its requests are counted.
    let scim = crate::scim::server::ScimServer::start();
    let s = every_second(dir.path(), "s")
        .replace("* * * * * *", "0 0 0 1 1 *")
        .replace(
            "type = \"jsonl\"\npath = \"s/outbox.jsonl\"",
            &format!(
                "type = \"scim\"\nurl = \"{}\"\ntoken_env = \"MUSTER_TEST_SCIM\"",
                scim.url()
            ),
        );
    let path = dir.path().join("muster.toml");
    std::fs::write(
        &path,
        format!(
            "[daemon]\nlisten = \"127.0.0.1:{port}\"\ntoken_env = \"MUSTER_TEST_OPS\"\n{tenant}{s}"
        ),
    )
    .unwrap();
    let d = Daemon::start_with(
        &path,
        &[
            ("MUSTER_TEST_OPS", TOKEN),
            ("MUSTER_TEST_SCIM", crate::scim::server::TOKEN),
        ],
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    d.wait_for("the endpoint", 20, || {
        agent.get(&url("/healthz")).call().is_ok()
    });
    let get = |p: &str| {
        let mut r = agent.get(&url(p)).call().unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    };
    let post = |p: &str, token: Option<&str>, body: &str| {
        let mut req = agent
            .post(&url(p))
            .header("Content-Type", "application/json");
        if let Some(t) = token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let mut r = req.send(body).unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    };
    let tenants = || serde_json::from_str::<serde_json::Value>(&get("/api/tenants").1).unwrap();
    assert_eq!(get("/healthz"), (200, "ok\n".into()));
    assert_eq!(tenants()[0]["name"], "b");
    assert_eq!(tenants()[0]["last_run"], serde_json::Value::Null);

    // Run now: day 1, then a day 2 the guard holds.
    std::fs::write(dir.path().join("day1.csv"), gen(300, 6)).unwrap();
    std::fs::write(dir.path().join("b/inbox/wt_users.csv"), gen(300, 6)).unwrap();
    assert_eq!(post("/api/tenants/b/run", None, "").0, 401);
    assert_eq!(
        post("/api/tenants/b/run", Some("wrong"), ""),
        (401, String::new())
    );
    assert_eq!(post("/api/tenants/b/run", Some(TOKEN), "").0, 202);
    d.wait_for("day 1 applied", 20, || results_in(dir.path(), "b") == 1);
    std::fs::write(
        dir.path().join("b/inbox/wt_users.csv"),
        crate::run::derive(&dir.path().join("day1.csv"), "0.2"),
    )
    .unwrap();
    assert_eq!(post("/api/tenants/b/run", Some(TOKEN), "").0, 202);
    d.wait_for("day 2 held", 20, || {
        tenants()[0]["held"] == serde_json::json!(["wt_users.csv"])
    });
    let b = tenants()[0].clone();
    assert_eq!(b["last_run"]["result"], "held", "{b:#}");
    assert!(b["next_run"]
        .as_str()
        .unwrap()
        .starts_with(|c: char| c.is_ascii_digit()));
    let (status, runs) = get("/api/tenants/b/runs?limit=5");
    assert_eq!(status, 200, "{runs}");
    let runs: serde_json::Value = serde_json::from_str(&runs).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 2, "{runs:#}");
    assert_eq!(runs[0]["result"], "held");
    let id = runs[1]["id"].as_u64().unwrap();
    let (status, csv) = get(&format!("/api/tenants/b/runs/{id}/files/0/results.csv"));
    assert_eq!(status, 200);
    assert!(
        csv.starts_with("line,key,action,outcome,code,message"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 301);
    assert_eq!(
        get(&format!("/api/tenants/b/runs/{id}/files/7/results.csv")).0,
        404
    );

    // Release: the token, a file that is held, then the next run applies it.
    let release = |file: &str, token| {
        post(
            "/api/tenants/b/release",
            token,
            &format!("{{\"file\": \"{file}\"}}"),
        )
    };
    assert_eq!(release("wt_users.csv", None), (401, String::new()));
    assert_eq!(release("nothing.csv", Some(TOKEN)).0, 404);
    assert_eq!(release("wt_users.csv", Some(TOKEN)).0, 200);
    assert_eq!(post("/api/tenants/b/run", Some(TOKEN), "").0, 202);
    d.wait_for("the released file applied", 20, || {
        results_in(dir.path(), "b") == 3
    });
    d.wait_for("the view updated", 10, || {
        tenants()[0]["held"] == serde_json::json!([])
    });

    std::fs::write(dir.path().join("s/inbox/wt_users.csv"), gen(30, 8)).unwrap();
    assert_eq!(post("/api/tenants/s/run", Some(TOKEN), "").0, 202);
    d.wait_for("s applied", 30, || {
        tenants()
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "s" && !t["last_run"].is_null())
    });

    // Metrics, parsed by Prometheus's own parser.
    let (status, text) = get("/metrics");
    assert_eq!(status, 200);
    let families = parse_metrics(&text);
    let family = |name: &str| {
        families
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f[0] == name)
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .clone()
    };
    let sample = |name: &str, labels: serde_json::Value| {
        let f = family(name);
        f[2].as_array()
            .unwrap()
            .iter()
            .find(|s| s[1] == labels)
            .map(|s| s[2].as_f64().unwrap())
    };
    assert_eq!(family("muster_runs")[1], "counter");
    assert_eq!(
        sample(
            "muster_runs",
            serde_json::json!({"tenant": "b", "result": "held"})
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(
            "muster_rows",
            serde_json::json!({"tenant": "b", "kind": "user", "action": "create", "outcome": "ok"})
        )
        .unwrap()
            > 250.0
    );
    assert_eq!(family("muster_run_duration_seconds")[1], "histogram");
    assert_eq!(family("muster_runs_in_progress")[1], "gauge");
    assert_eq!(
        sample("muster_held_files", serde_json::json!({"tenant": "b"})),
        Some(0.0)
    );
    let ended = sample(
        "muster_last_run_end_timestamp_seconds",
        serde_json::json!({"tenant": "b"}),
    )
    .unwrap();
    assert!(ended > 1.7e9, "{ended}");
    // The SCIM tenant's requests, by answer status; the JSONL one has none.
    let requests = family("muster_sink_requests");
    assert_eq!(requests[1], "counter");
    let by_status: Vec<(String, f64)> = requests[2]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x[0] == "muster_sink_requests_total")
        .map(|x| {
            assert_eq!(x[1]["tenant"], "s", "{text}");
            (
                x[1]["status"].as_str().unwrap().to_string(),
                x[2].as_f64().unwrap(),
            )
        })
        .collect();
    assert!(
        by_status
            .iter()
            .any(|(s, n)| s.starts_with('2') && *n >= 2.0),
        "{text}"
    );
    assert!(by_status.iter().all(|(s, _)| s.starts_with('2')), "{text}");
    assert_eq!(d.terminate(), Some(0));
}

/// The endpoint off loopback needs a token; an address it cannot bind
/// stops the daemon with the reason.
#[test]
fn the_endpoint_off_loopback_needs_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("muster.toml");
    let tenant = every_second(dir.path(), "a");
    std::fs::write(
        &path,
        format!("[daemon]\nlisten = \"0.0.0.0:9464\"\n{tenant}"),
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["daemon", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("needs a bearer token"),
        "{}",
        stderr(&o)
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    std::fs::write(
        &path,
        format!("[daemon]\nlisten = \"127.0.0.1:{port}\"\n{tenant}"),
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["daemon", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("127.0.0.1:{port}")),
        "{}",
        stderr(&o)
    );
}

/// Off loopback every request needs the token but the console's own
/// files: they hold no data, and the page asks for the token itself.
#[cfg(feature = "scim")]
#[test]
fn off_loopback_the_console_loads_and_asks_for_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("muster.toml");
    let port = crate::scim::server::free_port();
    let tenant = every_second(dir.path(), "a").replace("* * * * * *", "0 0 0 1 1 *");
    std::fs::write(
        &path,
        format!("[daemon]\nlisten = \"0.0.0.0:{port}\"\ntoken_env = \"MUSTER_TEST_OPS\"\n{tenant}"),
    )
    .unwrap();
    let d = Daemon::start_with(&path, &[("MUSTER_TEST_OPS", "off-loopback-7")]);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let get = |p: &str, token: Option<&str>| {
        let mut req = agent.get(&format!("http://127.0.0.1:{port}{p}"));
        if let Some(t) = token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        req.call().map(|mut r| {
            (
                r.status().as_u16(),
                r.body_mut().read_to_string().unwrap_or_default(),
            )
        })
    };
    d.wait_for("the endpoint", 20, || get("/healthz", None).is_ok());
    assert_eq!(get("/healthz", None).unwrap().0, 401);
    assert_eq!(get("/api/tenants", None).unwrap(), (401, String::new()));
    let (status, page) = get("/", None).unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("<title>muster console</title>"), "{page}");
    assert_eq!(get("/console.js", None).unwrap().0, 200);
    assert_eq!(get("/console.css", None).unwrap().0, 200);
    let (status, tenants) = get("/api/tenants", Some("off-loopback-7")).unwrap();
    assert_eq!(status, 200);
    assert!(tenants.contains("\"name\":\"a\""), "{tenants}");
    assert_eq!(d.terminate(), Some(0));
}
