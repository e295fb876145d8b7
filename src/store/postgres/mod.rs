//! The cluster's state store (SPEC §9): a tenant's state in PostgreSQL,
//! so that several daemons on several machines share it.
//!
//! Every table is keyed by the tenant's name, so one database holds a
//! fleet. The objects keep the encoding of the embedded store's journal
//! (field names spelled out: a row is read alone, with no list of names
//! beside it). The differ's prior is kept as the embedded store keeps
//! it: a digest of each kind ([`MemoryPrior::digest`]) in
//! `muster_prior_digests`, with the entries changed since in
//! `muster_prior_changes` (written by each commit, in its transaction);
//! a run reads both, in one snapshot, and a `sync` writes the digest
//! again once the changes pass an eighth of it (`digest.rs`). Without a digest (a
//! first import, a damaged digest) the prior is read from the objects
//! with one `COPY … TO STDOUT (FORMAT binary)` of each key and its
//! object's first bytes, not a query per key. A commit is one
//! transaction: the acknowledged objects written, their prior entries
//! noted, their journal rows deleted; a run's commits are made on a
//! second connection, on a thread of their own (`committer.rs`), while
//! the run reads, journals and sends on the first.
//!
//! The schema is created on first use and versioned in `muster_schema`:
//! an older one is upgraded in place, a newer one refused by name. Two
//! daemons opening an empty database at once create it once (an advisory
//! lock held by the transaction that creates it) (`schema.rs`). The
//! leases that share the runs among daemons are `lease.rs`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{
    action_code, action_of, decode_object, encode_object, kind_code, kind_of, MemoryPrior,
    PendingOp, Prior, StateStore, StoreError, StoreErrorKind, StoredObject,
};
use crate::model::{Action, ObjectKind};

mod committer;
mod digest;
mod lease;
mod schema;
use committer::Committer;
use digest::{Loaded, PRIOR_BYTES};
pub use lease::{claim, Claim, Lease};
pub(crate) use schema::connect_client;
pub use schema::SCHEMA_VERSION;

/// Operation ids reserved in the database at a time: a crash loses at
/// most this many, and ids are never reused.
const ID_BLOCK: i64 = 4096;

/// Keys asked for in one query by `get_many`.
const GET_KEYS: usize = 4096;

/// Objects written since the planner's statistics were taken, past which
/// a store's `sync` takes them again (and past a tenth of the objects it
/// knew): without them, after a first import PostgreSQL believes a tenant
/// has a handful of objects and reads all of them to find a few thousand.
const ANALYZE_AFTER: u64 = 10_000;

/// Journal rows deleted since the journal was last vacuumed, past which a
/// store's `sync` vacuums it: the next run's recovery reads the tenant's
/// journal, and after a first import that is a million dead rows (0.6 s)
/// until autovacuum comes by. (A day's few thousand are left to it.)
const VACUUM_AFTER: u64 = 100_000;

/// A tenant's state in a PostgreSQL database.
pub struct PostgresStore {
    client: Mutex<postgres::Client>,
    tenant: String,
    /// `postgres://user@host:port/db (tenant …)`: never the password.
    shown: Shown,
    /// Operation ids reserved and not handed out yet: `next..end`.
    ids: (u64, u64),
    /// The lease of the run this store is for, if any: its writes are
    /// fenced by it.
    fence: Option<Arc<lease::Fence>>,
    /// The objects the last prior loaded held, and the objects written
    /// since (for [`ANALYZE_AFTER`]).
    known: std::sync::atomic::AtomicU64,
    written: u64,
    /// For the committer's own connection (never shown).
    url: String,
    /// The statements prepared on this store's connection.
    prepared: Mutex<ahash::AHashMap<&'static str, postgres::Statement>>,
    /// The commits of this store, on a thread and connection of their
    /// own, started by the first.
    committer: Option<Committer>,
    /// Per kind ([`kind_code`]): how its prior was last loaded, and the
    /// objects written since (when its digest is due again).
    loaded: Mutex<[Option<Loaded>; 3]>,
    written_of: [u64; 3],
    /// Journal rows deleted since the last vacuum (for [`VACUUM_AFTER`]).
    journal_done: u64,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:
    /// port/db`, or a libpq key=value string) for `tenant`, creating or
    /// upgrading the schema first.
    pub fn connect(url: &str, tenant: &str) -> Result<PostgresStore, StoreError> {
        let (mut client, shown) = connect_client(url, tenant)?;
        client
            .execute(
                "INSERT INTO muster_tenants (tenant) VALUES ($1) ON CONFLICT DO NOTHING",
                &[&tenant],
            )
            .map_err(|e| shown.error(e))?;
        Ok(PostgresStore {
            client: Mutex::new(client),
            tenant: tenant.to_string(),
            shown,
            ids: (0, 0),
            fence: None,
            known: Default::default(),
            written: 0,
            url: url.to_string(),
            prepared: Default::default(),
            committer: None,
            loaded: Mutex::new([None; 3]),
            written_of: [0; 3],
            journal_done: 0,
        })
    }

