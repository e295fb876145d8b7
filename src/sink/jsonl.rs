//! The JSONL outbox: one applied operation per line, appended and synced to
//! disk before it is acknowledged. The embedded default sink, for demos and
//! for services that consume the changes themselves.
//!
//! Format (one JSON object per line, keys in this order):
//!
//! ```text
//! {"op":17,"kind":"user","action":"create","key":"E1","fields":{"first_name":"Anna"},"invite":true}
//! {"op":18,"kind":"user","action":"update","key":"E1","fields":{"groups":["G1","G2"]}}
//! ```
//!
//! `op` is unique across runs (muster's idempotency key); `fields` holds
//! what the file states — every field for a create, the changed ones for an
//! update, none for a deactivation or a deletion; `invite` appears (true)
//! only on a create that invites. A user's links (`manager_id`, `groups`,
//! `admin_groups`, `segments`) come in a second wave, as an update of those
//! fields alone once every user of the file is written. Nothing else is
//! written: no secrets, no configuration.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{Ack, Operation, Sink, SinkError, Value};
use crate::profile::FieldName;
use crate::store::PendingOp;

pub struct JsonlOutbox {
    path: PathBuf,
    file: File,
    line: Vec<u8>,
}

impl JsonlOutbox {
    /// Opens the outbox for appending. A last line without its newline is
    /// the trace of a write a crash interrupted, never acknowledged: it is
    /// cut off.
    pub fn open(path: &Path) -> Result<JsonlOutbox, SinkError> {
        let err = |e: std::io::Error| SinkError {
            sink: path.display().to_string(),
            message: e.to_string(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(err)?;
        let len = file.metadata().map_err(err)?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1)).map_err(err)?;
            std::io::Read::read_exact(&mut file, &mut last).map_err(err)?;
            if last[0] != b'\n' {
                let text = std::fs::read(path).map_err(err)?;
                let keep = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                file.set_len(keep as u64).map_err(err)?;
                file.sync_data().map_err(err)?;
            }
        }
        Ok(JsonlOutbox {
            path: path.to_path_buf(),
            file,
            line: Vec::with_capacity(512),
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> SinkError {
        SinkError {
            sink: self.path.display().to_string(),
            message: e.to_string(),
        }
    }
}

#[derive(serde::Serialize)]
struct Line<'a> {
    op: u64,
    kind: crate::profile::ObjectKind,
    action: crate::plan::Action,
    key: &'a str,
    fields: Fields<'a>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    invite: bool,
}

/// An operation's fields as a JSON object, keys in order (a name given
/// twice keeps its last value), written straight from the operation.
struct Fields<'a>(&'a [(FieldName, Value)]);

impl serde::Serialize for Fields<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut order: Vec<&(FieldName, Value)> = self.0.iter().collect();
        // Stable: of equal names, the last given comes last.
        order.sort_by(|a, b| a.0.cmp(b.0));
        order.dedup_by(|later, earlier| {
            let same = later.0 == earlier.0;
            if same {
                *earlier = *later;
            }
            same
        });
        let mut map = s.serialize_map(Some(order.len()))?;
        for (name, value) in order {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl Sink for JsonlOutbox {
    fn apply(&mut self, batch: &[Operation]) -> Result<Vec<Ack>, SinkError> {
        let mut out = Vec::with_capacity(batch.len() * 200);
        for op in batch {
            let line = Line {
                op: op.op,
                kind: op.kind,
                action: op.action,
                key: &op.key,
                fields: Fields(&op.fields),
                invite: op.invite,
            };
            self.line.clear();
            serde_json::to_writer(&mut self.line, &line).map_err(|e| self.err(e))?;
            out.extend_from_slice(&self.line);
            out.push(b'\n');
        }
        self.file.write_all(&out).map_err(|e| self.err(e))?;
        self.file.sync_data().map_err(|e| self.err(e))?;
        Ok(vec![Ack::APPLIED; batch.len()])
    }

    fn recover(&mut self, pending: &[PendingOp]) -> Result<Vec<u64>, SinkError> {
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: ahash::AHashSet<u64> = pending.iter().map(|p| p.id).collect();
        let mut found = Vec::new();
        let reader = BufReader::new(File::open(&self.path).map_err(|e| self.err(e))?);
        for line in reader.split(b'\n') {
            let line = line.map_err(|e| self.err(e))?;
            // Every line starts `{"op":N,`.
            let id = line
                .strip_prefix(b"{\"op\":")
                .and_then(|rest| rest.iter().position(|&b| b == b',').map(|end| &rest[..end]))
                .and_then(|n| std::str::from_utf8(n).ok()?.parse::<u64>().ok());
            if let Some(id) = id.filter(|id| wanted.contains(id)) {
                found.push(id);
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::{FieldName, Fields, Value};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        /// Keys in name order, a name given twice keeping its last value,
        /// whether the fields come sorted or not: as a map filled in order
        /// would serialise them.
        #[test]
        fn fields_serialise_as_a_map_filled_in_order(
            fields in proptest::collection::vec(("[abc]{1,2}", "[xy]{0,2}"), 0..8),
            sorted in any::<bool>(),
        ) {
            let mut fields: Vec<(FieldName, Value)> =
                fields.into_iter().map(|(k, v)| (crate::profile::field_name(&k), Value::Text(v))).collect();
            if sorted {
                fields.sort_by(|a, b| a.0.cmp(b.0));
                fields.dedup_by(|a, b| a.0 == b.0);
            }
            let oracle: BTreeMap<&str, &Value> =
                fields.iter().map(|(k, v)| (&**k, v)).collect();
            prop_assert_eq!(
                serde_json::to_string(&Fields(&fields)).unwrap(),
                serde_json::to_string(&oracle).unwrap()
            );
        }
    }
}
