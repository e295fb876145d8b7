//! The SFTP source against a real OpenSSH server on loopback.
//!
//! Each test starts its own `sshd` (absolute path, its own host key, a high
//! port, `Subsystem sftp internal-sftp`) and logs in as the test user
//! `muster-sftp`, which the harness creates with a password and an
//! authorized key (it runs as root, as CI does). `scripts/test.sh` installs
//! openssh-server first; without it these tests fail and say so.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::fixtures::TODAY;
use crate::run::{gen, stderr};

pub const USER: &str = "muster-sftp";
pub const PASSWORD: &str = "Sftp-test-pw-7";
const SSHD: &str = "/usr/sbin/sshd";

/// The test user and its key pair (made once per test binary): the
/// private key file and its passphrase-protected twin.
pub struct Account {
    pub home: PathBuf,
    key: PathBuf,
    pub key_with_passphrase: PathBuf,
    _keys: tempfile::TempDir,
}

pub const PASSPHRASE: &str = "key-passphrase-3";

pub fn sh(cmd: &mut Command) -> Output {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

pub fn account() -> &'static Account {
    static ACCOUNT: OnceLock<Account> = OnceLock::new();
    ACCOUNT.get_or_init(|| {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: run the test suite with scripts/test.sh, which installs openssh-server"
        );
        let exists = Command::new("id").arg(USER).output().unwrap().status.success();
        if !exists {
            sh(Command::new("useradd").args(["-m", "-s", "/bin/sh", USER]));
        }
        // With `UsePAM no`, a user without a password is locked even for
        // key login: give it one.
        let mut chpasswd = Command::new("chpasswd")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(chpasswd.stdin.take().unwrap(), "{USER}:{PASSWORD}").unwrap();
        assert!(chpasswd.wait().unwrap().success());
        let home = PathBuf::from(format!("/home/{USER}"));
        let keys = tempfile::tempdir().unwrap();
        let key = keys.path().join("id_ed25519");
        let key_pp = keys.path().join("id_pp");
        sh(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", ""]).arg("-f").arg(&key));
        sh(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", PASSPHRASE])
            .arg("-f")
            .arg(&key_pp));
        // StrictModes: authorized_keys under the user's ~/.ssh, owned by it.
        let ssh_dir = home.join(".ssh");
        std::fs::create_dir_all(&ssh_dir).unwrap();
        let mut authorized = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        authorized.push_str(&std::fs::read_to_string(key_pp.with_extension("pub")).unwrap());
        std::fs::write(ssh_dir.join("authorized_keys"), authorized).unwrap();
        sh(Command::new("chown").args(["-R", &format!("{USER}:{USER}")]).arg(&ssh_dir));
        sh(Command::new("chmod").arg("700").arg(&ssh_dir));
        sh(Command::new("chmod").arg("600").arg(ssh_dir.join("authorized_keys")));
        Account {
            home,
            key,
            key_with_passphrase: key_pp,
            _keys: keys,
        }
    })
}

/// One sshd on 127.0.0.1 and a free port, stopped on drop.
pub struct Sshd {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Sshd {
    pub fn start() -> Sshd {
        account();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let host_key = dir.path().join("host_key");
        sh(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", ""])
            .arg("-f")
            .arg(&host_key));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\n\
                 UsePAM no\nPasswordAuthentication yes\nPubkeyAuthentication yes\n\
                 KbdInteractiveAuthentication no\nAuthorizedKeysFile .ssh/authorized_keys\n\
                 Subsystem sftp internal-sftp\nAllowUsers {USER}\nLogLevel ERROR\n",
                host_key.display(),
                dir.path().join("sshd.pid").display()
            ),
        )
        .unwrap();
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "sshd did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Sshd { child, port, dir }
    }

    /// A known_hosts file holding this server's key.
    pub fn known_hosts(&self) -> PathBuf {
        let key = std::fs::read_to_string(self.dir.path().join("host_key.pub")).unwrap();
        let path = self.dir.path().join("known_hosts");
        std::fs::write(&path, format!("[127.0.0.1]:{} {key}", self.port)).unwrap();
        path
    }

    /// The host key's fingerprint as `ssh-keygen -lf` prints it.
    pub fn fingerprint(&self) -> String {
        let o = sh(Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.dir.path().join("host_key.pub")));
        let text = String::from_utf8(o.stdout).unwrap();
        text.split_whitespace().nth(1).unwrap().to_string()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tenant whose inbox is a folder of the test user's home, reached
