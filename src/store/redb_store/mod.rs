//! The state store on disk: one redb file and its journal.
//!
//! Every write goes through `<store>.journal`, an append-only file:
//! - [`StateStore::begin`] appends the operations about to be sent and
//!   fsyncs (one sequential write and one fsync per batch);
//! - [`StateStore::commit`] appends a record per acknowledged operation —
//!   a few bytes pointing at its begin record's object when the sink left
//!   it unchanged, else the changed object — and one per dropped operation.
//!   Memory keeps only where each key's latest object is in the journal
//!   (`index`), so `get` and `prior` read buffered objects back from it.
//!
//! [`StateStore::sync`] (after each file, once its results are out, and
//! when the store is dropped) fsyncs the journal: the commits are then
//! durable there. A checkpoint writes each buffered key's last object to
//! redb in one transaction, in key order, then rewrites the journal to
//! what is still in flight. It comes when `sync` finds the buffer at
//! [`REST_KEYS`] keys or the journal at [`REST_JOURNAL_BYTES`], and during
//! a file once the buffer reaches [`CHECKPOINT_KEYS`] keys or the journal
//! [`CHECKPOINT_JOURNAL_BYTES`]. A first import of a million users is then
//! one transaction that appends to the empty tables through a cursor at
//! their end, instead of many that each copy most of a copy-on-write
//! B-tree; a day 2's ~20k writes wait in the journal for a few more days'
//! and are folded in together (decisions 42, 43). Each checkpoint also
//! writes a digest of each kind's priors beside the store, which the next
//! run loads instead of the table ([`DIGEST_FILE_MAGIC`], decision 48).
//!
//! After a crash, opening the store reads the journal again: committed
//! operations are buffered as before the crash, dropped ones are
//! forgotten, and the operations begun and neither committed nor dropped
//! are [`StateStore::pending`]: recovery asks the sink which of them it
//! applied. Commit and drop records are not fsynced on their own: one lost
//! in a crash leaves its operation pending, which recovery settles the same
//! way. A record torn by a crash mid-append is cut off when the store opens,
//! so what is appended next is read back after it.
//!
//! Its parts: `journal.rs` (the journal's records), `checkpoint.rs` (the
//! journal into the tables, and the prior digests), `seal.rs` (whether the
//! file is as the last clean close left it), `history.rs` (the run
//! history's table).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ahash::AHashMap;

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableError,
};

use super::{
    action_code, decode_pending, decode_prior, decode_stored, encode_stored, kind_code, put_str,
    FieldNames, JournalSync, PendingOp, StateStore, StoreError, StoreErrorKind, StoredObject,
    FORMAT, UPGRADED,
};
use super::{MemoryPrior, PriorEntry};
use crate::model::{Action, ObjectKind};
use rayon::slice::ParallelSliceMut;

mod checkpoint;
use checkpoint::PRIOR_BYTES;
mod history;
mod journal;
mod seal;
use journal::{Journal, ACKED, BEGIN, COMMIT, DROP, MARK};
use seal::{read_seal, seal_of, seal_path};
use xxhash_rust::xxh3::xxh3_64;

const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
const GROUPS: TableDefinition<&str, &[u8]> = TableDefinition::new("groups");
const SEGMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("segments");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// A checkpoint comes once the acknowledged writes since the last one
/// name this many keys (their values wait in the journal; memory keeps
/// ~100 bytes per key to find them) ...
pub const CHECKPOINT_KEYS: usize = 1 << 20;

/// ... or once the journal holds this many bytes.
pub const CHECKPOINT_JOURNAL_BYTES: u64 = 2 << 30;

/// Between files, the buffer waits in the journal until it names this many
/// keys ...
pub const REST_KEYS: usize = 1 << 16;

/// ... or the journal holds this many bytes (read again each time the
/// store opens).
pub const REST_JOURNAL_BYTES: u64 = 64 << 20;

