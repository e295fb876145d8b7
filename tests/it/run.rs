//! `muster run` on a local inbox with the JSONL outbox, as a user runs it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use muster::profile::ObjectKind;
use muster::store::Prior;
use muster::store::{RedbStore, StateStore};

use crate::fixtures::TODAY;

pub struct Tenant {
    dir: tempfile::TempDir,
}

impl Tenant {
    pub fn new(batch_size: usize) -> Tenant {
        Tenant::with_groups(batch_size, false)
    }

    /// With `groups`, the tenant also has a group file, and a users file's
    /// group names must name its groups.
    pub fn with_groups(batch_size: usize, groups: bool) -> Tenant {
        Tenant::with_extra(batch_size, groups, "")
    }

    /// With `extra` lines in the `[[tenant]]` table (e.g. a schedule).
    pub fn with_extra(batch_size: usize, groups: bool, extra: &str) -> Tenant {
        let group_file = if groups {
            "[[tenant.files]]\npattern = \"wt_groups*.csv\"\nprofile = \"winningtemp-groups\""
        } else {
            ""
        };
        Tenant::with_config(&format!(
            r#"
[[tenant]]
name = "t"
state = "state.redb"
batch_size = {batch_size}
{extra}
[tenant.source]
type = "dir"
path = "inbox"
settle_ms = 0
{group_file}
[[tenant.files]]
pattern = "wt_users*.csv"
profile = "winningtemp-users"
[tenant.sink]
type = "jsonl"
path = "outbox.jsonl"
"#
        ))
    }

    /// A MobieTrain tenant: `users*.csv` files of the `mobietrain` preset.
    pub fn mobietrain() -> Tenant {
        Tenant::with_config(
            r#"
[[tenant]]
name = "t"
state = "state.redb"
[tenant.source]
type = "dir"
path = "inbox"
settle_ms = 0
[[tenant.files]]
pattern = "users*.csv"
profile = "mobietrain"
[tenant.sink]
type = "jsonl"
path = "outbox.jsonl"
"#,
        )
    }

