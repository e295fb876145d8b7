//! The cluster's schema: the tables of every version, created or
//! upgraded on first use under an advisory lock, and the connection that
//! checks it.

use super::{shown_url, Shown};
use crate::store::{StoreError, StoreErrorKind};

/// The schema version this muster writes; [`MIGRATIONS`]`[v - 1]` makes
/// version `v` from the one before.
pub const SCHEMA_VERSION: i32 = 3;

const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [
    r#"
CREATE TABLE muster_tenants (
    tenant text PRIMARY KEY,
    next_op bigint NOT NULL DEFAULT 1
);
CREATE TABLE muster_objects (
    tenant text NOT NULL,
    kind smallint NOT NULL,
    key text NOT NULL,
    body bytea NOT NULL,
    PRIMARY KEY (tenant, kind, key)
);
CREATE TABLE muster_journal (
    tenant text NOT NULL,
    id bigint NOT NULL,
    kind smallint NOT NULL,
    action smallint NOT NULL,
    invite boolean NOT NULL,
    key text NOT NULL,
    object bytea NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE muster_records (
    tenant text NOT NULL,
    kind smallint NOT NULL,
    records bigint NOT NULL,
    PRIMARY KEY (tenant, kind)
);
CREATE TABLE muster_contents (
    tenant text NOT NULL,
    hash bytea NOT NULL,
    name text NOT NULL,
    PRIMARY KEY (tenant, hash)
);
CREATE TABLE muster_plans (
    tenant text NOT NULL,
    kind smallint NOT NULL,
    hash bytea NOT NULL,
    plan bytea NOT NULL,
    PRIMARY KEY (tenant, kind)
);
CREATE TABLE muster_released (
    tenant text NOT NULL,
    name text NOT NULL,
    PRIMARY KEY (tenant, name)
);
CREATE TABLE muster_runs (
    tenant text NOT NULL,
    id bigint NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE muster_daemon (
    tenant text NOT NULL,
    name text NOT NULL,
    value text NOT NULL,
    PRIMARY KEY (tenant, name)
);
"#,
    // 2: the leases that share the runs among daemons (lease.rs).
    r#"
CREATE TABLE muster_leases (
    tenant text PRIMARY KEY,
    holder text,
    token bigint NOT NULL DEFAULT 0,
    expires timestamptz
);
"#,
    // 3: the prior digests, and the entries changed since each: a row a
    // commit (its keys, and the first bytes of each one's object, none
    // for a deleted one), in the order of the commits' last operation
    // ids (a later one of a key wins). Room
    // left in the objects' pages, so that an update of an object finds
    // room beside it and leaves its index alone (a "HOT" update).
    r#"
ALTER TABLE muster_objects SET (fillfactor = 90);
CREATE TABLE muster_prior_digests (
    tenant text NOT NULL,
    kind smallint NOT NULL,
    digest bytea NOT NULL,
    PRIMARY KEY (tenant, kind)
);
ALTER TABLE muster_prior_digests ALTER COLUMN digest SET STORAGE EXTERNAL;
CREATE TABLE muster_prior_changes (
    tenant text NOT NULL,
    kind smallint NOT NULL,
    id bigint NOT NULL,
    keys text[] NOT NULL,
    heads bytea[] NOT NULL,
    PRIMARY KEY (tenant, kind, id)
);
"#,
];

/// The advisory lock the schema is created under (`muster` in ASCII).
const SCHEMA_LOCK: i64 = 0x6d_75_73_74_65_72;

/// A connection to the database at `url` for `tenant`, its schema
/// current: read first (one query), created or upgraded only when it is
/// older.
pub(crate) fn connect_client(
    url: &str,
    tenant: &str,
) -> Result<(postgres::Client, Shown), StoreError> {
    let shown = Shown(format!("{} (tenant {tenant})", shown_url(url)));
    let mut client = postgres::Client::connect(url, postgres::NoTls).map_err(|e| shown.error(e))?;
    let current = client
        .query_one("SELECT max(version) FROM muster_schema", &[])
        .ok()
        .and_then(|row| row.get::<_, Option<i32>>(0));
    let newer = |found| StoreError {
        path: shown.to_string(),
        kind: StoreErrorKind::Schema {
            found,
            known: SCHEMA_VERSION,
        },
    };
    match current {
        Some(SCHEMA_VERSION) => {}
        Some(found) if found > SCHEMA_VERSION => return Err(newer(found)),
        _ => migrate(&mut client).map_err(|e| match e {
            Migration::Db(e) => shown.error(e),
            Migration::Newer(found) => newer(found),
        })?,
    }
    Ok((client, shown))
}

/// Why the schema could not be made ready.
enum Migration {
    Db(postgres::Error),
    /// The database's schema is newer than this muster's.
    Newer(i32),
}

/// Creates the schema, or upgrades it, in one transaction holding the
/// schema's advisory lock: daemons starting at once wait for the first.
fn migrate(client: &mut postgres::Client) -> Result<(), Migration> {
    let mut tx = client.transaction().map_err(Migration::Db)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .map_err(Migration::Db)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS muster_schema (version integer NOT NULL)")
        .map_err(Migration::Db)?;
    let found: Option<i32> = tx
        .query_opt("SELECT max(version) FROM muster_schema", &[])
        .map_err(Migration::Db)?
        .and_then(|row| row.get(0));
    let found = found.unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(Migration::Newer(found));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(sql).map_err(Migration::Db)?;
        tracing::info!(version = i + 1, "postgres: schema created or upgraded");
    }
    if found < SCHEMA_VERSION {
        tx.execute("DELETE FROM muster_schema", &[])
            .map_err(Migration::Db)?;
        tx.execute(
            "INSERT INTO muster_schema (version) VALUES ($1)",
            &[&SCHEMA_VERSION],
        )
        .map_err(Migration::Db)?;
    }
    tx.commit().map_err(Migration::Db)
}
