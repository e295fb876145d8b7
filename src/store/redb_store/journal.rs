//! The store's journal, `<store>.journal`: append-only records of the
//! writes begun, acknowledged and dropped since the last checkpoint, read
//! again when the store opens (see the parent module for when each record
//! is written and synced).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use ahash::AHashMap;
use xxhash_rust::xxh3::xxh3_64;

use super::{kind_index, Begun, Span};
use crate::model::Action;
use crate::store::{action_of, decode_pending, kind_of, Cursor};

/// The id of every record of this muster's journals (a `muster-state/3`
/// begin record has its operation's id instead); the body starts with a
/// tag.
pub(super) const MARK: u64 = u64::MAX;
/// A begin record: operation id, kind, action, key, the object (as
/// `encode_stored`).
pub(super) const BEGIN: u8 = b'b';
/// A commit of an operation acknowledged as begun: operation id.
pub(super) const ACKED: u8 = b'a';
/// A commit record of an operation acknowledged with a changed object (the
/// LMS's id for it, say): operation id, kind, key, whether an object
/// follows, the object (as `encode_stored`).
pub(super) const COMMIT: u8 = b'c';
/// A drop record: operation id.
pub(super) const DROP: u8 = b'd';

/// The journal: records of `id: u64, length: u32, body`. A
/// `muster-state/3` journal holds only begin records whose id is their
/// operation's and whose body is `encode_pending`; they are still read.
pub(super) struct Journal {
    pub(super) path: PathBuf,
    /// Shared with the [`JournalSync`]s handed out.
    pub(super) file: Arc<File>,
    /// Bytes of whole records.
    pub(super) len: u64,
    /// Records appended since the last fsync.
    pub(super) unsynced: bool,
}

/// What reading a journal again found.
#[derive(Default)]
pub(super) struct Replayed {
    pub(super) in_flight: BTreeMap<u64, Begun>,
    pub(super) index: [AHashMap<Box<str>, Option<Span>>; 3],
}

pub(super) const HEAD: u64 = 12;

impl Journal {
    /// Opens the journal at `path` (creating it) and reads it again; a torn
    /// last record (a crash mid-append, never acknowledged to anyone) is
    /// cut off.
    pub(super) fn open(path: PathBuf) -> std::io::Result<(Journal, Replayed)> {
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let mut replayed = Replayed::default();
        let mut reader = BufReader::with_capacity(1 << 20, &file);
        let mut len = 0u64;
        let mut head = [0u8; HEAD as usize];
        let mut body = Vec::new();
        loop {
            if reader.read_exact(&mut head).is_err() {
                break;
            }
            let id = u64::from_le_bytes(head[..8].try_into().unwrap_or_default());
            let n = u32::from_le_bytes(head[8..].try_into().unwrap_or_default());
            body.resize(n as usize, 0);
            if reader.read_exact(&mut body).is_err() || !replayed.record(len, id, &body) {
                break;
            }
            len += HEAD + u64::from(n);
        }
        drop(reader);
        if file.metadata()?.len() > len {
            file.set_len(len)?;
            file.sync_all()?;
        }
        let journal = Journal {
            path,
            file: Arc::new(file),
            len,
            unsynced: false,
        };
        Ok((journal, replayed))
    }

    /// Frames a record into `out`, to be appended at the journal's end:
    /// its body is what `body` writes; returns where the body will be.
    pub(super) fn frame(
        &self,
        out: &mut Vec<u8>,
        id: u64,
        body: impl FnOnce(&mut Vec<u8>),
    ) -> Span {
        frame(self.len, out, id, body)
    }

    /// Appends framed records (written through to the page cache: a
    /// process crash keeps them, a power cut keeps what [`Journal::sync`]
    /// made durable).
    pub(super) fn append(&mut self, out: &[u8]) -> std::io::Result<()> {
        (&*self.file).write_all(out)?;
        self.len += out.len() as u64;
        self.unsynced = true;
        Ok(())
    }

    pub(super) fn sync(&mut self) -> std::io::Result<()> {
        self.file.sync_data()?;
        self.unsynced = false;
        Ok(())
    }

    /// The bytes of `span` into `out`.
    pub(super) fn read(&self, span: Span, out: &mut Vec<u8>) -> std::io::Result<()> {
        out.clear();
        self.read_into(span, out)
    }

