//! The cluster's state store (SPEC §9) against a real PostgreSQL: each
//! test starts a throwaway cluster of Debian's `postgresql` (initdb into a
//! temporary folder, a free port on loopback, a password login), and
//! stops it after. The store passes the embedded store's model test, keeps
//! its operation ids unique across connections, creates its schema once
//! when daemons start together, upgrades an older schema and refuses a
//! newer one by name, loads a large prior (from its objects, then from
//! its digest and the changes since, falling back when the digest is
//! damaged), and shows no password in its errors. The leases: taken over once lapsed, fencing the old holder;
//! three daemons sharing forty tenants with one killed again and again; a
//! daemon paused past its lease committing nothing when it resumes.

use std::path::PathBuf;
use std::process::Command;

use muster::plan::Action;
use muster::profile::ObjectKind;
use muster::store::{PendingOp, PostgresStore, Prior, StateStore};
use proptest::prelude::*;

use crate::store::{object, run_steps, step, Close};

const PASSWORD: &str = "pg-test-7f3a";

/// The rest of a `[[tenant]]` table: its inbox `inbox/` of
/// `winningtemp-users` files, its JSONL outbox.
const DIR_TENANT: &str = r#"
[tenant.source]
type = "dir"
path = "inbox"
settle_ms = 0
[[tenant.files]]
pattern = "wt_users*.csv"
profile = "winningtemp-users"
[tenant.sink]
type = "jsonl"
path = "outbox.jsonl"
"#;

/// A throwaway PostgreSQL cluster on loopback, stopped when dropped.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    /// Run the server's programs as the `postgres` user (initdb refuses root).
    as_postgres: bool,
}

