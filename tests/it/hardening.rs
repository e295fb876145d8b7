//! Regression tests of the hardening issue (#27): each reproduces a fault
//! the way it was found, and is named after its point.

use std::process::Command;

use crate::run::{derive, gen, stderr, Tenant};

/// A tenant whose `[tenant.safety]` (or profile) sets `key = value`.
fn with_safety(line: &str) -> Tenant {
    Tenant::with_extra(100, false, &format!("[tenant.safety]\n{line}\n"))
}

/// Point 3: A ratio that is not a number from 0 to 1 (NaN, infinite, above 1,
/// negative) would turn a guard off or hold every file: refused by name.
#[test]
fn p3_a_safety_ratio_outside_0_to_1_is_a_configuration_error() {
    for value in ["nan", "inf", "-inf", "1.5", "-1.0"] {
        for key in ["max_delete_ratio", "max_shrink_ratio"] {
            let t = with_safety(&format!("{key} = {value}"));
            t.drop_file("wt_users.csv", &gen(20, 1));
            let o = t.run(&[]);
            assert_eq!(o.status.code(), Some(2), "{key} = {value}: {}", stderr(&o));
            assert!(
                stderr(&o).contains(&format!("safety.{key} must be a number from 0.0 to 1.0")),
                "{}",
                stderr(&o)
            );
            assert!(t.outbox().is_empty());
        }
    }
    // In a profile file too.
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("p.toml");
    let preset = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/mobietrain.toml"),
    )
    .unwrap();
    let text = if preset.contains("[safety]") {
        preset.replace("[safety]", "[safety]\nmax_delete_ratio = nan")
    } else {
        format!("{preset}\n[safety]\nmax_delete_ratio = nan\n")
    };
    std::fs::write(&profile, text).unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "E1,Ann,Lee,ann@example.com,,,,en,\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["check", "--profile"])
        .arg(&profile)
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("safety.max_delete_ratio must be a number"),
        "{}",
        stderr(&o)
    );
}

/// Point 4: A password in a SCIM url is refused, and never printed.
#[test]
fn p4_a_password_in_the_scim_url_is_refused_and_never_printed() {
    let t = Tenant::with_config(
        "[[tenant]]\nname = \"t\"\nstate = \"s.redb\"\n\
         [tenant.source]\ntype = \"dir\"\npath = \"inbox\"\n\
         [[tenant.files]]\npattern = \"*.csv\"\nprofile = \"mobietrain\"\n\
         [tenant.sink]\ntype = \"scim\"\nurl = \"http://alice:Pa55-Secret@127.0.0.1:9/v2\"\n\
         token_env = \"P4_TOKEN\"\n",
    );
    let o = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["run", "--config"])
        .arg(t.path("muster.toml"))
        .env("P4_TOKEN", "token-p4")
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("user name or password in the url is not allowed"),
        "{err}"
    );
    assert!(err.contains("http://***@127.0.0.1:9/v2"), "{err}");
    assert!(
        !err.contains("Pa55-Secret") && !err.contains("token-p4"),
        "{err}"
    );
}

/// Point 7: A quote opened at 95 % of a full snapshot and never closed: the rows
/// after it were never read, so nobody is deleted for missing from it.
#[test]
fn p7_an_unterminated_quote_deletes_nobody() {
    let t = Tenant::new(100);
    // Plain rows (no quotes anywhere): the one opened below is never closed.
    let mut users = String::from("id;first;last;username;email;phone;title;birth;since;until;gender;groups;admin;segments;status;language\n");
    for i in 0..400 {
        users.push_str(&format!(
            "U{i};Ann;Lee;user{i};u{i}@example.com;;;;;;;;;;Active;en\n"
        ));
    }
    t.drop_file("wt_users.csv", users.as_bytes());
    assert!(matches!(t.run(&[]).status.code(), Some(0 | 3)));
    let before = t.outbox().len();
    // The same file with a quote opened at 95 % of its rows.
    let lines: Vec<&str> = users.lines().collect();
    let cut = lines.len() * 95 / 100;
    let mut text = String::new();
    for (i, line) in lines.iter().enumerate() {
        if i == cut {
            text.push_str(&line.replacen(';', ";\"", 1));
        } else {
            text.push_str(line);
        }
        text.push('\n');
    }
    t.drop_file("wt_users.csv", text.as_bytes());
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let written = &t.outbox()[before..];
    assert!(
        written
            .iter()
            .all(|op| op["action"] != "delete" && op["action"] != "deactivate"),
        "{written:?}"
    );
    let results = t.latest_results("wt_users");
    assert!(results.contains(",unterminated_quote,"), "{results}");
    assert!(!results.contains(",delete,"), "{results}");
}

