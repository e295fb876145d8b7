//! The state store on disk: one redb file and its journal.
//!
//! Writes in flight are journalled in `<store>.journal`, an append-only
//! file (one sequential write and one fsync per batch): [`StateStore::begin`]
//! appends, [`StateStore::commit`] only buffers the acknowledged objects in
//! memory. Every [`CHECKPOINT_OPS`] operations, at the end of each file and
//! when the store is dropped, a checkpoint writes the buffer to redb in one
//! transaction and rewrites the journal to what is still in flight. After a
//! crash the journal holds every operation since the last checkpoint — those
//! the LMS acknowledged and those it never got alike — and recovery asks the
//! sink which is which. One redb transaction per checkpoint instead of two
//! per batch is what makes a first import of a million users affordable.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ahash::AHashMap;

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableError,
};

use super::{
    decode_pending, decode_prior, decode_stored, encode_pending, encode_stored, FieldNames,
    PendingOp, StateStore, StoreError, StoredObject, FORMAT,
};
use crate::diff::{MemoryPrior, PriorEntry};
use crate::plan::Action;
use crate::profile::ObjectKind;

const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
const GROUPS: TableDefinition<&str, &[u8]> = TableDefinition::new("groups");
const SEGMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("segments");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Acknowledged operations buffered before a checkpoint (kept encoded:
/// 50k of them peaked at 288 MB in a first import, 50k `PendingOp`s at
/// 315 MB). Fewer, larger checkpoints copy fewer B-tree pages: a
/// first import of 1M users took 35.8 s at 50k, 32.5 s at 100k and 27.8 s
/// at 200k, peaking at 288, 312 and 363 MB (BENCHMARKS.md).
pub const CHECKPOINT_OPS: usize = 100_000;

fn objects(kind: ObjectKind) -> TableDefinition<'static, &'static str, &'static [u8]> {
    match kind {
        ObjectKind::User => USERS,
        ObjectKind::Group => GROUPS,
        ObjectKind::Segment => SEGMENTS,
    }
}

/// The state store in a redb file.
pub struct RedbStore {
    db: Database,
    path: PathBuf,
    journal_path: PathBuf,
    journal: File,
    /// Begun, neither committed nor dropped.
    in_flight: BTreeMap<u64, PendingOp>,
    /// Acknowledged, not yet in redb; `latest` finds a key's last entry.
    buffer: Vec<Buffered>,
    latest: AHashMap<(u8, String), usize>,
    /// Operation ids handed out from a reserved block: `next..block_end`.
    next: u64,
    block_end: u64,
    /// The field names objects refer to (META `field_names`).
    names: FieldNames,
}

/// An acknowledged write waiting for the next checkpoint, as the table
/// will hold it: a fraction of the memory of its [`PendingOp`], so a
/// checkpoint can gather many.
#[derive(Debug)]
struct Buffered {
    kind: ObjectKind,
    key: String,
    /// The object as `encode_stored` writes it; `None` for a delete.
    value: Option<Vec<u8>>,
}

/// redb's page cache.
const CACHE_BYTES: usize = 64 << 20;

/// Operation ids reserved per store write.
const ID_BLOCK: u64 = 1 << 16;