impl PgCluster {
    pub fn start() -> PgCluster {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|versions| {
                versions
                    .filter_map(|v| Some(v.ok()?.path().join("bin")))
                    .filter(|b| b.join("initdb").exists())
                    .max()
            })
            .expect("PostgreSQL's server is missing: run the tests with scripts/test.sh, which installs Debian's postgresql");
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let dir = tempfile::Builder::new()
            .prefix("muster-pg")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::write(dir.path().join("pw"), PASSWORD).unwrap();
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = PgCluster {
            dir,
            bin,
            port,
            as_postgres,
        };
        let data = cluster.dir.path().join("data");
        cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "muster",
                "-A",
                "scram-sha-256",
                "--pwfile",
                cluster.dir.path().join("pw").to_str().unwrap(),
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            cluster.dir.path().display()
        );
        cluster.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &options,
                "-l",
                cluster.dir.path().join("log").to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        cluster
    }

    fn run(&self, program: &str, args: &[&str]) {
        let program = self.bin.join(program);
        let out = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&program)
                .args(args)
                .output()
        } else {
            Command::new(&program).args(args).output()
        }
        .unwrap();
        assert!(
            out.status.success(),
            "{} {args:?}: {}{}",
            program.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the server, and removes its folder, once this test process
    /// is gone: for a cluster kept in a static, which is never dropped.
    // The watcher outlives this process by design: never waited on.
    #[allow(clippy::zombie_processes)]
    fn stop_after_this_process(&self) {
        let pg_ctl = format!(
            "{} -D {} -m immediate stop",
            self.bin.join("pg_ctl").display(),
            self.dir.path().join("data").display()
        );
        let stop = match self.as_postgres {
            true => format!("runuser -u postgres -- {pg_ctl}"),
            false => pg_ctl,
        };
        let watch = format!(
            "while kill -0 {} 2>/dev/null; do sleep 1; done; {stop}; rm -rf {}",
            std::process::id(),
            self.dir.path().display()
        );
        Command::new("sh")
            .args(["-c", &watch])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("sh runs");
    }

    /// The URL of database `db` (with the password).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://muster:{PASSWORD}@127.0.0.1:{}/{db}", self.port)
    }

    /// A new, empty database; its URL.
    pub fn database(&self, name: &str) -> String {
        let mut admin = postgres::Client::connect(&self.url("postgres"), postgres::NoTls).unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        self.url(name)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let (bin, as_postgres) = (self.bin.join("pg_ctl"), self.as_postgres);
        let mut cmd = if as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin);
            c
        } else {
            Command::new(bin)
        };
        let _ = cmd
            .arg("-D")
            .arg(data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// The embedded store's model test: random journalled writes, commits
    /// and drops, each followed by a new connection (PostgreSQL's commits
    /// are the store's: nothing to lose). A checkpoint is a `sync` first,
    /// which writes the prior's digest when due: later steps read it with
    /// the changes committed since.
    #[test]
    fn the_postgres_store_matches_the_model(steps in proptest::collection::vec(step(), 1..10)) {
        let (cluster, url) = shared();
        let _ = cluster;
        // A tenant of its own per case: one database holds them all apart.
        let tenant = format!("t{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let store = PostgresStore::connect(&url, &tenant).unwrap();
        run_steps(&steps, store, &mut |mut store, close| {
            if let Close::Checkpoint = close {
                store.sync().unwrap();
            }
            drop(store);
            PostgresStore::connect(&url, &tenant).unwrap()
        })?;
    }
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A run's commits land on a connection of their own while the run goes
/// on: a read right after a commit answers what it wrote (none for a
/// deleted key), landed or not, and a new connection then finds it all.
#[test]
fn a_read_right_after_a_commit_answers_what_it_wrote() {
    let (_, url) = shared();
    let tenant = format!(
        "t{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mut store = PostgresStore::connect(&url, &tenant).unwrap();
    let mut model = std::collections::BTreeMap::new();
    for round in 0..20u32 {
        let ops: Vec<PendingOp> = (0..500u32)
            .map(|i| {
                let k = (round * 137 + i * 7) % 2000;
                let action = match (k + round) % 5 {
                    0 => Action::Delete,
                    _ => Action::Update,
                };
                let key = format!("E{k}");
                PendingOp {
                    action,
                    ..created(&mut store, &key, (round * 11 + i) as u8)
                }
            })
            .collect();
        store.begin(&ops).unwrap();
        store.commit(&ops, &[]).unwrap();
        for op in &ops {
            match op.action {
                Action::Delete => model.remove(&op.key),
                _ => model.insert(op.key.clone(), op.object.clone()),
            };
        }
        let keys: Vec<&str> = ops.iter().map(|o| o.key.as_str()).collect();
        let read = store.get_many(ObjectKind::User, &keys).unwrap();
        for (key, read) in keys.iter().zip(read) {
            assert_eq!(read.as_ref(), model.get(*key), "round {round}, {key}");
        }
    }
    let fresh = PostgresStore::connect(&url, &tenant).unwrap();
    assert_eq!(fresh.prior(ObjectKind::User).unwrap().len(), model.len());
    for (key, object) in &model {
        assert_eq!(
            fresh.get(ObjectKind::User, key).unwrap().as_ref(),
            Some(object)
        );
    }
    assert!(fresh.pending().unwrap().is_empty());
}

/// The journalled create of user `key` with the test object `seed`, its
/// id from `store`.
fn created(store: &mut PostgresStore, key: &str, seed: u8) -> PendingOp {
    PendingOp {
        id: store.next_op_id().unwrap(),
        kind: ObjectKind::User,
        key: key.into(),
        action: Action::Create,
        invite: false,
        object: object(seed),
    }
}

/// One cluster for the model test's cases (started with the first).
fn shared() -> (&'static PgCluster, String) {
    static CLUSTER: std::sync::OnceLock<(PgCluster, String)> = std::sync::OnceLock::new();
    let (cluster, url) = CLUSTER.get_or_init(|| {
        let cluster = PgCluster::start();
        cluster.stop_after_this_process();
        let url = cluster.database("model");
        (cluster, url)
    });
    (cluster, url.clone())
}

#[test]
fn operation_ids_never_repeat_across_connections_and_tenants_are_apart() {
    let cluster = PgCluster::start();
    let url = cluster.database("ids");
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..3 {
        let mut store = PostgresStore::connect(&url, "acme").unwrap();
        for _ in 0..5000 {
            assert!(seen.insert(store.next_op_id().unwrap()), "an id repeated");
        }
    }
    let mut a = PostgresStore::connect(&url, "acme").unwrap();
    let op = created(&mut a, "E1", 7);
    a.begin(std::slice::from_ref(&op)).unwrap();
    a.commit(std::slice::from_ref(&op), &[]).unwrap();
    let b = PostgresStore::connect(&url, "other").unwrap();
    assert_eq!(b.get(ObjectKind::User, "E1").unwrap(), None);
    assert_eq!(a.get(ObjectKind::User, "E1").unwrap(), Some(object(7)));
}

/// Four daemons opening an empty database at the same moment: each
/// connects, and the schema is created once.
#[test]
fn daemons_starting_together_on_an_empty_database_create_the_schema_once() {
    let cluster = PgCluster::start();
    let url = cluster.database("together");
    let barrier = std::sync::Barrier::new(4);
    std::thread::scope(|s| {
        for i in 0..4 {
            let (url, barrier) = (&url, &barrier);
            s.spawn(move || {
                barrier.wait();
                PostgresStore::connect(url, &format!("t{i}")).unwrap();
            });
        }
    });
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let rows = client
        .query("SELECT version FROM muster_schema", &[])
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i32>(0), muster::store::SCHEMA_VERSION);
    let tenants: i64 = client
        .query_one("SELECT count(*) FROM muster_tenants", &[])
        .unwrap()
        .get(0);
    assert_eq!(tenants, 4);
}

/// A database whose schema a newer muster wrote is refused, naming both
/// versions; a wrong password's error does not show the password.
#[test]
fn a_newer_schema_is_refused_by_name_and_no_error_shows_the_password() {
    let cluster = PgCluster::start();
    let url = cluster.database("newer");
    drop(PostgresStore::connect(&url, "acme").unwrap());
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    client
        .execute("UPDATE muster_schema SET version = 99", &[])
        .unwrap();
    let err = PostgresStore::connect(&url, "acme")
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("schema is version 99")
            && err.contains(&format!("up to {}", muster::store::SCHEMA_VERSION)),
        "{err}"
    );
    assert!(!err.contains(PASSWORD), "{err}");
    let wrong = url.replace(PASSWORD, "not-the-password");
    let err = PostgresStore::connect(&wrong, "acme")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("muster@127.0.0.1"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");
}

/// 50,000 objects committed in batches, then the prior loaded at once
/// (one COPY): every key with its fingerprint and flags.
#[test]
fn a_large_prior_is_loaded_whole() {
    let cluster = PgCluster::start();
    let url = cluster.database("prior");
    let mut store = PostgresStore::connect(&url, "acme").unwrap();
    let n = 50_000u32;
    for chunk in (0..n).collect::<Vec<_>>().chunks(5000) {
        let ops: Vec<PendingOp> = chunk
            .iter()
            .map(|&i| PendingOp {
                id: store.next_op_id().unwrap(),
                kind: ObjectKind::User,
                key: format!("E{i:06}"),
                action: Action::Create,
                invite: false,
                object: object((i % 251) as u8),
            })
            .collect();
        store.begin(&ops).unwrap();
        store.commit(&ops, &[]).unwrap();
    }
    assert!(store.pending().unwrap().is_empty());
    let prior = store.prior(ObjectKind::User).unwrap();
    assert_eq!(prior.len(), n as usize);
    for i in [0u32, 1, 12_345, 49_999] {
        assert_eq!(
            prior.get(&format!("E{i:06}")),
            Some(object((i % 251) as u8).prior_entry())
        );
    }
    assert!(store.prior(ObjectKind::Group).unwrap().is_empty());
}

/// The prior's digest: none at first (the prior is read from the
/// objects), written by the `sync` after; then read with the changes
/// committed since, and written again only once they pass an eighth of
/// it. A damaged digest is passed over for the objects.
#[test]
fn the_prior_digest_is_read_with_the_changes_since_and_a_damaged_one_is_passed_over() {
    let cluster = PgCluster::start();
    let url = cluster.database("digest");
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let rows = |db: &mut postgres::Client, table: &str| -> i64 {
        db.query_one(
            &format!("SELECT count(*) FROM {table} WHERE tenant = 'acme'"),
            &[],
        )
        .unwrap()
        .get(0)
    };
    // Users E0..E799, then commits of (key, seed or deleted) on top.
    let mut model: std::collections::BTreeMap<String, u8> = Default::default();
    let mut write = |store: &mut PostgresStore, changes: &[(u32, Option<u8>)]| {
        let ops: Vec<PendingOp> = changes
            .iter()
            .map(|&(i, seed)| {
                let key = format!("E{i}");
                match seed {
                    Some(seed) => model.insert(key.clone(), seed),
                    None => model.remove(&key),
                };
                PendingOp {
                    action: if seed.is_some() {
                        Action::Update
                    } else {
                        Action::Delete
                    },
                    ..created(store, &key, seed.unwrap_or(0))
                }
            })
            .collect();
        store.begin(&ops).unwrap();
        store.commit(&ops, &[]).unwrap();
        model.clone()
    };
    let same = |store: &PostgresStore, model: &std::collections::BTreeMap<String, u8>| {
        let prior = store.prior(ObjectKind::User).unwrap();
        assert_eq!(prior.len(), model.len());
        for (key, &seed) in model {
            assert_eq!(prior.get(key), Some(object(seed).prior_entry()), "{key}");
        }
    };
    let mut store = PostgresStore::connect(&url, "acme").unwrap();
    let first: Vec<_> = (0..800).map(|i| (i, Some((i % 200) as u8))).collect();
    let mut expected = write(&mut store, &first);
    same(&store, &expected);
    assert_eq!(rows(&mut db, "muster_prior_digests"), 0);
    store.sync().unwrap();
    assert_eq!(
        rows(&mut db, "muster_prior_digests"),
        1,
        "written after a prior read from the objects"
    );

    // Ninety changes (under an eighth of 800): noted beside the digest,
    // which stays as it was after the next sync.
    let mut store = PostgresStore::connect(&url, "acme").unwrap();
    same(&store, &expected);
    let changes: Vec<_> = (0..60)
        .map(|i| (i * 7, Some(201)))
        .chain((0..20).map(|i| (i * 11 + 3, None)))
        .chain((800..810).map(|i| (i, Some(202))))
        .collect();
    expected = write(&mut store, &changes);
    store.sync().unwrap();
    assert!(rows(&mut db, "muster_prior_changes") > 0);
    let mut store = PostgresStore::connect(&url, "acme").unwrap();
    same(&store, &expected);

    // Past an eighth: the sync writes the digest again, the changes cleared.
    let more: Vec<_> = (100..200).map(|i| (i, Some(203))).collect();
    expected = write(&mut store, &more);
    store.sync().unwrap();
    assert_eq!(rows(&mut db, "muster_prior_changes"), 0);
    same(&PostgresStore::connect(&url, "acme").unwrap(), &expected);

    // A damaged digest: the objects are read instead.
    db.execute(
        "UPDATE muster_prior_digests SET digest = '\\x4d504432ffff'",
        &[],
    )
    .unwrap();
    same(&PostgresStore::connect(&url, "acme").unwrap(), &expected);
}

/// A tenant of a `[cluster]` (its URL in a file): killed mid-write on day
/// 1 and run again, every user is created once; day 2's changes are
/// applied; its state, journal and history are in PostgreSQL (no store
/// file on disk), apart from another tenant's in the same database; a
/// second run while one holds the tenant's lock is refused as busy.
#[test]
fn a_cluster_tenant_runs_with_its_state_in_postgres() {
    use crate::run::{derive, gen, stderr, Tenant};
    let cluster = PgCluster::start();
    let url = cluster.database("runs");
    let t = Tenant::with_config(
        &format!("[cluster]\npostgres_file = \"pg-url\"\nlease_ms = 1000\n[[tenant]]\nname = \"acme\"\nbatch_size = 100\n{DIR_TENANT}"),
    );
    std::fs::write(t.path("pg-url"), &url).unwrap();
    let day1 = gen(3000, 21);
    t.drop_file("wt_users_1.csv", &day1);
    t.run_killed_at(1200);
    // The killed run's lease holds the tenant until it lapses.
    let o = t.run(&[]);
    assert!(
        stderr(&o).contains("is being run by another muster"),
        "{}",
        stderr(&o)
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let creates: Vec<String> = t
        .outbox()
        .iter()
        .filter(|l| l["action"] == "create")
        .map(|l| l["key"].as_str().unwrap().to_string())
        .collect();
    let unique: std::collections::BTreeSet<&String> = creates.iter().collect();
    assert_eq!(unique.len(), creates.len(), "a user created twice");
    assert!(creates.len() > 2900, "{}", creates.len());

    std::fs::write(t.path("day1.csv"), &day1).unwrap();
    t.drop_file("wt_users_2.csv", &derive(&t.path("day1.csv"), "0.05"));
    let before = t.outbox().len();
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(t.outbox()[before..].iter().any(|l| l["action"] == "update"));

    let files: Vec<String> = walk(&t.path(""));
    assert!(
        !files.iter().any(|f| f.ends_with(".redb")),
        "no embedded store: {files:?}"
    );
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let count =
        |db: &mut postgres::Client, sql: &str| -> i64 { db.query_one(sql, &[]).unwrap().get(0) };
    let all_creates = t
        .outbox()
        .iter()
        .filter(|l| l["action"] == "create")
        .count();
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM muster_objects WHERE tenant = 'acme' AND kind = 0"
        ),
        (all_creates - count_deletes(&t)) as i64,
        "the users the outbox holds"
    );
    assert_eq!(count(&mut db, "SELECT count(*) FROM muster_journal"), 0);
    assert!(
        count(
            &mut db,
            "SELECT count(*) FROM muster_runs WHERE tenant = 'acme'"
        ) >= 2
    );

    // Another muster holding the tenant's lease: the run is busy.
    let lease = std::time::Duration::from_secs(30);
    let Ok(muster::store::Claim::Held(holder)) =
        muster::store::claim(&url, "acme", lease, false, None)
    else {
        panic!("the lease of an idle tenant is claimed");
    };
    t.drop_file("wt_users_3.csv", &day1);
    let o = t.run(&[]);
    assert!(
        stderr(&o).contains("is being run by another muster"),
        "{}",
        stderr(&o)
    );
    drop(holder);
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // `state` under [cluster] is refused by name.
    let text = std::fs::read_to_string(t.path("muster.toml")).unwrap();
    std::fs::write(
        t.path("muster.toml"),
        text.replace("name = \"acme\"", "name = \"acme\"\nstate = \"s.redb\""),
    )
    .unwrap();
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("`state` is not for a tenant of a [cluster]"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains(PASSWORD));
}

fn count_deletes(t: &crate::run::Tenant) -> usize {
    t.outbox()
        .iter()
        .filter(|l| l["action"] == "delete")
        .count()
}

/// Every file under `dir`, as paths.
fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}

