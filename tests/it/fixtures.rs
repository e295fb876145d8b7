//! Every fixture through `muster check` against its expected results.
//!
//! A fixture is a folder of `fixtures/` holding `input.csv` (or, for a JSON
//! profile, `input.jsonl`), the profile (a preset name in `profile`, or a
//! `profile.toml`), the expected results (`expected.csv`) and exit code
//! (`exit`). With an `old.csv` (`old.jsonl`) too, the case runs `muster
//! diff old.csv input.csv`. "Today" is 2026-11-21.
//! `MUSTER_BLESS=1 cargo test fixtures` rewrites the expectations: review
//! the diff before committing it.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const TODAY: &str = "2026-11-21";

fn profile_arg(dir: &Path) -> String {
    let toml = dir.join("profile.toml");
    if toml.exists() {
        return toml.display().to_string();
    }
    std::fs::read_to_string(dir.join("profile"))
        .expect("profile or profile.toml")
        .trim()
        .to_string()
}

/// A fixture's `<stem>.csv`, or its `<stem>.jsonl` when it has that.
fn input(dir: &Path, stem: &str) -> PathBuf {
    let jsonl = dir.join(format!("{stem}.jsonl"));
    if jsonl.exists() {
        return jsonl;
    }
    dir.join(format!("{stem}.csv"))
}

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| input(p, "input").exists())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn every_fixture_gives_its_expected_results_and_exit_code() {
    let bless = std::env::var_os("MUSTER_BLESS").is_some();
    let mut failures = Vec::new();
    let cases = cases();
    assert!(cases.len() >= 20, "fixtures went missing: {}", cases.len());
    for dir in cases {
        // With an `old.csv`, the case is `muster diff old.csv input.csv`.
        let old = input(&dir, "old");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_muster"));
        if old.exists() {
            cmd.args(["diff", "--profile", &profile_arg(&dir), "--today", TODAY])
                .arg(old);
        } else {
            cmd.args(["check", "--profile", &profile_arg(&dir), "--today", TODAY]);
        }
        let out = cmd.arg(input(&dir, "input")).output().unwrap();
        let results = String::from_utf8(out.stdout).unwrap();
        let code = out.status.code().unwrap().to_string();
        if bless {
            std::fs::write(dir.join("expected.csv"), &results).unwrap();
            std::fs::write(dir.join("exit"), format!("{code}\n")).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(dir.join("expected.csv")).unwrap_or_default();
        let expected_code = std::fs::read_to_string(dir.join("exit")).unwrap_or_default();
        if results != expected || code != expected_code.trim() {
            failures.push(format!(
                "{}: exit {code} (expected {})\n--- got\n{results}--- expected\n{expected}--- stderr\n{}",
                dir.display(),
                expected_code.trim(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