/// What the state store holds of the users: key → fingerprint.
fn applied(t: &Tenant) -> std::collections::BTreeMap<String, u128> {
    use muster::store::{Prior, StateStore};
    let store = muster::store::RedbStore::open(&t.path("state.redb")).unwrap();
    let prior = store.prior(muster::profile::ObjectKind::User).unwrap();
    let index = prior.index().to_vec();
    index
        .iter()
        .map(|&(_, slot)| (prior.key(slot).to_string(), prior.entry(slot).fingerprint))
        .collect()
}

/// Point 8: Monday's file sent again after Tuesday's is a change back: applied,
/// the store is as Monday left it.
#[test]
fn p8_mondays_file_after_tuesdays_is_applied() {
    let t = Tenant::new(100);
    let monday = gen(200, 8);
    t.drop_file("wt_users.csv", &monday);
    assert!(matches!(t.run(&[]).status.code(), Some(0 | 3)));
    let after_monday = applied(&t);
    let saved = t.path("monday.csv");
    std::fs::write(&saved, &monday).unwrap();
    t.drop_file("wt_users.csv", &derive(&saved, "0.1"));
    assert!(matches!(t.run(&[]).status.code(), Some(0 | 3)));
    assert_ne!(applied(&t), after_monday, "Tuesday changed nothing");
    let after_tuesday = t.outbox().len();
    t.drop_file("wt_users.csv", &monday);
    let o = t.run(&[]);
    assert!(matches!(o.status.code(), Some(0 | 3)), "{}", stderr(&o));
    assert!(
        t.outbox().len() > after_tuesday,
        "Monday's file again wrote nothing"
    );
    assert_eq!(applied(&t), after_monday);
    assert!(
        stderr(&o).contains("same content as wt_users."),
        "{}",
        stderr(&o)
    );
}

/// Point 9: Two tenants sharing a state store or an outbox are refused.
#[test]
fn p9_two_tenants_sharing_a_store_or_an_outbox_are_refused() {
    let tenant = |name: &str, state: &str, outbox: &str| {
        format!(
            "[[tenant]]\nname = \"{name}\"\nstate = \"{state}\"\n\
             [tenant.source]\ntype = \"dir\"\npath = \"inbox\"\ncreate = true\n\
             [[tenant.files]]\npattern = \"*.csv\"\nprofile = \"mobietrain\"\n\
             [tenant.sink]\ntype = \"jsonl\"\npath = \"{outbox}\"\n"
        )
    };
    for (config, said) in [
        (
            tenant("a", "state/a.redb", "a.jsonl")
                + &tenant("b", "./state/../state/a.redb", "b.jsonl"),
            "tenants \"a\" and \"b\" share the state store",
        ),
        (
            tenant("a", "a.redb", "out/x.jsonl") + &tenant("b", "b.redb", "out/./x.jsonl"),
            "tenants \"a\" and \"b\" share the outbox",
        ),
    ] {
        let t = Tenant::with_config(&config);
        let o = t.run(&[]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(said), "{}", stderr(&o));
    }
}

