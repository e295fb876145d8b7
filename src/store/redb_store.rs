//! The state store on disk, in one redb file.

use std::path::{Path, PathBuf};

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableError,
};

use super::{
    decode_object, decode_pending, decode_prior, encode_object, encode_pending, PendingOp,
    StateStore, StoreError, StoredObject, FORMAT,
};
use crate::diff::{MemoryPrior, PriorEntry};
use crate::plan::Action;
use crate::profile::ObjectKind;

const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
const GROUPS: TableDefinition<&str, &[u8]> = TableDefinition::new("groups");
const SEGMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("segments");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const PENDING: TableDefinition<u64, &[u8]> = TableDefinition::new("pending");

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
    /// Operation ids handed out from a reserved block: `next..block_end`.
    next: u64,
    block_end: u64,
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
        let store = RedbStore {
            db,
            path: path.to_path_buf(),
            next: 0,
            block_end: 0,
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
                    w.open_table(PENDING).map_err(|e| err(&e))?;
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
        Ok(prior)
    }

    fn get(&self, kind: ObjectKind, key: &str) -> Result<Option<StoredObject>, StoreError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(objects(kind)).map_err(|e| self.err(e))?;
        let Some(v) = t.get(key).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        decode_object(v.value())
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
        self.set_meta(
            &format!("records/{}", kind.as_str()),
            &records.to_le_bytes(),
        )
    }

    fn begin(&mut self, ops: &[PendingOp]) -> Result<(), StoreError> {
        let w = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = w.open_table(PENDING).map_err(|e| self.err(e))?;
            for op in ops {
                t.insert(op.id, encode_pending(op).as_slice())
                    .map_err(|e| self.err(e))?;
            }
        }
        w.commit().map_err(|e| self.err(e))
    }

    fn commit(&mut self, acked: &[PendingOp], dropped: &[u64]) -> Result<(), StoreError> {
        let w = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut pending = w.open_table(PENDING).map_err(|e| self.err(e))?;
            let mut buf = Vec::new();
            for kind in [ObjectKind::Group, ObjectKind::Segment, ObjectKind::User] {
                let mut t = w.open_table(objects(kind)).map_err(|e| self.err(e))?;
                for op in acked.iter().filter(|op| op.kind == kind) {
                    if op.action == Action::Delete {
                        t.remove(op.key.as_str()).map_err(|e| self.err(e))?;
                    } else {
                        buf.clear();
                        encode_object(&op.object, &mut buf);
                        t.insert(op.key.as_str(), buf.as_slice())
                            .map_err(|e| self.err(e))?;
                    }
                }
            }
            for id in acked.iter().map(|op| op.id).chain(dropped.iter().copied()) {
                pending.remove(id).map_err(|e| self.err(e))?;
            }
        }
        w.commit().map_err(|e| self.err(e))
    }

    fn pending(&self) -> Result<Vec<PendingOp>, StoreError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(PENDING).map_err(|e| self.err(e))?;
        let mut ops = Vec::new();
        for item in t.iter().map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            ops.push(
                decode_pending(k.value(), v.value())
                    .ok_or_else(|| self.err(format!("corrupt journal entry {}", k.value())))?,
            );
        }
        Ok(ops)
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
