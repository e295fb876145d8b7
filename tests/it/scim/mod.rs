//! The SCIM sink end to end: `muster run` against a real SCIM server
//! (scim2-server), then the LMS read back through its API and compared
//! with what the files say; faults injected by a proxy of ours; a real
//! kill -9 mid-run.

mod oracle;
mod proxy;
pub mod server;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use oracle::{Layout, User, LUCCA, MOBIETRAIN, WINNINGTEMP};
use proxy::{Fault, Proxy};
use serde_json::Value as Json;
use server::{ScimServer, TOKEN};

use crate::fixtures::TODAY;

const TOKEN_VAR: &str = "MUSTER_TEST_SCIM_TOKEN";

/// One tenant writing to a SCIM LMS at `url`.
struct ScimTenant {
    dir: tempfile::TempDir,
}

impl ScimTenant {
    /// `files`: (pattern, profile) pairs; `sink`: extra `[tenant.sink]` lines.
    fn new(url: &str, batch_size: usize, files: &[(&str, &str)], sink: &str) -> ScimTenant {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
        let files: String = files
            .iter()
            .map(|(p, profile)| {
                format!("[[tenant.files]]\npattern = \"{p}\"\nprofile = \"{profile}\"\n")
            })
            .collect();
        std::fs::write(
            dir.path().join("muster.toml"),
            format!(
                "[[tenant]]\nname = \"t\"\nstate = \"state.redb\"\nbatch_size = {batch_size}\n\
                 [tenant.source]\ntype = \"dir\"\npath = \"inbox\"\nsettle_ms = 0\n{files}\
                 [tenant.sink]\ntype = \"scim\"\nurl = \"{url}\"\ntoken_env = \"{TOKEN_VAR}\"\n\
                 backoff_ms = 20\nmax_backoff_ms = 200\n{sink}\n"
            ),
        )
        .unwrap();
        ScimTenant { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// The results CSV beside a processed original.
    fn processed_results_of(&self, original: &Path) -> PathBuf {
        let name = original.file_name().unwrap().to_string_lossy();
        original.with_file_name(format!("{}.results.csv", name.trim_end_matches(".csv")))
    }

    fn drop_file(&self, name: &str, text: &[u8]) {
        std::fs::write(self.path("inbox").join(name), text).unwrap();
    }

    fn command(&self) -> Command {
        self.command_on(TODAY)
    }

    /// `muster run --today today`.
    fn command_on(&self, today: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_muster"));
        c.args(["run", "--config"])
            .arg(self.path("muster.toml"))
            .args(["--today", today])
            .env(TOKEN_VAR, TOKEN);
        c
    }

    fn run(&self) -> Output {
        self.command().output().unwrap()
    }

    /// The failed lines of every results file, for assertion messages.
    fn failures(&self) -> String {
        let mut out = String::new();
        for e in std::fs::read_dir(self.path("inbox/processed"))
            .into_iter()
            .flatten()
        {
            let path = e.unwrap().path();
            if path.to_string_lossy().ends_with(".results.csv") {
                let text = std::fs::read_to_string(&path).unwrap();
                for line in text.lines().filter(|l| l.contains(",failed,")).take(5) {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// The last processed copy of a file and its results CSV.
    fn processed(&self, stem: &str) -> (PathBuf, PathBuf) {
        let dir = self.path("inbox/processed");
        // Originals, newest last (a name may carry a `-2` after its stamp).
        let mut names: Vec<(std::time::SystemTime, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| {
                (
                    e.metadata().unwrap().modified().unwrap(),
                    e.file_name().to_string_lossy().to_string(),
                )
            })
            .filter(|(_, n)| {
                n.starts_with(&format!("{stem}."))
                    && n.ends_with(".csv")
                    && !n.ends_with(".results.csv")
                    && !n.ends_with(".retry.csv")
            })
            .collect();
        names.sort();
        let (_, name) = names
            .pop()
            .unwrap_or_else(|| panic!("no processed {stem} in {}", dir.display()));
        let results = format!("{}.results.csv", name.trim_end_matches(".csv"));
        (dir.join(name), dir.join(results))
    }
}

/// A Winningtemp tenant: its groups, segments and users files, user
/// names from the `username` column, batches of 100.
fn winningtemp_tenant(url: &str) -> ScimTenant {
    ScimTenant::new(
        url,
        100,
        &[
            ("wt_groups*.csv", "winningtemp-groups"),
            ("wt_segments*.csv", "winningtemp-segments"),
            ("wt_users*.csv", "winningtemp-users"),
        ],
        "user_name = \"username\"",
    )
}

fn gen(profile: &str, rows: usize, seed: u64) -> Vec<u8> {
    let o = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["gen", "--profile", profile, "--rows", &rows.to_string()])
        .args(["--seed", &seed.to_string()])
        .output()
        .unwrap();
    assert!(o.status.success());
    o.stdout
}

fn gen_from(profile: &str, from: &Path, ratio: &str, seed: u64) -> Vec<u8> {
    let o = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["gen", "--profile", profile, "--from"])
        .arg(from)
        .args(["--change-ratio", ratio, "--seed", &seed.to_string()])
        .output()
        .unwrap();
    assert!(o.status.success());
    o.stdout
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Asserts that the LMS holds exactly `expected`, field by field.
fn assert_lms(server: &ScimServer, expected: &BTreeMap<String, User>) {
    let actual = oracle::lms_users(server);
    let missing: Vec<&String> = expected
        .keys()
        .filter(|k| !actual.contains_key(*k))
        .collect();
    let extra: Vec<&String> = actual
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "users missing from the LMS: {missing:?}"
    );
    assert!(extra.is_empty(), "users the files do not have: {extra:?}");
    for (key, want) in expected {
        assert_eq!(&actual[key], want, "user {key}");
    }
}

fn keys_of(map: &BTreeMap<String, (String, Option<String>)>, prefix: &str) -> BTreeSet<String> {
    map.keys()
        .filter_map(|k| k.strip_prefix(prefix).map(str::to_string))
        .collect()
}

fn users_state(t: &ScimTenant, stem: &str, layout: &Layout, state: &mut BTreeMap<String, User>) {
    let (file, results) = t.processed(stem);
    oracle::apply_users(state, layout, &file, &results, None, None);
}

#[test]
fn winningtemp_groups_segments_and_users_then_day_two_converge() {
    let server = ScimServer::start();
    let t = winningtemp_tenant(&server.url());
    t.drop_file("wt_groups.csv", &gen("winningtemp-groups", 200, 1));
    t.drop_file("wt_segments.csv", &gen("winningtemp-segments", 20, 1));
    t.drop_file("wt_users.csv", &gen("winningtemp-users", 600, 1));
    let o = t.run();
    assert!(matches!(code(&o), 0 | 3), "{}", stderr(&o));

    // Groups: names and the hierarchy (parentId resolves to the parent).
    let (gf, gr) = t.processed("wt_groups");
    let (sf, sr) = t.processed("wt_segments");
    let mut want_groups = oracle::file_groups(&gf, &gr, "");
    want_groups.extend(oracle::file_groups(&sf, &sr, "segment:"));
    assert!(want_groups.values().filter(|(_, p)| p.is_some()).count() > 100);
    assert_eq!(oracle::lms_groups(&server), want_groups);

    let groups = keys_of(&want_groups, "");
    let segments: BTreeSet<String> = keys_of(&want_groups, "segment:");
    let mut state = BTreeMap::new();
    let (uf, ur) = t.processed("wt_users");
    oracle::apply_users(
        &mut state,
        &WINNINGTEMP,
        &uf,
        &ur,
        Some(&groups),
        Some(&segments),
    );
    assert!(state.len() > 500, "{}", state.len());
    assert!(state
        .values()
        .any(|u| u.member_of.iter().any(|g| g.starts_with("segment:"))));
    assert_lms(&server, &state);

    // Day 2: updates, deactivations, deletions and new users.
    t.drop_file(
        "wt_users.csv",
        &gen_from("winningtemp-users", &uf, "0.2", 2),
    );
    let o = t.run();
    assert!(matches!(code(&o), 0 | 3), "{}", stderr(&o));
    let (uf2, ur2) = t.processed("wt_users");
    assert_ne!(uf, uf2);
    let actions: Vec<String> = oracle::results(&ur2).into_iter().map(|r| r.2).collect();
    for a in ["create", "update", "deactivate", "delete"] {
        assert!(actions.iter().any(|x| x == a), "day 2 has no {a}");
    }
    oracle::apply_users(
        &mut state,
        &WINNINGTEMP,
        &uf2,
        &ur2,
        Some(&groups),
        Some(&segments),
    );
    assert_lms(&server, &state);
    assert!(
        state.values().any(|u| !u.active),
        "some users are deactivated"
    );

    // A third run with nothing new writes nothing.
    let before = server.list("/Users");
    let o = t.run();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(server.list("/Users"), before);
}

/// Every preset fixture of `fixtures/` (the `diff-` ones as a day 1 and
/// a day 2) through a SCIM tenant: the run plans what the fixture expects,
/// applies every line it can, and the LMS ends with exactly the users (or
/// groups) the results say exist, each once.
#[test]
fn every_preset_fixture_imports_and_its_day_two_converges() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let cases = [
        "lucca-360learning",
        "lucca-semicolon",
        "mobietrain-users",
        "winningtemp-groups",
        "winningtemp-segments",
        "winningtemp-users",
        "diff-lucca",
        "diff-mobietrain",
        "diff-winningtemp-users",
    ];
    let server = ScimServer::start();
    for case in cases {
        let dir = root.join(case);
        let profile = std::fs::read_to_string(dir.join("profile"))
            .unwrap()
            .trim()
            .to_string();
        let (endpoint, prefix) = match profile.as_str() {
            "winningtemp-groups" => ("/Groups", ""),
            "winningtemp-segments" => ("/Groups", "segment:"),
            _ => ("/Users", ""),
        };
        // Each case on its own LMS records: keys are namespaced per case.
        server.clear();
        let t = ScimTenant::new(&server.url(), 7, &[("*.csv", &profile)], "");
        let mut exists: BTreeMap<String, bool> = BTreeMap::new();
        let mut days = vec![];
        if dir.join("old.csv").exists() {
            days.push(std::fs::read(dir.join("old.csv")).unwrap());
        }
        days.push(std::fs::read(dir.join("input.csv")).unwrap());
        let last = days.len() - 1;
        for (day, bytes) in days.into_iter().enumerate() {
            t.drop_file("in.csv", &bytes);
            let o = t.run();
            assert!(matches!(code(&o), 0 | 3), "{case}: {}", stderr(&o));
            let (_, results) = t.processed("in");
            let lines = oracle::results(&results);
            for (line, key, action, outcome) in &lines {
                assert_eq!(
                    outcome,
                    if action == "reject" { "failed" } else { "ok" },
                    "{case} line {line} ({key}): {}",
                    t.failures()
                );
                match action.as_str() {
                    "create" | "update" => {
                        let active = exists.get(key).copied().unwrap_or(true);
                        exists.insert(key.clone(), active || action == "create");
                    }
                    "deactivate" => {
                        exists.insert(key.clone(), false);
                    }
                    "delete" => {
                        exists.remove(key);
                    }
                    _ => {}
                }
            }
            if day == last {
                // The plan is the fixture's: same lines, actions and codes.
                let expected = std::fs::read_to_string(dir.join("expected.csv")).unwrap();
                let mut want = csv::Reader::from_reader(expected.as_bytes());
                let mut got = csv::Reader::from_path(&results).unwrap();
                let cols = |r: csv::StringRecord| {
                    (
                        r[0].to_string(),
                        r[1].to_string(),
                        r[2].to_string(),
                        r[4].to_string(),
                    )
                };
                let want: Vec<_> = want.records().map(|r| cols(r.unwrap())).collect();
                let got: Vec<_> = got.records().map(|r| cols(r.unwrap())).collect();
                assert_eq!(
                    got, want,
                    "{case}: the run's plan differs from the fixture's"
                );
            }
        }
        let held: BTreeMap<String, bool> = server
            .list(endpoint)
            .iter()
            .filter_map(|r| {
                let ext = r["externalId"].as_str()?.strip_prefix(prefix)?.to_string();
                Some((ext, r["active"] != false))
            })
            .filter(|(k, _)| {
                endpoint == "/Users" || prefix == "segment:" || !k.starts_with("segment:")
            })
            .collect();
        let want: BTreeMap<String, bool> = if endpoint == "/Users" {
            exists
        } else {
            exists.into_keys().map(|k| (k, true)).collect()
        };
        assert!(!want.is_empty(), "{case}: nothing applied");
        assert_eq!(
            held, want,
            "{case}: the LMS holds other objects than the results say"
        );
        let count = server.list(endpoint).len();
        if endpoint == "/Users" {
            assert_eq!(
                count,
                held.len(),
                "{case}: a user is held twice or without its key"
            );
        }
    }
}

#[test]
fn mobietrain_creates_groups_on_demand_and_invites_each_user_once() {
    let server = ScimServer::start();
    let proxy = Proxy::start(server.port);
    let t = ScimTenant::new(&proxy.url(), 50, &[("*.csv", "mobietrain")], "");
    t.drop_file("users.csv", &gen("mobietrain", 300, 3));
    let o = t.run();
    assert!(matches!(code(&o), 0 | 3), "{}", stderr(&o));
    let mut state = BTreeMap::new();
    users_state(&t, "users", &MOBIETRAIN, &mut state);
    assert_lms(&server, &state);
    // Every group a user names exists, named after itself.
    let groups: BTreeMap<String, String> = server
        .list("/Groups")
        .iter()
        .map(|g| {
            (
                g["externalId"].as_str().unwrap().into(),
                g["displayName"].as_str().unwrap().into(),
            )
        })
        .collect();
    let named: BTreeSet<&String> = state.values().flat_map(|u| &u.member_of).collect();
    assert!(!named.is_empty());
    for g in named {
        assert_eq!(groups.get(g), Some(g), "group {g} created on demand");
    }
    let mut invited = proxy.invited.lock().unwrap().clone();
    invited.sort();
    let created: Vec<String> = state.keys().cloned().collect();
    assert_eq!(invited, created, "each created user invited exactly once");

    // The same users in other bytes: nothing written, nobody invited again.
    let (file, _) = t.processed("users");
    let text = std::fs::read_to_string(file).unwrap().replace('\n', "\r\n");
    t.drop_file("users.csv", text.as_bytes());
    let o = t.run();
    assert!(matches!(code(&o), 0 | 3), "{}", stderr(&o));
    assert_eq!(proxy.invited.lock().unwrap().len(), created.len());
}

#[test]
fn lucca_links_existing_users_and_writes_managers_named_later_in_the_file() {
    let server = ScimServer::start();
    let t = ScimTenant::new(
        &server.url(),
        10,
        &[("*.csv", "lucca-360learning")],
        "bulk = \"never\"",
    );
    // Managers named before their own row: 100001's manager is 100009.
    let text = String::from_utf8(gen("lucca-360learning", 40, 5)).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    assert!(lines[2].starts_with("100001,"));
    let mut cells: Vec<&str> = lines[2].split(',').collect();
    cells[6] = "100009";
    lines[2] = cells.join(",");
    // An LMS user who exists before muster, with row 100002's e-mail (the
    // 360Learning user name) in capitals.
    assert!(lines[3].starts_with("100002,"));
    let email = lines[3].split(',').nth(1).unwrap().to_uppercase();
    let existing = server.create_user(&email, &email);
    t.drop_file("lucca.csv", (lines.join("\n") + "\n").as_bytes());
    let o = t.run();
    assert!(matches!(code(&o), 0 | 3), "{}", stderr(&o));
    let mut state = BTreeMap::new();
    users_state(&t, "lucca", &LUCCA, &mut state);
    assert_eq!(state["100001"].manager.as_deref(), Some("100009"));
    assert!(state.values().filter(|u| u.manager.is_some()).count() > 20);
    assert_lms(&server, &state);
    // Linked, not duplicated: the LMS's own user now carries the key.
    let users = server.list("/Users");
    let linked = users.iter().find(|u| u["id"] == existing.as_str()).unwrap();
    assert_eq!(linked["externalId"], "100002");
}

/// Runs a MobieTrain tenant through the proxy with `rule` until it
/// converges, and checks the LMS and the invitations.
fn converges_through(
    rule: impl Fn(&proxy::Seen<'_>) -> Fault + Send + Sync + 'static,
    sink: &str,
) -> Vec<Fault> {
    let server = ScimServer::start();
    let proxy = Proxy::start(server.port);
    proxy.set(rule);
    let t = ScimTenant::new(&proxy.url(), 40, &[("*.csv", "mobietrain")], sink);
    t.drop_file("users.csv", &gen("mobietrain", 200, 7));
    let o = t.run();
    assert!(matches!(code(&o), 0 | 3), "{}{}", stderr(&o), t.failures());
    let mut state = BTreeMap::new();
    users_state(&t, "users", &MOBIETRAIN, &mut state);
    assert_lms(&server, &state);
    let mut invited = proxy.invited.lock().unwrap().clone();
    invited.sort();
    assert_eq!(
        invited,
        state.keys().cloned().collect::<Vec<_>>(),
        "each user invited once"
    );
    proxy.faults()
}

/// Each fault in turn, on the first sight of each of the first 80 writes
/// (a retry of the same request passes, so every write gets through).
fn every_fault() -> impl Fn(&proxy::Seen<'_>) -> Fault + Send + Sync {
    let seen = std::sync::Mutex::new(BTreeSet::new());
    let turn = std::sync::atomic::AtomicU64::new(0);
    move |s| {
        let request = (s.method.to_string(), s.path.to_string(), s.body.to_vec());
        if s.method == "GET" || s.n >= 80 || !seen.lock().unwrap().insert(request) {
            return Fault::Pass;
        }
        match turn.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 8 {
            0 => Fault::Status(429, Some("1".into())),
            1 => Fault::Status(429, None),
            2 => Fault::Status(503, None),
            3 => Fault::Slow(Duration::from_millis(1500)),
            4 => Fault::DropBefore,
            5 => Fault::DropAfter,
            6 => Fault::FailBulkEvery(3),
            _ => Fault::Pass,
        }
    }
}

#[test]
fn faults_in_bulk_requests_converge_without_loss_or_duplicates() {
    let faults = converges_through(every_fault(), "timeout_ms = 1000\nsenders = 2");
    assert!(faults.contains(&Fault::DropAfter), "{faults:?}");
    assert!(faults.contains(&Fault::FailBulkEvery(3)), "{faults:?}");
    assert!(faults.contains(&Fault::Status(429, None)), "{faults:?}");
}

#[test]
fn faults_in_single_requests_converge_without_loss_or_duplicates() {
    let faults = converges_through(
        every_fault(),
        "timeout_ms = 1000\nbulk = \"never\"\nsenders = 3",
    );
    assert!(faults.contains(&Fault::DropAfter), "{faults:?}");
    assert!(
        faults.contains(&Fault::Slow(Duration::from_millis(1500))),
        "{faults:?}"
    );
}

#[test]
fn a_413_halves_bulk_requests_until_they_fit() {
    let faults = converges_through(
        |s| {
            if s.bulk_ops > 7 {
                Fault::Status(413, None)
            } else {
                Fault::Pass
            }
        },
        "senders = 1",
    );
    assert!(faults.contains(&Fault::Status(413, None)));
}

#[test]
fn an_unreachable_lms_exits_1_and_the_next_run_resumes() {
    let server = ScimServer::start();
    let proxy = Proxy::start(server.port);
    // Discovery and the first writes pass, then the LMS is down.
    proxy.set(|s| {
        if s.n < 4 {
            Fault::Pass
        } else {
            Fault::Status(503, None)
        }
    });
    let t = ScimTenant::new(
        &proxy.url(),
        30,
        &[("*.csv", "mobietrain")],
        "max_attempts = 2",
    );
    t.drop_file("users.csv", &gen("mobietrain", 150, 9));
    let o = t.run();
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    // The file stays in the inbox, to be sent again; its results say why.
    assert!(t.path("inbox/users.csv").exists());
    let failures = t.failures();
    assert!(
        failures.contains(",create,failed,sink_unavailable,")
            && failures.contains("after 2 attempts"),
        "{failures}"
    );
    proxy.set(|_| Fault::Pass);
    let o = t.run();
    assert!(matches!(code(&o), 0 | 3), "{}", stderr(&o));
    assert!(
        !t.path("inbox/users.csv").exists(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let mut state = BTreeMap::new();
    users_state(&t, "users", &MOBIETRAIN, &mut state);
    assert_lms(&server, &state);
    let mut invited = proxy.invited.lock().unwrap().clone();
    invited.sort();
    assert_eq!(invited, state.keys().cloned().collect::<Vec<_>>());
}

#[test]
fn a_server_that_wants_if_match_gets_the_version_it_asks_for() {
    let server = ScimServer::start();
    let proxy = Proxy::start(server.port);
    let t = ScimTenant::new(&proxy.url(), 25, &[("*.csv", "mobietrain")], "");
    t.drop_file("users.csv", &gen("mobietrain", 100, 4));
    let o = t.run();
    assert!(matches!(code(&o), 0 | 3), "{}", stderr(&o));
    // Day 2, through a server that refuses writes without If-Match: 428
    // for a Bulk request (each operation then goes alone) and for a PATCH
    // without the header.
    proxy.set(|s| match (s.method, s.if_match) {
        ("POST", _) if s.path.starts_with("/Bulk") => Fault::Status(428, None),
        ("PATCH", false) => Fault::Status(428, None),
        _ => Fault::Pass,
    });
    let (day1, _) = t.processed("users");
    let day2 = gen_from("mobietrain", &day1, "0.3", 5);
    t.drop_file("users.csv", &day2);
    let o = t.run();
    assert!(matches!(code(&o), 0 | 3), "{}{}", stderr(&o), t.failures());
    let (file, results) = t.processed("users");
    assert!(oracle::results(&results).iter().any(|r| r.2 == "update"));
    let mut state = BTreeMap::new();
    oracle::apply_users(
        &mut state,
        &MOBIETRAIN,
        &day1,
        &t.processed_results_of(&day1),
        None,
        None,
    );
    oracle::apply_users(&mut state, &MOBIETRAIN, &file, &results, None, None);
    assert_lms(&server, &state);
    assert!(proxy.faults().contains(&Fault::Status(428, None)));
}

#[test]
fn a_refused_row_is_failed_with_the_lms_message_and_the_rest_goes_on() {
    let server = ScimServer::start();
    let proxy = Proxy::start(server.port);
    proxy.set(|s| {
        let body = String::from_utf8_lossy(s.body);
        if s.method == "POST" && body.contains("\"externalId\":\"E0000003\"") {
            Fault::Status(400, None)
        } else {
            Fault::Pass
        }
    });
    let t = ScimTenant::new(
        &proxy.url(),
        10,
        &[("*.csv", "mobietrain")],
        "bulk = \"never\"",
    );
    t.drop_file("users.csv", &gen("mobietrain", 30, 6));
    let o = t.run();
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    let (_, results) = t.processed("users");
    let text = std::fs::read_to_string(&results).unwrap();
    let line = text.lines().find(|l| l.contains(",E0000003,")).unwrap();
    assert!(
        line.ends_with(",create,failed,sink_rejected,HTTP 400: injected by the test proxy"),
        "{line}"
    );
    let users = oracle::lms_users(&server);
    assert!(!users.contains_key("E0000003"));
    assert!(
        users.len() >= 25,
        "the other rows were applied: {}",
        users.len()
    );
    // Hardening 8: the same bytes sent again (the LMS accepts it now): the
    // row refused last time is tried again, the others are unchanged.
    proxy.set(|_| Fault::Pass);
    t.drop_file("users.csv", &gen("mobietrain", 30, 6));
    let o = t.run();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(oracle::lms_users(&server).contains_key("E0000003"));
    let (_, results) = t.processed("users");
    let text = std::fs::read_to_string(&results).unwrap();
    let line = text.lines().find(|l| l.contains(",E0000003,")).unwrap();
    assert!(line.contains(",create,ok,"), "{line}");
}

#[test]
fn a_dry_run_needs_no_lms() {
    // Nothing listens on this port.
    let url = format!("http://127.0.0.1:{}/v2", server::free_port());
    let t = ScimTenant::new(&url, 10, &[("*.csv", "mobietrain")], "max_attempts = 1");
    t.drop_file("users.csv", &gen("mobietrain", 20, 1));
    let o = t.command().arg("--dry-run").output().unwrap();
    assert!(matches!(code(&o), 0 | 3), "{}", stderr(&o));
    assert!(
        t.path("inbox/users.csv").exists(),
        "a dry run moves nothing"
    );
    // A real run cannot reach it: exit 1, the file stays.
    let o = t.run();
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("127.0.0.1"), "{}", stderr(&o));
    assert!(t.path("inbox/users.csv").exists());
}

#[test]
fn the_rate_limit_paces_the_writes() {
    let server = ScimServer::start();
    let t = ScimTenant::new(
        &server.url(),
        50,
        &[("*.csv", "mobietrain")],
        "bulk = \"never\"\nwrites_per_second = 40",
    );
    t.drop_file("users.csv", &gen("mobietrain", 130, 8));
    let started = Instant::now();
    let o = t.run();
    assert!(matches!(code(&o), 0 | 3), "{}", stderr(&o));
    // 130 creates at 40 a second, the first 40 at once: at least 2.25 s.
    assert!(
        started.elapsed() >= Duration::from_millis(2250),
        "{:?}",
        started.elapsed()
    );
    assert!(oracle::lms_users(&server).len() >= 120);
}

#[test]
fn kill_9_mid_run_then_a_rerun_holds_every_user_once_and_invites_nobody_twice() {
    let server = ScimServer::start();
    let proxy = Proxy::start(server.port);
    proxy.set(|s| {
        if s.method == "POST" {
            Fault::Slow(Duration::from_millis(40))
        } else {
            Fault::Pass
        }
    });
    let t = ScimTenant::new(&proxy.url(), 20, &[("*.csv", "mobietrain")], "senders = 2");
    t.drop_file("users.csv", &gen("mobietrain", 1500, 11));
    let mut child = t
        .command()
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let n = server.list("/Users").len();
        if n >= 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the run did not get going ({n} users)"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIGKILL: no chance to commit, flush or clean up.
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = server.list("/Users").len();
    assert!(partial < 1500, "killed mid-run ({partial} users)");
    proxy.set(|_| Fault::Pass);
    let o = t.run();
    assert!(matches!(code(&o), 0 | 3), "{}", stderr(&o));
    let mut state = BTreeMap::new();
    users_state(&t, "users", &MOBIETRAIN, &mut state);
    assert!(state.len() > 1400);
    assert_lms(&server, &state);
    let invited = proxy.invited.lock().unwrap().clone();
    let unique: BTreeSet<&String> = invited.iter().collect();
    assert_eq!(unique.len(), invited.len(), "an invitation was sent twice");
    assert_eq!(unique.len(), state.len());
}

#[test]
fn the_token_never_shows_and_a_wrong_one_fails_clearly() {
    let server = ScimServer::start();
    let t = ScimTenant::new(&server.url(), 50, &[("*.csv", "mobietrain")], "");
    t.drop_file("users.csv", &gen("mobietrain", 30, 1));
    let o = t.command().env("RUST_LOG", "trace").output().unwrap();
    assert!(matches!(code(&o), 0 | 3), "{}", stderr(&o));
    let mut seen = stderr(&o) + &String::from_utf8_lossy(&o.stdout);
    for e in std::fs::read_dir(t.path("inbox/processed")).unwrap() {
        seen += &std::fs::read_to_string(e.unwrap().path()).unwrap_or_default();
    }
    assert!(seen.contains("scim"), "the trace log ran");
    assert!(!seen.contains(TOKEN), "the token leaked");

    t.drop_file("users.csv", &gen("mobietrain", 31, 2));
    let o = t
        .command()
        .env(TOKEN_VAR, "not-the-token")
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert_eq!(code(&o), 1);
    let err = stderr(&o);
    assert!(err.contains("refused the bearer token"), "{err}");
    assert!(!err.contains("not-the-token"), "{err}");
}

/// How many groups the LMS holds per `externalId`, duplicates counted.
fn group_copies(server: &ScimServer) -> BTreeMap<String, usize> {
    let mut copies = BTreeMap::new();
    for g in server.list("/Groups") {
        let ext = g["externalId"].as_str().unwrap_or_default().to_string();
        *copies.entry(ext).or_insert(0) += 1;
    }
    copies
}

/// Hardening point 1: the answer to the first write that creates groups is
/// lost after the LMS applied it (a proxy closes the connection); the
/// create is not sent again blindly: each group exists once. With /Bulk and
/// without, and for MobieTrain's groups made on demand.
#[test]
fn p1_groups_are_not_duplicated_when_an_answer_is_lost() {
    for (files, sink, file, profile) in [
        (
            &[("wt_groups*.csv", "winningtemp-groups")][..],
            "",
            "wt_groups.csv",
            "winningtemp-groups",
        ),
        (
            &[("wt_groups*.csv", "winningtemp-groups")][..],
            "bulk = \"never\"",
            "wt_groups.csv",
            "winningtemp-groups",
        ),
        (
            &[("*.csv", "mobietrain")][..],
            "bulk = \"never\"",
            "users.csv",
            "mobietrain",
        ),
    ] {
        let server = ScimServer::start();
        let proxy = Proxy::start(server.port);
        let dropped = std::sync::atomic::AtomicBool::new(false);
        // Every group create sent, by externalId: none is sent twice (the
        // lost answer is followed by a look-up, not a second create).
        let posted = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let seen = posted.clone();
        proxy.set(move |s| {
            let body: Json = serde_json::from_slice(s.body).unwrap_or(Json::Null);
            let mut sent = seen.lock().unwrap();
            if s.method == "POST" && s.path.ends_with("/Groups") {
                sent.push(body["externalId"].as_str().unwrap_or_default().to_string());
            }
            if s.method == "POST" && s.path.ends_with("/Bulk") {
                for op in body["Operations"].as_array().into_iter().flatten() {
                    if op["method"] == "POST" && op["path"] == "/Groups" {
                        sent.push(
                            op["data"]["externalId"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                        );
                    }
                }
            }
            drop(sent);
            let creates = s.method == "POST"
                && (s.path.ends_with("/Groups")
                    || (s.path.ends_with("/Bulk")
                        && String::from_utf8_lossy(s.body).contains("/Groups")));
            if creates && !dropped.swap(true, std::sync::atomic::Ordering::SeqCst) {
                Fault::DropAfter
            } else {
                Fault::Pass
            }
        });
        let t = ScimTenant::new(
            &proxy.url(),
            40,
            files,
            &format!("timeout_ms = 2000\n{sink}"),
        );
        t.drop_file(file, &gen(profile, 60, 4));
        let o = t.run();
        assert!(
            matches!(code(&o), 0 | 3),
            "{sink}: {}{}",
            stderr(&o),
            t.failures()
        );
        assert!(
            proxy.faults().contains(&Fault::DropAfter),
            "{sink}: no answer was lost"
        );
        let copies = group_copies(&server);
        assert!(!copies.is_empty(), "{profile}: no group");
        let twice: Vec<_> = copies.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "{profile} {sink}: groups held twice: {twice:?}"
        );
        let mut sent = posted.lock().unwrap().clone();
        let all = sent.len();
        sent.sort();
        sent.dedup();
        assert_eq!(
            sent.len(),
            all,
            "{profile} {sink}: a group create was sent twice"
        );
    }
}

/// Hardening deliverable 2, from the LMS: a tenant's store deleted after
/// two days; `muster state rebuild` reads the LMS's users, groups and
/// segments back by `externalId`; the last users file run again creates
/// nothing (no POST of a user or group, directly or in a Bulk request),
/// and the LMS still holds each user once, as the files say.
#[test]
fn d2_a_lost_store_is_rebuilt_from_the_lms() {
    let server = ScimServer::start();
    let proxy = Proxy::start(server.port);
    let creates = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = creates.clone();
    proxy.set(move |s| {
        let body = String::from_utf8_lossy(s.body);
        if s.method == "POST" && (!s.path.contains("/Bulk") || body.contains("\"POST\"")) {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Fault::Pass
    });
    let t = winningtemp_tenant(&proxy.url());
    t.drop_file("wt_groups.csv", &gen("winningtemp-groups", 100, 1));
    t.drop_file("wt_segments.csv", &gen("winningtemp-segments", 10, 1));
    t.drop_file("wt_users.csv", &gen("winningtemp-users", 400, 1));
    let o = t.run();
    assert!(matches!(code(&o), 0 | 3), "{}", stderr(&o));
    let (gf, gr) = t.processed("wt_groups");
    let (sf, sr) = t.processed("wt_segments");
    let mut groups = oracle::file_groups(&gf, &gr, "");
    groups.extend(oracle::file_groups(&sf, &sr, "segment:"));
    let (uf, ur) = t.processed("wt_users");
    let mut state = BTreeMap::new();
    let (gk, sk) = (keys_of(&groups, ""), keys_of(&groups, "segment:"));
    oracle::apply_users(&mut state, &WINNINGTEMP, &uf, &ur, Some(&gk), Some(&sk));
    t.drop_file(
        "wt_users.csv",
        &gen_from("winningtemp-users", &uf, "0.2", 2),
    );
    let o = t.run();
    assert!(matches!(code(&o), 0 | 3), "{}", stderr(&o));
    let (uf2, ur2) = t.processed("wt_users");
    oracle::apply_users(&mut state, &WINNINGTEMP, &uf2, &ur2, Some(&gk), Some(&sk));
    assert_lms(&server, &state);

    for file in ["state.redb", "state.redb.journal"] {
        std::fs::remove_file(t.path(file)).unwrap();
    }
    for kind in ["user", "group", "segment"] {
        let _ = std::fs::remove_file(t.path(&format!("state.redb.prior-{kind}")));
    }
    let o = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["state", "rebuild", "--tenant", "t", "--config"])
        .arg(t.path("muster.toml"))
        .env(TOKEN_VAR, TOKEN)
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(code(&o), 0, "{err}");
    let users = server.list("/Users").len();
    assert!(err.contains(&format!("{users} users")), "{err}");
    assert!(err.contains("creates nothing the LMS has"), "{err}");

    creates.store(0, std::sync::atomic::Ordering::SeqCst);
    t.drop_file("wt_users.csv", &std::fs::read(&uf2).unwrap());
    let o = t.run();
    assert!(matches!(code(&o), 0 | 3), "{}{}", stderr(&o), t.failures());
    assert_eq!(
        creates.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the run after the rebuild created something"
    );
    let (_, ur3) = t.processed("wt_users");
    assert!(!oracle::results(&ur3).iter().any(|r| r.2 == "create"));
    assert_eq!(server.list("/Users").len(), users);
    assert_lms(&server, &state);
}

/// Requests by method and endpoint (`GET /Groups?filter`, `POST /Bulk`...),
/// for the recovery test's message.
type Requests = std::sync::Arc<std::sync::Mutex<BTreeMap<String, usize>>>;

/// A proxy that counts requests (by method and endpoint) and slows each
/// write by `slow` ms.
fn counting(proxy: &Proxy, slow: u64) -> Requests {
    counting_losing(proxy, slow, 0)
}

/// [`counting`], the answer to every `lose`th write (0: none) lost after
/// the LMS applied it.
fn counting_losing(proxy: &Proxy, slow: u64, lose: u64) -> Requests {
    let counts: Requests = Default::default();
    let seen = counts.clone();
    proxy.set(move |s| {
        let endpoint = s.path.split('?').next().unwrap_or_default();
        let endpoint = endpoint.trim_start_matches("/v2");
        let endpoint = endpoint
            .splitn(3, '/')
            .take(2)
            .collect::<Vec<_>>()
            .join("/");
        let query = if s.path.contains("filter=") {
            "?filter"
        } else {
            ""
        };
        *seen
            .lock()
            .unwrap()
            .entry(format!("{} {endpoint}{query}", s.method))
            .or_default() += 1;
        if s.method != "GET" && lose > 0 && s.n % lose == 0 {
            Fault::DropAfter
        } else if s.method != "GET" && slow > 0 {
            Fault::Slow(Duration::from_millis(slow))
        } else {
            Fault::Pass
        }
    });
    counts
}

fn total(r: &Requests) -> usize {
    r.lock().unwrap().values().sum()
}

/// Hardening point 10 and deliverable 4: a 5,000-user tenant with 200
/// groups and 20 segments, killed mid-run (SIGKILL) behind a proxy; the
/// run that resumes it sends at most twice the requests of a clean run of
/// the same files (its look-ups batched), and the LMS ends as the clean
/// one. MUSTER_SHOW_RECOVERY=1 prints the counts (BENCHMARKS.md).
#[test]
fn p10_a_resume_costs_at_most_twice_a_clean_run() {
    let inputs = [
        ("wt_groups.csv", gen("winningtemp-groups", 200, 3)),
        ("wt_segments.csv", gen("winningtemp-segments", 20, 3)),
        ("wt_users.csv", gen("winningtemp-users", 5000, 3)),
    ];
    // A clean run.
    let server = ScimServer::start();
    let proxy = Proxy::start(server.port);
    let clean = counting(&proxy, 0);
    let t = winningtemp_tenant(&proxy.url());
    for (name, bytes) in &inputs {
        t.drop_file(name, bytes);
    }
    let o = t.run();
    assert!(matches!(code(&o), 0 | 3), "{}", stderr(&o));
    let want = server.list("/Users").len();

    // The same files, killed once a third of the users are written.
    let server = ScimServer::start();
    let proxy = Proxy::start(server.port);
    let first = counting(&proxy, 5);
    let t = winningtemp_tenant(&proxy.url());
    for (name, bytes) in &inputs {
        t.drop_file(name, bytes);
    }
    let mut child = t
        .command()
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while server.list("/Users").len() < want / 3 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the run did not get going"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = total(&first);
    let resumed = counting(&proxy, 0);
    let o = t.run();
    assert!(matches!(code(&o), 0 | 3), "{}", stderr(&o));
    assert_eq!(server.list("/Users").len(), want);
    let (clean_n, resumed_n) = (total(&clean), total(&resumed));
    let show = format!(
        "clean run: {clean_n} requests {:?}\nkilled run: {before} requests\nresumed run: {resumed_n} requests {:?}",
        clean.lock().unwrap(),
        resumed.lock().unwrap()
    );
    if std::env::var_os("MUSTER_SHOW_RECOVERY").is_some() {
        eprintln!("{show}");
    }
    assert!(resumed_n <= 2 * clean_n, "{show}");
}

/// Hardening points 1 and 10 under a resetting proxy: the answer to every
/// 7th write of a 2,000-user tenant (groups, segments, users) is lost
/// after the LMS applied it. The run converges — each user and group
/// once — for at most twice a clean run's requests: a lost create is
/// looked up (one search per 20 creates), not sent again.
#[test]
fn p10_lost_answers_cost_at_most_twice_a_clean_run() {
    let inputs = [
        ("wt_groups.csv", gen("winningtemp-groups", 100, 5)),
        ("wt_segments.csv", gen("winningtemp-segments", 10, 5)),
        ("wt_users.csv", gen("winningtemp-users", 2000, 5)),
    ];
    let run = |lose: u64| {
        let server = ScimServer::start();
        let proxy = Proxy::start(server.port);
        let counts = counting_losing(&proxy, 0, lose);
        let t = winningtemp_tenant(&proxy.url());
        for (name, bytes) in &inputs {
            t.drop_file(name, bytes);
        }
        let o = t.run();
        assert!(matches!(code(&o), 0 | 3), "{}{}", stderr(&o), t.failures());
        let users = server.list("/Users");
        let mut ext: Vec<&str> = users
            .iter()
            .map(|u| u["externalId"].as_str().unwrap_or_default())
            .collect();
        ext.sort();
        let n = ext.len();
        ext.dedup();
        assert_eq!(ext.len(), n, "a user is held twice");
        let twice: Vec<_> = group_copies(&server)
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .collect();
        assert!(twice.is_empty(), "groups held twice: {twice:?}");
        let total = total(&counts);
        (n, total, counts)
    };
    let (want, clean, _) = run(0);
    let (got, lossy, counts) = run(7);
    assert_eq!(got, want);
    let show = format!(
        "clean run: {clean} requests; with every 7th answer lost: {lossy} {:?}",
        counts.lock().unwrap()
    );
    if std::env::var_os("MUSTER_SHOW_RECOVERY").is_some() {
        eprintln!("{show}");
    }
    assert!(lossy <= 2 * clean, "{show}");
}

/// SPEC §11 `invite_from` over SCIM: users created before their first day
/// are not invited; on that day each gets one PATCH setting the invite
/// attribute, also when that run is killed (SIGKILL) with some sent and
/// not committed: the next run's recovery reads the attribute back and
/// sends none of those again.
#[test]
fn a_delayed_invitation_is_one_patch_even_across_a_crash() {
    let server = ScimServer::start();
    let proxy = Proxy::start(server.port);
    let t = ScimTenant::new(&proxy.url(), 10, &[("users*.csv", "lifecycle.toml")], "");
    std::fs::write(
        t.path("lifecycle.toml"),
        r#"
object = "user"
header = "name"
columns = ["external_id", "first_name", "last_name", "email", "employed_since"]
invite_on_create = true
invite_from = "employed_since"
"#,
    )
    .unwrap();
    let users = 200;
    let mut file = String::from("external_id,first_name,last_name,email,employed_since\n");
    for i in 0..users {
        file.push_str(&format!("E{i:03},F,L,e{i}@x.example,2026-02-01\n"));
    }
    t.drop_file("users_1.csv", file.as_bytes());
    let o = t.command_on("2026-01-15").output().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(server.list("/Users").len(), users);
    assert!(
        proxy.invited.lock().unwrap().is_empty(),
        "nobody invited before their day"
    );

    t.drop_file("users_2.csv", file.as_bytes());
    let mut child = t
        .command_on("2026-02-01")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    // Killed as soon as the 60th invitation is applied: its answer, and
    // those of the PATCHes sent with it, are then mostly not committed.
    while proxy.invited.lock().unwrap().len() < 60 && started.elapsed().as_secs() < 60 {
        std::thread::yield_now();
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let sent = proxy.invited.lock().unwrap().len();
    assert!(sent >= 60 && sent < users, "killed midway: {sent} sent");
    let o = t.command_on("2026-02-01").output().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let mut invited = proxy.invited.lock().unwrap().clone();
    invited.sort();
    let before = invited.len();
    invited.dedup();
    assert_eq!(before, invited.len(), "a user invited twice");
    assert_eq!(invited.len(), users, "every user invited");
    for u in server.list("/Users") {
        let extension = &u["urn:muster:params:scim:schemas:extension:2.0:User"];
        assert_eq!(extension["invite"], true, "{u}");
    }
}
