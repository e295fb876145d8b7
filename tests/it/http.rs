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
    tenant_with(
        api,
        auth,
        r#"name = "users"
path = "reports/users.csv"
profile = "winningtemp-users""#,
    )
}

/// A tenant pulling from `api` the `[[tenant.files]]` table `file`.
fn tenant_with(api: &Api, auth: &str, file: &str) -> Tenant {
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
{file}
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
            "format = \"json\" needs a JSON profile (format = \"json\"); profile \"mobietrain\" is not one",
        ),
        (
            "name = \"users\"\npath = \"u.csv\"\nrecords = \"data\"",
            "`records` and `paging` are for format = \"json\"",
        ),
        (
            "name = \"users\"\npath = \"u\"\nformat = \"json\"\npaging = { type = \"cursor\", param = \"c\", next = \"\" }",
            "paging next \"\": a dot path",
        ),
        (
            "name = \"users\"\npath = \"u\"\nformat = \"json\"\npaging = { type = \"offset\", offset_param = \"o\", limit_param = \"l\", limit = 0 }",
            "a limit of at least 1",
        ),
        (
            "name = \"users\"\npath = \"u\"\nformat = \"json\"\npaging = { type = \"pages\" }",
            "unknown variant `pages`",
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

/// A JSON profile for the `people` pages: id, names, e-mail; a user
/// missing from a full pull is deleted, with no guard holding it.
const PEOPLE_PROFILE: &str = r#"
object = "user"
format = "json"
missing = "delete"
columns = [
  { field = "external_id", name = "id" },
  { field = "first_name", name = "name.first" },
  { field = "last_name", name = "name.last" },
  { field = "email", name = "contact.email" },
  { field = "groups", name = "teams" },
]
[safety]
max_delete_ratio = 1.0
max_shrink_ratio = 1.0
"#;

/// `n` people records, from `from` on.
fn people(from: usize, n: usize) -> Vec<serde_json::Value> {
    (from..from + n)
        .map(|i| {
            serde_json::json!({
                "id": format!("p{i}"),
                "name": { "first": format!("First{i}"), "last": format!("Last{i}") },
                "contact": { "email": format!("p{i}@acme.example"), "phone": null },
                "teams": ["All", format!("Team{}", i % 3)],
            })
        })
        .collect()
}

/// Writes `file` (under the API's root) with `body`.
fn put(api: &Api, file: &str, body: &serde_json::Value) {
    let path = api.root.path().join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_vec_pretty(body).unwrap()).unwrap();
}