impl RedbStore {
    /// Opens (or creates) the store at `path`. A file written in another
    /// format is refused.
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        let err = |e: &dyn std::fmt::Display| StoreError {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
        }
        // A bounded page cache: the store is read mostly once per run (the
        // prior), so a large cache only grows the process.
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| err(&e))?;
        let journal_path = PathBuf::from(format!("{}.journal", path.display()));
        let in_flight = read_journal(&journal_path).map_err(|e| err(&e))?;
        let journal = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&journal_path)
            .map_err(|e| err(&e))?;
        let store = RedbStore {
            db,
            path: path.to_path_buf(),
            journal_path,
            journal,
            in_flight,
            buffer: Vec::new(),
            latest: AHashMap::new(),
            next: 0,
            block_end: 0,
            names: FieldNames::default(),
        };
        let format = store.meta("format")?;
        match format {
            None => {
                let w = store.db.begin_write().map_err(|e| err(&e))?;
                {
                    let mut meta = w.open_table(META).map_err(|e| err(&e))?;
                    meta.insert("format", FORMAT.as_bytes()).map_err(|e| err(&e))?;
                    for t in [USERS, GROUPS, SEGMENTS] {
                        w.open_table(t).map_err(|e| err(&e))?;
                    }
                }
                w.commit().map_err(|e| err(&e))?;
            }
            Some(f) if f == FORMAT.as_bytes() => {}
            Some(f) => {
                return Err(err(&format!(
                    "written in format {:?}; this muster reads {FORMAT} (use the muster version that wrote it, or start a new store)",
                    String::from_utf8_lossy(&f)
                )))
            }
        }
        let mut store = store;
        if let Some(bytes) = store.meta("field_names")? {
            store.names = FieldNames::decode(&bytes)
                .ok_or_else(|| err(&"corrupt list of field names (meta field_names)"))?;
        }
        Ok(store)
    }

    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError {
            path: self.path.display().to_string(),
            message: e.to_string(),
        }
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = match r.open_table(META) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.err(e)),
        };
        Ok(t.get(name)
            .map_err(|e| self.err(e))?
            .map(|v| v.value().to_vec()))
    }

    /// The processed name of an earlier file with the same content (its
    /// xxh3-128 hash), if one was processed: the same file is never
    /// processed twice, even when a crash left it in the inbox.
    pub fn seen_content(&self, hash: u128) -> Result<Option<String>, StoreError> {
        Ok(self
            .meta(&format!("content/{hash:032x}"))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Records that the file with this content was processed as `name`.
    pub fn remember_content(&mut self, hash: u128, name: &str) -> Result<(), StoreError> {
        self.set_meta(&format!("content/{hash:032x}"), name.as_bytes())
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
        let w = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = w.open_table(META).map_err(|e| self.err(e))?;
            t.insert(name, value).map_err(|e| self.err(e))?;
        }
        w.commit().map_err(|e| self.err(e))
    }
}