fn objects(kind: ObjectKind) -> TableDefinition<'static, &'static str, &'static [u8]> {
    match kind {
        ObjectKind::User => USERS,
        ObjectKind::Group => GROUPS,
        ObjectKind::Segment => SEGMENTS,
    }
}

/// The state store in a redb file.
pub struct RedbStore {
    /// The database; taken only when the store is dropped, to close it
    /// before its seal is written.
    db: Option<Database>,
    path: PathBuf,
    journal: Journal,
    /// Begun, neither committed nor dropped.
    in_flight: BTreeMap<u64, Begun>,
    /// Acknowledged, not yet in redb, per kind: where each key's latest
    /// object is in the journal (`None`: deleted).
    index: [AHashMap<Box<str>, Option<Span>>; 3],
    /// Operation ids handed out from a reserved block: `next..block_end`.
    next: u64,
    block_end: u64,
    /// The field names objects refer to (META `field_names`).
    names: FieldNames,
    /// Closed as by a crash: no checkpoint on drop (tests).
    abandoned: bool,
}

/// An operation begun: where its begin record is, and what it names.
#[derive(Clone, Debug)]
struct Begun {
    /// The record's body.
    body: Span,
    kind: ObjectKind,
    key: Box<str>,
    action: Action,
    /// The write invites ([`PendingOp::invite`]).
    invite: bool,
    /// Where its object is, as the tables keep it, and that encoding's
    /// hash: a commit that acknowledges the object unchanged points here.
    /// (`None` for a begin record of a `muster-state/3` journal.)
    stored: Option<(Span, u64)>,
}

/// Bytes of the journal: where they start and how many.
#[derive(Clone, Copy, Debug)]
struct Span {
    at: u64,
    len: u32,
}

impl Span {
    /// The last `len` bytes of the span: a record's object ends it.
    fn tail(self, len: usize) -> Span {
        Span {
            at: self.at + u64::from(self.len) - len as u64,
            len: len as u32,
        }
    }
}

/// redb's page cache.
const CACHE_BYTES: usize = 64 << 20;

/// Operation ids reserved per store write.
const ID_BLOCK: u64 = 1 << 16;