/// Point 9: Inbox entries muster does not take are said in the log: a symbolic
/// link, a name that is not UTF-8, a file matching no pattern; a newline in
/// a file name does not split a line.
#[test]
fn p9_inbox_entries_not_taken_are_said_in_the_log() {
    use std::os::unix::ffi::OsStrExt;
    let t = Tenant::new(100);
    t.drop_file("notes.txt", b"not a users file");
    std::os::unix::fs::symlink("/etc/hostname", t.path("inbox/wt_users_link.csv")).unwrap();
    let bad = std::ffi::OsStr::from_bytes(b"wt_users_\xff.csv");
    std::fs::write(t.path("inbox").join(bad), gen(5, 1)).unwrap();
    t.drop_file("wt_users_a\nb.csv", &gen(5, 2));
    let o = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["run", "--config"])
        .arg(t.path("muster.toml"))
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(
        err.contains("notes.txt") && err.contains("matches none of the tenant's file patterns"),
        "{err}"
    );
    assert!(
        err.contains("wt_users_link.csv") && err.contains("symbolic link"),
        "{err}"
    );
    assert!(err.contains("whose name is not UTF-8"), "{err}");
    // Each said once, though the inbox is listed twice.
    assert_eq!(err.matches("symbolic link").count(), 1, "{err}");
    assert_eq!(err.matches("whose name is not UTF-8").count(), 1, "{err}");
    // The file with a newline in its name was run; every line that names
    // it names it whole.
    assert!(err.contains("wt_users_a\\nb.csv"), "{err}");
    assert!(!err.lines().any(|l| l.starts_with("b.csv")), "{err}");
}

/// A tenant with a day 1 applied (a users file of `rows`), its outbox's
/// length after it.
fn applied_day_one(rows: u64) -> (Tenant, usize) {
    let t = Tenant::new(100);
    t.drop_file("wt_users.csv", &gen(rows, 6));
    assert!(matches!(t.run(&[]).status.code(), Some(0 | 3)));
    let n = t.outbox().len();
    (t, n)
}

/// Point 6: the store's journal deleted: refused before any write, with
/// what to do (not a run that creates again what the LMS has).
#[test]
fn p6_a_deleted_journal_is_refused_before_any_write() {
    let (t, before) = applied_day_one(300);
    std::fs::remove_file(t.path("state.redb.journal")).unwrap();
    t.drop_file("wt_users.csv", &gen(300, 6));
    let o = t.run(&[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("state.redb.journal is missing"), "{err}");
    assert!(
        err.contains("from a backup") && !err.contains("resumes"),
        "{err}"
    );
    assert_eq!(t.outbox().len(), before, "a run without its journal wrote");
    assert!(t.path("inbox/wt_users.csv").exists());
}

/// Point 6: the store deleted while processed/ shows files were applied:
/// the tenant is not run (it would create again everyone), and says why.
#[test]
fn p6_a_deleted_store_is_refused_while_processed_shows_applied_files() {
    let (t, before) = applied_day_one(300);
    for entry in std::fs::read_dir(t.path("")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("state.redb") && !name.ends_with(".lock") {
            if path.is_dir() {
                std::fs::remove_dir_all(&path).unwrap();
            } else {
                std::fs::remove_file(&path).unwrap();
            }
        }
    }
    t.drop_file("wt_users.csv", &gen(300, 6));
    let o = t.run(&[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("state.redb is missing, but wt_users."),
        "{err}"
    );
    assert!(err.contains("is not run"), "{err}");
    assert_eq!(t.outbox().len(), before, "a run without its store wrote");
    assert!(!t.path("state.redb").exists(), "an empty store was made");
}

/// Point 5: bytes flipped in the store's database file: every run ends with
/// an exit code and a message (1 or 2 when it cannot go on), never a
/// panic's 101.
#[test]
fn p5_flipped_bytes_in_the_store_never_end_in_a_panic() {
    let (t, _) = applied_day_one(3000);
    let pristine = std::fs::read(t.path("state.redb")).unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut failed = 0;
    for round in 0..12 {
        let mut bytes = pristine.clone();
        for _ in 0..1 + round * 8 {
            let at = (next() % bytes.len() as u64) as usize;
            bytes[at] ^= 1 << (next() % 8);
        }
        std::fs::write(t.path("state.redb"), &bytes).unwrap();
        let _ = std::fs::remove_file(t.path("state.redb.prior-user"));
        t.drop_file("wt_users.csv", &gen(3000, 6));
        let written = t.outbox().len();
        let o = t.run(&[]);
        let err = stderr(&o);
        let code = o.status.code();
        assert!(
            matches!(code, Some(0..=4)),
            "round {round}: {code:?}\n{err}"
        );
        if matches!(code, Some(1 | 2)) {
            // Found before any write, and said with what to do.
            assert!(err.contains("error: "), "round {round}: no message\n{err}");
            assert!(err.contains("muster state rebuild"), "round {round}\n{err}");
            assert_eq!(
                t.outbox().len(),
                written,
                "round {round}: written before refused"
            );
        }
        failed += usize::from(code == Some(1));
        std::fs::write(t.path("state.redb"), &pristine).unwrap();
        let _ = std::fs::remove_file(t.path("inbox/wt_users.csv"));
    }
    // The flips reached what the store reads: some runs had to stop.
    assert!(failed > 0, "no round noticed the damage");
}

/// Every user the store holds, whole: key → what it keeps.
fn stored_users(state: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    use muster::store::{Prior, StateStore};
    let store = muster::store::RedbStore::open(state).unwrap();
    let prior = store.prior(muster::profile::ObjectKind::User).unwrap();
    let keys: Vec<String> = prior
        .index()
        .iter()
        .map(|&(_, slot)| prior.key(slot).to_string())
        .collect();
    keys.into_iter()
        .map(|k| {
            let o = store
                .get(muster::profile::ObjectKind::User, &k)
                .unwrap()
                .unwrap();
            (k, format!("{o:?}"))
        })
        .collect()
}

/// `muster state rebuild --tenant t`.
fn rebuild(t: &Tenant) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["state", "rebuild", "--tenant", "t", "--config"])
        .arg(t.path("muster.toml"))
        .output()
        .unwrap()
}

