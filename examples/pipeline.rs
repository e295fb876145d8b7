//! The whole pipeline, as `muster run` does it: a config names the tenant's
//! inbox, its files and profiles, its state store and its sink;
//! [`run_tenant`] plans each file against the embedded state store, holds
//! a file that would do damage, writes the difference to the sink (here
//! the JSONL outbox), and leaves the original with its results CSV and
//! summary in `processed/`.
//!
//! `cargo run --example pipeline` runs it in a temporary folder and prints
//! the report and the outbox; `cargo test` runs it too.

use std::path::Path;

use muster::config::Config;
use muster::pipeline::{run_tenant, FileStatus, RunOptions};
use muster::profile::Date;

const CONFIG: &str = r#"
[[tenant]]
name = "acme"
state = "state/acme.redb"

[tenant.source]
type = "dir"
path = "inbox"
settle_ms = 0

[[tenant.files]]
pattern = "wt_groups*.csv"
profile = "winningtemp-groups"

[[tenant.files]]
pattern = "wt_users*.csv"
profile = "winningtemp-users"

[tenant.sink]
type = "jsonl"
path = "outbox.jsonl"
"#;

const GROUPS: &str = "Group name;GroupID;Parent groupID\nSales;sales;\nNorth;north;sales\n";
const USERS: &str = "\
ID;First;Last;Username;Email;Phone;Title;Birth;Since;Until;Gender;Groups;Admins;Segments;Status;Lang
u1;Ann;Lee;ann;ann@example.com;;;;;;;north;;;Active;fr
u2;Bob;Ray;bob;bob@example.com;;;;;;;sales;;;Active;en
";

/// Runs the tenant once in `dir`; returns the outbox's lines and the files
/// left in `processed/`.
fn run(dir: &Path) -> (Vec<String>, Vec<String>) {
    std::fs::create_dir_all(dir.join("inbox")).expect("an inbox");
    std::fs::write(dir.join("muster.toml"), CONFIG).expect("a config");
    std::fs::write(dir.join("inbox/wt_groups.csv"), GROUPS).expect("a file");
    std::fs::write(dir.join("inbox/wt_users.csv"), USERS).expect("a file");
    let config = Config::load(&dir.join("muster.toml")).expect("a valid config");
    let opts = RunOptions {
        today: Date::new(2026, 11, 21),
        ..RunOptions::default()
    };
    let reports = run_tenant(&config.tenants[0], &opts).expect("a run");
    for r in &reports {
        println!("{}: {}", r.file.display(), r.summary);
        assert_eq!(r.status, FileStatus::Clean, "{}", r.summary);
    }
    let outbox = std::fs::read_to_string(dir.join("outbox.jsonl")).expect("an outbox");
    let mut processed: Vec<String> = std::fs::read_dir(dir.join("inbox/processed"))
        .expect("processed/")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    processed.sort();
    (outbox.lines().map(str::to_string).collect(), processed)
}

#[cfg_attr(test, allow(dead_code))]
fn main() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (outbox, processed) = run(dir.path());
    println!("outbox:");
    for line in outbox {
        println!("  {line}");
    }
    println!("processed/: {}", processed.join(", "));
}

#[test]
fn runs_a_tenant_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let (outbox, processed) = run(dir.path());
    // Two groups, two users, then the users' memberships (a second wave).
    let creates = outbox.iter().filter(|l| l.contains("\"create\"")).count();
    assert_eq!(creates, 4, "{outbox:#?}");
    assert!(
        outbox.iter().any(|l| l.contains("\"north\"")),
        "{outbox:#?}"
    );
    // Each file with its results and summary.
    assert_eq!(processed.len(), 6, "{processed:?}");
    assert_eq!(
        processed
            .iter()
            .filter(|p| p.ends_with(".results.csv"))
            .count(),
        2
    );
    main();
}
