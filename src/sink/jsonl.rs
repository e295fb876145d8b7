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
//! only on a write that invites (a create, or the update of a user whose
//! `invite_from` date came), and `reactivate` (true) only on an update that
//! makes a deactivated object active again. A user's links (`manager_id`, `groups`,
//! `admin_groups`, `segments`) come in a second wave, as an update of those
//! fields alone once every user of the file is written. Nothing else is
//! written: no secrets, no configuration.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{Ack, Found, Inventory, Operation, Sink, SinkError, SinkErrorKind, Value};
use crate::model::{field_name, Action, Field, FieldName, ObjectKind};
use crate::store::PendingOp;

pub struct JsonlOutbox {
    path: PathBuf,
    file: File,
}

impl JsonlOutbox {
    /// Opens the outbox for appending. A last line without its newline is
    /// the trace of a write a crash interrupted, never acknowledged: it is
    /// cut off.
    pub fn open(path: &Path) -> Result<JsonlOutbox, SinkError> {
        let err = |e| SinkError::new(path.display().to_string(), SinkErrorKind::Io(e));
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
        })
    }

    fn err(&self, e: std::io::Error) -> SinkError {
        SinkError::new(self.path.display().to_string(), SinkErrorKind::Io(e))
    }
}

/// Appends `op` as one outbox line (without its newline): the object
/// serde_json makes of `{op, kind, action, key, fields, invite}` (fields
/// in name order, a name given twice keeping its last value; on a create,
/// empty fields left out, as the SCIM sink leaves them out; `invite` only
/// when true), written by hand because serde's walk and escaper were the
/// outbox thread's largest cost on a first import (see BENCHMARKS.md). The
/// property test below holds it to serde_json byte for byte.
fn write_line(out: &mut Vec<u8>, op: &Operation, order: &mut Vec<usize>) {
    out.extend_from_slice(b"{\"op\":");
    out.extend_from_slice(itoa::Buffer::new().format(op.op).as_bytes());
    out.extend_from_slice(b",\"kind\":");
    write_str(out, op.kind.as_str());
    out.extend_from_slice(b",\"action\":");
    write_str(out, op.action.as_str());
    out.extend_from_slice(b",\"key\":");
    write_str(out, &op.key);
    out.extend_from_slice(b",\"fields\":{");
    // Stable: of equal names, the last given comes last and wins.
    let fields = &op.fields;
    order.clear();
    order.extend(0..fields.len());
    if !fields.windows(2).all(|w| w[0].0 < w[1].0) {
        order.sort_by(|&a, &b| fields[a].0.cmp(&fields[b].0));
        order.dedup_by(|later, earlier| {
            let same = fields[*later].0 == fields[*earlier].0;
            if same {
                *earlier = *later;
            }
            same
        });
    }
    // A create sets what it has: an empty field is no value to send.
    let create = op.action == Action::Create;
    let mut first = true;
    for &i in order.iter() {
        let (field, value) = &fields[i];
        if create && value.is_empty() {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        write_str(out, field.as_str());
        out.push(b':');
        match value {
            Value::Text(t) => write_str(out, t),
            Value::List(items) => {
                out.push(b'[');
                for (k, item) in items.iter().enumerate() {
                    if k > 0 {
                        out.push(b',');
                    }
                    write_str(out, item);
                }
                out.push(b']');
            }
        }
    }
    out.push(b'}');
    if op.invite {
        out.extend_from_slice(b",\"invite\":true");
    }
    if op.reactivate {
        out.extend_from_slice(b",\"reactivate\":true");
    }
    out.push(b'}');
}

/// Appends `s` as a JSON string, escaped as serde_json escapes: `"` and
/// `\` with a backslash, the control characters U+0000–U+001F as `\b`,
/// `\t`, `\n`, `\f`, `\r` or `\u00XX` (lower-case hex), every other
/// character as it is.
fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.push(b'"');
    // One comparison a byte without an early exit (vector code): a string
    // with nothing to escape, nearly every one, is copied whole.
    let plain = !bytes.iter().fold(false, |any, &b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if plain {
        out.extend_from_slice(bytes);
    } else {
        let mut from = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let escape: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                0x08 => b"\\b",
                b'\t' => b"\\t",
                b'\n' => b"\\n",
                0x0c => b"\\f",
                b'\r' => b"\\r",
                0..=0x1f => &[],
                _ => continue,
            };
            out.extend_from_slice(&bytes[from..i]);
            if escape.is_empty() {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.extend_from_slice(&[HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]);
            } else {
                out.extend_from_slice(escape);
            }
            from = i + 1;
        }
        out.extend_from_slice(&bytes[from..]);
    }
    out.push(b'"');
}