    /// The bytes of `span`, appended to `out`.
    pub(super) fn read_into(&self, span: Span, out: &mut Vec<u8>) -> std::io::Result<()> {
        let at = out.len();
        out.resize(at + span.len as usize, 0);
        self.file.read_exact_at(&mut out[at..], span.at)
    }

    /// Replaces the journal by one holding only the begin records of
    /// `in_flight`, copied as they are (written aside, fsynced, renamed
    /// over); returns them where they are now.
    pub(super) fn rewrite(
        &mut self,
        in_flight: BTreeMap<u64, Begun>,
    ) -> std::io::Result<BTreeMap<u64, Begun>> {
        let mut out = Vec::new();
        let mut record = Vec::new();
        let mut moved = BTreeMap::new();
        for (id, mut begun) in in_flight {
            let head_at = begun.body.at - HEAD;
            let whole = Span {
                at: head_at,
                len: begun.body.len + HEAD as u32,
            };
            self.read(whole, &mut record)?;
            let now = out.len() as u64;
            out.extend_from_slice(&record);
            begun.body.at = begun.body.at - head_at + now;
            if let Some((stored, _)) = &mut begun.stored {
                stored.at = stored.at - head_at + now;
            }
            moved.insert(id, begun);
        }
        let tmp = self.path.with_extension("journal.tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(&out)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        self.file = Arc::new(
            OpenOptions::new()
                .read(true)
                .append(true)
                .open(&self.path)?,
        );
        self.len = out.len() as u64;
        self.unsynced = false;
        Ok(moved)
    }
}

/// Frames a record into `out`, which is to be written at offset `base`
/// of a journal: its body is what `body` writes; returns where the body
/// will be.
pub(super) fn frame(
    base: u64,
    out: &mut Vec<u8>,
    id: u64,
    body: impl FnOnce(&mut Vec<u8>),
) -> Span {
    let start = out.len();
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    body(out);
    let n = (out.len() - start) as u64 - HEAD;
    out[start + 8..start + 12].copy_from_slice(&(n as u32).to_le_bytes());
    Span {
        at: base + start as u64 + HEAD,
        len: n as u32,
    }
}

impl Replayed {
    /// Takes in the record at `at` (its head's offset); false if it is not
    /// one (a torn or corrupt tail).
    pub(super) fn record(&mut self, at: u64, id: u64, body: &[u8]) -> bool {
        let whole = Span {
            at: at + HEAD,
            len: body.len() as u32,
        };
        if id != MARK {
            let Some(op) = decode_pending(id, body) else {
                return false;
            };
            let begun = Begun {
                body: whole,
                kind: op.kind,
                key: op.key.into(),
                action: op.action,
                invite: false,
                stored: None,
            };
            self.in_flight.insert(id, begun);
            return true;
        }
        let mut c = Cursor(body);
        match (c.u8(), c.u64()) {
            (Some(BEGIN), Some(op)) => {
                // The action's high bit: the write invites.
                let (Some(kind), Some(code), Some(key)) =
                    (c.u8().and_then(kind_of), c.u8(), c.str())
                else {
                    return false;
                };
                let (Some(action), invite) = (action_of(code & 0x7f), code & 0x80 != 0) else {
                    return false;
                };
                let stored = whole.tail(c.0.len());
                let begun = Begun {
                    body: whole,
                    kind,
                    key: key.into(),
                    action,
                    invite,
                    stored: Some((stored, xxh3_64(c.0))),
                };
                self.in_flight.insert(op, begun);
                true
            }
            (Some(ACKED), Some(op)) => {
                // Its begin record comes first (synced before the write was
                // sent); one missing would leave nothing to point at.
                if let Some(Begun {
                    kind,
                    key,
                    action,
                    stored: Some((stored, _)),
                    ..
                }) = self.in_flight.remove(&op)
                {
                    let span = (action != Action::Delete).then_some(stored);
                    self.index[kind_index(kind)].insert(key, span);
                }
                true
            }
            (Some(COMMIT), Some(op)) => {
                let (Some(kind), Some(key), Some(present)) =
                    (c.u8().and_then(kind_of), c.str(), c.u8())
                else {
                    return false;
                };
                let value = (present == 1).then(|| whole.tail(c.0.len()));
                self.in_flight.remove(&op);
                self.index[kind_index(kind)].insert(key.into(), value);
                true
            }
            (Some(DROP), Some(op)) => {
                self.in_flight.remove(&op);
                true
            }
            _ => false,
        }
    }
}