    /// Fences this store's writes with `lease` (SPEC §9): from now on each
    /// one commits only while the lease is this run's. A write holds the
    /// lease's row locked until it commits; should this process stop in
    /// the middle of one, the database ends its session after the lease's
    /// length, so that another daemon can take the run over.
    pub fn fence_with(&mut self, lease: &Lease) -> Result<(), StoreError> {
        // Commits handed over before are made unfenced, as they were
        // asked; the next starts a committer fenced like this store.
        self.landed()?;
        self.committer = None;
        self.set_fence(lease.fence.clone())
    }

    fn set_fence(&mut self, fence: Arc<lease::Fence>) -> Result<(), StoreError> {
        let ms = fence.lease.as_millis().max(1);
        self.client()
            .batch_execute(&format!("SET idle_in_transaction_session_timeout = {ms}"))
            .map_err(|e| self.err(e))?;
        self.fence = Some(fence);
        Ok(())
    }

    /// A second connection for the committer, fenced as this one.
    fn second(&self) -> Result<PostgresStore, StoreError> {
        let mut second = PostgresStore::connect(&self.url, &self.tenant)?;
        if let Some(fence) = &self.fence {
            second.set_fence(fence.clone())?;
        }
        Ok(second)
    }

    /// Waits for the commits handed over to land: the first failure of
    /// one, if any. Every write but the journal's, and every read of what
    /// commits write but the objects' (answered through the committer),
    /// waits for them first.
    fn landed(&self) -> Result<(), StoreError> {
        match &self.committer {
            Some(committer) => committer.flush(),
            None => Ok(()),
        }
    }

    fn err(&self, e: postgres::Error) -> StoreError {
        self.shown.error(e)
    }

    fn damaged(&self, what: String) -> StoreError {
        StoreError {
            path: self.shown.to_string(),
            kind: StoreErrorKind::Damaged(what),
        }
    }

    fn client(&self) -> std::sync::MutexGuard<'_, postgres::Client> {
        // A panic while the client was held leaves it as any error would.
        self.client.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `write` in a transaction that first checks the run's lease
    /// ([`lease::Fence::HELD`]) when the store is fenced: a run that lost its lease
    /// commits nothing ([`StoreErrorKind::LeaseLost`]).
    fn fenced<T>(
        &self,
        write: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T, TxError>,
    ) -> Result<T, StoreError> {
        let mut client = self.client();
        // A write that fails once the lease is old by this process's clock
        // (the database ended a session stopped in a transaction) failed
        // for the lease.
        let err = |e| match &self.fence {
            Some(fence) if !fence.held() => self.lease_lost(),
            _ => self.err(e),
        };
        let mut tx = client.transaction().map_err(err)?;
        if let Some(fence) = &self.fence {
            let held = self
                .prepared(&mut tx, lease::Fence::HELD)
                .and_then(|held| tx.query(&held, &[&self.tenant, &fence.token]))
                .map_err(err)?;
            if held.len() != 1 {
                return Err(self.lease_lost());
            }
        }
        let out = write(&mut tx).map_err(|e| match e {
            TxError::Db(e) => err(e),
            TxError::Store(e) => e,
        })?;
        tx.commit().map_err(err)?;
        Ok(out)
    }

