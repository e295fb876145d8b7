//! Sources that are HR APIs (SPEC §10, `type = "http"`), against a real
//! HTTP server on loopback (`tests/it/http_server.py`, Python's standard
//! library): a snapshot pulled with a bearer token or a basic login, run,
//! and archived; an unchanged answer costs no write; a request that keeps
//! failing, a body cut short or a refused login plans nothing and deletes
//! nobody; a 429 with `Retry-After` and a 503 are tried again; the
//! secrets appear in no archive file and no log.

use std::ffi::OsStr;
use std::path::PathBuf;

use crate::run::{derive, gen, stderr, Tenant};

const TOKEN: &str = "hr-token-7c1e55";

struct Api {
    child: std::process::Child,
    port: u16,
    root: tempfile::TempDir,
}

impl Api {
    /// The server, with `auth` (`--bearer TOKEN` or `--basic USER:PASSWORD`).
    fn start(auth: &[&str]) -> Api {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("reports")).unwrap();
        let mut all: Vec<&OsStr> = vec![OsStr::new("--root"), root.path().as_os_str()];
        all.extend(auth.iter().map(OsStr::new));
        let (child, port) = crate::run::python_server("http_server.py", &all, "Python");
        Api { child, port, root }
    }

    fn serve(&self, body: &[u8]) {
        std::fs::write(self.root.path().join("reports/users.csv"), body).unwrap();
    }

    /// The answers the next requests get (`"503"`, `"429:1"`, `"cut"`, `"ok"`).
    fn faults(&self, faults: &[&str]) {
        let json = serde_json::json!({ "/reports/users.csv": faults });
        // The server counts a path's requests from its start: a test
        // gives its faults before its first request.
        std::fs::write(self.root.path().join("faults.json"), json.to_string()).unwrap();
    }

    fn requests(&self) -> String {
        std::fs::read_to_string(self.root.path().join("requests.log")).unwrap_or_default()
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tenant pulling `reports/users.csv` from `api` as `users`, with `auth`
/// (a TOML inline table), its secrets in files of the tenant.
fn tenant(api: &Api, auth: &str) -> Tenant {
    let t = Tenant::with_config(&format!(
        r#"
[[tenant]]
name = "t"
state = "state.redb"
[tenant.source]
type = "http"
base_url = "http://127.0.0.1:{}/"
archive = "archive"
auth = {auth}
[[tenant.files]]
name = "users"
path = "reports/users.csv"
profile = "winningtemp-users"
[tenant.sink]
type = "jsonl"
path = "outbox.jsonl"
"#,
        api.port
    ));
    std::fs::write(t.path("token"), TOKEN).unwrap();
    std::fs::write(t.path("password"), "s3cret-basic").unwrap();
    t
}

/// The users the outbox created.
fn created(t: &Tenant) -> usize {
    t.outbox()
        .iter()
        .filter(|l| l["action"] == "create")
        .count()
}

/// The creates the archive's first results file reports.
fn reported_creates(t: &Tenant) -> usize {
    let results = archive(t)
        .into_iter()
        .find(|n| n.ends_with(".results.csv"))
        .unwrap();
    let text = std::fs::read_to_string(t.path("archive").join(results)).unwrap();
    text.lines().filter(|l| l.contains(",create,")).count()
}

/// The archive's files, by name.
fn archive(t: &Tenant) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(t.path("archive"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

fn snapshots(t: &Tenant) -> Vec<PathBuf> {
    archive(t)
        .into_iter()
        .filter(|n| {
            n.starts_with("users.")
                && n.ends_with(".csv")
                && !n.contains(".results")
                && !n.contains("incomplete")
        })
        .map(|n| t.path("archive").join(n))
        .collect()
}

/// Pulled with a bearer token, run, archived; the same answer the next
/// night is planned again and writes nothing; the token is nowhere.
#[test]
fn a_snapshot_is_pulled_run_and_archived() {
    let api = Api::start(&["--bearer", TOKEN]);
    let body = gen(500, 11);
    api.serve(&body);
    let t = tenant(&api, r#"{ type = "bearer", token_file = "token" }"#);
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(created(&t) > 450, "{}", created(&t));
    assert_eq!(created(&t), reported_creates(&t));
    let written = t.outbox().len();
    let pulled = snapshots(&t);
    assert_eq!(pulled.len(), 1, "{:?}", archive(&t));
    assert_eq!(
        std::fs::read(&pulled[0]).unwrap(),
        body,
        "the archive keeps the body as it came"
    );
    assert!(archive(&t).iter().any(|n| n.ends_with(".results.csv")));

    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        t.outbox().len(),
        written,
        "an unchanged answer writes nothing"
    );
    assert_eq!(snapshots(&t).len(), 2);
    assert!(api.requests().lines().all(|l| l.ends_with("auth=yes")));

    let log = stderr(&o);
    for name in archive(&t) {
        let text = std::fs::read(t.path("archive").join(&name)).unwrap();
        assert!(!String::from_utf8_lossy(&text).contains(TOKEN), "{name}");
    }
    assert!(!log.contains(TOKEN));
}

/// A request that fails after its retries plans nothing: day 1 applied,
/// day 2's answer a 503 three times — exit 1, nobody deleted, no snapshot
/// archived; then a 503 once and the answer: pulled and run.
#[test]
fn a_pull_that_keeps_failing_plans_nothing() {
    let api = Api::start(&["--basic", "muster:s3cret-basic"]);
    let day1 = gen(300, 12);
    api.serve(&day1);
    let t = tenant(
        &api,
        r#"{ type = "basic", user = "muster", password_file = "password" }"#,
    );
    api.faults(&["ok", "503", "503", "503", "503", "ok"]);
    assert_eq!(t.run(&[]).status.code(), Some(0));
    let written = t.outbox().len();
    // Day 2: 5 % of the users changed.
    std::fs::write(t.path("day1.csv"), &day1).unwrap();
    api.serve(&derive(&t.path("day1.csv"), "0.05"));
    let o = t.run(&[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not pulled") && err.contains("HTTP 503"),
        "{err}"
    );
    assert_eq!(t.outbox().len(), written, "nothing applied");
    assert_eq!(snapshots(&t).len(), 1);
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(t.outbox().len() > written);
    assert!(!stderr(&o).contains("s3cret-basic"));
}

/// A body cut short (the length said, half sent) is not a snapshot: exit
/// 1, nothing applied, what came kept as `users.incomplete.csv`.
#[test]
fn a_body_cut_short_is_kept_apart_and_plans_nothing() {
    let api = Api::start(&["--bearer", TOKEN]);
    api.serve(&gen(2000, 14));
    api.faults(&["cut", "cut", "cut"]);
    let t = tenant(&api, r#"{ type = "bearer", token_file = "token" }"#);
    let o = t.run(&[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("cut short"), "{err}");
    assert!(t.outbox().is_empty());
    assert!(
        archive(&t).contains(&"users.incomplete.csv".to_string()),
        "{:?}",
        archive(&t)
    );
    assert!(snapshots(&t).is_empty());
}

/// A 429 with `Retry-After: 1` is waited for and tried again; a wrong
/// token is refused at once (one request), naming `auth`.
#[test]
fn a_429_is_waited_for_and_a_wrong_token_is_refused() {
    let api = Api::start(&["--bearer", TOKEN]);
    api.serve(&gen(50, 15));
    api.faults(&["429:1"]);
    let t = tenant(&api, r#"{ type = "bearer", token_file = "token" }"#);
    let started = std::time::Instant::now();
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        started.elapsed().as_millis() >= 1000,
        "Retry-After waited for"
    );
    assert!(created(&t) > 40);
    assert_eq!(created(&t), reported_creates(&t));

    std::fs::write(t.path("token"), "wrong-token").unwrap();
    let before = api.requests().lines().count();
    let o = t.run(&[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("HTTP 401") && err.contains("auth"), "{err}");
    assert_eq!(api.requests().lines().count(), before + 1, "not retried");
    assert!(!err.contains("wrong-token"));
}

/// The error of loading an http tenant with these `[tenant.source]` lines
/// (besides its type and archive) and this `[[tenant.files]]` table.
fn load_error(source: &str, file: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[[tenant]]\nname = \"t\"\nstate = \"s.redb\"\n[tenant.source]\ntype = \"http\"\n{source}\narchive = \"a\"\n[[tenant.files]]\n{file}\n[tenant.sink]\ntype = \"jsonl\"\npath = \"o.jsonl\"\n"
    );
    std::fs::write(dir.path().join("muster.toml"), config).unwrap();
    muster::config::Config::load(&dir.path().join("muster.toml"))
        .unwrap_err()
        .to_string()
}

/// Each mistake in an http tenant is a configuration error naming it.
#[test]
fn each_mistake_in_an_http_tenant_is_named() {
    let cases = [
        (
            "pattern = \"*.csv\"\nname = \"users\"\npath = \"u.csv\"",
            "not a `pattern`",
        ),
        ("path = \"u.csv\"", "needs a `name`"),
        ("name = \"users\"", "needs a `path`"),
        ("name = \"a b\"\npath = \"u.csv\"", "letters, digits"),
        (
            "name = \"users\"\npath = \"u.csv\"\nformat = \"json\"",
            "not built yet",
        ),
        (
            "name = \"users\"\npath = \"u.csv\"\nformat = \"xml\"",
            "\"csv\" or \"json\"",
        ),
    ];
    for (file, wanted) in cases {
        let err = load_error(
            "base_url = \"https://hr.example.com/api\"",
            &format!("{file}\nprofile = \"mobietrain\""),
        );
        assert!(err.contains(wanted), "{file}: {err}");
    }
    // Credentials over plain http off this machine, and a password in the URL.
    for (source, wanted) in [
        ("base_url = \"http://hr.example.com\"\nauth = { type = \"bearer\", token_env = \"PATH\" }", "in clear"),
        ("base_url = \"https://u:p@hr.example.com\"", "must not carry"),
    ] {
        let file = "name = \"u\"\npath = \"u.csv\"\nprofile = \"mobietrain\"";
        let err = load_error(source, file);
        assert!(err.contains(wanted), "{source}: {err}");
        assert!(!err.contains("u:p@"), "{err}");
    }
}

/// OAuth2 client credentials: the token is fetched with the client's
/// login, used, and fetched again once when the API refuses it (a 401);
/// a wrong client secret fails the run, naming `auth`. Neither the secret
/// nor a token is in the archive or the log.
#[test]
fn oauth2_client_credentials_fetch_a_token_and_refresh_it_on_a_401() {
    let api = Api::start(&["--oauth", "muster:client-s3cret"]);
    api.serve(&gen(40, 16));
    api.faults(&["ok", "401", "ok"]);
    let t = tenant(
        &api,
        &format!(
            r#"{{ type = "oauth2", token_url = "http://127.0.0.1:{}/oauth/token", client_id = "muster", client_secret_file = "secret", scope = "employees:read" }}"#,
            api.port
        ),
    );
    std::fs::write(t.path("secret"), "client-s3cret").unwrap();
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(created(&t) > 30);
    let o = t.run(&[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let posts = api
        .requests()
        .lines()
        .filter(|l| l.starts_with("POST /oauth/token"))
        .count();
    assert_eq!(
        posts,
        3,
        "one token a run, and one more after the 401:\n{}",
        api.requests()
    );
    for name in archive(&t) {
        let text = std::fs::read_to_string(t.path("archive").join(&name)).unwrap_or_default();
        assert!(
            !text.contains("client-s3cret") && !text.contains("at-"),
            "{name}"
        );
    }
    assert!(
        !err.contains("client-s3cret") && !err.contains("at-"),
        "{err}"
    );

    std::fs::write(t.path("secret"), "wrong").unwrap();
    let o = t.run(&[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("OAuth2 token") && err.contains("auth"),
        "{err}"
    );
}