impl RedbStore {
    /// Opens (or creates) the store at `path`. A file written in another
    /// format is refused.
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        let err = |kind| StoreError::new(path, kind);
        let db_err = |e: redb::Error| err(database_error(e));
        let io = |what: &str, source| {
            err(StoreErrorKind::Io {
                what: what.into(),
                source,
            })
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io("its folder", e))?;
        }
        // Whether the file is as the last clean close left it, looked at
        // before redb opens it (opening writes to it).
        let as_left = path.exists().then(|| read_seal(path) == seal_of(path));
        // A bounded page cache: the store is read mostly once per run (the
        // prior), so a large cache only grows the process.
        let mut db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| db_err(e.into()))?;
        // A file not as muster left it (changed by something else, copied,
        // or a run that did not close it) is checked whole before anything
        // is read or written: damage is refused here, not met by a panic
        // after writes were sent.
        if as_left == Some(false) {
            let started = std::time::Instant::now();
            let checked = db.check_integrity();
            tracing::info!(
                ms = started.elapsed().as_millis() as u64,
                "state store: checked whole (not as the last run left it)"
            );
            match checked {
                Ok(true) => {}
                Ok(false) => {
                    return Err(err(StoreErrorKind::Damaged(
                        "the database file was changed outside muster: it is damaged, and what redb could repair it to may be older than what the LMS has".into(),
                    )))
                }
                Err(e) => return Err(db_err(e.into())),
            }
        }
        // The format first: the journal of a store this muster refuses is
        // not read (nor its tail cut).
        let format = meta_of(&db, "format").map_err(&db_err)?;
        match format.as_deref() {
            Some(f) if f == FORMAT.as_bytes() => {}
            // A new store; or a `/3` or `/4` one, whose journal records
            // this muster still reads and whose kinds without a digest are
            // read from their tables: it is marked as this format before a
            // record or a table an earlier muster could not read (or keep
            // up) is written.
            None => mark_format(&db, true).map_err(&db_err)?,
            Some(f) if UPGRADED.iter().any(|u| u.as_bytes() == f) => {
                mark_format(&db, false).map_err(&db_err)?
            }
            Some(f) => {
                return Err(err(StoreErrorKind::Format {
                    found: String::from_utf8_lossy(f).into_owned(),
                }))
            }
        }
        let journal_path = PathBuf::from(format!("{}.journal", path.display()));
        // A store that has written (it reserved operation ids) always has its
        // journal, which holds the writes since its last checkpoint: without
        // it, the store no longer knows all the LMS has.
        let wrote = meta_of(&db, "next_op").map_err(&db_err)?.is_some();
        if wrote && format.is_some() && !journal_path.exists() {
            return Err(err(StoreErrorKind::Damaged(format!(
                "its journal {} is missing: the writes acknowledged since the store's last checkpoint are lost with it, and a run would apply them again (creating again users the LMS has). Restore the store and its journal together from a backup",
                journal_path.display()
            ))));
        }
        let (journal, replayed) = Journal::open(journal_path).map_err(|e| io("journal", e))?;
        let mut store = RedbStore {
            db: Some(db),
            path: path.to_path_buf(),
            journal,
            in_flight: replayed.in_flight,
            index: replayed.index,
            next: 0,
            block_end: 0,
            names: FieldNames::default(),
            abandoned: false,
        };
        if let Some(bytes) = store.meta("field_names")? {
            store.names = FieldNames::decode(&bytes).ok_or_else(|| {
                err(StoreErrorKind::Damaged(
                    "corrupt list of field names (meta field_names)".into(),
                ))
            })?;
        }
        Ok(store)
    }

    /// Closes the store as a crash would: without a checkpoint, its
    /// journal as the last write left it (for crash tests).
    #[doc(hidden)]
    pub fn abandon(mut self) {
        self.abandoned = true;
    }

    /// Saves the field names that objects encoded since the last save
    /// introduced: called before the records holding those objects are
    /// appended, so a record never names a field the store does not know.
    fn save_names(&mut self) -> Result<(), StoreError> {
        if self.names.unsaved {
            self.set_meta("field_names", &self.names.encode())?;
            self.names.unsaved = false;
        }
        Ok(())
    }

    fn buffered_keys(&self) -> usize {
        self.index.iter().map(|i| i.len()).sum()
    }

    /// Where an acknowledged, not yet checkpointed object of `key` is
    /// (`Some(None)`: deleted).
    fn buffered(&self, kind: ObjectKind, key: &str) -> Option<Option<Span>> {
        self.index[kind_index(kind)].get(key).copied()
    }

    /// A buffered object as the tables will keep it.
    fn read_value(&self, span: Span, key: &str, out: &mut Vec<u8>) -> Result<(), StoreError> {
        out.clear();
        self.read_value_into(span, key, out)
    }

    /// [`RedbStore::read_value`], appended to `out`.
    fn read_value_into(&self, span: Span, key: &str, out: &mut Vec<u8>) -> Result<(), StoreError> {
        self.journal
            .read_into(span, out)
            .map_err(|e| self.io_err(format!("journal entry for key {key:?}"), e))
    }

    /// The database (open from [`RedbStore::open`] to the drop).
    fn db(&self) -> &Database {
        self.db
            .as_ref()
            .expect("the database is open until the store is dropped")
    }

    /// The database failed.
    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        StoreError::new(&self.path, database_error(e.into()))
    }

    /// The store's files could not be read or written.
    fn io_err(&self, what: impl Into<String>, source: std::io::Error) -> StoreError {
        let what = what.into();
        StoreError::new(&self.path, StoreErrorKind::Io { what, source })
    }

    /// What the files hold is not what a muster wrote.
    fn damaged(&self, what: impl Into<String>) -> StoreError {
        StoreError::new(&self.path, StoreErrorKind::Damaged(what.into()))
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        meta_of(self.db(), name).map_err(|e| self.err(e))
    }

    /// Hands out operation ids above `last` from now on (a store rebuilt
    /// from a sink that has seen ids up to `last`).
    pub fn continue_ids_after(&mut self, last: u64) -> Result<(), StoreError> {
        let next = self
            .meta("next_op")?
            .and_then(|v| v.try_into().ok())
            .map(u64::from_le_bytes)
            .unwrap_or(1);
        if next <= last {
            self.set_meta("next_op", &(last + 1).to_le_bytes())?;
            (self.next, self.block_end) = (0, 0);
        }
        Ok(())
    }

    /// The files of the store at `path` that exist: the database, its
    /// journal, its seal and its prior digests (not its lock).
    pub fn files(path: &Path) -> Vec<PathBuf> {
        let mut out = vec![
            path.to_path_buf(),
            PathBuf::from(format!("{}.journal", path.display())),
            seal_path(path),
        ];
        for kind in [ObjectKind::User, ObjectKind::Group, ObjectKind::Segment] {
            out.push(PathBuf::from(format!(
                "{}.prior-{}",
                path.display(),
                kind.as_str()
            )));
        }
        out.retain(|p| p.exists());
        out
    }

    /// A value the daemon keeps per tenant (e.g. its last scheduled run).
    pub fn daemon_value(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .meta(&format!("daemon/{name}"))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn set_daemon_value(&mut self, name: &str, value: &str) -> Result<(), StoreError> {
        self.set_meta(&format!("daemon/{name}"), value.as_bytes())
    }

    fn set_meta(&mut self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let w = self.db().begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = w.open_table(META).map_err(|e| self.err(e))?;
            t.insert(name, value).map_err(|e| self.err(e))?;
        }
        w.commit().map_err(|e| self.err(e))
    }

    /// Removes a META value; none there costs no write. Not `durable`: no
    /// fsync of its own, made durable by the next durable commit.
    fn remove_meta(&mut self, name: &str, durable: bool) -> Result<(), StoreError> {
        if self.meta(name)?.is_none() {
            return Ok(());
        }
        let mut w = self.db().begin_write().map_err(|e| self.err(e))?;
        if !durable {
            w.set_durability(redb::Durability::None)
                .map_err(|e| self.err(e))?;
        }
        {
            let mut t = w.open_table(META).map_err(|e| self.err(e))?;
            t.remove(name).map_err(|e| self.err(e))?;
        }
        w.commit().map_err(|e| self.err(e))
    }
}