/// `muster state copy`: a tenant's embedded store moved into the cluster
/// (its ids raised past the store's), run there with the same file again
/// (nothing written: the copy holds what was applied) and with day 2
/// (updates, no user created again); a second copy into the cluster is
/// refused; the cluster's state copied back out to a new file holds the
/// same objects.
#[test]
fn state_copy_moves_a_tenant_into_the_cluster_and_back() {
    use crate::run::{derive, gen, stderr, Tenant};
    let cluster = PgCluster::start();
    let url = cluster.database("copy");
    let tail = DIR_TENANT;
    let t = Tenant::with_config(&format!(
        "[[tenant]]\nname = \"t\"\nstate = \"state.redb\"\n{tail}"
    ));
    std::fs::write(
        t.path("cluster.toml"),
        format!("[cluster]\npostgres_file = \"pg-url\"\n[[tenant]]\nname = \"t\"\n{tail}"),
    )
    .unwrap();
    std::fs::write(t.path("pg-url"), &url).unwrap();
    let day1 = gen(800, 31);
    t.drop_file("wt_users_1.csv", &day1);
    assert_eq!(t.run(&[]).status.code(), Some(0));
    let written = t.outbox().len();
    let muster = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_muster"))
            .args(args)
            .current_dir(t.path(""))
            .output()
            .unwrap()
    };
    // `muster state copy` of tenant t, `--from FILE` or `--to FILE`.
    let copy = |way: &str, file: &str| {
        let config = ["--config", "cluster.toml", "--tenant", "t"];
        muster(&[&["state", "copy"], &config[..], &[way, file]].concat())
    };
    let run = || {
        muster(&[
            "run",
            "--config",
            "cluster.toml",
            "--today",
            crate::fixtures::TODAY,
        ])
    };
    let o = copy("--from", "state.redb");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("users") && err.contains("the copy holds the same objects"),
        "{err}"
    );
    assert!(!err.contains(PASSWORD));

    // The same file again, in the cluster: nothing to write.
    t.drop_file("wt_users_1b.csv", &day1);
    let o = run();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(t.outbox().len(), written, "the copy holds what was applied");
    // Day 2: updates; nobody created again; ids go on past the store's.
    std::fs::write(t.path("day1.csv"), &day1).unwrap();
    t.drop_file("wt_users_2.csv", &derive(&t.path("day1.csv"), "0.05"));
    let o = run();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let outbox = t.outbox();
    let max_before = outbox[..written]
        .iter()
        .map(|l| l["op"].as_u64().unwrap())
        .max()
        .unwrap();
    assert!(outbox[written..]
        .iter()
        .all(|l| l["op"].as_u64().unwrap() > max_before));
    assert!(outbox[written..].iter().any(|l| l["action"] == "update"));
    let created: std::collections::BTreeSet<&str> = outbox[..written]
        .iter()
        .filter(|l| l["action"] == "create")
        .map(|l| l["key"].as_str().unwrap())
        .collect();
    assert!(outbox[written..]
        .iter()
        .filter(|l| l["action"] == "create")
        .all(|l| !created.contains(l["key"].as_str().unwrap())));

    let o = copy("--from", "state.redb");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("already holds"), "{}", stderr(&o));

    let o = copy("--to", "back.redb");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let back = muster::store::RedbStore::open(&t.path("back.redb")).unwrap();
    let pg = PostgresStore::connect(&url, "t").unwrap();
    assert_eq!(
        back.prior(ObjectKind::User).unwrap().len(),
        pg.prior(ObjectKind::User).unwrap().len()
    );
    muster::store::copy::check(&pg, &back).unwrap();
    assert!(!back.runs(10).unwrap().is_empty(), "the history came too");
}

