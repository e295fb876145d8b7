//! The FTP source (SPEC §10) against a real FTP server: pyftpdlib, which
//! `scripts/test.sh` installs into `target/scim-venv`, started on loopback
//! and a free port by `ftp_server.py` beside this file, with a throwaway
//! CA's certificate for explicit and implicit FTPS.

use std::path::PathBuf;
use std::process::{Child, Command, Output};

use crate::fixtures::TODAY;
use crate::run::{gen, stderr};

const USER: &str = "acme";
const PASSWORD: &str = "ftp-pw-3b8e41";

/// A running `ftp_server.py`; killed when dropped.
struct FtpServer {
    child: Child,
    port: u16,
    /// The user's home: the inbox is `upload/` in it.
    root: tempfile::TempDir,
    ca: PathBuf,
}

impl FtpServer {
    fn start(tls: &str) -> FtpServer {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("upload")).unwrap();
        let ca = root.path().join("ca.pem");
        let (child, port) = crate::run::python_server(
            "ftp_server.py",
            &[
                root.path().as_os_str(),
                USER.as_ref(),
                PASSWORD.as_ref(),
                "--tls".as_ref(),
                tls.as_ref(),
                "--ca-out".as_ref(),
                ca.as_os_str(),
            ],
            "pyftpdlib",
        );
        FtpServer {
            child,
            port,
            root,
            ca,
        }
    }

    fn inbox(&self) -> PathBuf {
        self.root.path().join("upload")
    }

    fn processed(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.inbox().join("processed"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

impl Drop for FtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tenant reading the server's `/upload` into a JSONL outbox; `source`
/// holds the `[tenant.source]` lines after host, port, user and path.
struct FtpTenant {
    dir: tempfile::TempDir,
}

impl FtpTenant {
    fn new(server: &FtpServer, source: &str, settle_ms: u64) -> FtpTenant {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("muster.toml"),
            format!(
                r#"
[[tenant]]
name = "ftp"
state = "state.redb"
[tenant.source]
type = "ftp"
host = "127.0.0.1"
port = {port}
user = "{USER}"
password_env = "MUSTER_TEST_FTP_PASSWORD"
path = "/upload"
settle_ms = {settle_ms}
timeout_ms = 10000
{source}
[[tenant.files]]
pattern = "*"
profile = "winningtemp-users"
[tenant.sink]
type = "jsonl"
path = "outbox.jsonl"
"#,
                port = server.port,
            ),
        )
        .unwrap();
        FtpTenant { dir }
    }

    fn run(&self, password: &str) -> Output {
        Command::new(env!("CARGO_BIN_EXE_muster"))
            .args(["run", "--config"])
            .arg(self.dir.path().join("muster.toml"))
            .args(["--today", TODAY])
            .env("MUSTER_TEST_FTP_PASSWORD", password)
            .output()
            .unwrap()
    }

    fn outbox_lines(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("outbox.jsonl"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }
}

fn trusted(server: &FtpServer) -> String {
    format!("ca_file = {:?}", server.ca)
}

/// A whole run over explicit FTPS, then the same over implicit FTPS.
#[test]
fn a_tenant_runs_end_to_end_over_explicit_and_implicit_ftps() {
    for tls in ["explicit", "implicit"] {
        let server = FtpServer::start(tls);
        let t = FtpTenant::new(
            &server,
            &format!("tls = \"{tls}\"\n{}", trusted(&server)),
            0,
        );
        let users = gen(60, 51);
        std::fs::write(server.inbox().join("wt_users.csv"), &users).unwrap();
        std::fs::write(server.inbox().join("wt_users2.csv.part"), b"half").unwrap();
        std::fs::write(server.inbox().join(".hidden.csv"), b"x").unwrap();
        let o = t.run(PASSWORD);
        assert_eq!(o.status.code(), Some(0), "{tls}: {}", stderr(&o));
        assert!(t.outbox_lines() > 55, "{tls}");
        let processed = server.processed();
        assert_eq!(processed.len(), 3, "{tls}: {processed:?}");
        assert!(processed.iter().any(|n| n.ends_with(".results.csv")));
        assert!(processed.iter().any(|n| n.ends_with(".summary.json")));
        let original = processed
            .iter()
            .find(|n| n.starts_with("wt_users.") && n.ends_with("Z.csv"))
            .unwrap();
        assert_eq!(
            std::fs::read(server.inbox().join("processed").join(original)).unwrap(),
            users
        );
        // Only the ignored files are left.
        assert!(!server.inbox().join("wt_users.csv").exists());
        assert!(server.inbox().join("wt_users2.csv.part").exists());
        assert!(server.inbox().join(".hidden.csv").exists());
        // Nothing new: nothing done.
        let o = t.run(PASSWORD);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(server.processed().len(), 3);
        assert!(!stderr(&o).contains(PASSWORD));
    }
}

#[test]
fn a_file_still_being_written_is_left_for_the_next_run() {
    let server = FtpServer::start("explicit");
    let t = FtpTenant::new(&server, &trusted(&server), 1500);
    let users = gen(400, 52);
    let (head, tail) = users.split_at(users.len() / 2);
    let path = server.inbox().join("wt_users.csv");
    std::fs::write(&path, head).unwrap();
    let writer = crate::run::append_slowly(path, tail.to_vec());
    let o = t.run(PASSWORD);
    writer.join().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing to do"), "{}", stderr(&o));
    assert_eq!(t.outbox_lines(), 0);
    let o = t.run(PASSWORD);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let original = server
        .processed()
        .into_iter()
        .find(|n| n.ends_with("Z.csv"))
        .unwrap();
    assert_eq!(
        std::fs::read(server.inbox().join("processed").join(original)).unwrap(),
        users
    );
}

#[test]
fn a_wrong_password_or_an_untrusted_certificate_fails_clearly() {
    let server = FtpServer::start("explicit");
    std::fs::write(server.inbox().join("wt_users.csv"), gen(20, 53)).unwrap();
    let t = FtpTenant::new(&server, &trusted(&server), 0);
    let o = t.run("not-the-password-9");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("login as acme refused"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("not-the-password-9"));
    // The server's certificate, with no ca_file that signed it.
    let t = FtpTenant::new(&server, "", 0);
    let o = t.run(PASSWORD);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("TLS with 127.0.0.1") && stderr(&o).contains("ca_file"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains(PASSWORD));
    assert!(server.inbox().join("wt_users.csv").exists());
    assert!(server.processed().is_empty());
}

#[test]
fn plain_ftp_needs_allow_plain() {
    let server = FtpServer::start("none");
    std::fs::write(server.inbox().join("wt_users.csv"), gen(20, 54)).unwrap();
    let t = FtpTenant::new(&server, "tls = \"none\"", 0);
    let o = t.run(PASSWORD);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("allow_plain = true"), "{}", stderr(&o));
    let t = FtpTenant::new(&server, "tls = \"none\"\nallow_plain = true", 0);
    let o = t.run(PASSWORD);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(server.processed().len(), 3);
}

/// The daemon's endpoint serves an FTP inbox's results CSV, read from the
/// server on a connection of its own.
#[cfg(all(feature = "daemon", feature = "scim"))]
#[test]
fn the_endpoint_serves_results_from_the_ftp_server() {
    let server = FtpServer::start("explicit");
    let t = FtpTenant::new(&server, &trusted(&server), 0);
    std::fs::write(server.inbox().join("wt_users.csv"), gen(25, 55)).unwrap();
    let o = t.run(PASSWORD);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let port = crate::scim::server::free_port();
    let config = t.dir.path().join("muster.toml");
    let tenant = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("[daemon]\nlisten = \"127.0.0.1:{port}\"\n{tenant}"),
    )
    .unwrap();
    let d = crate::daemon::Daemon::start_with(&config, &[("MUSTER_TEST_FTP_PASSWORD", PASSWORD)]);
    let get = |p: &str| {
        ureq::get(&format!("http://127.0.0.1:{port}{p}"))
            .call()
            .ok()
            .map(|mut r| r.body_mut().read_to_string().unwrap())
    };
    d.wait_for("the endpoint", 20, || get("/healthz").is_some());
    let runs: serde_json::Value =
        serde_json::from_str(&get("/api/tenants/ftp/runs").unwrap()).unwrap();
    let run = &runs[0];
    assert!(
        run["files"][0]["results"]
            .as_str()
            .unwrap()
            .starts_with("ftp://acme@127.0.0.1:"),
        "{run:#}"
    );
    let csv = get(&format!(
        "/api/tenants/ftp/runs/{}/files/0/results.csv",
        run["id"]
    ))
    .unwrap();
    let name = server
        .processed()
        .into_iter()
        .find(|n| n.ends_with(".results.csv"))
        .unwrap();
    assert_eq!(
        csv,
        std::fs::read_to_string(server.inbox().join("processed").join(name)).unwrap()
    );
    assert!(!d.log().contains(PASSWORD));
    assert_eq!(d.terminate(), Some(0));
}
