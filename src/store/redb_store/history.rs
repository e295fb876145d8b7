//! The run history in the store (SPEC §8): run id → the run's record, as
//! the pipeline encodes it (`pipeline::history`), the newest kept.

use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableError};

use super::RedbStore;
use crate::store::StoreError;

/// The run history: run id → the run's record (JSON).
const RUNS: TableDefinition<u64, &[u8]> = TableDefinition::new("runs");

impl RedbStore {
    /// Adds a run's record to the history, keeping the `keep` newest;
    /// `record` is given the run's id (one more than the last).
    pub fn push_run(
        &mut self,
        keep: usize,
        record: impl FnOnce(u64) -> Vec<u8>,
    ) -> Result<u64, StoreError> {
        let w = self.db().begin_write().map_err(|e| self.err(e))?;
        let id = {
            let mut t = w.open_table(RUNS).map_err(|e| self.err(e))?;
            let last = t.last().map_err(|e| self.err(e))?.map(|(k, _)| k.value());
            let id = last.map_or(1, |l| l + 1);
            t.insert(id, record(id).as_slice())
                .map_err(|e| self.err(e))?;
            let oldest_kept = id.saturating_sub(keep.max(1) as u64 - 1);
            t.retain_in(..oldest_kept, |_, _| false)
                .map_err(|e| self.err(e))?;
            id
        };
        w.commit().map_err(|e| self.err(e))?;
        Ok(id)
    }

    /// The run history's records, newest first, at most `limit`.
    pub fn runs(&self, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        let r = self.db().begin_read().map_err(|e| self.err(e))?;
        let t = match r.open_table(RUNS) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.err(e)),
        };
        let mut out = Vec::new();
        for entry in t.iter().map_err(|e| self.err(e))?.rev().take(limit) {
            let (_, v) = entry.map_err(|e| self.err(e))?;
            out.push(v.value().to_vec());
        }
        Ok(out)
    }
}