/// Deliverable 2, from the JSONL outbox: a 20k tenant's store deleted
/// after two days; the run refuses and names the rebuild; the rebuilt
/// store holds what the lost one held, object for object; the last file
/// run again writes nothing; the next day's operation ids continue above
/// the outbox's.
#[test]
fn d2_a_lost_store_is_rebuilt_from_the_jsonl_outbox() {
    let (t, _) = applied_day_one(20_000);
    let day1 = t.path("day1.csv");
    std::fs::write(&day1, gen(20_000, 6)).unwrap();
    let day2 = derive(&day1, "0.05");
    t.drop_file("wt_users.csv", &day2);
    assert!(matches!(t.run(&[]).status.code(), Some(0 | 3)));
    let before = stored_users(&t.path("state.redb"));
    let written = t.outbox().len();
    let last_op = t
        .outbox()
        .iter()
        .filter_map(|l| l["op"].as_u64())
        .max()
        .unwrap();
    for file in ["state.redb", "state.redb.journal", "state.redb.prior-user"] {
        let _ = std::fs::remove_file(t.path(file));
    }

    t.drop_file("wt_users.csv", &day2);
    let o = t.run(&[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("muster state rebuild --config"), "{err}");

    let o = rebuild(&t);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains(&format!("{} users", before.len())), "{err}");
    let after = stored_users(&t.path("state.redb"));
    assert_eq!(after.len(), before.len());
    for (key, was) in &before {
        assert_eq!(after.get(key), Some(was), "user {key}");
    }

    let o = t.run(&[]);
    assert!(matches!(o.status.code(), Some(0 | 3)), "{}", stderr(&o));
    assert_eq!(t.outbox().len(), written, "the last file run again wrote");

    std::fs::write(t.path("day2.csv"), &day2).unwrap();
    t.drop_file("wt_users.csv", &derive(&t.path("day2.csv"), "0.01"));
    assert!(matches!(t.run(&[]).status.code(), Some(0 | 3)));
    let new = &t.outbox()[written..];
    assert!(!new.is_empty());
    assert!(
        new.iter().all(|l| l["op"].as_u64().unwrap() > last_op),
        "an operation id was handed out again"
    );
    assert!(new
        .iter()
        .all(|l| l["action"] != "create" || !before.contains_key(l["key"].as_str().unwrap())));
}

/// The results CSV of the file `stem` written last, its lines sorted
/// (inferred rows come sorted already; records in file order).
fn results_of(t: &Tenant, stem: &str) -> String {
    t.latest_results(stem)
}

