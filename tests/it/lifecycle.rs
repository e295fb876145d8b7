//! The lifecycle keys of SPEC §11 (`invite_from`, `delete_after_days`,
//! `protected`, `owned_fields`) over many days: random sequences of daily
//! snapshots run by `muster run --today`, the day moving on by 1–4 days;
//! after each, what the outbox has told the LMS — who exists, active or
//! not, their first name and title, how many invitations each was sent —
//! must be what a plain model of the rules says. Then fixtures of each key
//! with their expected results lines.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::run::Tenant;

const PROFILE: &str = r#"
object = "user"
header = "name"
columns = ["external_id", "first_name", "last_name", "email", "title", "status", "employed_since"]
missing = "delete"
inactive_action = "deactivate"
invite_on_create = true
invite_from = "employed_since"
delete_after_days = 3
protected = ["K1*"]
owned_fields = ["first_name", "last_name", "email", "status", "employed_since"]

[safety]
max_delete_ratio = 1.0
max_shrink_ratio = 1.0
"#;

const CONFIG: &str = r#"
[[tenant]]
name = "t"
state = "state.redb"
batch_size = 50
[tenant.source]
type = "dir"
path = "inbox"
settle_ms = 0
[[tenant.files]]
pattern = "users*.csv"
profile = "lifecycle.toml"
[tenant.sink]
type = "jsonl"
path = "outbox.jsonl"
"#;

/// One row of a day's file.
#[derive(Clone, Debug)]
struct Row {
    key: u8,
    first: u8,
    title: u8,
    inactive: bool,
    /// `employed_since`, in days after the first day.
    start: u32,
}

fn row() -> impl Strategy<Value = Row> {
    (
        0u8..5,
        0u8..2,
        0u8..2,
        proptest::bool::weighted(0.2),
        0u32..10,
    )
        .prop_map(|(key, first, title, inactive, start)| Row {
            key,
            first,
            title,
            inactive,
            start,
        })
}

/// A day: how many days after the day before, and its rows (at least one,
/// each key once: an empty file that deletes is always held).
fn day() -> impl Strategy<Value = (u32, Vec<Row>)> {
    (1u32..5, proptest::collection::vec(row(), 1..6)).prop_map(|(gap, mut rows)| {
        let mut seen = std::collections::BTreeSet::new();
        rows.retain(|r| seen.insert(r.key));
        (gap, rows)
    })
}

fn date(day: u32) -> String {
    muster::profile::Date::new(2026, 1, 1)
        .unwrap()
        .plus_days(day)
        .to_string()
}

fn render(rows: &[Row]) -> String {
    let mut out =
        String::from("external_id,first_name,last_name,email,title,status,employed_since\n");
    for r in rows {
        let status = if r.inactive { "inactive" } else { "active" };
        out.push_str(&format!(
            "K{},F{},L,k{}@x.example,T{},{status},{}\n",
            r.key,
            r.first,
            r.key,
            r.title,
            date(r.start)
        ));
    }
    out
}

/// What the store knows of a key, in the model.
#[derive(Clone, Debug)]
struct Known {
    active: bool,
    since: Option<u32>,
    invite_due: bool,
    /// The first name as recorded: a deactivation records the row's
    /// without sending it (SPEC: a deactivation carries no fields).
    first: u8,
}

/// What the LMS holds of a user.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Held {
    active: bool,
    first: String,
    title: String,
    invites: u32,
}