    /// A tenant of this `muster.toml` (its inbox `inbox/`).
    pub fn with_config(config: &str) -> Tenant {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
        std::fs::write(dir.path().join("muster.toml"), config).unwrap();
        Tenant { dir }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn drop_file(&self, name: &str, text: &[u8]) {
        std::fs::write(self.path("inbox").join(name), text).unwrap();
    }

    pub fn run(&self, extra: &[&str]) -> Output {
        self.run_on(TODAY, extra)
    }

    /// `muster run --today today`.
    pub fn run_on(&self, today: &str, extra: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_muster"))
            .args(["run", "--config"])
            .arg(self.path("muster.toml"))
            .args(["--today", today])
            .args(extra)
            .output()
            .unwrap()
    }

    /// `muster run`, killed without warning (SIGKILL) once the outbox
    /// holds `lines` lines (or after a minute).
    pub fn run_killed_at(&self, lines: usize) {
        self.run_killed_on(TODAY, lines)
    }

    /// [`Tenant::run_killed_at`] with `--today today`.
    pub fn run_killed_on(&self, today: &str, lines: usize) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_muster"))
            .args(["run", "--config"])
            .arg(self.path("muster.toml"))
            .args(["--today", today])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while self.outbox().len() < lines && started.elapsed().as_secs() < 60 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// The outbox's complete lines (a line still being written, without its
    /// newline, is not an applied operation yet).
    pub fn outbox(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.path("outbox.jsonl")).unwrap_or_default();
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        complete
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn processed(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path("inbox/processed"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The results file written last (by modification time: two runs in
    /// the same second get `…Z` and `…Z-2` names).
    pub fn latest_results(&self, stem: &str) -> String {
        self.latest(stem, ".results.csv")
    }

    /// The summary written last, parsed.
    pub fn latest_summary(&self, stem: &str) -> serde_json::Value {
        serde_json::from_str(&self.latest(stem, ".summary.json")).unwrap()
    }

    /// The `processed/` file starting with `stem` and ending with `suffix`
    /// written last.
    fn latest(&self, stem: &str, suffix: &str) -> String {
        let dir = self.path("inbox/processed");
        let name = self
            .processed()
            .into_iter()
            .filter(|n| n.starts_with(stem) && n.ends_with(suffix))
            .max_by_key(|n| std::fs::metadata(dir.join(n)).unwrap().modified().unwrap())
            .unwrap();
        std::fs::read_to_string(dir.join(name)).unwrap()
    }
}

pub fn gen(rows: u64, seed: u64) -> Vec<u8> {
    Command::new(env!("CARGO_BIN_EXE_muster"))
        .args([
            "gen",
            "--profile",
            "winningtemp-users",
            "--rows",
            &rows.to_string(),
            "--seed",
            &seed.to_string(),
        ])
        .output()
        .unwrap()
        .stdout
}

pub fn derive(from: &Path, ratio: &str) -> Vec<u8> {
    let o = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args([
            "gen",
            "--profile",
            "winningtemp-users",
            "--seed",
            "9",
            "--change-ratio",
            ratio,
            "--from",
        ])
        .arg(from)
        .output()
        .unwrap();
    assert!(o.status.success());
    o.stdout
}

/// `rows` generated users, with the e-mail of lines `bad` (1-based, the
/// header is line 1) made invalid.
pub fn users_with_bad_emails(rows: u64, seed: u64, bad: &[usize]) -> Vec<u8> {
    let text = String::from_utf8(gen(rows, seed)).unwrap();
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        if bad.contains(&(i + 1)) {
            let mut fields: Vec<&str> = line.split(';').collect();
            fields[4] = "not-an-address";
            out.push_str(&fields.join(";"));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out.into_bytes()
}

/// Starts `tests/it/<script>` with the test venv's Python (what
/// `scripts/test.sh` installs) and `args`; it prints `port <n>` once it
/// listens. Returns the child and the port.
pub fn python_server(
    script: &str,
    args: &[&std::ffi::OsStr],
    needs: &str,
) -> (std::process::Child, u16) {
    use std::io::BufRead;
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = manifest.join("target/scim-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run the tests with scripts/test.sh, which installs {needs}",
        python.display()
    );
    let mut child = Command::new(python)
        .arg(manifest.join("tests/it").join(script))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .strip_prefix("port ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{script} said {line:?}"));
    (child, port)
}

/// Appends `tail` to `path` in ten pieces, 250 ms apart, on a thread: an
/// HR system still writing the file.
pub fn append_slowly(path: PathBuf, tail: Vec<u8>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for chunk in tail.chunks(tail.len() / 10 + 1) {
            std::thread::sleep(std::time::Duration::from_millis(250));
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            std::io::Write::write_all(&mut f, chunk).unwrap();
        }
    })
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_rerun_of_the_same_file_applies_nothing() {
    let t = Tenant::new(100);
    let users = gen(300, 1);
    t.drop_file("wt_users.csv", &users);
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let first = t.outbox();
    let creates = first.iter().filter(|l| l["action"] == "create").count();
    assert!(creates > 280, "{creates} creates");
    assert!(first.iter().all(|l| l["kind"] == "user"));
    // The same file again: planned again, every line unchanged, and said
    // to be the same content as the file applied before (in the run's
    // report and the summary).
    t.drop_file("wt_users.csv", &users);
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("same content as wt_users."),
        "{}",
        stderr(&o)
    );
    assert!(!t.path("inbox/wt_users.csv").exists(), "left in the inbox");
    assert_eq!(t.outbox().len(), first.len(), "a re-run wrote");
    let results = t.latest_results("wt_users");
    assert_eq!(results.lines().count(), 301, "{results}");
    assert!(
        results
            .lines()
            .skip(1)
            .all(|l| l.contains(",unchanged,ok,") || l.contains(",reject,failed,")),
        "{results}"
    );
    let summary = t.latest_summary("wt_users");
    let earlier = summary["same_content_as"].as_str().unwrap();
    assert!(t.processed().iter().any(|n| n == earlier), "{earlier}");
    // The same rows in other bytes (CRLF line ends) are planned again:
    // nothing to write, every line unchanged.
    let crlf = String::from_utf8(users).unwrap().replace('\n', "\r\n");
    t.drop_file("wt_users.csv", crlf.as_bytes());
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        t.outbox().len(),
        first.len(),
        "a re-run wrote to the outbox"
    );
    let results = t.latest_results("wt_users");
    assert!(
        results
            .lines()
            .skip(1)
            .all(|l| l.contains(",unchanged,ok,")),
        "{results}"
    );
}

#[test]
fn processed_holds_the_original_results_and_summary_with_spec_names() {
    let t = Tenant::new(100);
    t.drop_file("wt_users.csv", &gen(20, 2));
    t.drop_file("wt_users.csv.part", b"half a file");
    t.drop_file(".hidden.csv", b"x");
    t.drop_file("notes.txt", b"x");
    assert_eq!(t.run(&[]).status.code(), Some(0));
    let names = t.processed();
    assert_eq!(names.len(), 3, "{names:?}");
    let stamp = |n: &str, suffix: &str| {
        let rest = n
            .strip_prefix("wt_users.")
            .and_then(|r| r.strip_suffix(suffix))
            .unwrap_or("");
        rest.len() == 16 && rest.as_bytes()[8] == b'T' && rest.ends_with('Z')
    };
    assert!(
        names
            .iter()
            .any(|n| stamp(n, ".csv") && !n.ends_with(".results.csv")),
        "{names:?}"
    );
    assert!(names.iter().any(|n| stamp(n, ".results.csv")), "{names:?}");
    assert!(names.iter().any(|n| stamp(n, ".summary.json")), "{names:?}");
    // Partial, hidden and unmatched files stay in the inbox.
    for left in ["wt_users.csv.part", ".hidden.csv", "notes.txt"] {
        assert!(t.path("inbox").join(left).exists(), "{left}");
    }
    assert!(!t.path("inbox/wt_users.csv").exists());
    let summary = t
        .processed()
        .into_iter()
        .find(|n| n.ends_with(".summary.json"))
        .unwrap();
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(t.path("inbox/processed").join(summary)).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["rows"], 20);
    assert_eq!(summary["held"], false);
    assert_eq!(summary["dry_run"], false);
}