/// A lease, claimed: the tenant is busy for any other claim; lapsed, it
/// is taken over (a new fencing token), and the old holder's writes are
/// refused in their own transaction — nothing it commits lands, not even
/// the release. The new holder moves the slot on: a claim for the slot is
/// then not due, a manual one is.
#[test]
fn a_lapsed_lease_is_taken_over_and_fences_the_old_holder() {
    use muster::store::{claim, Claim, StoreErrorKind};
    let cluster = PgCluster::start();
    let url = cluster.database("leases");
    let lease = std::time::Duration::from_secs(30);
    let held = |c: Claim| match c {
        Claim::Held(l) => l,
        Claim::Busy => panic!("busy"),
        Claim::NotDue(t) => panic!("not due until {t}"),
    };
    let a = held(claim(&url, "acme", lease, true, None).unwrap());
    let mut store_a = PostgresStore::connect(&url, "acme").unwrap();
    store_a.fence_with(&a).unwrap();
    let first = created(&mut store_a, "E1", 3);
    store_a.begin(std::slice::from_ref(&first)).unwrap();
    store_a.commit(std::slice::from_ref(&first), &[]).unwrap();
    assert!(matches!(
        claim(&url, "acme", lease, false, None).unwrap(),
        Claim::Busy
    ));
    assert!(store_a.run_holder().unwrap().is_some());

    // A's daemon stops renewing (paused): its lease lapses.
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    db.execute(
        "UPDATE muster_leases SET expires = clock_timestamp() - interval '1 second'",
        &[],
    )
    .unwrap();
    let b = held(claim(&url, "acme", lease, true, None).unwrap());
    assert!(b.token() > a.token());

    let second = created(&mut store_a, "E2", 3);
    for refused in [
        store_a.begin(std::slice::from_ref(&second)),
        // A commit is made on the committer's connection: refused there,
        // and reported by the next call if not by this one.
        store_a
            .commit(std::slice::from_ref(&second), &[])
            .and_then(|()| store_a.pending().map(drop)),
        store_a.set_last_records(ObjectKind::User, 9),
    ] {
        let err = refused.expect_err("the old holder writes nothing");
        assert!(matches!(err.kind, StoreErrorKind::LeaseLost), "{err}");
    }
    let fresh = PostgresStore::connect(&url, "acme").unwrap();
    assert!(fresh.pending().unwrap().is_empty());
    assert_eq!(fresh.get(ObjectKind::User, "E2").unwrap(), None);
    assert_eq!(fresh.last_records(ObjectKind::User).unwrap(), None);
    let due = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let err = store_a.set_daemon_value(muster::store::NEXT_DUE, &due.to_string());
    assert!(matches!(err.unwrap_err().kind, StoreErrorKind::LeaseLost));
    a.release().unwrap();
    assert!(
        matches!(
            claim(&url, "acme", lease, false, None).unwrap(),
            Claim::Busy
        ),
        "the old holder's release let the new holder's lease go"
    );

    let mut store_b = PostgresStore::connect(&url, "acme").unwrap();
    store_b.fence_with(&b).unwrap();
    let third = created(&mut store_b, "E3", 3);
    store_b.begin(std::slice::from_ref(&third)).unwrap();
    store_b.commit(std::slice::from_ref(&third), &[]).unwrap();
    store_b
        .set_daemon_value(muster::store::NEXT_DUE, &due.to_string())
        .unwrap();
    b.release().unwrap();
    assert!(store_b.run_holder().unwrap().is_none());
    match claim(&url, "acme", lease, true, None).unwrap() {
        Claim::NotDue(next) => assert_eq!(next, due),
        _ => panic!("the slot was run: not due again"),
    }
    held(claim(&url, "acme", lease, false, None).unwrap());
}