/// One day of the SPEC §11 rules, naively, over the store and the LMS.
fn model_day(
    store: &mut BTreeMap<u8, Known>,
    lms: &mut BTreeMap<String, Held>,
    rows: &[Row],
    today: u32,
) {
    let protected = |k: u8| k == 1;
    for r in rows {
        let key = format!("K{}", r.key);
        let first = format!("F{}", r.first);
        match store.get_mut(&r.key) {
            None if r.inactive => {}
            None => {
                let invite_now = r.start <= today;
                store.insert(
                    r.key,
                    Known {
                        active: true,
                        since: None,
                        invite_due: !invite_now,
                        first: r.first,
                    },
                );
                lms.insert(
                    key,
                    Held {
                        active: true,
                        first,
                        title: format!("T{}", r.title),
                        invites: u32::from(invite_now),
                    },
                );
            }
            Some(known) => {
                let held = lms.get_mut(&key).expect("the LMS has what the store knows");
                if r.inactive {
                    if protected(r.key) {
                        continue;
                    }
                    if known.active || known.since.is_some() {
                        *known = Known {
                            active: false,
                            since: None,
                            invite_due: false,
                            first: r.first,
                        };
                        held.active = false;
                    } else if known.first != r.first {
                        // Inactive already: a changed first name is sent.
                        held.first = first;
                        known.first = r.first;
                    }
                    continue;
                }
                if !known.active {
                    *known = Known {
                        active: true,
                        since: None,
                        invite_due: false,
                        first: known.first,
                    };
                    held.active = true;
                } else if known.invite_due && r.start <= today {
                    known.invite_due = false;
                    held.invites += 1;
                }
                // The title is the LMS admin's: only a create writes it.
                if known.first != r.first {
                    held.first = first;
                    known.first = r.first;
                }
            }
        }
    }
    let named: Vec<u8> = rows.iter().map(|r| r.key).collect();
    let missing: Vec<u8> = store
        .keys()
        .copied()
        .filter(|k| !named.contains(k) && !protected(*k))
        .collect();
    for k in missing {
        let known = store.get_mut(&k).unwrap();
        match known.since.filter(|_| !known.active) {
            Some(since) if today >= since + 3 => {
                store.remove(&k);
                lms.remove(&format!("K{k}"));
            }
            Some(_) => {}
            None => {
                *known = Known {
                    active: false,
                    since: Some(today),
                    invite_due: false,
                    first: known.first,
                };
                lms.get_mut(&format!("K{k}")).unwrap().active = false;
            }
        }
    }
}

/// The LMS as the outbox's lines leave it.
fn replay(lines: &[serde_json::Value]) -> BTreeMap<String, Held> {
    let mut lms: BTreeMap<String, Held> = BTreeMap::new();
    for line in lines {
        let key = line["key"].as_str().unwrap().to_string();
        let field = |name: &str| line["fields"][name].as_str().map(str::to_string);
        let invite = u32::from(line["invite"] == true);
        match line["action"].as_str().unwrap() {
            "create" => {
                lms.insert(
                    key,
                    Held {
                        active: field("status").as_deref() != Some("inactive"),
                        first: field("first_name").unwrap_or_default(),
                        title: field("title").unwrap_or_default(),
                        invites: invite,
                    },
                );
            }
            "update" => {
                let held = lms.get_mut(&key).expect("an update of a user the LMS has");
                if let Some(first) = field("first_name") {
                    held.first = first;
                }
                if let Some(title) = field("title") {
                    held.title = title;
                }
                if line["reactivate"] == true {
                    held.active = true;
                }
                if let Some(status) = field("status") {
                    held.active = status != "inactive";
                }
                held.invites += invite;
            }
            "deactivate" => lms.get_mut(&key).expect("a user the LMS has").active = false,
            "delete" => {
                lms.remove(&key).expect("a user the LMS has");
            }
            other => panic!("action {other}"),
        }
    }
    lms
}

fn tenant() -> Tenant {
    let t = Tenant::with_config(CONFIG);
    std::fs::write(t.path("lifecycle.toml"), PROFILE).unwrap();
    t
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The LMS the sink saw is the model's, day after day.
    #[test]
    fn the_lms_follows_the_lifecycle_model(days in proptest::collection::vec(day(), 1..8)) {
        let t = tenant();
        let (mut store, mut lms) = (BTreeMap::new(), BTreeMap::new());
        let mut today = 0;
        for (n, (gap, rows)) in days.iter().enumerate() {
            today += gap;
            let text = render(rows);
            t.drop_file(&format!("users_{n:02}.csv"), text.as_bytes());
            let out = t.run_on(&date(today), &[]);
            prop_assert!(out.status.success(), "day {} ({}):\n{}\n{}", n, date(today), text, crate::run::stderr(&out));
            model_day(&mut store, &mut lms, rows, today);
            let got = replay(&t.outbox());
            prop_assert_eq!(&got, &lms, "day {} ({}):\n{}", n, date(today), text);
        }
    }
}