/// over SFTP; state and outbox are local.
pub struct SftpTenant {
    pub local: tempfile::TempDir,
    /// The remote inbox, as a local path (the server is this machine).
    pub inbox: PathBuf,
}

impl SftpTenant {
    /// `source` is the `[tenant.source]` body after `type`, `host`, `port`,
    /// `user` and `path`.
    pub fn new(sshd: &Sshd, source: &str, settle_ms: u64) -> SftpTenant {
        SftpTenant::scheduled(sshd, source, settle_ms, "0 4 * * *")
    }

    pub fn scheduled(sshd: &Sshd, source: &str, settle_ms: u64, schedule: &str) -> SftpTenant {
        let local = tempfile::tempdir().unwrap();
        let name = local
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches('.')
            .to_string();
        let inbox = account().home.join(format!("inbox-{name}"));
        std::fs::create_dir_all(&inbox).unwrap();
        sh(Command::new("chown")
            .arg(format!("{USER}:{USER}"))
            .arg(&inbox));
        std::fs::write(
            local.path().join("muster.toml"),
            format!(
                r#"
[[tenant]]
name = "sftp"
state = "state.redb"
batch_size = 100
schedule = "{schedule}"
[tenant.source]
type = "sftp"
host = "127.0.0.1"
port = {port}
user = "{USER}"
path = "{inbox}"
settle_ms = {settle_ms}
timeout_ms = 10000
{source}
# Every name matches: only the ignore rules keep files out.
[[tenant.files]]
pattern = "*"
profile = "winningtemp-users"
[tenant.sink]
type = "jsonl"
path = "outbox.jsonl"
"#,
                port = sshd.port,
                inbox = inbox.display(),
            ),
        )
        .unwrap();
        SftpTenant { local, inbox }
    }

    /// Drops a file into the remote inbox, owned by the SFTP user.
    pub fn drop_file(&self, name: &str, bytes: &[u8]) {
        let path = self.inbox.join(name);
        std::fs::write(&path, bytes).unwrap();
        sh(Command::new("chown")
            .arg(format!("{USER}:{USER}"))
            .arg(&path));
    }

    pub fn run(&self, extra: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_muster"))
            .args(["run", "--config"])
            .arg(self.local.path().join("muster.toml"))
            .args(["--today", TODAY])
            .args(extra)
            .env("MUSTER_TEST_SFTP_PASSWORD", PASSWORD)
            .env("MUSTER_TEST_KEY_PASSPHRASE", PASSPHRASE)
            .output()
            .unwrap()
    }