#[test]
fn day_two_updates_deactivates_and_deletes() {
    let t = Tenant::new(50);
    t.drop_file("wt_users.csv", &gen(400, 3));
    assert_eq!(t.run(&[]).status.code(), Some(0));
    let day1 = t
        .processed()
        .into_iter()
        .find(|n| n.ends_with("Z.csv"))
        .unwrap();
    let mut day2 = derive(&t.path("inbox/processed").join(day1), "0.1");
    // One row the profile rejects (its e-mail), a failed line.
    day2.extend_from_slice(b"k-bad;A;B;a.b;not-an-email;;;;;;;;;;Active;en\n");
    let before = t.outbox().len();
    t.drop_file("wt_users.csv", &day2);
    let o = t.run(&[]);
    // The rejected row: exit 3.
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let new: Vec<_> = t.outbox().into_iter().skip(before).collect();
    let count = |a: &str| new.iter().filter(|l| l["action"] == a).count();
    assert!(
        count("update") > 0
            && count("delete") > 0
            && count("create") > 0
            && count("deactivate") > 0,
        "{new:?}"
    );
    // Deletions come last.
    let first_delete = new.iter().position(|l| l["action"] == "delete").unwrap();
    assert!(new[first_delete..].iter().all(|l| l["action"] == "delete"));
    // An update carries only the changed fields.
    let update = new.iter().find(|l| l["action"] == "update").unwrap();
    assert!(update["fields"].as_object().unwrap().len() < 4, "{update}");
    // The store holds exactly the objects the outbox left.
    let store = RedbStore::open(&t.path("state.redb")).unwrap();
    let prior = store.prior(ObjectKind::User).unwrap();
    let mut alive: HashMap<String, bool> = HashMap::new();
    for l in t.outbox() {
        let key = l["key"].as_str().unwrap().to_string();
        match l["action"].as_str().unwrap() {
            "delete" => {
                alive.remove(&key);
            }
            "deactivate" => {
                alive.insert(key, false);
            }
            _ => {
                alive.entry(key).or_insert(true);
            }
        }
    }
    assert_eq!(prior.len(), alive.len());
    for (key, active) in &alive {
        assert_eq!(prior.get(key).map(|e| e.active), Some(*active), "{key}");
    }
    // Each day's summary counts its results file's lines by action and
    // outcome.
    let mut kinds = 0;
    let processed = t.path("inbox/processed");
    for name in t.processed() {
        let Some(stem) = name.strip_suffix(".summary.json") else {
            continue;
        };
        let mut lines: HashMap<(String, String), u64> = HashMap::new();
        let results = processed.join(format!("{stem}.results.csv"));
        for r in csv::Reader::from_path(results).unwrap().records() {
            let r = r.unwrap();
            *lines
                .entry((r[2].to_string(), r[3].to_string()))
                .or_default() += 1;
        }
        let summary = std::fs::read_to_string(processed.join(&name)).unwrap();
        let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
        let mut counted: HashMap<(String, String), u64> = HashMap::new();
        for (action, outcomes) in summary["counts"].as_object().unwrap() {
            for (outcome, n) in outcomes.as_object().unwrap() {
                counted.insert((action.clone(), outcome.clone()), n.as_u64().unwrap());
            }
        }
        assert_eq!(counted, lines, "{name}");
        kinds = kinds.max(counted.len());
    }
    // Day 2 has creates, updates, unchanged rows, deactivations, deletions
    // and a rejected row.
    assert!(kinds >= 6, "{kinds}");
}