/// A `[[tenant]]` of a cluster (no `state`): run every two seconds, in
/// batches of 25.
fn cluster_tenant(dir: &std::path::Path, name: &str) -> String {
    let head = "schedule = \"*/2 * * * * *\"\nbatch_size = 25";
    crate::daemon::dir_tenant(dir, name, head)
}

/// A file put in place whole (written aside, then renamed in).
fn drop_whole(inbox: &std::path::Path, name: &str, text: &[u8]) {
    let aside = inbox.join(format!(".{name}.part"));
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, inbox.join(name)).unwrap();
}

/// The originals in `dir` (a `processed/`): `<name>.<timestamp>.csv`.
/// (A run killed between writing a file's results and moving it leaves
/// results the next run writes again.)
fn originals(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().split('.').count() == 3)
        })
        .count()
    })
}

/// The names in `dir` ending with `suffix`.
fn named(dir: &std::path::Path, suffix: &str) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(suffix))
        })
        .count()
    })
}

/// The runs a daemon's log shows started and not ended.
fn in_flight(log: &str) -> usize {
    let ended = ["run done", "run failed", "run abandoned"]
        .iter()
        .map(|end| log.matches(end).count())
        .sum::<usize>();
    log.matches("run started").count().saturating_sub(ended)
}

/// A few milliseconds between `low` and `high`, different each call.
fn some_ms(low: u64, high: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    low + h.finish() % (high - low)
}