    /// `sql` as a statement of this store's connection, prepared the
    /// first time: the statements a run sends for each batch are parsed
    /// and planned once.
    fn prepared(
        &self,
        client: &mut impl postgres::GenericClient,
        sql: &'static str,
    ) -> Result<postgres::Statement, postgres::Error> {
        let mut prepared = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(statement) = prepared.get(sql) {
            return Ok(statement.clone());
        }
        let statement = client.prepare(sql)?;
        prepared.insert(sql, statement.clone());
        Ok(statement)
    }

    /// Executes `sql`, [prepared](Self::prepared), in `client`.
    fn exec(
        &self,
        client: &mut impl postgres::GenericClient,
        sql: &'static str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        let statement = self.prepared(client, sql)?;
        client.execute(&statement, params)
    }

    fn lease_lost(&self) -> StoreError {
        StoreError {
            path: self.shown.to_string(),
            kind: StoreErrorKind::LeaseLost,
        }
    }

    /// Commits a batch in one transaction (on the committer's thread):
    /// the acknowledged objects written, their prior entries noted, their
    /// journal rows and those of `dropped` deleted.
    fn commit_now(&mut self, acked: &[PendingOp], dropped: &[u64]) -> Result<(), StoreError> {
        // The last write of each key is what it holds after the batch.
        let mut last: BTreeMap<(u8, &str), &PendingOp> = BTreeMap::new();
        for op in acked {
            last.insert((kind_code(op.kind), op.key.as_str()), op);
        }
        let (mut put_kinds, mut put_keys, mut put_bodies) = (Vec::new(), Vec::new(), Vec::new());
        let (mut del_kinds, mut del_keys) = (Vec::new(), Vec::new());
        for ((kind, key), op) in last {
            if op.action == Action::Delete {
                del_kinds.push(kind as i16);
                del_keys.push(key);
            } else {
                let mut body = Vec::new();
                encode_object(&op.object, &mut body);
                put_kinds.push(kind as i16);
                put_keys.push(key);
                put_bodies.push(body);
            }
        }
        // The prior entries each kind changed: each written object's first
        // bytes, none for a deleted one; noted under the commit's last id.
        let mut changes: BTreeMap<i16, KindChanges<'_>> = BTreeMap::new();
        let last_id = acked.iter().map(|o| o.id as i64).max().unwrap_or(0);
        let heads = put_bodies
            .iter()
            .map(|b| Some(&b[..b.len().min(PRIOR_BYTES as usize)]));
        let written = put_kinds.iter().zip(&put_keys).zip(heads);
        let deleted = del_kinds.iter().zip(&del_keys).map(|kk| (kk, None));
        for ((kind, key), head) in written.chain(deleted) {
            let (id, keys, heads) = changes.entry(*kind).or_insert((last_id, vec![], vec![]));
            *id = last_id;
            keys.push(key);
            heads.push(head);
        }
        let done: Vec<i64> = acked
            .iter()
            .map(|o| o.id as i64)
            .chain(dropped.iter().map(|&id| id as i64))
            .collect();
        let tenant = &self.tenant;
        self.fenced(|tx| {
            // Shared with other commits; a digest being written holds it
            // alone (write_digest).
            self.exec(
                    tx,
                "SELECT 1 FROM muster_tenants WHERE tenant = $1 FOR KEY SHARE",
                &[tenant],
            )?;
            if !put_keys.is_empty() {
                self.exec(
                    tx,
                    "INSERT INTO muster_objects (tenant, kind, key, body) \
                     SELECT $1, * FROM unnest($2::smallint[], $3::text[], $4::bytea[]) \
                     ON CONFLICT (tenant, kind, key) DO UPDATE SET body = EXCLUDED.body",
                    &[tenant, &put_kinds, &put_keys, &put_bodies],
                )?;
            }
            if !del_keys.is_empty() {
                self.exec(
                    tx,
                    "DELETE FROM muster_objects o USING unnest($2::smallint[], $3::text[]) AS d(kind, key) \
                     WHERE o.tenant = $1 AND o.kind = d.kind AND o.key = d.key",
                    &[tenant, &del_kinds, &del_keys],
                )?;
            }
            for (kind, (id, keys, heads)) in &changes {
                // Noted only for a kind that has a digest.
                self.exec(
                    tx,
                    "INSERT INTO muster_prior_changes (tenant, kind, id, keys, heads) \
                     SELECT $1, $2, $3, $4, $5 \
                     WHERE EXISTS (SELECT 1 FROM muster_prior_digests WHERE tenant = $1 AND kind = $2) \
                     ON CONFLICT (tenant, kind, id) DO UPDATE SET keys = EXCLUDED.keys, heads = EXCLUDED.heads",
                    &[tenant, kind, id, keys, heads],
                )?;
            }
            if !done.is_empty() {
                self.exec(
                    tx,
                    "DELETE FROM muster_journal j USING unnest($2::bigint[]) AS d(id) \
                     WHERE j.tenant = $1 AND j.id = d.id",
                    &[tenant, &done],
                )?;
            }
            Ok(())
        })
    }