impl StateStore for RedbStore {
    fn push_run(
        &mut self,
        keep: usize,
        record: &mut dyn FnMut(u64) -> Vec<u8>,
    ) -> Result<u64, StoreError> {
        RedbStore::push_run(self, keep, record)
    }
    fn runs(&self, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        RedbStore::runs(self, limit)
    }
    fn daemon_value(&self, name: &str) -> Result<Option<String>, StoreError> {
        RedbStore::daemon_value(self, name)
    }
    fn set_daemon_value(&mut self, name: &str, value: &str) -> Result<(), StoreError> {
        RedbStore::set_daemon_value(self, name, value)
    }

    /// Makes every commit so far durable in the journal, without the
    /// checkpoint [`StateStore::sync`] may make: a run syncs so at the end
    /// of a file's writes, and leaves the checkpoint until the file's plan
    /// is freed and its results are out.
    fn sync_journal(&mut self) -> Result<(), StoreError> {
        if self.journal.unsynced {
            self.journal.sync().map_err(|e| self.io_err("journal", e))?;
        }
        Ok(())
    }

    /// The records are appended; the [`JournalSync`] is an fsync of the
    /// journal file as it was when handed out (a checkpoint that replaces
    /// the file first makes the records it keeps durable in the new one).
    fn begin_deferred(&mut self, ops: &[PendingOp]) -> Result<JournalSync, StoreError> {
        let mut out = Vec::new();
        let mut begun = Vec::with_capacity(ops.len());
        for op in ops {
            // The object, as the tables keep it, is encoded in place.
            let (mut len, mut hash) = (0, 0);
            let body = self.journal.frame(&mut out, MARK, |body| {
                body.push(BEGIN);
                body.extend_from_slice(&op.id.to_le_bytes());
                // The action's high bit: the write invites.
                let action = action_code(op.action) | u8::from(op.invite) << 7;
                body.extend_from_slice(&[kind_code(op.kind), action]);
                put_str(body, &op.key);
                let from = body.len();
                encode_stored(&op.object, &mut self.names, body);
                (len, hash) = (body.len() - from, xxh3_64(&body[from..]));
            });
            begun.push((
                op.id,
                Begun {
                    body,
                    kind: op.kind,
                    key: op.key.as_str().into(),
                    action: op.action,
                    invite: op.invite,
                    stored: Some((body.tail(len), hash)),
                },
            ));
        }
        self.save_names()?;
        self.journal
            .append(&out)
            .map_err(|e| self.io_err("journal", e))?;
        self.in_flight.extend(begun);
        let (file, path) = (Arc::clone(&self.journal.file), self.path.clone());
        Ok(JournalSync::new(move || {
            file.sync_data().map_err(|source| {
                let what = "journal".into();
                StoreError::new(&path, StoreErrorKind::Io { what, source })
            })
        }))
    }