/// The results lines of the file run last (key, action, message).
fn results(t: &Tenant) -> Vec<(String, String, String)> {
    results_of(t, false)
}

/// [`results`] of the last run, or (`dry`) of the last dry run.
fn results_of(t: &Tenant, dry: bool) -> Vec<(String, String, String)> {
    let processed = t.path("inbox/processed");
    let mut names: Vec<_> = std::fs::read_dir(&processed)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".results.csv") && n.contains(".dry-run.") == dry)
        .collect();
    names.sort();
    let text = std::fs::read_to_string(processed.join(names.last().unwrap())).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (key, action, message) = (col("key"), col("action"), col("message"));
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (
                r[key].to_string(),
                r[action].to_string(),
                r[message].to_string(),
            )
        })
        .collect()
}

/// Each key's results lines, day by day: a delayed invitation, a delayed
/// deletion and a return, a protected service account, and a change of a
/// field muster does not own (recorded, not sent, and not seen again).
#[test]
fn each_key_says_what_it_did_in_the_results() {
    let t = tenant();
    let header = "external_id,first_name,last_name,email,title,status,employed_since\n";
    let day1 = format!(
        "{header}K0,Ann,L,k0@x.example,T,active,2026-01-05\nK1,Svc,L,k1@x.example,T,active,2026-01-01\nK2,Bo,L,k2@x.example,T,active,2026-01-01\n"
    );
    t.drop_file("users_1.csv", day1.as_bytes());
    assert!(t.run_on("2026-01-01", &[]).status.success());
    let r = results(&t);
    assert_eq!(r[0].1, "create");
    assert!(r[0].2.contains("not invited yet"), "{r:?}");
    let creates: Vec<_> = t
        .outbox()
        .into_iter()
        .filter(|l| l["action"] == "create")
        .collect();
    assert_eq!(creates.len(), 3);
    assert_eq!(creates[0]["invite"], serde_json::Value::Null, "K0 waits");
    assert_eq!(creates[1]["invite"], true);

    // Day 2: K1 and K2 missing, K0's title changed by HR (not owned).
    let day2 = format!("{header}K0,Ann,L,k0@x.example,New title,active,2026-01-05\n");
    t.drop_file("users_2.csv", day2.as_bytes());
    assert!(t.run_on("2026-01-02", &[]).status.success());
    let r = results(&t);
    assert_eq!(
        r[0],
        (
            "K0".into(),
            "unchanged".into(),
            "changed, not sent (not in `owned_fields`): title".into()
        )
    );
    assert_eq!(r[1].0, "K1");
    assert_eq!(r[1].1, "unchanged");
    assert!(r[1].2.contains("protected"), "{r:?}");
    assert_eq!(r[2].1, "deactivate");
    assert!(r[2].2.contains("deleted on or after 2026-01-05"), "{r:?}");
    let before = t.outbox().len();

    // Day 3: the same file; the title change was recorded, so K0 is
    // plainly unchanged; K2 waits.
    t.drop_file("users_3.csv", day2.as_bytes());
    assert!(t.run_on("2026-01-03", &[]).status.success());
    let r = results(&t);
    assert_eq!(r[0], ("K0".into(), "unchanged".into(), String::new()));
    assert_eq!(r[2].1, "unchanged");
    assert!(r[2].2.contains("deactivated since 2026-01-02"), "{r:?}");
    assert_eq!(t.outbox().len(), before, "nothing sent");

    // Day 5: K0's start date: invited, once. K2 is back before its
    // deletion: reactivated, not created.
    let day5 = format!(
        "{header}K0,Ann,L,k0@x.example,New title,active,2026-01-05\nK2,Bo,L,k2@x.example,T,active,2026-01-01\n"
    );
    t.drop_file("users_5.csv", day5.as_bytes());
    assert!(t.run_on("2026-01-05", &[]).status.success());
    let r = results(&t);
    assert_eq!(r[0].1, "update");
    assert!(r[0].2.contains("invited"), "{r:?}");
    assert_eq!(r[1].1, "update");
    assert!(r[1].2.contains("reactivated"), "{r:?}");
    let sent = &t.outbox()[before..];
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0]["invite"], true);
    assert_eq!(sent[0]["fields"], serde_json::json!({}));
    assert_eq!(sent[1]["reactivate"], true);

    // The same file again: nothing more, no second invitation.
    t.drop_file("users_6.csv", day5.as_bytes());
    assert!(t.run_on("2026-01-06", &[]).status.success());
    assert_eq!(t.outbox().len(), before + 2);
}

