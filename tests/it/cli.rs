//! The command line as a user drives it: exit codes, outputs, errors.

use std::process::{Command, Output};

use crate::fixtures::TODAY;

fn muster(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn fixture(name: &str) -> String {
    format!("{}/fixtures/{name}/input.csv", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn unknown_profile_is_a_usage_error_listing_the_presets() {
    let o = muster(&["check", "--profile", "nope", &fixture("stray-quote")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("winningtemp-users"), "{}", stderr(&o));
}

#[test]
fn bad_today_and_bad_flags_are_usage_errors() {
    let o = muster(&[
        "check",
        "--profile",
        "mobietrain",
        "--today",
        "21/11/2026",
        &fixture("stray-quote"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--today"));
    assert_eq!(muster(&["check", "--no-such-flag"]).status.code(), Some(2));
    assert_eq!(muster(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn missing_input_file_fails_with_its_name() {
    // A missing input is a usage error (exit 2), as is a folder; an empty
    // file is said to be empty.
    let o = muster(&["check", "--profile", "mobietrain", "/no/such/file.csv"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("/no/such/file.csv: no such file"),
        "{}",
        stderr(&o)
    );
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().display().to_string();
    let o = muster(&["check", "--profile", "mobietrain", &folder]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is a folder"), "{}", stderr(&o));
    let o = muster(&[
        "diff",
        "--profile",
        "mobietrain",
        &folder,
        &fixture("stray-quote"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, "").unwrap();
    let o = muster(&[
        "check",
        "--profile",
        "mobietrain",
        &empty.display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("the file is empty"), "{}", stderr(&o));
}

/// A snapshot piped in (`/dev/stdin`, a pipe with no length) is checked
/// whole, as the same file named: the same results and exit code, and no
/// warning that it is empty.
#[test]
fn a_snapshot_piped_on_stdin_is_checked_as_the_file_itself() {
    use std::io::Write;
    let path = format!(
        "{}/fixtures/mobietrain-users/input.csv",
        env!("CARGO_MANIFEST_DIR")
    );
    let args = ["check", "--profile", "mobietrain", "--today", TODAY];
    let named = muster(&[&args[..], &[path.as_str()]].concat());
    let mut child = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(args)
        .arg("/dev/stdin")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let text = std::fs::read(&path).unwrap();
    child.stdin.take().unwrap().write_all(&text).unwrap();
    let piped = child.wait_with_output().unwrap();
    assert!(!stderr(&piped).contains("empty"), "{}", stderr(&piped));
    assert_eq!(
        piped.status.code(),
        named.status.code(),
        "{}",
        stderr(&piped)
    );
    assert!(named.stdout.len() > 100, "{}", stderr(&named));
    assert_eq!(
        String::from_utf8_lossy(&piped.stdout),
        String::from_utf8_lossy(&named.stdout)
    );
}

/// `--help` lists the presets, the exit codes and an example; each
/// command's help has an example of its own.
#[test]
fn help_lists_presets_exit_codes_and_examples() {
    let o = muster(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    for (name, _) in muster::profile::PRESETS {
        assert!(out.contains(name), "{name} missing from:\n{out}");
    }
    assert!(
        out.contains("Exit codes") && out.contains("4  a file was refused"),
        "{out}"
    );
    for command in ["run", "daemon", "check", "diff", "gen"] {
        let o = muster(&[command, "--help"]);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            out.contains(&format!("muster {command} ")),
            "{command}:\n{out}"
        );
    }
}

/// A mistyped inbox path is a configuration error naming it (exit 2), and
/// nothing is made; `create = true` makes the folder instead.
#[test]
fn a_missing_inbox_is_a_configuration_error_unless_create_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let config = |create: &str| {
        format!(
            "[[tenant]]\nname = \"acme\"\nstate = \"state.redb\"\n\
             [tenant.source]\ntype = \"dir\"\npath = \"inbox/acmee\"\nsettle_ms = 0\n{create}\n\
             [[tenant.files]]\npattern = \"*.csv\"\nprofile = \"mobietrain\"\n\
             [tenant.sink]\ntype = \"jsonl\"\npath = \"out.jsonl\"\n"
        )
    };
    let path = dir.path().join("muster.toml");
    std::fs::write(&path, config("")).unwrap();
    let p = path.display().to_string();
    let o = muster(&["run", "--config", &p]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("inbox/acmee: no such folder"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("resumes"), "{}", stderr(&o));
    assert!(
        !dir.path().join("inbox/acmee").exists(),
        "the folder was made"
    );
    std::fs::write(&path, config("create = true")).unwrap();
    let o = muster(&["run", "--config", &p]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(dir.path().join("inbox/acmee/processed").is_dir());
}

/// A state path that cannot be made is a configuration error (exit 2),
/// with no promise that the next run resumes.
#[test]
fn a_state_path_that_cannot_be_made_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("inbox")).unwrap();
    // `state` names a folder under a plain file: nothing can make it.
    std::fs::write(dir.path().join("taken"), "a file").unwrap();
    let config = "[[tenant]]\nname = \"acme\"\nstate = \"taken/acme.redb\"\n\
                  [tenant.source]\ntype = \"dir\"\npath = \"inbox\"\nsettle_ms = 0\n\
                  [[tenant.files]]\npattern = \"*.csv\"\nprofile = \"mobietrain\"\n\
                  [tenant.sink]\ntype = \"jsonl\"\npath = \"out.jsonl\"\n";
    let path = dir.path().join("muster.toml");
    std::fs::write(&path, config).unwrap();
    let o = muster(&["run", "--config", &path.display().to_string()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("taken/acme.redb cannot be made"), "{err}");
    assert!(err.contains("`state`"), "{err}");
    assert!(!err.contains("resumes"), "{err}");
}

/// A `--results` path that cannot be created is a usage error, said once.
#[test]
fn an_unwritable_results_path_is_one_clear_usage_error() {
    let o = muster(&[
        "check",
        "--profile",
        "mobietrain",
        "--results",
        "/no/such/folder/out.csv",
        &fixture("stray-quote"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("/no/such/folder/out.csv"), "{errors:?}");
}

/// `--change-ratio` and `--shuffle` mean something only with `--from`.
#[test]
fn gen_options_of_from_without_from_are_usage_errors() {
    for extra in [&["--change-ratio", "0.1"][..], &["--shuffle"][..]] {
        let mut args = vec!["gen", "--profile", "mobietrain", "--rows", "3"];
        args.extend_from_slice(extra);
        let o = muster(&args);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("--from"), "{}", stderr(&o));
    }
}

/// `--log-format json`: each log line is one JSON object with its level
/// and message.
#[test]
fn json_logs_are_one_object_a_line() {
    let o = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args([
            "--log-format",
            "json",
            "check",
            "--profile",
            "mobietrain",
            &fixture("stray-quote"),
        ])
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let err = stderr(&o);
    let logs: Vec<&str> = err.lines().filter(|l| l.starts_with('{')).collect();
    assert!(!logs.is_empty(), "no log line: {err}");
    for line in logs {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{line}"
        );
    }
}

/// Logs written to a file are plain text: no terminal colour codes.
#[test]
fn logs_to_a_file_have_no_colour_codes() {
    let o = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["check", "--profile", "mobietrain", &fixture("stray-quote")])
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(err.contains("DEBUG"), "no log line to look at: {err}");
    assert!(!err.contains('\u{1b}'), "{err:?}");
}

#[test]
fn results_go_to_the_named_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.csv");
    let o = muster(&[
        "check",
        "--profile",
        "mobietrain",
        "--today",
        TODAY,
        "--results",
        out.to_str().unwrap(),
        &fixture("duplicates"),
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(o.stdout.is_empty());
    let text = std::fs::read_to_string(out).unwrap();
    assert!(text.starts_with("line,key,action,outcome,code,message\r\n"));
    assert_eq!(text.lines().count(), 8);
}

#[test]
fn refused_file_writes_a_header_only_results_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.csv");
    let o = muster(&[
        "check",
        "--profile",
        "lucca-360learning",
        "--results",
        out.to_str().unwrap(),
        &fixture("header-missing-column"),
    ]);
    assert_eq!(o.status.code(), Some(4));
    assert_eq!(
        std::fs::read_to_string(out).unwrap(),
        "line,key,action,outcome,code,message\r\n"
    );
    assert!(stderr(&o).contains("required column `email` is missing"));
}

#[test]
fn bad_profile_file_names_the_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.toml");
    std::fs::write(&p, "object = \"user\"\ncolumns = [\"external_id\", \"first_name\", \"last_name\"]\ndelimeter = \";\"\n").unwrap();
    let o = muster(&[
        "check",
        "--profile",
        p.to_str().unwrap(),
        &fixture("stray-quote"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("delimeter"), "{}", stderr(&o));
}

#[test]
fn gen_is_deterministic_and_its_output_checks_clean_for_every_preset() {
    let dir = tempfile::tempdir().unwrap();
    for (preset, _) in muster::profile::PRESETS {
        let a = muster(&["gen", "--profile", preset, "--rows", "500", "--seed", "7"]);
        let b = muster(&["gen", "--profile", preset, "--rows", "500", "--seed", "7"]);
        let c = muster(&["gen", "--profile", preset, "--rows", "500", "--seed", "8"]);
        assert_eq!(a.status.code(), Some(0), "{preset}: {}", stderr(&a));
        assert_eq!(a.stdout, b.stdout, "{preset}: same seed, same file");
        assert_ne!(a.stdout, c.stdout, "{preset}: another seed, another file");
        let file = dir.path().join(format!("{preset}.csv"));
        std::fs::write(&file, &a.stdout).unwrap();
        let o = muster(&[
            "check",
            "--profile",
            preset,
            "--today",
            TODAY,
            file.to_str().unwrap(),
        ]);
        let results = String::from_utf8(o.stdout).unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{preset}: generated data should be clean:\n{}",
            results
                .lines()
                .filter(|l| !l.ends_with(",planned,,"))
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert_eq!(
            results.lines().count(),
            501,
            "{preset}: one results line per row"
        );
    }
}

#[test]
fn gen_is_realistic() {
    let o = muster(&[
        "gen",
        "--profile",
        "winningtemp-users",
        "--rows",
        "3000",
        "--seed",
        "1",
    ]);
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("Zoë") || text.contains("Émilie"), "accents");
    assert!(
        text.contains("\"Head of \"\"Fun\"\"\""),
        "quoted field with quotes"
    );
    assert!(
        text.contains("\"Nurse; night shift\""),
        "quoted field with the delimiter"
    );
    assert!(
        text.contains("Engineer\n(night team)"),
        "a newline inside quotes"
    );
    assert!(text.contains(";Inactive;"), "inactive users");
    assert!(text.contains("grp-"), "groups");
    let mobie = String::from_utf8(
        muster(&[
            "gen",
            "--profile",
            "mobietrain",
            "--rows",
            "300",
            "--seed",
            "1",
        ])
        .stdout,
    )
    .unwrap();
    let end_dates = mobie
        .lines()
        .filter(|l| muster::profile::Date::parse_iso(l.rsplit(',').next().unwrap()).is_some())
        .count();
    assert!(end_dates > 3, "end dates: {end_dates}");
    let lucca = String::from_utf8(
        muster(&[
            "gen",
            "--profile",
            "lucca-360learning",
            "--rows",
            "300",
            "--seed",
            "1",
        ])
        .stdout,
    )
    .unwrap();
    assert!(
        lucca.lines().skip(2).any(|l| l.contains(",1000")),
        "managers"
    );
}

#[test]
fn gen_from_derives_a_changed_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let day1 = dir.path().join("day1.csv");
    let day2 = dir.path().join("day2.csv");
    std::fs::write(
        &day1,
        muster(&[
            "gen",
            "--profile",
            "winningtemp-users",
            "--rows",
            "4000",
            "--seed",
            "3",
        ])
        .stdout,
    )
    .unwrap();
    let o = muster(&[
        "gen",
        "--profile",
        "winningtemp-users",
        "--from",
        day1.to_str().unwrap(),
        "--change-ratio",
        "0.1",
        "--seed",
        "3",
        "--shuffle",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    std::fs::write(&day2, &o.stdout).unwrap();
    let summary = stderr(&o);
    let count = |what: &str| -> u64 {
        let at = summary.find(&format!(" {what}")).unwrap();
        summary[..at]
            .rsplit([' ', ','])
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (kept, updated, deactivated, cosmetic, deleted, created) = (
        count("kept"),
        count("updated"),
        count("deactivated"),
        count("cosmetic"),
        count("deleted"),
        count("created"),
    );
    assert_eq!(
        kept + updated + deactivated + cosmetic + deleted,
        4000,
        "{summary}"
    );
    for (what, n) in [
        ("updated", updated),
        ("deactivated", deactivated),
        ("cosmetic", cosmetic),
        ("deleted", deleted),
        ("created", created),
    ] {
        assert!(n > 0, "{what} = 0 in {summary}");
    }
    let rows = String::from_utf8(o.stdout).unwrap();
    assert_eq!(
        rows.lines().filter(|l| l.contains('@')).count() as u64,
        4000 - deleted + created
    );
    let o = muster(&[
        "check",
        "--profile",
        "winningtemp-users",
        "--today",
        TODAY,
        day2.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "the derived file is valid: {}",
        stderr(&o)
    );
}

/// A file cut by another delimiter than the profile's: each line is one
/// field, and the rejection says which delimiter would cut it right.
#[test]
fn a_field_count_rejection_names_the_delimiter_that_fits() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("users.csv");
    std::fs::write(&input, "E1;Ann;Lee;ann@example.com;;;Sales;en;\n").unwrap();
    let o = muster(&[
        "check",
        "--profile",
        "mobietrain",
        &input.display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let results = String::from_utf8(o.stdout).unwrap();
    assert!(
        results.contains("1 field, expected 9; the line splits into 9 fields at ';'"),
        "{results}"
    );
}