    pub fn outbox_lines(&self) -> usize {
        std::fs::read_to_string(self.local.path().join("outbox.jsonl"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    /// The names in the remote processed/ folder, sorted.
    pub fn processed(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.inbox.join("processed"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

impl Drop for SftpTenant {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.inbox);
    }
}

fn password_source(sshd: &Sshd) -> String {
    format!(
        "password_env = \"MUSTER_TEST_SFTP_PASSWORD\"\nknown_hosts = \"{}\"",
        sshd.known_hosts().display()
    )
}

#[test]
fn a_tenant_runs_end_to_end_over_sftp_with_a_password() {
    let sshd = Sshd::start();
    let t = SftpTenant::new(&sshd, &password_source(&sshd), 0);
    let users = gen(200, 11);
    t.drop_file("wt_users.csv", &users);
    // Names a writer uses while a file is not complete are never taken.
    t.drop_file("wt_users2.csv.part", &users);
    t.drop_file(".wt_users3.csv", &users);
    t.drop_file("wt_users4.tmp", &users);
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(t.outbox_lines() > 190, "{} lines", t.outbox_lines());
    // processed/ holds the original, the results and the summary, with
    // the SPEC names; the inbox is empty; nothing half-uploaded is left.
    assert!(!t.inbox.join("wt_users.csv").exists());
    let names = t.processed();
    assert_eq!(names.len(), 3, "{names:?}");
    let stamp = names[0].strip_suffix(".csv").unwrap();
    assert!(
        stamp.starts_with("wt_users.") && stamp.ends_with('Z'),
        "{names:?}"
    );
    assert_eq!(
        names,
        [
            format!("{stamp}.csv"),
            format!("{stamp}.results.csv"),
            format!("{stamp}.summary.json")
        ]
    );
    let original = std::fs::read(t.inbox.join("processed").join(&names[0])).unwrap();
    assert_eq!(original, users, "the original changed on its way");
    let results = std::fs::read_to_string(t.inbox.join("processed").join(&names[1])).unwrap();
    assert_eq!(results.lines().count(), 201);
    let summary = std::fs::read_to_string(t.inbox.join("processed").join(&names[2])).unwrap();
    assert!(
        summary.contains("\"source\": \"sftp muster-sftp@127.0.0.1"),
        "{summary}"
    );
    for name in ["wt_users2.csv.part", ".wt_users3.csv", "wt_users4.tmp"] {
        assert!(t.inbox.join(name).exists(), "{name} was taken");
        std::fs::remove_file(t.inbox.join(name)).unwrap();
    }
    // A second run finds nothing to do.
    let before = t.outbox_lines();
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing to do"), "{}", stderr(&o));
    assert_eq!(t.outbox_lines(), before);
    assert_eq!(t.processed().len(), 3);
}

#[test]
fn a_private_key_with_a_passphrase_logs_in() {
    let sshd = Sshd::start();
    let a = account();
    let source = format!(
        "key_file = \"{}\"\npassphrase_env = \"MUSTER_TEST_KEY_PASSPHRASE\"\nhost_key_sha256 = \"{}\"",
        a.key_with_passphrase.display(),
        sshd.fingerprint()
    );
    let t = SftpTenant::new(&sshd, &source, 0);
    t.drop_file("wt_users.csv", &gen(20, 12));
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(t.processed().len(), 3);
    // The key without a passphrase, from a file, checked by known_hosts.
    let source = format!(
        "key_file = \"{}\"\nknown_hosts = \"{}\"",
        a.key.display(),
        sshd.known_hosts().display()
    );
    let t = SftpTenant::new(&sshd, &source, 0);
    t.drop_file("wt_users.csv", &gen(20, 13));
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(t.processed().len(), 3);
}

#[test]
fn a_wrong_password_fails_clearly_and_never_shows_the_secret() {
    let sshd = Sshd::start();
    let t = SftpTenant::new(&sshd, &password_source(&sshd), 0);
    t.drop_file("wt_users.csv", &gen(20, 14));
    let o = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["run", "--config"])
        .arg(t.local.path().join("muster.toml"))
        .env("MUSTER_TEST_SFTP_PASSWORD", "not-the-password-42")
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("authentication of user \"muster-sftp\" by password failed"),
        "{err}"
    );
    assert!(
        !err.contains("not-the-password-42"),
        "the password leaked: {err}"
    );
    assert!(t.inbox.join("wt_users.csv").exists(), "the file was moved");
    assert_eq!(t.outbox_lines(), 0);
}

#[test]
fn an_unknown_or_changed_host_key_is_refused() {
    let sshd = Sshd::start();
    let other = Sshd::start();
    // known_hosts holds another server's key under this one's name.
    let wrong = other.known_hosts();
    let text = std::fs::read_to_string(&wrong)
        .unwrap()
        .replace(&format!("]:{} ", other.port), &format!("]:{} ", sshd.port));
    std::fs::write(&wrong, text).unwrap();
    let source = format!(
        "password_env = \"MUSTER_TEST_SFTP_PASSWORD\"\nknown_hosts = \"{}\"",
        wrong.display()
    );
    let t = SftpTenant::new(&sshd, &source, 0);
    t.drop_file("wt_users.csv", &gen(5, 15));
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("does not match"), "{}", stderr(&o));
    // An empty known_hosts: unknown.
    std::fs::write(&wrong, "").unwrap();
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("unknown hosts are refused"),
        "{}",
        stderr(&o)
    );
    // A pinned fingerprint that is not the server's.
    let source = format!(
        "password_env = \"MUSTER_TEST_SFTP_PASSWORD\"\nhost_key_sha256 = \"{}\"",
        other.fingerprint()
    );
    let t2 = SftpTenant::new(&sshd, &source, 0);
    t2.drop_file("wt_users.csv", &gen(5, 15));
    let o = t2.run(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("not the pinned"), "{}", stderr(&o));
    assert_eq!(t.outbox_lines() + t2.outbox_lines(), 0);
}