/// Serves `pages` of people at `api/people` as `style` pages them, and
/// returns the tenant's `[[tenant.files]]` table for them.
fn serve_pages(api: &Api, style: &str, pages: &[Vec<serde_json::Value>]) -> String {
    let n = pages.len();
    std::fs::create_dir_all(api.root.path().join("api")).unwrap();
    for (i, records) in pages.iter().enumerate() {
        let last = i + 1 == n;
        let (file, body) = match style {
            // Absolute path first, then relative to the page asked.
            "next_link" => (
                if i == 0 {
                    "api/people".to_string()
                } else {
                    format!("api/people@page={}", i + 1)
                },
                serde_json::json!({
                    "data": records,
                    "links": { "next": if last { serde_json::Value::Null } else if i == 0 {
                        "/api/people?page=2".into() } else { format!("people?page={}", i + 2).into() } },
                }),
            ),
            "link_header" => {
                let file = if i == 0 {
                    "api/people".to_string()
                } else {
                    format!("api/people@page={}", i + 1)
                };
                let mut link = r#"</api/people?page=1>; rel="first""#.to_string();
                if !last {
                    link.push_str(&format!(r#", </api/people?page={}>; rel="next""#, i + 2));
                }
                std::fs::write(api.root.path().join(format!("{file}.link")), link).unwrap();
                (file, serde_json::Value::Array(records.clone()))
            }
            "cursor" => (
                if i == 0 {
                    "api/people".to_string()
                } else {
                    format!("api/people@cursor=c{}", i + 1)
                },
                serde_json::json!({
                    "data": records,
                    "meta": { "next_cursor": if last { None } else { Some(format!("c{}", i + 2)) } },
                }),
            ),
            "offset" => (
                format!("api/people@offset={}&limit=3", i * 3),
                serde_json::json!({ "data": records }),
            ),
            _ => unreachable!(),
        };
        put(api, &file, &body);
    }
    let (records, paging) = match style {
        "next_link" => ("data", r#"{ type = "next_link", next = "links.next" }"#),
        "link_header" => ("", r#"{ type = "link_header" }"#),
        "cursor" => (
            "data",
            r#"{ type = "cursor", param = "cursor", next = "meta.next_cursor" }"#,
        ),
        "offset" => (
            "data",
            r#"{ type = "offset", offset_param = "offset", limit_param = "limit", limit = 3 }"#,
        ),
        _ => unreachable!(),
    };
    format!(
        r#"name = "users"
path = "api/people"
format = "json"
records = "{records}"
paging = {paging}
profile = "people.toml""#
    )
}

/// The pulled snapshots in the archive (`users.<timestamp>.jsonl`).
fn json_snapshots(t: &Tenant) -> Vec<PathBuf> {
    archive(t)
        .into_iter()
        .filter(|n| n.starts_with("users.") && n.ends_with(".jsonl") && !n.contains("incomplete"))
        .map(|n| t.path("archive").join(n))
        .collect()
}

/// The GETs the API answered, in order.
fn gets(api: &Api) -> Vec<String> {
    api.requests()
        .lines()
        .filter(|l| l.starts_with("GET "))
        .map(|l| l.split(' ').nth(1).unwrap().to_string())
        .collect()
}

/// Each paging style: 7 people in pages of 3, 3 and 1 are pulled page
/// after page, archived one record a line, and created with results lines
/// 1 to 7; the same answer the next night writes nothing.
#[test]
fn json_pages_of_every_paging_style_are_pulled_and_run() {
    for style in ["next_link", "link_header", "cursor", "offset"] {
        let api = Api::start(&["--bearer", TOKEN]);
        let pages = [people(1, 3), people(4, 3), people(7, 1)];
        let file = serve_pages(&api, style, &pages);
        let t = tenant_with(&api, r#"{ type = "bearer", token_file = "token" }"#, &file);
        std::fs::write(t.path("people.toml"), PEOPLE_PROFILE).unwrap();
        let o = t.run(&[]);
        assert_eq!(o.status.code(), Some(0), "{style}: {}", stderr(&o));
        let asked = gets(&api);
        let expected: Vec<&str> = match style {
            "next_link" | "link_header" => {
                vec!["/api/people", "/api/people?page=2", "/api/people?page=3"]
            }
            "cursor" => vec![
                "/api/people",
                "/api/people?cursor=c2",
                "/api/people?cursor=c3",
            ],
            _ => vec![
                "/api/people?offset=0&limit=3",
                "/api/people?offset=3&limit=3",
                "/api/people?offset=6&limit=3",
            ],
        };
        assert_eq!(asked, expected, "{style}");
        assert_eq!(created(&t), 7, "{style}");
        // Each person's teams array is a list: their groups.
        let teams: Vec<String> = t
            .outbox()
            .iter()
            .filter(|l| !l["fields"]["groups"].is_null())
            .map(|l| format!("{} {}", l["key"], l["fields"]["groups"]))
            .collect();
        assert_eq!(teams.len(), 7, "{style}: {teams:?}");
        assert!(
            teams.contains(&r#""p4" ["All","Team1"]"#.to_string()),
            "{style}: {teams:?}"
        );
        let pulled = json_snapshots(&t);
        assert_eq!(pulled.len(), 1, "{style}: {:?}", archive(&t));
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&pulled[0])
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let all: Vec<serde_json::Value> = pages.concat();
        assert_eq!(
            lines, all,
            "{style}: the archive holds every record, in order"
        );
        let results = archive(&t)
            .into_iter()
            .find(|n| n.ends_with(".results.csv"))
            .unwrap();
        let results = std::fs::read_to_string(t.path("archive").join(results)).unwrap();
        for i in 1..=7 {
            assert!(
                results.contains(&format!("\n{i},p{i},create,")),
                "{style}: line {i} is record {i}:\n{results}"
            );
        }
        let written = t.outbox().len();
        let o = t.run(&[]);
        assert_eq!(o.status.code(), Some(0), "{style}: {}", stderr(&o));
        assert_eq!(
            t.outbox().len(),
            written,
            "{style}: an unchanged answer writes nothing"
        );
        assert!(!stderr(&o).contains(TOKEN));
        for name in archive(&t) {
            let text = std::fs::read(t.path("archive").join(&name)).unwrap();
            assert!(
                !String::from_utf8_lossy(&text).contains(TOKEN),
                "{style}: {name}"
            );
        }
    }
}

/// Day 1 applied from three pages. Then page 2 fails in each way a page
/// can — after its retries (503, 408, 429 without `Retry-After`, a lost
/// connection, a body cut short), or at once (not JSON, no records path,
/// a next link asked for before): exit 1, nothing written (page 2's users
/// are not deleted), what came kept as `users.incomplete.jsonl`. Then a
/// whole pull that lacks a user deletes that one.
#[test]
fn a_partial_json_pull_deletes_nobody() {
    let api = Api::start(&["--bearer", TOKEN]);
    let pages = [people(1, 3), people(4, 3), people(7, 2)];
    let file = serve_pages(&api, "next_link", &pages);
    let t = tenant_with(&api, r#"{ type = "bearer", token_file = "token" }"#, &file);
    std::fs::write(t.path("people.toml"), PEOPLE_PROFILE).unwrap();
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let written = t.outbox().len();
    assert_eq!(created(&t), 8);

    let page2 = api.root.path().join("api/people@page=2");
    let good = std::fs::read(&page2).unwrap();
    let page3 = api.root.path().join("api/people@page=3");
    let good3 = std::fs::read(&page3).unwrap();
    let retried = |fault: &'static str| vec![fault; 3];
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        ("503", retried("503"), "HTTP 503"),
        ("408", retried("408"), "HTTP 408"),
        ("429", retried("429"), "HTTP 429"),
        ("drop", retried("drop"), "/api/people?page=2"),
        ("cut", retried("cut"), "cut short"),
        ("not json", vec![], "not JSON"),
        ("no records", vec![], "has no `data`"),
        ("loop", vec![], "asked for before"),
    ];
    for (case, faults, says) in cases {
        let json = serde_json::json!({ "/api/people?page=2": faults });
        std::fs::write(api.root.path().join("faults.json"), json.to_string()).unwrap();
        match case {
            "not json" => std::fs::write(&page2, "<html>502 Bad Gateway</html>").unwrap(),
            "no records" => std::fs::write(&page2, r#"{"error": "rate limited"}"#).unwrap(),
            "loop" => put(
                &api,
                "api/people@page=3",
                &serde_json::json!({ "data": pages[2], "links": { "next": "/api/people?page=2" } }),
            ),
            _ => {}
        }
        let o = t.run(&[]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{case}: {err}");
        assert!(
            err.contains("not pulled") && err.contains(says),
            "{case}: {err}"
        );
        assert_eq!(
            t.outbox().len(),
            written,
            "{case}: nothing applied, nobody deleted"
        );
        assert!(
            archive(&t).contains(&"users.incomplete.jsonl".to_string()),
            "{case}: {:?}",
            archive(&t)
        );
        assert_eq!(json_snapshots(&t).len(), 1, "{case}: no snapshot archived");
        std::fs::write(&page2, &good).unwrap();
        std::fs::write(&page3, &good3).unwrap();
    }
    std::fs::write(api.root.path().join("faults.json"), "{}").unwrap();
    // A whole pull without p8: p8 is deleted, nobody else.
    put(
        &api,
        "api/people@page=3",
        &serde_json::json!({ "data": people(7, 1), "links": { "next": null } }),
    );
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let new: Vec<String> = t.outbox()[written..]
        .iter()
        .map(|l| format!("{} {}", l["action"], l["key"]))
        .collect();
    assert_eq!(new, [r#""delete" "p8""#], "{new:?}");
}

/// A next link to another host is refused before anything is asked of
/// it: the token goes to base_url's host only.
#[test]
fn a_next_link_to_another_host_is_refused() {
    let api = Api::start(&["--bearer", TOKEN]);
    put(
        &api,
        "api/people",
        &serde_json::json!({ "data": people(1, 2), "links": { "next": "https://elsewhere.example/steal" } }),
    );
    let file = r#"name = "users"
path = "api/people"
format = "json"
records = "data"
paging = { type = "next_link", next = "links.next" }
profile = "people.toml""#;
    let t = tenant_with(&api, r#"{ type = "bearer", token_file = "token" }"#, file);
    std::fs::write(t.path("people.toml"), PEOPLE_PROFILE).unwrap();
    let o = t.run(&[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("another host (https://elsewhere.example)"),
        "{err}"
    );
    assert!(t.outbox().is_empty());
}

/// The three API shapes of the examples (a Workday-style CSV report over
/// basic auth, a BambooHR-style JSON report with a key as the user name,
/// a Personio-style paged API with OAuth2), each run end to end by the
/// README's `scripts/try-api.sh` against the sample API in `examples/api/`:
/// 8 people, one inactive, 7 created with their managers linked.
#[test]
fn each_example_api_shape_runs_end_to_end() {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (shape, manager_of_1002) in [
        ("workday-report", "1001"),
        ("bamboohr-report", "41"),
        ("personio-api", "1001"),
    ] {
        let work = tempfile::tempdir().unwrap();
        let o = std::process::Command::new(manifest.join("scripts/try-api.sh"))
            .arg(shape)
            .env("MUSTER", env!("CARGO_BIN_EXE_muster"))
            .env("TRY_API_DIR", work.path())
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{shape}: {out}{}", stderr(&o));
        assert!(out.contains("(7 creates)"), "{shape}: {out}");
        let outbox = std::fs::read_to_string(work.path().join("outbox.jsonl")).unwrap();
        let lines: Vec<serde_json::Value> = outbox
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let bram = if shape == "bamboohr-report" {
            "42"
        } else {
            "1002"
        };
        assert!(
            lines
                .iter()
                .any(|l| l["key"] == bram && l["fields"]["manager_id"] == manager_of_1002),
            "{shape}: {outbox}"
        );
        assert!(
            !outbox.contains("sample-"),
            "{shape}: a secret in the outbox"
        );
    }
}