/// Point 2: day 2 killed after every write, before its results: the run
/// that resumes it writes nothing more, and its results say what a clean
/// run's say, line for line (creates, updates, deactivations and inferred
/// deletions, with their outcomes), not `unchanged`.
#[test]
fn p2_results_after_a_crash_before_them_tell_every_write() {
    let twin = |crash: bool| {
        let (t, _) = applied_day_one(2_000);
        std::fs::write(t.path("day1.csv"), gen(2_000, 6)).unwrap();
        t.drop_file("wt_users.csv", &derive(&t.path("day1.csv"), "0.2"));
        if crash {
            let o = Command::new(env!("CARGO_BIN_EXE_muster"))
                .args(["run", "--config"])
                .arg(t.path("muster.toml"))
                .args(["--today", crate::fixtures::TODAY])
                .env("MUSTER_CRASH_AT", "after-writes")
                .output()
                .unwrap();
            assert_eq!(o.status.code(), None, "not killed: {}", stderr(&o));
            assert!(t.path("inbox/wt_users.csv").exists());
        }
        let written = t.outbox().len();
        let o = t.run(&[]);
        assert!(matches!(o.status.code(), Some(0 | 3)), "{}", stderr(&o));
        (t, written)
    };
    let (clean, _) = twin(false);
    let (resumed, written) = twin(true);
    assert_eq!(
        resumed.outbox().len(),
        written,
        "the resumed run wrote again"
    );
    assert_eq!(clean.outbox().len(), written);
    let (want, got) = (
        results_of(&clean, "wt_users"),
        results_of(&resumed, "wt_users"),
    );
    for action in [
        ",create,ok,",
        ",update,ok,",
        ",deactivate,ok,",
        ",delete,ok,",
    ] {
        assert!(want.contains(action), "day 2 has no {action}");
    }
    assert_eq!(got, want);
    assert_eq!(
        resumed.latest_summary("wt_users")["counts"],
        clean.latest_summary("wt_users")["counts"]
    );
}

/// Point 2: day 1 killed mid-run (SIGKILL after some batches): the resumed
/// run's results say `create` for every user, as a clean run's, not
/// `update` for those whose links were still to send nor `unchanged` for
/// those already made.
#[test]
fn p2_a_first_import_killed_mid_run_reports_every_user_created() {
    let users = gen(20_000, 7);
    let clean = Tenant::new(20);
    clean.drop_file("wt_users.csv", &users);
    assert_eq!(clean.run(&[]).status.code(), Some(0));

    let t = Tenant::new(20);
    t.drop_file("wt_users.csv", &users);
    t.run_killed_at(2_000);
    assert!(
        t.path("inbox/wt_users.csv").exists(),
        "the run ended before it was killed"
    );
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(results_of(&t, "wt_users"), results_of(&clean, "wt_users"));
}

/// Deliverable 3, its cost: a store as the last run left it is not
/// checked whole (a `stat` and its seal); one changed since (here: copied
/// without its times) is, once.
#[test]
fn d3_a_store_is_checked_whole_only_when_not_as_the_last_run_left_it() {
    let (t, _) = applied_day_one(300);
    let checked = |o: &std::process::Output| stderr(o).contains("checked whole");
    let run = || {
        t.drop_file("wt_users.csv", &gen(300, 6));
        Command::new(env!("CARGO_BIN_EXE_muster"))
            .args(["run", "--config"])
            .arg(t.path("muster.toml"))
            .args(["--today", crate::fixtures::TODAY])
            .env("RUST_LOG", "muster=info")
            .output()
            .unwrap()
    };
    let o = run();
    assert!(!checked(&o), "{}", stderr(&o));
    let bytes = std::fs::read(t.path("state.redb")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(t.path("state.redb"), bytes).unwrap();
    let o = run();
    assert!(checked(&o), "{}", stderr(&o));
    assert!(matches!(o.status.code(), Some(0 | 3)), "{}", stderr(&o));
    let o = run();
    assert!(!checked(&o), "{}", stderr(&o));
}