    /// Makes room in the buffer's index for `writes` more keys of `kind`,
    /// so that a first import's million commits insert into it without
    /// regrowing it (each regrowth hashes every key again).
    fn reserve_writes(&mut self, kind: ObjectKind, writes: usize) {
        self.index[kind_index(kind)].reserve(writes.min(CHECKPOINT_KEYS));
    }

    /// The processed name of an earlier file with the same content (its
    /// xxh3-128 hash), if one was applied.
    fn seen_content(&self, hash: u128) -> Result<Option<String>, StoreError> {
        Ok(self
            .meta(&format!("content/{hash:032x}"))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Records that the file with this content was processed as `name`.
    fn remember_content(&mut self, hash: u128, name: &str) -> Result<(), StoreError> {
        self.set_meta(&format!("content/{hash:032x}"), name.as_bytes())
    }

    /// META `release/<file name>`.
    fn released(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.meta(&format!("release/{name}"))?.is_some())
    }

    fn set_released(&mut self, name: &str, released: bool) -> Result<(), StoreError> {
        let key = format!("release/{name}");
        if released {
            self.set_meta(&key, b"1")
        } else {
            self.remove_meta(&key, true)
        }
    }

    /// META `plan/<kind>`: the content hash (16 bytes), then the plan.
    fn kept_plan(&self, kind: ObjectKind, hash: u128) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .meta(&format!("plan/{}", kind.as_str()))?
            .filter(|v| v.get(..16) == Some(&hash.to_le_bytes()[..]))
            .map(|v| v[16..].to_vec()))
    }

    fn keep_plan(
        &mut self,
        kind: ObjectKind,
        hash: u128,
        plan: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let name = format!("plan/{}", kind.as_str());
        match plan {
            Some(plan) => self.set_meta(&name, &[&hash.to_le_bytes()[..], plan].concat()),
            // Made durable by the content record the pipeline writes next.
            None => self.remove_meta(&name, false),
        }
    }

    fn prior(&self, kind: ObjectKind) -> Result<MemoryPrior, StoreError> {
        let r = self.db().begin_read().map_err(|e| self.err(e))?;
        let objects = r.open_table(objects(kind)).map_err(|e| self.err(e))?;
        let mut prior = self.checkpointed(kind, &objects)?;
        // Acknowledged writes not yet checkpointed: the fingerprint and
        // flags that start each object.
        let mut head = Vec::new();
        let buffered = &self.index[kind_index(kind)];
        let mut changes = Vec::with_capacity(buffered.len());
        for (key, span) in buffered {
            let Some(span) = span else {
                changes.push((&**key, None));
                continue;
            };
            let span = Span {
                at: span.at,
                len: span.len.min(PRIOR_BYTES),
            };
            self.read_value(span, key, &mut head)?;
            changes.push((&**key, Some(self.journal_prior_entry(key, &head)?)));
        }
        prior.update(changes);
        Ok(prior)
    }

    fn get(&self, kind: ObjectKind, key: &str) -> Result<Option<StoredObject>, StoreError> {
        Ok(self.get_many(kind, &[key])?.pop().flatten())
    }

    /// One read transaction for all of `keys`.
    fn get_many(
        &self,
        kind: ObjectKind,
        keys: &[&str],
    ) -> Result<Vec<Option<StoredObject>>, StoreError> {
        let r = self.db().begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(objects(kind)).map_err(|e| self.err(e))?;
        let mut value = Vec::new();
        let mut out = Vec::with_capacity(keys.len());
        for &key in keys {
            if let Some(span) = self.buffered(kind, key) {
                let Some(span) = span else {
                    out.push(None);
                    continue;
                };
                self.read_value(span, key, &mut value)?;
                let o = decode_stored(&value, &self.names).ok_or_else(|| {
                    self.damaged(format!("corrupt journal entry for key {key:?}"))
                })?;
                out.push(Some(o));
                continue;
            }
            let Some(v) = t.get(key).map_err(|e| self.err(e))? else {
                out.push(None);
                continue;
            };
            let o = decode_stored(v.value(), &self.names)
                .ok_or_else(|| self.damaged(format!("corrupt entry for key {key:?}")))?;
            out.push(Some(o));
        }
        Ok(out)
    }

    fn last_records(&self, kind: ObjectKind) -> Result<Option<u64>, StoreError> {
        Ok(self
            .meta(&format!("records/{}", kind.as_str()))?
            .and_then(|v| v.try_into().ok())
            .map(u64::from_le_bytes))
    }

    fn set_last_records(&mut self, kind: ObjectKind, records: u64) -> Result<(), StoreError> {
        self.sync_journal()?;
        self.set_meta(
            &format!("records/{}", kind.as_str()),
            &records.to_le_bytes(),
        )
    }

    fn begin(&mut self, ops: &[PendingOp]) -> Result<(), StoreError> {
        self.begin_deferred(ops)?.sync()?;
        // Nothing was appended since: the journal is synced to its end.
        self.journal.unsynced = false;
        Ok(())
    }

    fn commit(&mut self, acked: &[PendingOp], dropped: &[u64]) -> Result<(), StoreError> {
        let mut out = Vec::new();
        // The object as the tables keep it (a committed deletion keeps none).
        let mut value = Vec::new();
        for op in acked {
            let deleted = op.action == Action::Delete;
            value.clear();
            if !deleted {
                encode_stored(&op.object, &mut self.names, &mut value);
            }
            // The begin record, when it names the same write; its key then
            // goes to the index as it is.
            let begun = self
                .in_flight
                .remove(&op.id)
                .filter(|b| (b.kind, b.action, &*b.key) == (op.kind, op.action, op.key.as_str()));
            // Acknowledged as begun (the JSONL outbox's every write; a SCIM
            // write that got no new id): a record of a few bytes that
            // points at the begin record's object.
            let as_begun = begun.as_ref().and_then(|b| {
                let (stored, hash) = b.stored?;
                (deleted || hash == xxh3_64(&value)).then_some(stored)
            });
            let span = match as_begun {
                Some(stored) => {
                    self.journal.frame(&mut out, MARK, |body| {
                        body.push(ACKED);
                        body.extend_from_slice(&op.id.to_le_bytes());
                    });
                    stored
                }
                None => {
                    let record = self.journal.frame(&mut out, MARK, |body| {
                        body.push(COMMIT);
                        body.extend_from_slice(&op.id.to_le_bytes());
                        body.push(kind_code(op.kind));
                        put_str(body, &op.key);
                        body.push(!deleted as u8);
                        body.extend_from_slice(&value);
                    });
                    record.tail(value.len())
                }
            };
            let key = begun.map_or_else(|| op.key.as_str().into(), |b| b.key);
            self.index[kind_index(op.kind)].insert(key, (!deleted).then_some(span));
        }
        for &id in dropped {
            self.journal.frame(&mut out, MARK, |body| {
                body.push(DROP);
                body.extend_from_slice(&id.to_le_bytes());
            });
            self.in_flight.remove(&id);
        }
        self.save_names()?;
        // Not fsynced: a record lost in a crash leaves its operation
        // pending, and recovery asks the sink about it.
        self.journal
            .append(&out)
            .map_err(|e| self.io_err("journal", e))?;
        if self.buffered_keys() >= CHECKPOINT_KEYS || self.journal.len >= CHECKPOINT_JOURNAL_BYTES {
            self.checkpoint()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        if self.buffered_keys() >= REST_KEYS || self.journal.len >= REST_JOURNAL_BYTES {
            return self.checkpoint();
        }
        self.sync_journal()
    }

    fn pending(&self) -> Result<Vec<PendingOp>, StoreError> {
        let mut out = Vec::with_capacity(self.in_flight.len());
        let mut bytes = Vec::new();
        for (&id, begun) in &self.in_flight {
            let corrupt = || self.damaged(format!("corrupt journal entry of operation {id}"));
            let span = begun.stored.map_or(begun.body, |(span, _)| span);
            self.journal
                .read(span, &mut bytes)
                .map_err(|e| self.io_err(format!("journal entry of operation {id}"), e))?;
            let op = match begun.stored {
                Some(_) => PendingOp {
                    id,
                    kind: begun.kind,
                    key: begun.key.to_string(),
                    action: begun.action,
                    invite: begun.invite,
                    object: decode_stored(&bytes, &self.names).ok_or_else(corrupt)?,
                },
                None => decode_pending(id, &bytes).ok_or_else(corrupt)?,
            };
            out.push(op);
        }
        Ok(out)
    }

    fn next_op_id(&mut self) -> Result<u64, StoreError> {
        if self.next == self.block_end {
            // Reserve a block of ids with one write; ids of a block a crash
            // left unused are skipped, never reused.
            let start = self
                .meta("next_op")?
                .and_then(|v| v.try_into().ok())
                .map(u64::from_le_bytes)
                .unwrap_or(1);
            self.set_meta("next_op", &(start + ID_BLOCK).to_le_bytes())?;
            self.next = start;
            self.block_end = start + ID_BLOCK;
        }
        self.next += 1;
        Ok(self.next - 1)
    }

    fn raise_op_ids(&mut self, past: u64) -> Result<(), StoreError> {
        let start = self
            .meta("next_op")?
            .and_then(|v| v.try_into().ok())
            .map(u64::from_le_bytes)
            .unwrap_or(1);
        if start <= past {
            self.set_meta("next_op", &(past + 1).to_le_bytes())?;
        }
        // The block in hand, if any, is dropped: the next id comes after.
        self.block_end = self.next;
        Ok(())
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        if self.abandoned {
            return;
        }
        // Unwinding from a panic (a damaged file among the causes): the
        // journal is made durable, the database not touched again.
        if std::thread::panicking() {
            let _ = self.journal.file.sync_data();
            return;
        }
        if let Err(e) = self.sync() {
            tracing::error!(error = %e, "state store sync on close failed; the journal will be recovered");
            return;
        }
        // The database file as muster leaves it, closed (closing writes
        // to it): the next open need not check it whole.
        drop(self.db.take());
        if let Some(seal) = seal_of(&self.path) {
            let _ = std::fs::write(seal_path(&self.path), seal);
        }
    }
}