#[test]
fn a_file_still_being_written_is_left_for_the_next_run() {
    let sshd = Sshd::start();
    let t = SftpTenant::new(&sshd, &password_source(&sshd), 1500);
    let users = gen(400, 16);
    let (head, tail) = users.split_at(users.len() / 2);
    t.drop_file("wt_users.csv", head);
    // The HR system is still writing: the file grows during the run's
    // two looks.
    let writer = crate::run::append_slowly(t.inbox.join("wt_users.csv"), tail.to_vec());
    let o = t.run(&[]);
    writer.join().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing to do"), "{}", stderr(&o));
    assert_eq!(t.outbox_lines(), 0);
    assert!(t.inbox.join("wt_users.csv").exists());
    // Now it is complete: the next run takes all of it.
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let original = std::fs::read(t.inbox.join("processed").join(&t.processed()[0])).unwrap();
    assert_eq!(original, users);
}

/// The daemon runs an SFTP tenant on its schedule, and its endpoint
/// serves the results CSV the run left on the SFTP server.
#[cfg(all(feature = "daemon", feature = "scim"))]
#[test]
fn the_daemon_runs_an_sftp_tenant_on_its_schedule() {
    let sshd = Sshd::start();
    let t = SftpTenant::scheduled(&sshd, &password_source(&sshd), 0, "*/2 * * * * *");
    let port = crate::scim::server::free_port();
    let config = t.local.path().join("muster.toml");
    let tenant = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("[daemon]\nlisten = \"127.0.0.1:{port}\"\n{tenant}"),
    )
    .unwrap();
    t.drop_file("wt_users.csv", &gen(40, 17));
    let d = crate::daemon::Daemon::start_with(&config, &[("MUSTER_TEST_SFTP_PASSWORD", PASSWORD)]);
    d.wait_for("the SFTP file to be processed", 20, || {
        t.processed().len() == 3
    });
    assert!(t.outbox_lines() > 35);

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let get = |p: &str| {
        let mut r = agent
            .get(&format!("http://127.0.0.1:{port}{p}"))
            .call()
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    };
    let runs = || {
        let (status, body) = get("/api/tenants/sftp/runs");
        (status == 200)
            .then(|| serde_json::from_str::<serde_json::Value>(&body).unwrap())
            .filter(|r| r.as_array().is_some_and(|r| !r.is_empty()))
    };
    d.wait_for("the run in the history", 20, || runs().is_some());
    let runs = runs().unwrap();
    let run = &runs.as_array().unwrap().last().unwrap();
    let at = run["files"][0]["results"].as_str().unwrap();
    assert!(at.starts_with("sftp://"), "{run:#}");
    let (status, csv) = get(&format!(
        "/api/tenants/sftp/runs/{}/files/0/results.csv",
        run["id"]
    ));
    assert_eq!(status, 200, "{csv}");
    let name = t
        .processed()
        .into_iter()
        .find(|n| n.ends_with(".results.csv"))
        .unwrap();
    assert_eq!(
        csv,
        std::fs::read_to_string(t.inbox.join("processed").join(name)).unwrap()
    );
    assert!(
        !d.log().contains(PASSWORD),
        "the password leaked into the log"
    );
    assert_eq!(d.terminate(), Some(0));
}