    /// `keys`' objects as the database has them.
    fn read_many(
        &self,
        kind: ObjectKind,
        keys: &[&str],
    ) -> Result<Vec<Option<StoredObject>>, StoreError> {
        let mut found = ahash::AHashMap::with_capacity(keys.len());
        let mut client = self.client();
        // A few thousand keys a query, each looked up in the index.
        let select = self
            .prepared(&mut *client, "SELECT key, body FROM muster_objects WHERE tenant = $1 AND kind = $2 AND key = ANY($3)")
            .map_err(|e| self.err(e))?;
        for chunk in keys.chunks(GET_KEYS) {
            let rows = client
                .query(&select, &[&self.tenant, &(kind_code(kind) as i16), &chunk])
                .map_err(|e| self.err(e))?;
            for row in &rows {
                let key: &str = row.get(0);
                let body: &[u8] = row.get(1);
                let object = decode_object(body)
                    .ok_or_else(|| self.damaged(format!("the object of {key:?} cannot be read")))?;
                found.insert(key.to_string(), object);
            }
        }
        Ok(keys.iter().map(|k| found.get(*k).cloned()).collect())
    }
}

/// A commit's prior changes of one kind: its last operation id, the
/// keys, and the first bytes of each one's object (none: deleted).
type KindChanges<'a> = (i64, Vec<&'a str>, Vec<Option<&'a [u8]>>);

/// A fenced write's failure: the database's, or the store's own (a row
/// it cannot read).
enum TxError {
    Db(postgres::Error),
    Store(StoreError),
}

impl From<postgres::Error> for TxError {
    fn from(e: postgres::Error) -> TxError {
        TxError::Db(e)
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> TxError {
        TxError::Store(e)
    }
}

/// A database as messages show it: its URL without the password, and
/// the tenant.
#[derive(Clone, Debug)]
pub(crate) struct Shown(String);

impl Shown {
    fn error(&self, e: postgres::Error) -> StoreError {
        // The server's own words, when it said something ("db error" alone
        // tells nothing).
        let said = match e.as_db_error() {
            Some(db) => format!("{}: {}", db.severity(), db.message()),
            None => e.to_string(),
        };
        StoreError {
            path: self.0.clone(),
            kind: StoreErrorKind::Database(said),
        }
    }
}

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `url` without its password, for messages.
pub fn shown_url(url: &str) -> String {
    if url.contains("://") {
        return crate::secret::without_password(url);
    }
    // A key=value string: its password= pair dropped.
    url.split_whitespace()
        .filter(|kv| !kv.starts_with("password="))
        .collect::<Vec<_>>()
        .join(" ")
}

fn hash_bytes(hash: u128) -> Vec<u8> {
    hash.to_le_bytes().to_vec()
}

impl StateStore for PostgresStore {
    fn prior(&self, kind: ObjectKind) -> Result<MemoryPrior, StoreError> {
        self.landed()?;
        let mut client = self.client();
        // One snapshot: the digest and the changes since it agree.
        let mut tx = client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(|e| self.err(e))?;
        let (prior, loaded) = self.load_prior(&mut tx, kind).map_err(|e| match e {
            TxError::Db(e) => self.err(e),
            TxError::Store(e) => e,
        })?;
        tx.commit().map_err(|e| self.err(e))?;
        drop(client);
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())[kind_code(kind) as usize] =
            Some(loaded);
        self.known.fetch_max(
            Prior::len(&prior) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(prior)
    }