/// Writes this muster's format into META (and, for a new store, creates
/// the tables).
fn mark_format(db: &Database, new: bool) -> Result<(), redb::Error> {
    let w = db.begin_write()?;
    {
        let mut meta = w.open_table(META)?;
        meta.insert("format", FORMAT.as_bytes())?;
        if new {
            for t in [USERS, GROUPS, SEGMENTS] {
                w.open_table(t)?;
            }
        }
    }
    w.commit()?;
    Ok(())
}

/// What a redb error means for the store: a file redb finds corrupted is
/// damaged (no later run gets over it); any other failure is the
/// database's.
fn database_error(e: redb::Error) -> StoreErrorKind {
    match e {
        redb::Error::Corrupted(what) => StoreErrorKind::Damaged(format!(
            "the database file is corrupted ({what}); restore the store and its journal together from a backup"
        )),
        other => StoreErrorKind::Database(other.to_string()),
    }
}

/// A value of the META table.
fn meta_of(db: &Database, name: &str) -> Result<Option<Vec<u8>>, redb::Error> {
    let r = db.begin_read()?;
    let t = match r.open_table(META) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(t.get(name)?.map(|v| v.value().to_vec()))
}

/// A kind's place in per-kind arrays: its code in the journal.
fn kind_index(kind: ObjectKind) -> usize {
    usize::from(kind_code(kind))
}

