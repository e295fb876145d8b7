//! Hardening deliverable 5: a distinct secret in every place a secret can
//! go — an SFTP password from the environment, a private key from the
//! environment and its passphrase from a file, a SCIM bearer token from a
//! file, a password in a SCIM URL, a wrong password and a wrong token — and
//! every byte muster writes scanned for each: its output and logs at trace
//! level (text and JSON, `run`, `--dry-run`, `state rebuild`, `daemon`),
//! results, summaries, the originals' copies, the state store and its
//! journal, the outbox, the webhook events (a webhook's signing key is one
//! of the secrets). (FTP, SMTP and OAuth2 secrets join this list with
//! their sources and notifications.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::fixtures::TODAY;
use crate::run::gen;
use crate::scim::server::{ScimServer, TOKEN};
use crate::sftp::{account, sh, Sshd, PASSPHRASE, PASSWORD, USER};

const URL_PASSWORD: &str = "url-password-91d2";
const HOOK_SECRET: &str = "hook-secret-77c3";
const WRONG_TOKEN: &str = "wrong-token-4b7e";
const WRONG_PASSWORD: &str = "wrong-password-c3a0";

/// Everything muster wrote, by where it was found.
#[derive(Default)]
struct Written(Vec<(String, Vec<u8>)>);

impl Written {
    fn output(&mut self, what: &str, o: &Output) {
        self.0.push((format!("{what}: stdout"), o.stdout.clone()));
        self.0.push((format!("{what}: stderr"), o.stderr.clone()));
    }

    /// Every file under `dir`, recursively, but the configurations (the
    /// test wrote those, not muster).
    fn tree(&mut self, dir: &Path) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                self.tree(&path);
            } else if path.extension().is_none_or(|e| e != "toml") {
                self.0
                    .push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }

    fn contains(&self, needle: &str) -> Vec<&str> {
        let needle = needle.as_bytes();
        self.0
            .iter()
            .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle))
            .map(|(at, _)| at.as_str())
            .collect()
    }
}