    fn get(&self, kind: ObjectKind, key: &str) -> Result<Option<StoredObject>, StoreError> {
        Ok(self.get_many(kind, &[key])?.pop().flatten())
    }

    fn get_many(
        &self,
        kind: ObjectKind,
        keys: &[&str],
    ) -> Result<Vec<Option<StoredObject>>, StoreError> {
        match &self.committer {
            // What the committer has not landed yet, answered by it.
            Some(committer) => committer.read(kind_code(kind), keys, || self.read_many(kind, keys)),
            None => self.read_many(kind, keys),
        }
    }

    fn last_records(&self, kind: ObjectKind) -> Result<Option<u64>, StoreError> {
        let row = self
            .client()
            .query_opt(
                "SELECT records FROM muster_records WHERE tenant = $1 AND kind = $2",
                &[&self.tenant, &(kind_code(kind) as i16)],
            )
            .map_err(|e| self.err(e))?;
        Ok(row.map(|r| r.get::<_, i64>(0) as u64))
    }

    fn set_last_records(&mut self, kind: ObjectKind, records: u64) -> Result<(), StoreError> {
        self.landed()?;
        self.fenced(|tx| {
            tx.execute(
                "INSERT INTO muster_records (tenant, kind, records) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant, kind) DO UPDATE SET records = EXCLUDED.records",
                &[&self.tenant, &(kind_code(kind) as i16), &(records as i64)],
            )
            .map_err(TxError::from)
        })?;
        Ok(())
    }

    fn begin(&mut self, ops: &[PendingOp]) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = ops.iter().map(|o| o.id as i64).collect();
        let kinds: Vec<i16> = ops.iter().map(|o| kind_code(o.kind) as i16).collect();
        let actions: Vec<i16> = ops.iter().map(|o| action_code(o.action) as i16).collect();
        let invites: Vec<bool> = ops.iter().map(|o| o.invite).collect();
        let keys: Vec<&str> = ops.iter().map(|o| o.key.as_str()).collect();
        let objects: Vec<Vec<u8>> = ops
            .iter()
            .map(|o| {
                let mut out = Vec::new();
                encode_object(&o.object, &mut out);
                out
            })
            .collect();
        self.fenced(|tx| {
            self.exec(
                tx,
                "INSERT INTO muster_journal (tenant, id, kind, action, invite, key, object) \
                 SELECT $1, * FROM unnest($2::bigint[], $3::smallint[], $4::smallint[], \
                 $5::boolean[], $6::text[], $7::bytea[])",
                &[
                    &self.tenant,
                    &ids,
                    &kinds,
                    &actions,
                    &invites,
                    &keys,
                    &objects,
                ],
            )
            .map_err(TxError::from)
        })?;
        Ok(())
    }

    fn commit(&mut self, acked: &[PendingOp], dropped: &[u64]) -> Result<(), StoreError> {
        let mut keys: Vec<(u8, &str)> = acked
            .iter()
            .map(|op| (kind_code(op.kind), op.key.as_str()))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        for (kind, _) in &keys {
            self.written_of[*kind as usize] += 1;
        }
        self.written += keys.len() as u64;
        self.journal_done += (acked.len() + dropped.len()) as u64;
        if self.committer.is_none() {
            self.committer = Some(Committer::start(self.second()?));
        }
        self.committer
            .as_ref()
            .expect("started")
            .send(acked, dropped)
    }