#[cfg(test)]
mod tests {
    use super::journal::{frame, HEAD};
    use super::*;
    use crate::store::encode_pending;
    use crate::store::FieldHash;

    fn op(id: u64, key: &str, lms_id: Option<&str>) -> PendingOp {
        PendingOp {
            id,
            kind: ObjectKind::User,
            key: key.into(),
            action: Action::Create,
            invite: false,
            object: StoredObject {
                fingerprint: 7,
                active: true,
                invited: false,
                lms_id: lms_id.map(str::to_string),
                parent: None,
                fields: vec![FieldHash {
                    field: crate::model::Field::Email,
                    hash: 9,
                }],
                since: None,
                invite_due: false,
            },
        }
    }

    /// A journal left by a `muster-state/3` muster (begin records with
    /// their operation's id and field names spelled out) is read after the
    /// upgrade: its operations are pending, and committing them works.
    #[test]
    fn a_muster_state_3_journal_is_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        drop(RedbStore::open(&path).unwrap());
        let old = op(41, "k", None);
        let mut body = Vec::new();
        encode_pending(&old, &mut body);
        let mut record = Vec::new();
        frame(0, &mut record, old.id, |b| b.extend_from_slice(&body));
        std::fs::write(dir.path().join("s.redb.journal"), &record).unwrap();

