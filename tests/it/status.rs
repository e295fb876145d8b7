//! `muster status` and `muster release` (SPEC §8), on a tenant's state
//! store without a daemon: the run history, a held file shown, released,
//! and applied by the next run.

use std::process::{Command, Output};

use crate::run::{derive, gen, stderr, Tenant};

fn muster(t: &Tenant, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(args)
        .arg("--config")
        .arg(t.path("muster.toml"))
        .output()
        .unwrap()
}

fn status(t: &Tenant) -> serde_json::Value {
    let o = muster(t, &["status", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()[0].clone()
}

#[test]
fn status_shows_a_held_file_and_release_has_the_next_run_apply_it() {
    let t = Tenant::with_extra(100, false, "[tenant.safety]\nmax_delete_ratio = 0.001\n");
    assert_eq!(status(&t)["last_run"], serde_json::Value::Null);
    let o = muster(&t, &["status"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("never run"));

    std::fs::write(t.path("day1.csv"), gen(300, 6)).unwrap();
    t.drop_file("wt_users.csv", &gen(300, 6));
    assert!(matches!(t.run(&[]).status.code(), Some(0 | 3)));
    t.drop_file("wt_users.csv", &derive(&t.path("day1.csv"), "0.2"));
    assert_eq!(t.run(&[]).status.code(), Some(4));

    // Held: said by status, in JSON and on the table.
    let s = status(&t);
    assert_eq!(s["last_run"]["result"], "held", "{s:#}");
    assert_eq!(s["held"], serde_json::json!(["wt_users.csv"]));
    let file = &s["last_run"]["files"][0];
    assert_eq!(file["status"], "held");
    assert!(
        file["counts"]["delete"]["held"].as_u64().unwrap() > 0,
        "{file:#}"
    );
    assert!(
        file["reasons"][0]
            .as_str()
            .unwrap()
            .contains("max_delete_ratio"),
        "{file:#}"
    );
    let table = String::from_utf8_lossy(&muster(&t, &["status"]).stdout).into_owned();
    assert!(
        table.contains("held") && table.contains("wt_users.csv"),
        "{table}"
    );

    // Only a held file is released.
    let o = muster(&t, &["release", "--tenant", "t", "nothing.csv"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no held file \"nothing.csv\" (held now: wt_users.csv)"),
        "{}",
        stderr(&o)
    );
    let o = muster(&t, &["release", "--tenant", "t", "wt_users.csv"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(status(&t)["released"], serde_json::json!(["wt_users.csv"]));

    // The next run, without --force, applies it; the release is used up.
    let written = t.outbox().len();
    let o = t.run(&[]);
    assert!(matches!(o.status.code(), Some(0 | 3)), "{}", stderr(&o));
    assert!(t
        .outbox()
        .iter()
        .skip(written)
        .any(|l| l["action"] == "delete"));
    let s = status(&t);
    assert_ne!(s["last_run"]["result"], "held", "{s:#}");
    assert_eq!(s["held"], serde_json::json!([]));
    assert_eq!(s["released"], serde_json::json!([]));

    // Three runs in the history, newest first.
    let store = muster::store::RedbStore::open(&t.path("state.redb")).unwrap();
    let runs = muster::pipeline::runs(&store, 10).unwrap();
    let results: Vec<&str> = runs.iter().map(|r| r.result.as_str()).collect();
    assert_eq!(runs.len(), 3, "{results:?}");
    assert_eq!(results[1], "held");
    assert!(runs[0].id > runs[1].id && runs[1].id > runs[2].id);
}

/// The history keeps the newest `keep_runs` runs.
#[test]
fn the_history_keeps_the_newest_runs() {
    let t = Tenant::with_extra(100, false, "keep_runs = 2");
    for seed in 1..=4 {
        t.drop_file("wt_users.csv", &gen(50, seed));
        assert!(matches!(t.run(&[]).status.code(), Some(0 | 3)));
    }
    let store = muster::store::RedbStore::open(&t.path("state.redb")).unwrap();
    let ids: Vec<u64> = muster::pipeline::runs(&store, 10)
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, [4, 3]);
}