    fn pending(&self) -> Result<Vec<PendingOp>, StoreError> {
        self.landed()?;
        let rows = self
            .client()
            .query(
                "SELECT id, kind, action, invite, key, object FROM muster_journal \
                 WHERE tenant = $1 ORDER BY id",
                &[&self.tenant],
            )
            .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|row| {
                let id = row.get::<_, i64>(0) as u64;
                let bad = || self.damaged(format!("journal record {id} cannot be read"));
                Ok(PendingOp {
                    id,
                    kind: kind_of(row.get::<_, i16>(1) as u8).ok_or_else(bad)?,
                    action: action_of(row.get::<_, i16>(2) as u8).ok_or_else(bad)?,
                    invite: row.get(3),
                    key: row.get(4),
                    object: decode_object(row.get(5)).ok_or_else(bad)?,
                })
            })
            .collect()
    }

    fn next_op_id(&mut self) -> Result<u64, StoreError> {
        if self.ids.0 == self.ids.1 {
            let row = self
                .client()
                .query_one(
                    "UPDATE muster_tenants SET next_op = next_op + $2 WHERE tenant = $1 RETURNING next_op",
                    &[&self.tenant, &ID_BLOCK],
                )
                .map_err(|e| self.err(e))?;
            let end = row.get::<_, i64>(0) as u64;
            self.ids = (end - ID_BLOCK as u64, end);
        }
        let id = self.ids.0;
        self.ids.0 += 1;
        Ok(id)
    }

    fn raise_op_ids(&mut self, past: u64) -> Result<(), StoreError> {
        self.landed()?;
        self.client()
            .execute(
                "UPDATE muster_tenants SET next_op = greatest(next_op, $2) WHERE tenant = $1",
                &[&self.tenant, &(past as i64 + 1)],
            )
            .map_err(|e| self.err(e))?;
        // The block in hand, if any, is dropped.
        self.ids = (0, 0);
        Ok(())
    }

    fn seen_content(&self, hash: u128) -> Result<Option<String>, StoreError> {
        let row = self
            .client()
            .query_opt(
                "SELECT name FROM muster_contents WHERE tenant = $1 AND hash = $2",
                &[&self.tenant, &hash_bytes(hash)],
            )
            .map_err(|e| self.err(e))?;
        Ok(row.map(|r| r.get(0)))
    }

    fn remember_content(&mut self, hash: u128, name: &str) -> Result<(), StoreError> {
        self.landed()?;
        self.fenced(|tx| {
            tx.execute(
                "INSERT INTO muster_contents (tenant, hash, name) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant, hash) DO UPDATE SET name = EXCLUDED.name",
                &[&self.tenant, &hash_bytes(hash), &name],
            )
            .map_err(TxError::from)
        })?;
        Ok(())
    }

    fn kept_plan(&self, kind: ObjectKind, hash: u128) -> Result<Option<Vec<u8>>, StoreError> {
        let row = self
            .client()
            .query_opt(
                "SELECT plan FROM muster_plans WHERE tenant = $1 AND kind = $2 AND hash = $3",
                &[&self.tenant, &(kind_code(kind) as i16), &hash_bytes(hash)],
            )
            .map_err(|e| self.err(e))?;
        Ok(row.map(|r| r.get(0)))
    }

    fn keep_plan(
        &mut self,
        kind: ObjectKind,
        hash: u128,
        plan: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        self.landed()?;
        let kind = kind_code(kind) as i16;
        self.fenced(|tx| match plan {
            Some(plan) => tx.execute(
                "INSERT INTO muster_plans (tenant, kind, hash, plan) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (tenant, kind) DO UPDATE SET hash = EXCLUDED.hash, plan = EXCLUDED.plan",
                &[&self.tenant, &kind, &hash_bytes(hash), &plan],
            ),
            None => tx.execute(
                "DELETE FROM muster_plans WHERE tenant = $1 AND kind = $2",
                &[&self.tenant, &kind],
            ),
        }
        .map_err(TxError::from))
        .map(drop)
    }

    fn released(&self, name: &str) -> Result<bool, StoreError> {
        let row = self
            .client()
            .query_opt(
                "SELECT 1 FROM muster_released WHERE tenant = $1 AND name = $2",
                &[&self.tenant, &name],
            )
            .map_err(|e| self.err(e))?;
        Ok(row.is_some())
    }

    fn push_run(
        &mut self,
        keep: usize,
        record: &mut dyn FnMut(u64) -> Vec<u8>,
    ) -> Result<u64, StoreError> {
        self.landed()?;
        let tenant = &self.tenant;
        self.fenced(|tx| {
            let last: Option<i64> = tx
                .query_one(
                    "SELECT max(id) FROM muster_runs WHERE tenant = $1",
                    &[tenant],
                )?
                .get(0);
            let id = last.map_or(1, |l| l + 1);
            tx.execute(
                "INSERT INTO muster_runs (tenant, id, record) VALUES ($1, $2, $3)",
                &[tenant, &id, &record(id as u64)],
            )?;
            tx.execute(
                "DELETE FROM muster_runs WHERE tenant = $1 AND id <= $2",
                &[tenant, &(id - keep.max(1) as i64)],
            )?;
            Ok(id as u64)
        })
    }

    fn runs(&self, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT record FROM muster_runs WHERE tenant = $1 ORDER BY id DESC LIMIT $2",
                &[&self.tenant, &(limit.min(i64::MAX as usize) as i64)],
            )
            .map_err(|e| self.err(e))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn daemon_value(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row = self
            .client()
            .query_opt(
                "SELECT value FROM muster_daemon WHERE tenant = $1 AND name = $2",
                &[&self.tenant, &name],
            )
            .map_err(|e| self.err(e))?;
        Ok(row.map(|r| r.get(0)))
    }

    fn set_daemon_value(&mut self, name: &str, value: &str) -> Result<(), StoreError> {
        self.landed()?;
        self.fenced(|tx| {
            tx.execute(
                "INSERT INTO muster_daemon (tenant, name, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant, name) DO UPDATE SET value = EXCLUDED.value",
                &[&self.tenant, &name, &value],
            )
            .map_err(TxError::from)
        })?;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.landed()?;
        let loaded = *self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        for (i, loaded) in loaded.iter().enumerate() {
            let due = loaded.is_some_and(|l| l.digest_due(self.written_of[i]));
            if let (true, Some(kind)) = (due, kind_of(i as u8)) {
                self.write_digest(kind)?;
            }
        }
        let known = self.known.load(std::sync::atomic::Ordering::Relaxed);
        if self.written > ANALYZE_AFTER && self.written > known / 10 {
            self.client()
                .batch_execute("ANALYZE muster_objects")
                .map_err(|e| self.err(e))?;
            self.written = 0;
        }
        if self.journal_done > VACUUM_AFTER {
            // Not in a transaction: VACUUM cannot be. It changes no row.
            self.client()
                .batch_execute("VACUUM muster_journal")
                .map_err(|e| self.err(e))?;
            self.journal_done = 0;
        }
        Ok(())
    }

    fn lease_check(&self) -> Option<super::LeaseCheck> {
        let fence = self.fence.clone()?;
        let lost = self.lease_lost();
        Some(Arc::new(move || match fence.held() {
            true => Ok(()),
            false => Err(StoreError {
                path: lost.path.clone(),
                kind: StoreErrorKind::LeaseLost,
            }),
        }))
    }

    fn run_holder(&self) -> Result<Option<String>, StoreError> {
        lease::live_holder(&mut self.client(), &self.tenant).map_err(|e| self.err(e))
    }

    fn set_released(&mut self, name: &str, released: bool) -> Result<(), StoreError> {
        self.landed()?;
        let sql = if released {
            "INSERT INTO muster_released (tenant, name) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM muster_released WHERE tenant = $1 AND name = $2"
        };
        self.client()
            .execute(sql, &[&self.tenant, &name])
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::shown_url;

    #[test]
    fn the_password_is_never_shown() {
        assert_eq!(
            shown_url("postgres://muster:s3cret@db.example:5432/muster"),
            "postgres://muster@db.example:5432/muster"
        );
        assert_eq!(
            shown_url("host=db user=muster password=s3cret dbname=m"),
            "host=db user=muster dbname=m"
        );
        assert_eq!(shown_url("postgres://db/m"), "postgres://db/m");
    }
}