/// The outbox of `tenant` replayed: every operation id once, no user
/// created twice without a deletion between; the users it leaves.
fn replayed(outbox: &[serde_json::Value], tenant: &str) -> std::collections::BTreeSet<String> {
    let mut ops = std::collections::BTreeSet::new();
    let mut live = std::collections::BTreeSet::new();
    for line in outbox {
        assert!(
            ops.insert(line["op"].as_u64().unwrap()),
            "{tenant}: operation {} applied twice",
            line["op"]
        );
        if line["kind"] != "user" {
            continue;
        }
        let key = line["key"].as_str().unwrap().to_string();
        match line["action"].as_str().unwrap() {
            "create" => assert!(live.insert(key.clone()), "{tenant}: {key} created twice"),
            "delete" => assert!(live.remove(&key), "{tenant}: {key} deleted while absent"),
            _ => assert!(live.contains(&key), "{tenant}: {key} written while absent"),
        }
    }
    live
}

/// SPEC §9: three daemons share forty tenants through one PostgreSQL;
/// one of them is killed with SIGKILL at random moments while it runs a
/// tenant, four times for each of three days' files, and started again. Every file is applied
/// once (one result each), no operation reaches an outbox twice and none
/// is lost (each outbox, replayed, holds the users the store holds, and
/// those an embedded tenant never killed makes of the same files), no
/// journal is left, and
/// no tenant ran twice in one slot (each recorded run in a later slot
/// than the one before).
#[test]
fn three_daemons_share_forty_tenants_and_one_killed_again_and_again_loses_nothing() {
    use crate::daemon::Daemon;
    use crate::run::{derive, gen};
    let cluster = PgCluster::start();
    let url = cluster.database("fleet");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pg-url"), &url).unwrap();
    let names: Vec<String> = (0..40).map(|i| format!("t{i:02}")).collect();
    let mut config = "[cluster]\npostgres_file = \"pg-url\"\nlease_ms = 1000\n".to_string();
    for name in &names {
        config.push_str(&cluster_tenant(dir.path(), name));
    }
    let path = dir.path().join("muster.toml");
    std::fs::write(&path, config).unwrap();
    let start = || Daemon::start_with(&path, &[]);
    let mut daemons = vec![start(), start(), start()];

    // What one embedded tenant, never killed, makes of the same files.
    let reference = crate::run::Tenant::new(25);
    let mut kills = Vec::new();
    // Runs the victim had in flight when it was killed.
    let mut cut_short = 0;
    for day in 1..=3usize {
        let file = match day {
            1 => gen(1500, 41),
            _ => {
                let before = dir.path().join(format!("day{}.csv", day - 1));
                derive(&before, "0.05")
            }
        };
        std::fs::write(dir.path().join(format!("day{day}.csv")), &file).unwrap();
        for name in &names {
            let inbox = dir.path().join(name).join("inbox");
            drop_whole(&inbox, &format!("wt_users_{day}.csv"), &file);
        }
        for _ in 0..4 {
            // Once the victim is in a run (or after 15 s), a moment later.
            let started = std::time::Instant::now();
            while in_flight(&daemons[0].log()) == 0
                && started.elapsed() < std::time::Duration::from_secs(15)
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            let wait = some_ms(0, 80);
            std::thread::sleep(std::time::Duration::from_millis(wait));
            kills.push(wait);
            // Dropped: SIGKILL, then waited for.
            cut_short += in_flight(&daemons[0].log());
            daemons[0] = start();
        }
        let applied = |day: usize| {
            names
                .iter()
                .all(|n| originals(&dir.path().join(n).join("inbox/processed")) == day)
        };
        let started = std::time::Instant::now();
        while !applied(day) {
            let behind: Vec<String> = names
                .iter()
                .filter(|n| originals(&dir.path().join(n).join("inbox/processed")) != day)
                .map(|n| format!("{n}: {:?}", walk(&dir.path().join(n))))
                .collect();
            assert!(
                started.elapsed() < std::time::Duration::from_secs(120),
                "day {day} not applied by every tenant (kills {kills:?}):\n{}\nlogs:\n{}",
                behind.join("\n"),
                daemons
                    .iter()
                    .map(|d| d.log())
                    .collect::<Vec<_>>()
                    .join("\n----\n")
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        reference.drop_file(&format!("wt_users_{day}.csv"), &file);
        let o = reference.run(&[]);
        // 3: rows rejected (gen writes a few bad ones on purpose).
        assert!(
            matches!(o.status.code(), Some(0 | 3)),
            "{:?} {}",
            o.status.code(),
            crate::run::stderr(&o)
        );
    }
    let expected = replayed(&reference.outbox(), "the reference");
    assert!(cut_short > 0, "no kill landed in a run ({kills:?})");
    eprintln!("{cut_short} runs cut short by {} kills", kills.len());
    for d in daemons {
        let log = d.log();
        assert_eq!(d.terminate(), Some(0), "{log}");
    }

    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let journal: i64 = db
        .query_one("SELECT count(*) FROM muster_journal", &[])
        .unwrap()
        .get(0);
    assert_eq!(journal, 0, "a journal left behind");
    for name in &names {
        let outbox: Vec<serde_json::Value> =
            std::fs::read_to_string(dir.path().join(name).join("outbox.jsonl"))
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
        let live = replayed(&outbox, name);
        let stored: std::collections::BTreeSet<String> = db
            .query(
                "SELECT key FROM muster_objects WHERE tenant = $1 AND kind = 0",
                &[name],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(live, stored, "{name}: the outbox and the store disagree");
        assert_eq!(
            live, expected,
            "{name}: not the users one run of each file makes"
        );
        let processed = dir.path().join(name).join("inbox/processed");
        assert_eq!(named(&processed, ".superseded.csv"), 0, "{name}");
        let mut slots = Vec::new();
        for row in db
            .query(
                "SELECT record FROM muster_runs WHERE tenant = $1 ORDER BY id",
                &[name],
            )
            .unwrap()
        {
            let record: serde_json::Value = serde_json::from_slice(row.get(0)).unwrap();
            let started: jiff::Timestamp = record["started"].as_str().unwrap().parse().unwrap();
            slots.push(started.as_second() / 2);
        }
        assert!(
            slots.windows(2).all(|w| w[0] < w[1]),
            "{name}: two runs in one slot: {slots:?}"
        );
    }
}

/// SPEC §9: a daemon stopped (SIGSTOP) in the middle of a run, past its
/// lease, and resumed once another daemon has taken the run over and
/// finished it, commits nothing and sends nothing more: the state and
/// the outbox are as the other daemon left them, and they hold what an
/// embedded tenant never stopped makes of the same file.
#[test]
fn a_daemon_paused_past_its_lease_commits_nothing_when_it_resumes() {
    use crate::daemon::Daemon;
    use crate::run::gen;
    let cluster = PgCluster::start();
    let url = cluster.database("paused");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pg-url"), &url).unwrap();
    let config = format!(
        "[cluster]\npostgres_file = \"pg-url\"\nlease_ms = 1000\n{}",
        cluster_tenant(dir.path(), "acme").replace("batch_size = 25", "batch_size = 5")
    );
    let path = dir.path().join("muster.toml");
    std::fs::write(&path, config).unwrap();
    let file = gen(3000, 43);
    let inbox = dir.path().join("acme/inbox");
    drop_whole(&inbox, "wt_users_1.csv", &file);
    let outbox = || {
        let text =
            std::fs::read_to_string(dir.path().join("acme/outbox.jsonl")).unwrap_or_default();
        // Whole lines only: a daemon may be writing the last one.
        let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        whole
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let signal = |d: &Daemon, sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &d.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    };

    let a = Daemon::start_with(&path, &[]);
    a.wait_for("the run well under way", 60, || outbox().len() >= 500);
    signal(&a, "-STOP");
    let stopped_at = outbox().len();
    let b = Daemon::start_with(&path, &[]);
    b.wait_for("the run taken over and finished", 60, || {
        originals(&inbox.join("processed")) == 1
    });
    assert!(
        outbox().len() > stopped_at,
        "the second daemon wrote the rest"
    );
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let snapshot = |db: &mut postgres::Client| -> (i64, i64, String) {
        let row = db
            .query_one(
                "SELECT (SELECT count(*) FROM muster_journal), \
                 (SELECT count(*) FROM muster_objects), \
                 (SELECT coalesce(md5(string_agg(key || encode(body, 'hex'), ',' ORDER BY kind, key)), '') FROM muster_objects)",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    let before = (snapshot(&mut db), outbox().len());
    assert_eq!(before.0 .0, 0, "a journal left behind");

    signal(&a, "-CONT");
    a.wait_for("the resumed daemon to find its lease lost", 30, || {
        a.log().contains("lost its lease")
    });
    // Its next slot comes and goes meanwhile (a new claim: nothing to do).
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(
        (snapshot(&mut db), outbox().len()),
        before,
        "the resumed daemon wrote something; its log:\n{}",
        a.log()
    );

    let reference = crate::run::Tenant::new(25);
    reference.drop_file("wt_users_1.csv", &file);
    let o = reference.run(&[]);
    assert!(
        matches!(o.status.code(), Some(0 | 3)),
        "{}",
        crate::run::stderr(&o)
    );
    let expected = replayed(&reference.outbox(), "the reference");
    assert_eq!(replayed(&outbox(), "acme"), expected);
    for d in [a, b] {
        let log = d.log();
        assert_eq!(d.terminate(), Some(0), "{log}");
    }
}

/// A database a muster of schema version 1 made (before the leases) is
/// upgraded in place when a newer muster connects: its objects kept, the
/// leases' table made, the version raised; and a run claims a lease on it.
#[test]
fn an_older_schema_is_upgraded_in_place() {
    let cluster = PgCluster::start();
    let url = cluster.database("older");
    let mut store = PostgresStore::connect(&url, "acme").unwrap();
    let op = created(&mut store, "E1", 5);
    store.begin(std::slice::from_ref(&op)).unwrap();
    store.commit(std::slice::from_ref(&op), &[]).unwrap();
    drop(store);
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    db.batch_execute(
        "DROP TABLE muster_leases, muster_prior_digests, muster_prior_changes; \
         UPDATE muster_schema SET version = 1",
    )
    .unwrap();

    let store = PostgresStore::connect(&url, "acme").unwrap();
    assert_eq!(store.get(ObjectKind::User, "E1").unwrap(), Some(object(5)));
    let version: i32 = db
        .query_one("SELECT version FROM muster_schema", &[])
        .unwrap()
        .get(0);
    assert_eq!(version, muster::store::SCHEMA_VERSION);
    let lease = std::time::Duration::from_secs(30);
    assert!(matches!(
        muster::store::claim(&url, "acme", lease, false, None).unwrap(),
        muster::store::Claim::Held(_)
    ));
}