/// The invitations an `invite_from` date made due are sent exactly once,
/// whatever a crash interrupts: 4,000 users created before their first day,
/// then the run of that day killed (SIGKILL) at three points of its writes
/// and run again; each user has one invitation in the outbox, and a last
/// run sends nothing.
#[test]
fn a_delayed_invitation_is_sent_once_across_crashes() {
    let t = tenant();
    let users = 4000;
    let mut file =
        String::from("external_id,first_name,last_name,email,title,status,employed_since\n");
    for i in 0..users {
        file.push_str(&format!("E{i},F,L,e{i}@x.example,T,active,2026-02-01\n"));
    }
    t.drop_file("users_1.csv", file.as_bytes());
    assert!(t.run_on("2026-01-15", &[]).status.success());
    assert_eq!(t.outbox().len(), users);
    assert!(
        t.outbox().iter().all(|l| l["invite"].is_null()),
        "nobody invited before their day"
    );
    t.drop_file("users_2.csv", file.as_bytes());
    for at in [users + 300, users + 1700, users + 3100] {
        t.run_killed_on("2026-02-01", at);
    }
    let out = t.run_on("2026-02-01", &[]);
    assert!(out.status.success(), "{}", crate::run::stderr(&out));
    let mut invites: BTreeMap<String, usize> = BTreeMap::new();
    for line in t.outbox() {
        if line["invite"] == true {
            *invites
                .entry(line["key"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert_eq!(invites.len(), users, "every user invited");
    assert!(invites.values().all(|&n| n == 1), "each once");
    let before = t.outbox().len();
    t.drop_file("users_3.csv", file.as_bytes());
    assert!(t.run_on("2026-02-02", &[]).status.success());
    assert_eq!(t.outbox().len(), before, "nothing more to send");
}

/// `muster` with `args`, in the tenant's directory; its stdout.
fn muster(t: &Tenant, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_muster"))
        .current_dir(t.path(""))
        .args(args)
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "{args:?}: {}",
        crate::run::stderr(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The keys say the same in `check`, `diff` and `run --dry-run` as in a
/// run: the invitation that waits, the one that comes due, the change not
/// owned, the deletion delayed and the protected key.
#[test]
fn check_diff_and_dry_run_say_what_a_run_does() {
    let t = tenant();
    let header = "external_id,first_name,last_name,email,title,status,employed_since\n";
    let old = format!(
        "{header}K0,Ann,L,k0@x.example,T,active,2026-01-05\nK1,Svc,L,k1@x.example,T,active,2026-01-01\nK2,Bo,L,k2@x.example,T,active,2026-01-01\n"
    );
    let new = format!("{header}K0,Ann,L,k0@x.example,New title,active,2026-01-05\n");
    std::fs::write(t.path("old.csv"), &old).unwrap();
    std::fs::write(t.path("new.csv"), &new).unwrap();

    let check = muster(
        &t,
        &[
            "check",
            "--profile",
            "lifecycle.toml",
            "--today",
            "2026-01-01",
            "old.csv",
        ],
    );
    let lines: Vec<&str> = check.lines().collect();
    assert!(
        lines[1].starts_with("2,K0,create,") && lines[1].contains("not invited yet"),
        "{check}"
    );
    assert!(
        lines[2].starts_with("3,K1,create,") && !lines[2].contains("invite"),
        "{check}"
    );

    // OLD applied on Jan 2 leaves K0's invitation waiting; NEW moves the
    // start date back to Jan 1, so it is due.
    let moved = new.replace("2026-01-05", "2026-01-01");
    std::fs::write(t.path("moved.csv"), &moved).unwrap();
    let diff = muster(
        &t,
        &[
            "diff",
            "--profile",
            "lifecycle.toml",
            "--today",
            "2026-01-02",
            "old.csv",
            "moved.csv",
        ],
    );
    let lines: Vec<&str> = diff.lines().collect();
    assert!(lines[1].starts_with("2,K0,update,"), "{diff}");
    assert!(lines[1].contains("invited"), "{diff}");
    assert!(lines[1].contains("changed: employed_since"), "{diff}");
    assert!(
        lines[1].contains("not sent (not in `owned_fields`): title"),
        "{diff}"
    );
    assert!(
        lines[2].contains("K1,unchanged") && lines[2].contains("protected"),
        "{diff}"
    );
    assert!(lines[3].contains("K2,deactivate"), "{diff}");
    assert!(
        lines[3].contains("deleted on or after 2026-01-05"),
        "{diff}"
    );

    // A dry run of the next day says what the run then does, and writes nothing.
    t.drop_file("users_1.csv", old.as_bytes());
    assert!(t.run_on("2026-01-01", &[]).status.success());
    let written = t.outbox().len();
    t.drop_file("users_2.csv", new.as_bytes());
    let dry = t.run_on("2026-01-05", &["--dry-run"]);
    assert!(dry.status.success(), "{}", crate::run::stderr(&dry));
    assert_eq!(t.outbox().len(), written, "a dry run writes nothing");
    let dry_said = results_of(&t, true);
    assert!(t.run_on("2026-01-05", &[]).status.success());
    let run = results(&t);
    assert_eq!(dry_said, run, "the dry run said what the run did");
    let actions: Vec<&str> = run.iter().map(|(_, a, _)| a.as_str()).collect();
    assert_eq!(actions, ["update", "unchanged", "deactivate"], "{run:?}");
    assert!(run[0].2.contains("invited"), "{run:?}");
}

/// Protected keys are not counted by the guards: two of five users
/// missing (40 %, past the default 20 % ratio) are both protected, so the
/// file is not held, and nobody is deactivated.
#[test]
fn protected_keys_do_not_count_for_the_guards() {
    let t = Tenant::with_config(CONFIG);
    let profile = PROFILE.replace("max_delete_ratio = 1.0\n", "");
    std::fs::write(t.path("lifecycle.toml"), profile.replace("K1*", "svc-*")).unwrap();
    let header = "external_id,first_name,last_name,email,title,status,employed_since\n";
    let row = |k: &str| format!("{k},F,L,{k}@x.example,T,active,2026-01-01\n");
    let all: String = ["E1", "E2", "E3", "svc-a", "svc-b"].map(row).concat();
    t.drop_file("users_1.csv", format!("{header}{all}").as_bytes());
    assert!(t.run_on("2026-01-01", &[]).status.success());
    let some: String = ["E1", "E2", "E3"].map(row).concat();
    t.drop_file("users_2.csv", format!("{header}{some}").as_bytes());
    let o = t.run_on("2026-01-02", &[]);
    assert_eq!(o.status.code(), Some(0), "held? {}", crate::run::stderr(&o));
    let r = results(&t);
    assert_eq!(r.len(), 5);
    assert!(
        r[3..]
            .iter()
            .all(|(_, a, m)| a == "unchanged" && m.contains("protected")),
        "{r:?}"
    );
    assert_eq!(t.outbox().len(), 5, "nothing written on day 2");
}