/// A remote inbox folder of the SFTP user.
fn remote_inbox(name: &str) -> PathBuf {
    let inbox = account()
        .home
        .join(format!("inbox-secrets-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&inbox);
    std::fs::create_dir_all(&inbox).unwrap();
    sh(Command::new("chown")
        .arg(format!("{USER}:{USER}"))
        .arg(&inbox));
    inbox
}

fn drop_remote(inbox: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(inbox.join(name), bytes).unwrap();
    sh(Command::new("chown")
        .arg(format!("{USER}:{USER}"))
        .arg(inbox.join(name)));
}

/// A tenant reading `inbox` over SFTP (`auth`: its credentials' keys).
fn tenant(name: &str, sshd: &Sshd, inbox: &Path, auth: &str, sink: &str) -> String {
    format!(
        r#"
[[tenant]]
name = "{name}"
state = "{name}/state.redb"
[tenant.source]
type = "sftp"
host = "127.0.0.1"
port = {port}
user = "{USER}"
path = "{inbox}"
settle_ms = 0
known_hosts = "{known_hosts}"
{auth}
[[tenant.files]]
pattern = "wt_users*.csv"
profile = "winningtemp-users"
[tenant.sink]
{sink}
"#,
        port = sshd.port,
        inbox = inbox.display(),
        known_hosts = sshd.known_hosts().display(),
    )
}

fn muster(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_muster"));
    c.args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "trace");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn d5_no_secret_reaches_anything_muster_writes() {
    let sshd = Sshd::start();
    let scim = ScimServer::start();
    let dir = tempfile::tempdir().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("token"), TOKEN).unwrap();
    std::fs::write(secrets.path().join("passphrase"), PASSPHRASE).unwrap();
    std::fs::write(secrets.path().join("hook"), HOOK_SECRET).unwrap();
    let (hook_port, events) = crate::notify::receiver();
    let key = std::fs::read_to_string(&account().key_with_passphrase).unwrap();
    // A line of the private key's body: what would show if the key did.
    let key_line = key.lines().nth(2).unwrap().to_string();
    let env = [
        ("MUSTER_TEST_SFTP_PASSWORD", PASSWORD),
        ("MUSTER_TEST_SFTP_KEY", key.as_str()),
    ];

    let (scim_inbox, jsonl_inbox) = (remote_inbox("scim"), remote_inbox("jsonl"));
    let config = dir.path().join("muster.toml");
    std::fs::write(
        &config,
        tenant(
            "scim",
            &sshd,
            &scim_inbox,
            "password_env = \"MUSTER_TEST_SFTP_PASSWORD\"",
            &format!(
                "type = \"scim\"\nurl = \"{}\"\ntoken_file = \"{}\"",
                scim.url(),
                secrets.path().join("token").display()
            ),
        ) + &tenant(
            "jsonl",
            &sshd,
            &jsonl_inbox,
            &format!(
                "key_env = \"MUSTER_TEST_SFTP_KEY\"\npassphrase_file = \"{}\"",
                secrets.path().join("passphrase").display()
            ),
            &format!(
                "type = \"jsonl\"\npath = \"jsonl/outbox.jsonl\"\n\
                 [[tenant.notify]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{hook_port}/hook\"\n\
                 secret_file = \"{}\"\non = [\"ok\", \"rows_failed\", \"held\", \"failed\"]",
                secrets.path().join("hook").display()
            ),
        ),
    )
    .unwrap();

    let mut written = Written::default();
    let day1 = gen(300, 21);
    for inbox in [&scim_inbox, &jsonl_inbox] {
        drop_remote(inbox, "wt_users.csv", &day1);
    }
    let o = muster(&config, &["run", "--today", TODAY], &env);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    written.output("run, text log", &o);
    let day1_path = dir.path().join("day1.csv");
    std::fs::write(&day1_path, &day1).unwrap();
    let day2 = crate::run::derive(&day1_path, "0.1");
    for inbox in [&scim_inbox, &jsonl_inbox] {
        drop_remote(inbox, "wt_users.csv", &day2);
    }
    let o = muster(&config, &["run", "--dry-run", "--today", TODAY], &env);
    written.output("dry run", &o);
    let o = muster(
        &config,
        &["--log-format", "json", "run", "--today", TODAY],
        &env,
    );
    assert!(
        matches!(o.status.code(), Some(0 | 3)),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    written.output("run, JSON log", &o);
    let o = muster(&config, &["state", "rebuild", "--tenant", "scim"], &env);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    written.output("state rebuild", &o);
    // The daemon, for a moment, then stopped.
    let daemon = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["daemon", "--config"])
        .arg(&config)
        .env("RUST_LOG", "trace")
        .envs(env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    sh(Command::new("kill").arg(daemon.id().to_string()));
    let o = daemon.wait_with_output().unwrap();
    written.output("daemon", &o);

    // Wrong secrets fail, and are not shown either.
    let wrong_inbox = remote_inbox("wrong");
    let wrong = dir.path().join("wrong.toml");
    std::fs::write(
        &wrong,
        tenant(
            "wrong",
            &sshd,
            &wrong_inbox,
            "password_env = \"MUSTER_TEST_SFTP_PASSWORD\"",
            &format!(
                "type = \"scim\"\nurl = \"{}\"\ntoken_env = \"MUSTER_TEST_TOKEN\"",
                scim.url()
            ),
        ),
    )
    .unwrap();
    drop_remote(&wrong_inbox, "wt_users.csv", &day2);
    let o = muster(
        &wrong,
        &["run"],
        &[
            ("MUSTER_TEST_SFTP_PASSWORD", WRONG_PASSWORD),
            ("MUSTER_TEST_TOKEN", TOKEN),
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    written.output("wrong password", &o);
    let o = muster(
        &wrong,
        &["run"],
        &[
            ("MUSTER_TEST_SFTP_PASSWORD", PASSWORD),
            ("MUSTER_TEST_TOKEN", WRONG_TOKEN),
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    written.output("wrong token", &o);
    // A password in the SCIM URL: refused, by a message that hides it.
    let in_url = dir.path().join("in-url.toml");
    let url = scim
        .url()
        .replacen("://", &format!("://muster:{URL_PASSWORD}@"), 1);
    std::fs::write(
        &in_url,
        tenant(
            "url",
            &sshd,
            &scim_inbox,
            "password_env = \"MUSTER_TEST_SFTP_PASSWORD\"",
            &format!("type = \"scim\"\nurl = \"{url}\"\ntoken_env = \"MUSTER_TEST_TOKEN\""),
        ),
    )
    .unwrap();
    let o = muster(&in_url, &["run"], &[("MUSTER_TEST_TOKEN", TOKEN)]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    written.output("password in the url", &o);

    // The events the webhook received.
    let events = events.lock().unwrap().clone();
    assert!(!events.is_empty(), "no event was sent");
    for (i, (headers, body)) in events.iter().enumerate() {
        let headers: String = headers.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
        written
            .0
            .push((format!("event {i}"), [headers.as_bytes(), body].concat()));
    }
    for (name, tree) in [
        ("local", dir.path()),
        ("scim inbox", &scim_inbox),
        ("jsonl inbox", &jsonl_inbox),
        ("wrong inbox", &wrong_inbox),
    ] {
        written.tree(tree);
        assert!(written.0.len() > 10, "{name}: nothing found");
    }
    // The scan read what it had to: trace logs of both sources and the
    // sink, results, summaries, the store, the outbox.
    for expected in [
        "sftp",
        "scim",
        "line,key,action,outcome,code,message",
        "\"counts\"",
        "\"action\":\"create\"",
        "authentication of user",
        "refused the bearer token",
    ] {
        assert!(
            !written.contains(expected).is_empty(),
            "nothing written holds {expected:?}"
        );
    }
    assert!(written
        .0
        .iter()
        .any(|(at, _)| at.ends_with("state.redb.journal")));
    for (what, secret) in [
        ("the SFTP password", PASSWORD),
        ("the private key", key_line.as_str()),
        ("the key's passphrase", PASSPHRASE),
        ("the SCIM token", TOKEN),
        ("the password in the URL", URL_PASSWORD),
        ("the webhook's signing key", HOOK_SECRET),
        ("a wrong SFTP password", WRONG_PASSWORD),
        ("a wrong SCIM token", WRONG_TOKEN),
    ] {
        let found = written.contains(secret);
        assert!(found.is_empty(), "{what} was written in: {found:?}");
    }
    for inbox in [&scim_inbox, &jsonl_inbox, &wrong_inbox] {
        let _ = std::fs::remove_dir_all(inbox);
    }
}