impl StateStore for RedbStore {
    fn prior(&self, kind: ObjectKind) -> Result<MemoryPrior, StoreError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(objects(kind)).map_err(|e| self.err(e))?;
        let mut prior = MemoryPrior::new();
        prior.reserve(t.len().map_err(|e| self.err(e))? as usize);
        for item in t.iter().map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let (fingerprint, active) = decode_prior(v.value())
                .ok_or_else(|| self.err(format!("corrupt entry for key {:?}", k.value())))?;
            prior.insert(
                k.value(),
                PriorEntry {
                    fingerprint,
                    active,
                },
            );
        }
        // Acknowledged writes not yet checkpointed.
        for op in self.buffer.iter().filter(|op| op.kind == kind) {
            match op.value.as_deref().map(decode_prior) {
                None => prior.remove(&op.key),
                Some(Some((fingerprint, active))) => prior.insert(
                    &op.key,
                    PriorEntry {
                        fingerprint,
                        active,
                    },
                ),
                Some(None) => {
                    return Err(self.err(format!("corrupt buffered entry for key {:?}", op.key)))
                }
            }
        }
        Ok(prior)
    }

    fn get(&self, kind: ObjectKind, key: &str) -> Result<Option<StoredObject>, StoreError> {
        if let Some(&i) = self.latest.get(&(kind_byte(kind), key.to_string())) {
            return match &self.buffer[i].value {
                None => Ok(None),
                Some(v) => decode_stored(v, &self.names)
                    .map(Some)
                    .ok_or_else(|| self.err(format!("corrupt buffered entry for key {key:?}"))),
            };
        }
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(objects(kind)).map_err(|e| self.err(e))?;
        let Some(v) = t.get(key).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        decode_stored(v.value(), &self.names)
            .map(Some)
            .ok_or_else(|| self.err(format!("corrupt entry for key {key:?}")))
    }

    fn last_records(&self, kind: ObjectKind) -> Result<Option<u64>, StoreError> {
        Ok(self
            .meta(&format!("records/{}", kind.as_str()))?
            .and_then(|v| v.try_into().ok())
            .map(u64::from_le_bytes))
    }

    fn set_last_records(&mut self, kind: ObjectKind, records: u64) -> Result<(), StoreError> {
        self.checkpoint()?;
        self.set_meta(
            &format!("records/{}", kind.as_str()),
            &records.to_le_bytes(),
        )
    }

    fn begin(&mut self, ops: &[PendingOp]) -> Result<(), StoreError> {
        let mut out = Vec::new();
        for op in ops {
            append_record(&mut out, op);
        }
        self.journal.write_all(&out).map_err(|e| self.err(e))?;
        self.journal.sync_data().map_err(|e| self.err(e))?;
        for op in ops {
            self.in_flight.insert(op.id, op.clone());
        }
        Ok(())
    }

    fn commit(&mut self, acked: &[PendingOp], dropped: &[u64]) -> Result<(), StoreError> {
        for op in acked {
            self.in_flight.remove(&op.id);
            self.latest
                .insert((kind_byte(op.kind), op.key.clone()), self.buffer.len());
            let value = (op.action != Action::Delete).then(|| {
                let mut v = Vec::new();
                encode_stored(&op.object, &mut self.names, &mut v);
                v
            });
            self.buffer.push(Buffered {
                kind: op.kind,
                key: op.key.clone(),
                value,
            });
        }
        for id in dropped {
            self.in_flight.remove(id);
        }
        if self.buffer.len() >= CHECKPOINT_OPS {
            self.checkpoint()?;
        }
        Ok(())
    }

    fn pending(&self) -> Result<Vec<PendingOp>, StoreError> {
        Ok(self.in_flight.values().cloned().collect())
    }

    fn checkpoint(&mut self) -> Result<(), StoreError> {
        if !self.buffer.is_empty() {
            let w = self.db.begin_write().map_err(|e| self.err(e))?;
            {
                // In key order, and only each key's last operation: the
                // B-tree's pages are then visited once each, front to back,
                // instead of one random page per operation (measured: see
                // BENCHMARKS.md, `muster run`).
                let mut order: Vec<usize> = (0..self.buffer.len()).collect();
                let buffer = &self.buffer;
                order.sort_by(|&a, &b| {
                    let (x, y) = (&buffer[a], &buffer[b]);
                    (x.kind, x.key.as_str(), a).cmp(&(y.kind, y.key.as_str(), b))
                });
                order.dedup_by(|later, earlier| {
                    let (x, y) = (&buffer[*later], &buffer[*earlier]);
                    if x.kind == y.kind && x.key == y.key {
                        // Keep the later operation in the earlier's place.
                        *earlier = *later;
                        true
                    } else {
                        false
                    }
                });
                for kind in [ObjectKind::Group, ObjectKind::Segment, ObjectKind::User] {
                    let mut t = w.open_table(objects(kind)).map_err(|e| self.err(e))?;
                    for op in order
                        .iter()
                        .map(|&i| &buffer[i])
                        .filter(|op| op.kind == kind)
                    {
                        match &op.value {
                            None => t.remove(op.key.as_str()).map(|_| ()),
                            Some(v) => t.insert(op.key.as_str(), v.as_slice()).map(|_| ()),
                        }
                        .map_err(|e| self.err(e))?;
                    }
                }
                // New field names go in the same transaction as the
                // objects that use them.
                if self.names.unsaved {
                    let mut meta = w.open_table(META).map_err(|e| self.err(e))?;
                    meta.insert("field_names", self.names.encode().as_slice())
                        .map_err(|e| self.err(e))?;
                }
            }
            w.commit().map_err(|e| self.err(e))?;
            self.names.unsaved = false;
            self.buffer.clear();
            self.latest.clear();
        }
        // The journal keeps only what is still in flight.
        let mut out = Vec::new();
        for op in self.in_flight.values() {
            append_record(&mut out, op);
        }
        let tmp = self.journal_path.with_extension("journal.tmp");
        let mut f = File::create(&tmp).map_err(|e| self.err(e))?;
        f.write_all(&out).map_err(|e| self.err(e))?;
        f.sync_all().map_err(|e| self.err(e))?;
        std::fs::rename(&tmp, &self.journal_path).map_err(|e| self.err(e))?;
        self.journal = OpenOptions::new()
            .append(true)
            .open(&self.journal_path)
            .map_err(|e| self.err(e))?;
        Ok(())
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
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        if let Err(e) = self.checkpoint() {
            tracing::error!(error = %e, "state store checkpoint on close failed; the journal will be recovered");
        }
    }
}

fn kind_byte(kind: ObjectKind) -> u8 {
    kind as u8
}

/// A journal record: id, length, encoded operation.
fn append_record(out: &mut Vec<u8>, op: &PendingOp) {
    let body = encode_pending(op);
    out.extend_from_slice(&op.id.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
}

/// The journal's records; a torn last record (a crash mid-append) was never
/// acknowledged to anyone and is ignored.
fn read_journal(path: &Path) -> std::io::Result<BTreeMap<u64, PendingOp>> {
    let mut ops = BTreeMap::new();
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ops),
        Err(e) => return Err(e),
    }
    let mut rest = &bytes[..];
    while rest.len() >= 12 {
        let id = u64::from_le_bytes(rest[..8].try_into().unwrap_or_default());
        let len = u32::from_le_bytes(rest[8..12].try_into().unwrap_or_default()) as usize;
        if rest.len() < 12 + len {
            break;
        }
        match decode_pending(id, &rest[12..12 + len]) {
            Some(op) => {
                ops.insert(id, op);
            }
            None => break,
        }
        rest = &rest[12 + len..];
    }
    Ok(ops)
}