        let mut store = RedbStore::open(&path).unwrap();
        assert_eq!(store.pending().unwrap(), vec![old.clone()]);
        // The sink gave it an id: the commit keeps the changed object.
        let acked = op(41, "k", Some("lms-1"));
        store.commit(std::slice::from_ref(&acked), &[]).unwrap();
        store.abandon();
        let store = RedbStore::open(&path).unwrap();
        assert!(store.pending().unwrap().is_empty());
        assert_eq!(
            store.get(ObjectKind::User, "k").unwrap(),
            Some(acked.object)
        );
    }

    /// An operation acknowledged as begun is committed by a record of a few
    /// bytes pointing at its begin record; one the sink changed (an LMS id)
    /// by a record holding the changed object. Both read back after a crash.
    #[test]
    fn commits_point_at_the_begun_object_unless_the_sink_changed_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let journal = dir.path().join("s.redb.journal");
        let mut store = RedbStore::open(&path).unwrap();
        let (a, b) = (op(1, "a", None), op(2, "b", None));
        store.begin(&[a.clone(), b.clone()]).unwrap();
        let begun = std::fs::metadata(&journal).unwrap().len();
        store.commit(std::slice::from_ref(&a), &[]).unwrap();
        let short = std::fs::metadata(&journal).unwrap().len() - begun;
        assert_eq!(short, HEAD + 9, "tag and operation id");
        let b_acked = op(2, "b", Some("lms-2"));
        store.commit(std::slice::from_ref(&b_acked), &[]).unwrap();
        store.abandon();
        let store = RedbStore::open(&path).unwrap();
        assert_eq!(store.get(ObjectKind::User, "a").unwrap(), Some(a.object));
        assert_eq!(
            store.get(ObjectKind::User, "b").unwrap(),
            Some(b_acked.object)
        );
        assert!(store.pending().unwrap().is_empty());
    }
}