impl Sink for JsonlOutbox {
    fn apply(&mut self, batch: &[Operation]) -> Result<Vec<Ack>, SinkError> {
        let mut out = Vec::with_capacity(batch.len() * 320);
        let mut order = Vec::new();
        for op in batch {
            write_line(&mut out, op, &mut order);
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

    fn inventory(&mut self) -> Result<Inventory, SinkError> {
        self.replay()
    }
}

/// One outbox line as [`JsonlOutbox::inventory`] reads it back.
#[derive(serde::Deserialize)]
struct Line {
    op: u64,
    kind: ObjectKind,
    action: String,
    key: String,
    #[serde(default)]
    fields: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    invite: bool,
}

/// An object as the outbox's lines so far leave it.
struct Replayed {
    fields: std::collections::BTreeMap<FieldName, Value>,
    active: bool,
    invited: bool,
}

impl JsonlOutbox {
    /// The outbox's lines replayed in order, each object as the last line
    /// naming it left it: a create starts it anew, an update sets the
    /// fields it names, a deactivation marks it inactive, a deletion
    /// forgets it. The status field, when written, says whether an update
    /// leaves the user active, as it did when the run wrote it.
    fn replay(&self) -> Result<Inventory, SinkError> {
        let mut objects: ahash::AHashMap<(ObjectKind, String), Replayed> = Default::default();
        let mut last_op = 0;
        let reader = BufReader::new(File::open(&self.path).map_err(|e| self.err(e))?);
        for (n, line) in reader.split(b'\n').enumerate() {
            let line = line.map_err(|e| self.err(e))?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let damaged = |why: String| {
                SinkError::new(
                    self.path.display().to_string(),
                    SinkErrorKind::Other(format!("line {}: {why}", n + 1)),
                )
            };
            let line: Line = serde_json::from_slice(&line)
                .map_err(|e| damaged(format!("not an outbox line ({e})")))?;
            last_op = last_op.max(line.op);
            let id = (line.kind, line.key);
            let mut fields = std::collections::BTreeMap::new();
            for (name, value) in line.fields {
                let value = match value {
                    serde_json::Value::String(t) => Value::Text(t),
                    serde_json::Value::Array(items) => Value::List(
                        items
                            .into_iter()
                            .map(|i| i.as_str().map(str::to_string))
                            .collect::<Option<_>>()
                            .ok_or_else(|| {
                                damaged(format!("field {name}: a list of non-strings"))
                            })?,
                    ),
                    _ => return Err(damaged(format!("field {name}: neither text nor a list"))),
                };
                fields.insert(field_name(&name), value);
            }
            match line.action.as_str() {
                "create" => {
                    objects.insert(
                        id,
                        Replayed {
                            fields,
                            active: true,
                            invited: line.invite,
                        },
                    );
                }
                "update" | "deactivate" => {
                    let deactivate = line.action == "deactivate";
                    let o = objects.entry(id).or_insert(Replayed {
                        fields: Default::default(),
                        active: true,
                        invited: false,
                    });
                    o.fields.extend(fields);
                    o.invited |= line.invite;
                    o.active = !deactivate
                        && o.fields.get(&Field::Status) != Some(&Value::Text("inactive".into()));
                }
                "delete" => {
                    objects.remove(&id);
                }
                other => return Err(damaged(format!("unknown action {other:?}"))),
            }
        }
        let mut objects: Vec<Found> = objects
            .into_iter()
            .map(|((kind, key), o)| {
                let parent = match o.fields.get(&Field::ParentId) {
                    Some(Value::Text(p)) if !p.is_empty() => Some(p.clone()),
                    _ => None,
                };
                Found {
                    kind,
                    key,
                    lms_id: None,
                    active: o.active,
                    invited: o.invited,
                    parent,
                    fields: Some(o.fields.into_iter().collect()),
                }
            })
            .collect();
        objects.sort_by(|a, b| (a.kind, &a.key).cmp(&(b.kind, &b.key)));
        Ok(Inventory { objects, last_op })
    }
}

#[cfg(test)]
mod tests {
    use super::{write_line, Operation, Value};
    use crate::model::{Action, FieldName, ObjectKind};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// The line as serde_json writes it: the oracle.
    #[derive(serde::Serialize)]
    struct Line<'a> {
        op: u64,
        kind: ObjectKind,
        action: Action,
        key: &'a str,
        fields: BTreeMap<&'a str, &'a Value>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        invite: bool,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        reactivate: bool,
    }

    /// Any text, with the characters JSON escapes (quotes, backslashes,
    /// every control character) and some beyond ASCII often among them.
    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just('"'),
                Just('\\'),
                (0u32..0x20).prop_map(|c| char::from_u32(c).unwrap_or('a')),
                Just('\u{7f}'),
                Just('é'),
                Just('😀'),
                any::<char>(),
                "[a-z]".prop_map(|s| s.chars().next().unwrap_or('a')),
            ],
            0..12,
        )
        .prop_map(|cs| cs.into_iter().collect())
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            text().prop_map(Value::Text),
            proptest::collection::vec(text(), 0..4).prop_map(Value::List),
        ]
    }

    proptest! {
        /// Every line is what serde_json makes of the same operation, a map
        /// filled in order standing for the fields (keys in name order, a
        /// name given twice keeping its last value), whether the fields
        /// come sorted or not.
        #[test]
        fn a_line_is_what_serde_json_writes(
            op in any::<u64>(),
            kind in prop_oneof![Just(ObjectKind::User), Just(ObjectKind::Group), Just(ObjectKind::Segment)],
            action in proptest::sample::select(Action::ALL.to_vec()),
            key in text(),
            fields in proptest::collection::vec(("[abc]{1,2}", value()), 0..8),
            sorted in any::<bool>(),
            invite in any::<bool>(),
            reactivate in any::<bool>(),
        ) {
            let mut fields: Vec<(FieldName, Value)> = fields
                .into_iter()
                .map(|(k, v)| (crate::profile::field_name(&k), v))
                .collect();
            if sorted {
                fields.sort_by_key(|a| a.0);
                fields.dedup_by(|a, b| a.0 == b.0);
            }
            let mut oracle = Line {
                op,
                kind,
                action,
                key: &key,
                fields: fields.iter().map(|(k, v)| (k.as_str(), v)).collect(),
                invite,
                reactivate,
            };
            if action == Action::Create {
                oracle.fields.retain(|_, v| !v.is_empty());
            }
            let operation = Operation {
                op,
                kind,
                action,
                key: key.clone(),
                fields: fields.clone(),
                invite,
                reactivate,
                lms_id: None,
                ids: Vec::new(),
                fresh: false,
            };
            let mut line = Vec::new();
            write_line(&mut line, &operation, &mut Vec::new());
            prop_assert_eq!(
                String::from_utf8(line).unwrap(),
                serde_json::to_string(&oracle).unwrap()
            );
        }
    }
}
