//! The last step of the per-row decision: updates settled field by field.
//!
//! A row's fingerprint moving makes it an update; which of its fields
//! changed is asked of the few rows that did: each is read again from the
//! file's snapshot, its field hashes compared with those applied last time.
//! None changed (a field only the old row had, or one emptied where the
//! profile keeps it) makes the row `unchanged`. This happens before the
//! guards and before any write, so the results of a held file, a dry run
//! and a run say the same, and the write pass only builds what was decided.

use std::io::{Read, Seek};

use crate::diff::{changed_fields, Fingerprinter};
use crate::profile::{MappedRow, Profile};
use crate::reader::Record;
use crate::snapshot::{FileError, RecordsAt};
use crate::store::FieldHash;

use super::Plan;

/// Update rows settled at a time: their field hashes are in memory together.
const CHUNK: usize = 4096;

/// Why updates could not be settled.
#[derive(Debug, thiserror::Error)]
pub enum SettleError<E> {
    /// The file could not be read again.
    #[error(transparent)]
    File(FileError),
    /// A record read again is not what its row was planned from: the file
    /// changed under the run (`line` is where that record starts).
    #[error("line {line} is not what was planned from: the file changed while it was being run")]
    Changed { line: u64 },
    /// What was applied could not be looked up.
    #[error(transparent)]
    Applied(E),
}

impl Plan {
    /// Settles every update row of the plan, reading its record again from
    /// `file` (the snapshot the plan was read from) and comparing its
    /// field hashes with what `applied(keys)` says was applied for each of
    /// `keys`. A few thousand rows at a time: their records are read and
    /// hashed on one thread while `applied` is asked on another.
    pub fn settle_updates<R: Read + Seek + Send, E: Send>(
        &mut self,
        profile: &Profile,
        file: R,
        mut applied: impl FnMut(&[&str]) -> Result<Vec<Option<Vec<FieldHash>>>, E> + Send,
    ) -> Result<(), SettleError<E>> {
        let rows: Vec<usize> = self.update_rows().collect();
        if rows.is_empty() {
            return Ok(());
        }
        // Seek to each when they are few; read on through the file when
        // they are many.
        let seek = rows.len() * 16 < self.records as usize;
        let mut file = RecordsAt::open(profile, file, seek).map_err(SettleError::File)?;
        let layout = file.layout().clone();
        let mut fingerprinter = Fingerprinter::new(profile);
        let (mut rec, mut row) = (Record::new(), MappedRow::new());
        for chunk in rows.chunks(CHUNK) {
            let plan = &*self;
            let keys: Vec<&str> = chunk
                .iter()
                .map(|&i| plan.row(i).key.unwrap_or_default())
                .collect();
            let hash_chunk = || -> Result<Vec<Vec<FieldHash>>, SettleError<E>> {
                let mut hashed = Vec::with_capacity(chunk.len());
                for &i in chunk {
                    let found = file
                        .read_at(plan.record_start(i), &mut rec)
                        .map_err(SettleError::File)?;
                    let same = found
                        && profile.map(&rec, &layout, &mut row).is_ok()
                        && fingerprinter.fingerprint(&row) == plan.fingerprint(i);
                    if !same {
                        let line = plan.row(i).line;
                        return Err(SettleError::Changed { line });
                    }
                    hashed.push(fingerprinter.field_hashes(&row));
                }
                Ok(hashed)
            };
            let (olds, hashed) = rayon::join(|| applied(&keys), hash_chunk);
            let olds = olds.map_err(SettleError::Applied)?;
            let changes: Vec<_> = hashed?
                .into_iter()
                .zip(olds)
                .map(|(new, old)| match old {
                    Some(old) => changed_fields(&old, &new),
                    None => new.iter().map(|h| h.field).collect(),
                })
                .collect();
            for (&i, changed) in chunk.iter().zip(changes) {
                self.resolve_update(i, changed);
            }
        }
        Ok(())
    }
}