/// The `.held.` results in `processed/`.
fn held_results(t: &Tenant) -> Vec<String> {
    let held = t.processed().into_iter();
    held.filter(|n| n.ends_with(".held.results.csv")).collect()
}

#[test]
fn a_held_file_stays_in_the_inbox_until_forced() {
    let t = Tenant::new(100);
    let users = gen(50, 4);
    t.drop_file("wt_users.csv", &users);
    assert_eq!(t.run(&[]).status.code(), Some(0));
    let before = t.outbox().len();
    // Day 2 keeps only the header and 10 rows: 80 % would be deleted.
    let text = String::from_utf8(users).unwrap();
    let short: String = text.lines().take(11).map(|l| format!("{l}\n")).collect();
    t.drop_file("wt_users.csv", short.as_bytes());
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert_eq!(t.outbox().len(), before, "a held file wrote");
    // The table says held, and why, on the file's line.
    let table_line = stderr(&o)
        .lines()
        .find(|l| l.starts_with("t ") && l.contains("wt_users.csv"))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(
        table_line.contains("held: it would delete or deactivate")
            && table_line.contains("max_delete_ratio"),
        "{}",
        stderr(&o)
    );
    // It stays in the inbox; its held results are in processed/.
    assert!(t.path("inbox/wt_users.csv").exists(), "held file moved");
    assert_eq!(held_results(&t).len(), 1, "{:?}", t.processed());
    let results = t.latest_results("wt_users");
    assert!(
        results.lines().skip(1).all(|l| l.contains(",held,")),
        "{results}"
    );
    assert_eq!(t.latest_summary("wt_users")["held"], true);
    // The next run holds it again.
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert_eq!(held_results(&t).len(), 2, "{:?}", t.processed());
    // --force applies it, as it lies in the inbox: the store then holds
    // the active users of the short file, nothing else.
    let o = t.run(&["--force"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(t.outbox().len() > before);
    assert!(!t.path("inbox/wt_users.csv").exists(), "forced file left");
    let store = RedbStore::open(&t.path("state.redb")).unwrap();
    let prior = store.prior(ObjectKind::User).unwrap();
    let active: Vec<&str> = short
        .lines()
        .skip(1)
        .filter(|l| !l.contains(";Inactive;"))
        .map(|l| l.split(';').next().unwrap())
        .collect();
    assert_eq!(prior.len(), active.len());
    for key in active {
        assert!(prior.get(key).is_some(), "{key}");
    }
}

#[test]
fn a_newer_file_supersedes_a_held_one() {
    let t = Tenant::new(100);
    let users = gen(50, 4);
    t.drop_file("wt_users_1.csv", &users);
    assert_eq!(t.run(&[]).status.code(), Some(0));
    let text = String::from_utf8(users.clone()).unwrap();
    let short: String = text.lines().take(11).map(|l| format!("{l}\n")).collect();
    t.drop_file("wt_users_2.csv", short.as_bytes());
    assert_eq!(t.run(&[]).status.code(), Some(4));
    assert!(t.path("inbox/wt_users_2.csv").exists());
    // The next day's file, with everyone, supersedes the held one: that
    // one is moved to processed/ unapplied, the newer one is applied.
    let before = t.outbox().len();
    let mut next = users;
    next.extend_from_slice(b"N1;Nina;New;nina.new;nina@example.com;;;;;;;;;;Active;en\n");
    t.drop_file("wt_users_3.csv", &next);
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        !t.path("inbox/wt_users_2.csv").exists(),
        "superseded file left"
    );
    assert!(!t.path("inbox/wt_users_3.csv").exists(), "newer file left");
    let superseded: Vec<String> = t
        .processed()
        .into_iter()
        .filter(|n| n.starts_with("wt_users_2.") && n.ends_with(".superseded.csv"))
        .collect();
    assert_eq!(superseded.len(), 1, "{:?}", t.processed());
    assert!(
        stderr(&o).contains("superseded: by wt_users_3.csv"),
        "{}",
        stderr(&o)
    );
    // Only the newer file's one create was written: nobody was deleted.
    let written = &t.outbox()[before..];
    assert_eq!(written.len(), 1, "{written:?}");
    assert_eq!(written[0]["action"], "create");
}

#[test]
fn the_same_file_ends_a_contract_once_its_date_is_reached() {
    // SPEC §3: HR systems send the same snapshot night after night; a
    // contract that ended must still end.
    let t = Tenant::mobietrain();
    // Ten users; E0's contract ends on 2026-12-10.
    let mut file = String::from("E0,Ann,Lee,ann@example.com,,,Sales,en,2026-12-10\n");
    for i in 1..10 {
        file.push_str(&format!("E{i},Bob,Ray,bob{i}@example.com,,,Sales,en,\n"));
    }
    t.drop_file("users.csv", file.as_bytes());
    let o = t.run_on("2026-12-09", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let creates = t
        .outbox()
        .iter()
        .filter(|l| l["action"] == "create")
        .count();
    assert_eq!(creates, 10, "{:?}", t.outbox());
    // A create carries the fields it sets, not the empty ones.
    let bob = &t.outbox()[1]["fields"];
    assert_eq!(bob["email"], "bob1@example.com", "{bob}");
    assert!(
        bob.get("employed_until").is_none() && bob.get("phone").is_none(),
        "{bob}"
    );
    let day1 = t.outbox().len();
    // The same bytes on the 11th: Ann's contract ended on the 10th.
    t.drop_file("users.csv", file.as_bytes());
    let o = t.run_on("2026-12-11", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let outbox = t.outbox();
    let last = outbox.last().unwrap();
    assert_eq!(
        (&last["action"], &last["key"]),
        (&"delete".into(), &"E0".into()),
        "{outbox:?}"
    );
    assert_eq!(outbox.len(), day1 + 1, "{outbox:?}");
    let results = t.latest_results("users");
    let lines: Vec<&str> = results.lines().collect();
    assert!(lines[1].starts_with("1,E0,delete,ok,"), "{results}");
    assert!(
        lines[2..].iter().all(|l| l.contains(",unchanged,ok,")),
        "{results}"
    );
    assert!(t.latest_summary("users")["same_content_as"].is_string());
    // And the day after, nothing more.
    t.drop_file("users.csv", file.as_bytes());
    let o = t.run_on("2026-12-12", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(t.outbox().len(), day1 + 1);
}

#[test]
fn a_dry_run_writes_and_moves_nothing() {
    let t = Tenant::new(100);
    t.drop_file("wt_users.csv", &gen(30, 5));
    let o = t.run(&["--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(t.outbox().is_empty());
    assert!(t.path("inbox/wt_users.csv").exists());
    let results = t.latest_results("wt_users");
    assert!(
        results.lines().skip(1).all(|l| l.contains(",planned,")),
        "{results}"
    );
    assert!(t.processed().iter().all(|n| n.contains(".dry-run.")));
}

#[test]
fn groups_are_processed_before_users() {
    let t = Tenant::with_groups(100, true);
    t.drop_file("wt_users.csv", &gen(5, 6));
    t.drop_file(
        "wt_groups.csv",
        b"Group name;GroupID;Parent groupID\nProduct;prod;\n",
    );
    // The generated users name groups this tenant's file does not have.
    assert_eq!(t.run(&[]).status.code(), Some(3));
    let kinds: Vec<String> = t
        .outbox()
        .iter()
        .map(|l| l["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds[0], "group");
    assert!(kinds[1..].iter().all(|k| k == "user"));
}

#[test]
fn unknown_config_keys_are_named() {
    let t = Tenant::new(100);
    let cfg = std::fs::read_to_string(t.path("muster.toml"))
        .unwrap()
        .replace("batch_size", "batch_sise");
    std::fs::write(t.path("muster.toml"), cfg).unwrap();
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("batch_sise"), "{}", stderr(&o));
}

/// Recovery, deterministically: a batch journalled and written to the
/// outbox but never committed (a crash between the two) is committed by the
/// next run; a batch journalled but never written is dropped and planned
/// again. Either way each user is created exactly once.
#[test]
fn journalled_writes_are_recovered_exactly_once() {
    use muster::plan::Action;
    use muster::sink::{JsonlOutbox, Operation, Sink};
    use muster::store::{PendingOp, StoredObject};
    let t = Tenant::new(100);
    let users = gen(10, 8);
    let keys: Vec<String> = String::from_utf8(users.clone())
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| !l.contains(";Inactive;"))
        .map(|l| l.split(';').next().unwrap().to_string())
        .collect();
    {
        let mut store = RedbStore::open(&t.path("state.redb")).unwrap();
        let mut outbox = JsonlOutbox::open(&t.path("outbox.jsonl")).unwrap();
        let op = |store: &mut RedbStore, key: &str| {
            let id = store.next_op_id().unwrap();
            let object = StoredObject {
                fingerprint: 1,
                active: true,
                invited: false,
                lms_id: None,
                parent: None,
                fields: vec![],
                since: None,
                invite_due: false,
            };
            (
                Operation {
                    op: id,
                    kind: ObjectKind::User,
                    action: Action::Create,
                    key: key.into(),
                    fields: vec![],
                    invite: false,
                    reactivate: false,
                    lms_id: None,
                    ids: vec![],
                    fresh: true,
                },
                PendingOp {
                    id,
                    kind: ObjectKind::User,
                    key: key.into(),
                    action: Action::Create,
                    invite: false,
                    object,
                },
            )
        };
        // Key 0: journalled and applied, not committed. Key 1: only journalled.
        let (applied_op, applied) = op(&mut store, &keys[0]);
        let (_, lost) = op(&mut store, &keys[1]);
        store.begin(&[applied.clone(), lost]).unwrap();
        outbox.apply(&[applied_op]).unwrap();
    }
    t.drop_file("wt_users.csv", &users);
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("recovered"), "{}", stderr(&o));
    // One create per user. (Key 0's journal entry had a made-up
    // fingerprint, so the re-plan updates it; a real entry matches.)
    let mut creates: HashMap<String, usize> = HashMap::new();
    for l in t.outbox().iter().filter(|l| l["action"] == "create") {
        *creates
            .entry(l["key"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(creates.len(), keys.len());
    assert!(creates.values().all(|&n| n == 1), "{creates:?}");
    let results = t.latest_results("wt_users");
    let line0 = results.lines().find(|l| l.contains(&keys[0])).unwrap();
    assert!(
        line0.contains(",unchanged,ok,") || line0.contains(",update,ok,"),
        "recovered user re-planned as new: {line0}"
    );
    let store = RedbStore::open(&t.path("state.redb")).unwrap();
    assert!(store.pending().unwrap().is_empty());
}

/// A real crash: kill -9 the process in the middle of a run, run again, and
/// check that every user was created exactly once and the store agrees with
/// the outbox.
#[test]
fn kill_9_mid_run_then_resume_applies_everything_exactly_once() {
    let t = Tenant::new(20);
    let rows = 20_000;
    t.drop_file("wt_users.csv", &gen(rows, 7));
    t.run_killed_at(2_000);
    let at_kill = t.outbox().len();
    assert!(
        at_kill >= 2_000,
        "the run ended before it could be killed ({at_kill} lines)"
    );
    assert!(
        t.path("inbox/wt_users.csv").exists(),
        "the file was moved although the run was killed"
    );
    // Run again: it resumes.
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    if std::env::var_os("MUSTER_SHOW_RECOVERY").is_some() {
        eprintln!(
            "resume run: {}",
            stderr(&o)
                .lines()
                .find(|l| l.contains("recovered"))
                .unwrap_or("no journal to recover")
        );
    }
    // Each user: one create, then at most one second-wave update with its
    // links (groups, segments) only.
    let outbox = t.outbox();
    let mut creates: HashMap<String, usize> = HashMap::new();
    let mut links: HashMap<String, usize> = HashMap::new();
    for l in &outbox {
        let key = l["key"].as_str().unwrap().to_string();
        match l["action"].as_str().unwrap() {
            "create" => *creates.entry(key).or_default() += 1,
            "update" => {
                let fields = l["fields"].as_object().unwrap();
                assert!(
                    fields
                        .keys()
                        .all(|f| ["groups", "admin_groups", "segments"].contains(&f.as_str())),
                    "{l}"
                );
                *links.entry(key).or_default() += 1;
            }
            other => panic!("unexpected {other}: {l}"),
        }
    }
    assert!(
        creates.values().all(|&n| n == 1),
        "a user was created twice"
    );
    assert!(links.values().all(|&n| n == 1), "links sent twice");
    assert!(links.keys().all(|k| creates.contains_key(k)));
    let store = RedbStore::open(&t.path("state.redb")).unwrap();
    let prior = store.prior(ObjectKind::User).unwrap();
    assert_eq!(prior.len(), creates.len(), "store and outbox disagree");
    for key in creates.keys() {
        assert!(
            prior.get(key).is_some(),
            "{key} in the outbox, not in the store"
        );
    }
    assert!(store.pending().unwrap().is_empty(), "journal left behind");
    drop(store);
    // Every link was applied: a third run has nothing to write.
    let before = t.outbox().len();
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(t.outbox().len(), before, "the crash left links unapplied");
    // Every active generated user is there (inactive ones are never created).
    let inactive = String::from_utf8(gen(rows, 7))
        .unwrap()
        .lines()
        .filter(|l| l.contains(";Inactive;"))
        .count();
    assert_eq!(creates.len() as u64, rows - inactive as u64);
}

#[test]
fn groups_are_written_parent_first_whatever_the_file_order() {
    let t = Tenant::with_groups(100, true);
    t.drop_file("wt_groups.csv", b"Group name;GroupID;Parent groupID\nTeam 1;t1;dev\nDev;dev;prod\nProduct;prod;\nSales;sales;\n");
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let order: Vec<String> = t
        .outbox()
        .iter()
        .map(|l| l["key"].as_str().unwrap().to_string())
        .collect();
    let at = |k: &str| order.iter().position(|x| x == k).unwrap();
    assert!(at("prod") < at("dev") && at("dev") < at("t1"), "{order:?}");
}

#[test]
fn user_groups_must_name_groups_of_the_tenant_group_file() {
    let t = Tenant::with_groups(100, true);
    t.drop_file(
        "wt_groups.csv",
        b"Group name;GroupID;Parent groupID\nProduct;prod;\n",
    );
    let header = "Unique ID;Firstname;Lastname;Username;Email;Phone;Title;Birthday;EmployedSince;EmployedUntil;Gender;Group member;Group admin;Segment;Status;Language";
    let users = format!("{header}\nu1;A;B;ab;a@x.example;;;;;;;prod;;;Active;en\nu2;C;D;cd;c@x.example;;;;;;;prod,nope;;;Active;en\n");
    t.drop_file("wt_users.csv", users.as_bytes());
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let results = t.latest_results("wt_users");
    let u2 = results.lines().find(|l| l.contains(",u2,")).unwrap();
    assert!(
        u2.contains(",create,ok,unknown_reference,") && u2.contains("nope"),
        "{u2}"
    );
    let u1 = results.lines().find(|l| l.contains(",u1,")).unwrap();
    assert!(u1.ends_with(",create,ok,,"), "{u1}");
    // Applied without the unknown group, in the second wave.
    let u2 = t
        .outbox()
        .into_iter()
        .find(|l| l["key"] == "u2" && l["action"] == "update")
        .unwrap();
    assert_eq!(u2["fields"]["groups"], serde_json::json!(["prod"]), "{u2}");
}

#[test]
fn a_manager_that_exists_nowhere_is_left_out_of_the_write() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
    std::fs::write(
        dir.path().join("muster.toml"),
        "[[tenant]]\nname = \"lucca\"\nstate = \"s.redb\"\n[tenant.source]\ntype = \"dir\"\npath = \"inbox\"\nsettle_ms = 0\n\
         [[tenant.files]]\npattern = \"*.csv\"\nprofile = \"lucca-360learning\"\n[tenant.sink]\ntype = \"jsonl\"\npath = \"out.jsonl\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("inbox/export.csv"),
        "uniqueId;email;firstName;lastName;managerId;status\n1;a@x.example;Ann;A;;Active\n2;b@x.example;Bob;B;1;Active\n3;c@x.example;Cat;C;9999;Active\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["run", "--config"])
        .arg(dir.path().join("muster.toml"))
        .args(["--today", TODAY])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let out: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("out.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Managers travel in a second wave, after every user of the file.
    let actions: Vec<(String, String)> = out
        .iter()
        .map(|l| {
            (
                l["action"].as_str().unwrap().into(),
                l["key"].as_str().unwrap().into(),
            )
        })
        .collect();
    let pair = |a: &str, k: &str| (a.to_string(), k.to_string());
    assert_eq!(
        actions,
        vec![
            pair("create", "1"),
            pair("create", "2"),
            pair("create", "3"),
            pair("update", "2")
        ]
    );
    assert_eq!(out[3]["fields"], serde_json::json!({"manager_id": "1"}));
    assert!(out[..3]
        .iter()
        .all(|l| l["fields"].get("manager_id").is_none()));
}

#[test]
fn a_manager_later_in_the_file_is_linked_after_every_user_exists() {
    let t = Tenant::new(100);
    let header = "Unique ID;Firstname;Lastname;Username;Email;Phone;Title;Birthday;EmployedSince;EmployedUntil;Gender;Group member;Group admin;Segment;Status;Language";
    // Winningtemp users have no manager column; memberships are links too.
    let users = format!("{header}\nu1;A;B;ab;a@x.example;;;;;;;g1;;s1;Active;en\nu2;C;D;cd;c@x.example;;;;;;;;;;Active;en\n");
    t.drop_file("wt_users.csv", users.as_bytes());
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = t.outbox();
    let seq: Vec<String> = out
        .iter()
        .map(|l| {
            format!(
                "{} {}",
                l["action"].as_str().unwrap(),
                l["key"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(seq, ["create u1", "create u2", "update u1"]);
    assert_eq!(
        out[2]["fields"],
        serde_json::json!({"groups": ["g1"], "segments": ["s1"]})
    );
    // Day 2: only a membership changes: one update, links only.
    let users = format!("{header}\nu1;A;B;ab;a@x.example;;;;;;;g1,g2;;s1;Active;en\nu2;C;D;cd;c@x.example;;;;;;;;;;Active;en\n");
    t.drop_file("wt_users.csv", users.as_bytes());
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = t.outbox();
    assert_eq!(out.len(), 4, "{out:?}");
    assert_eq!(out[3]["action"], "update");
    assert_eq!(
        out[3]["fields"],
        serde_json::json!({"groups": ["g1", "g2"]})
    );
}

#[test]
fn group_deletions_go_children_first() {
    let t = Tenant::with_groups(100, true);
    let header = "Group name;GroupID;Parent groupID";
    t.drop_file(
        "wt_groups.csv",
        format!("{header}\nA;a;\nB;b;a\nC;c;b\nD;d;c\nKeep;keep;\n").as_bytes(),
    );
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Day 2 drops b and its subtree: inferred deletions, which the plan
    // lists by key (b, c, d), are sent deepest first from the parents the
    // store keeps.
    t.drop_file(
        "wt_groups.csv",
        format!("{header}\nA;a;\nKeep;keep;\n").as_bytes(),
    );
    let o = t.run(&["--force"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let deleted: Vec<String> = t
        .outbox()
        .iter()
        .filter(|l| l["action"] == "delete")
        .map(|l| l["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(deleted, ["d", "c", "b"]);
}

/// On a terminal, `muster run` shows the phase it is in with a bar; with
/// stderr in a file or a pipe, nothing of it (the log and the table only).
#[test]
fn progress_is_drawn_on_a_terminal_only() {
    let t = Tenant::new(100);
    t.drop_file("wt_users.csv", &gen(2_000, 3));
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(!err.contains('\r') && !err.contains("reading"), "{err:?}");
    assert!(err.contains("tenant "), "no table: {err}");
    // The same run under a pseudo-terminal (util-linux's `script`).
    t.drop_file("wt_users.csv", &gen(2_000, 4));
    let command = format!(
        "{} run --config {} --today {TODAY}",
        env!("CARGO_BIN_EXE_muster"),
        t.path("muster.toml").display()
    );
    let o = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .expect("util-linux's script");
    let screen = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{screen}");
    assert!(screen.contains("t: creates and updates ["), "{screen}");
    assert!(screen.contains("in flight"), "{screen}");
}
