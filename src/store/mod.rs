//! The state store: what muster applied last time, per object kind and key.
//!
//! Per key it keeps a [`StoredObject`]: the fingerprint of the row as last
//! applied, whether the object is active, the per-field hashes (to tell
//! which fields an update changes), the LMS's id for it, whether the user
//! was invited and, for a group, its parent's key. No field values are
//! kept: the store holds keys and hashes, not personal data.
//!
//! Writes go through a journal: [`StateStore::begin`] records the operations
//! about to be sent to the LMS; [`StateStore::commit`] applies the ones the
//! LMS acknowledged (a store may keep them in its journal, made durable by
//! [`StateStore::sync`], and move them to its tables later). After a
//! crash the journal still holds them; the next run asks the sink which of
//! those not known to be committed were applied
//! ([`crate::sink::Sink::recover`]) and commits those, so nothing is applied
//! twice and nothing acknowledged is lost.
//!
//! [`RedbStore`] is the embedded, crash-safe implementation on disk (redb:
//! copy-on-write B-trees with an fsync per commit, pure Rust, no server);
//! [`MemoryStore`] is for tests and for `muster diff`.

pub mod copy;
mod memory;
#[cfg(feature = "cluster")]
mod postgres;
mod prior;
mod redb_store;

pub use memory::MemoryStore;
#[cfg(feature = "cluster")]
pub use postgres::{claim, shown_url, Claim, Lease, PostgresStore, SCHEMA_VERSION};
pub use prior::{MemoryPrior, NoPrior, Prior, PriorEntry, Update};
pub use redb_store::{RedbStore, REST_KEYS};

use crate::model::{field_name, Action, FieldName, ObjectKind};
use crate::profile::Date;

/// The store's on-disk format. A store of another format is refused with
/// a message naming both; the formats of `UPGRADED` are upgraded in
/// place when the store opens (docs/decisions.md lists what each format
/// changed).
pub const FORMAT: &str = "muster-state/6";

/// The formats a store is upgraded from, in place, when it opens.
pub(crate) const UPGRADED: [&str; 3] = ["muster-state/3", "muster-state/4", "muster-state/5"];

/// A store that cannot be read or written: which store, and why.
#[derive(Debug, thiserror::Error)]
#[error("state store {path}: {kind}")]
pub struct StoreError {
    pub path: String,
    pub kind: StoreErrorKind,
}

/// Why a store could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// Reading or writing the store's files failed (a full disk, a
    /// permission): once the cause is gone, the next run resumes.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The files hold what no muster wrote (a damaged entry, list or
    /// journal record).
    #[error("{0}")]
    Damaged(String),
    /// Written in another format than this muster reads.
    #[error("written in format {found:?}; this muster reads {FORMAT} (use the muster version that wrote it, or start a new store)")]
    Format { found: String },
    /// The embedded database failed, or the cluster's PostgreSQL.
    #[error("{0}")]
    Database(String),
    /// The cluster's database holds a newer schema than this muster's.
    #[error("the database's muster schema is version {found}; this muster knows versions up to {known} (use the muster that wrote it, or another database)")]
    Schema { found: i32, known: i32 },
    /// The run's lease on its tenant lapsed and another muster may have
    /// taken the run over (SPEC §9): this run commits and sends nothing more.
    #[error("this run lost its lease on the tenant (paused, or cut off from the database, longer than lease_ms): it commits nothing more, and another muster takes the run over")]
    LeaseLost,
}

impl StoreError {
    /// Whether a later run gets over it once its cause is gone (a full
    /// disk, a permission, the database busy), rather than the store
    /// needing repair: not for a damaged store, nor one of another format.
    pub fn resumable(&self) -> bool {
        !matches!(
            self.kind,
            StoreErrorKind::Damaged(_)
                | StoreErrorKind::Format { .. }
                | StoreErrorKind::Schema { .. }
        )
    }

    /// An error of the store at `path`.
    pub fn new(path: &std::path::Path, kind: StoreErrorKind) -> StoreError {
        StoreError {
            path: path.display().to_string(),
            kind,
        }
    }
}

/// One field's name and value hash, for telling which fields changed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FieldHash {
    pub field: FieldName,
    pub hash: u64,
}

/// What the store keeps per key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    pub fingerprint: u128,
    pub active: bool,
    pub invited: bool,
    pub lms_id: Option<String>,
    /// A group's parent group (its key): orders inferred deletions
    /// children first. A key, not personal data.
    pub parent: Option<String>,
    pub fields: Vec<FieldHash>,
    /// Deactivated for a deletion `delete_after_days` delays: since when
    /// the object is missing (ended, inactive).
    pub since: Option<Date>,
    /// Created without an invitation: its `invite_from` date is to come.
    pub invite_due: bool,
}

impl StoredObject {
    /// What the differ reads of it.
    pub fn prior_entry(&self) -> PriorEntry {
        PriorEntry {
            fingerprint: self.fingerprint,
            active: self.active,
            since: self.since,
            invite_due: self.invite_due,
        }
    }
}

/// One write to the LMS, journalled before it is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingOp {
    /// Unique across runs: the sink's idempotency key.
    pub id: u64,
    pub kind: ObjectKind,
    pub key: String,
    pub action: Action,
    /// The write invites the user: after a crash, the sink's recovery
    /// asks the LMS whether the invitation was applied (an update whose
    /// `invite_from` date came; a create is looked up anyway).
    pub invite: bool,
    /// The object after the write (ignored for deletes).
    pub object: StoredObject,
}

/// Makes journal records durable ([`StateStore::begin_deferred`]), on any
/// thread: the pipeline has the next batch built while the one before is
/// synced.
pub struct JournalSync(Option<Box<dyn Fn() -> Result<(), StoreError> + Send>>);

impl JournalSync {
    /// Records that are durable already: nothing left to do.
    pub fn durable() -> JournalSync {
        JournalSync(None)
    }

    /// Records that `sync` makes durable.
    pub fn new(sync: impl Fn() -> Result<(), StoreError> + Send + 'static) -> JournalSync {
        JournalSync(Some(Box::new(sync)))
    }

    pub fn sync(&self) -> Result<(), StoreError> {
        self.0.as_ref().map_or(Ok(()), |sync| sync())
    }
}

/// The last applied state, with a journal of writes in flight. The
/// pipeline runs over any implementation ([`RedbStore`] on disk,
/// [`MemoryStore`] in memory, or a caller's own); `Sync`, because the
/// prior is loaded on one thread while the file is read on others.
pub trait StateStore: Send + Sync {
    /// The differ's view of one kind: key → fingerprint and active flag.
    fn prior(&self, kind: ObjectKind) -> Result<MemoryPrior, StoreError>;
    fn get(&self, kind: ObjectKind, key: &str) -> Result<Option<StoredObject>, StoreError>;
    /// [`StateStore::get`] of each of `keys`, in order (a store may read
    /// them in one transaction). Default: one `get` each.
    fn get_many(
        &self,
        kind: ObjectKind,
        keys: &[&str],
    ) -> Result<Vec<Option<StoredObject>>, StoreError> {
        keys.iter().map(|k| self.get(kind, k)).collect()
    }
    /// Record count of the last accepted file of a kind (the shrink guard).
    fn last_records(&self, kind: ObjectKind) -> Result<Option<u64>, StoreError>;
    fn set_last_records(&mut self, kind: ObjectKind, records: u64) -> Result<(), StoreError>;
    /// Journals `ops` durably before they are sent.
    fn begin(&mut self, ops: &[PendingOp]) -> Result<(), StoreError>;
    /// Applies the acknowledged operations and drops `done` and `dropped`
    /// ids from the journal, in one transaction.
    fn commit(&mut self, acked: &[PendingOp], dropped: &[u64]) -> Result<(), StoreError>;
    /// The journal: operations begun and neither committed nor dropped.
    fn pending(&self) -> Result<Vec<PendingOp>, StoreError>;
    /// A fresh id for the next operation (never reused).
    fn next_op_id(&mut self) -> Result<u64, StoreError>;
    /// Makes every id [`StateStore::next_op_id`] gives from now on greater
    /// than `past` (a store that takes over another's state: the sinks
    /// know operations by id).
    fn raise_op_ids(&mut self, past: u64) -> Result<(), StoreError>;
    /// Makes every commit so far durable (a store may keep them in its
    /// journal rather than its tables). Default: nothing to do.
    fn sync(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// The processed name of an earlier file with the same content (its
    /// xxh3-128 hash), if one was applied: a run names it in the summary
    /// of a file sent again.
    fn seen_content(&self, hash: u128) -> Result<Option<String>, StoreError>;
    /// Records that the file with this content was applied as `name`.
    fn remember_content(&mut self, hash: u128, name: &str) -> Result<(), StoreError>;

    /// [`StateStore::begin`], its records made durable by the returned
    /// [`JournalSync`] (on any thread) rather than before it returns. The
    /// operations must not be sent before that. Default: `begin`, durable
    /// at once.
    fn begin_deferred(&mut self, ops: &[PendingOp]) -> Result<JournalSync, StoreError> {
        self.begin(ops)?;
        Ok(JournalSync::durable())
    }
    /// Makes every commit so far durable without the folding into tables
    /// [`StateStore::sync`] may do (the end of a file's writes). Default:
    /// nothing to do.
    fn sync_journal(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// The plan kept for a file of `kind` with this content (its xxh3-128
    /// hash) by [`StateStore::keep_plan`], if it is the one kept.
    /// Default: none.
    fn kept_plan(&self, _kind: ObjectKind, _hash: u128) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }
    /// Keeps `plan` (the encoded first plan of a file: a run that resumes
    /// it after a crash reports its rows as first planned) for the file of
    /// `kind` with this content, in place of any kept before for that
    /// kind; `None` forgets it. A plan kept is durable when this returns;
    /// a plan forgotten may wait for the store's next durable write
    /// (the pipeline records the file's content just after). Default:
    /// nothing kept.
    fn keep_plan(
        &mut self,
        _kind: ObjectKind,
        _hash: u128,
        _plan: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        Ok(())
    }
    /// Whether the held file `name` (in the inbox) was released
    /// (`muster release`): its next run applies it despite the guards.
    /// Default: none is.
    fn released(&self, _name: &str) -> Result<bool, StoreError> {
        Ok(false)
    }
    /// Marks the held file `name` released (`true`), or forgets the mark
    /// once it was applied (`false`). Default: not kept.
    fn set_released(&mut self, _name: &str, _released: bool) -> Result<(), StoreError> {
        Ok(())
    }
    /// A hint: about `writes` commits of `kind` follow. Default: none taken.
    fn reserve_writes(&mut self, _kind: ObjectKind, _writes: usize) {}
    /// Adds a run's record to the run history (SPEC §8), keeping the
    /// `keep` newest; `record` is given the run's id (one more than the
    /// last). Default: no history kept (id 0).
    fn push_run(
        &mut self,
        _keep: usize,
        _record: &mut dyn FnMut(u64) -> Vec<u8>,
    ) -> Result<u64, StoreError> {
        Ok(0)
    }
    /// The run history's records, newest first, at most `limit`.
    /// Default: none.
    fn runs(&self, _limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(Vec::new())
    }
    /// A value the daemon keeps for the tenant (its next due time).
    /// Default: none.
    fn daemon_value(&self, _name: &str) -> Result<Option<String>, StoreError> {
        Ok(None)
    }
    /// Keeps a daemon value. Default: not kept.
    fn set_daemon_value(&mut self, _name: &str, _value: &str) -> Result<(), StoreError> {
        Ok(())
    }
    /// Where several machines share the store (SPEC §9): a check that the
    /// run still holds its tenant, made right before each batch goes to
    /// the sink (a run that lost its lease sends nothing more). Default:
    /// none, a store one machine holds.
    fn lease_check(&self) -> Option<LeaseCheck> {
        None
    }
    /// Where several machines share the store: who runs the tenant now,
    /// if anyone does. Default: none known.
    fn run_holder(&self) -> Result<Option<String>, StoreError> {
        Ok(None)
    }
}

/// The daemon value ([`StateStore::daemon_value`]) that holds a tenant's
/// next due time.
pub const NEXT_DUE: &str = "next_due";

/// [`StateStore::lease_check`]: `Err` once the run's lease is lost.
pub type LeaseCheck = std::sync::Arc<dyn Fn() -> Result<(), StoreError> + Send + Sync>;

// ---- encoding (stable, versioned by FORMAT) ----

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

pub(crate) struct Cursor<'a>(pub(crate) &'a [u8]);

impl<'a> Cursor<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()))
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
    }
    pub(crate) fn str(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }
}

/// An object with its field names spelled out: how a `muster-state/3`
/// journal's begin records kept it, and how the cluster's tables keep it
/// (a row read alone, no list of names beside it).
#[cfg_attr(not(feature = "cluster"), cfg(test))]
pub(crate) fn encode_object(o: &StoredObject, out: &mut Vec<u8>) {
    encode_head(o, out);
    out.extend_from_slice(&(o.fields.len() as u32).to_le_bytes());
    for f in &o.fields {
        put_str(out, f.field.as_str());
        out.extend_from_slice(&f.hash.to_le_bytes());
    }
}

/// Fingerprint, flags, the `since` date, LMS id and parent: what every
/// encoding of an object starts with ([`decode_prior`] reads the first
/// three). Flags: 1 active, 2 invited, 4 an LMS id, 8 a parent, 16 a
/// `since` date (4 bytes, [`Date::pack`]), 32 an invitation due.
fn encode_head(o: &StoredObject, out: &mut Vec<u8>) {
    out.extend_from_slice(&o.fingerprint.to_le_bytes());
    out.push(
        o.active as u8
            | (o.invited as u8) << 1
            | (o.lms_id.is_some() as u8) << 2
            | (o.parent.is_some() as u8) << 3
            | (o.since.is_some() as u8) << 4
            | (o.invite_due as u8) << 5,
    );
    if let Some(since) = o.since {
        out.extend_from_slice(&since.pack().to_le_bytes());
    }
    if let Some(id) = &o.lms_id {
        put_str(out, id);
    }
    if let Some(parent) = &o.parent {
        put_str(out, parent);
    }
}

/// An object as [`encode_object`] wrote it, and nothing after it.
#[cfg(feature = "cluster")]
pub(crate) fn decode_object(bytes: &[u8]) -> Option<StoredObject> {
    let mut c = Cursor(bytes);
    let o = decode_object_from(&mut c)?;
    c.0.is_empty().then_some(o)
}

fn decode_object_from(c: &mut Cursor<'_>) -> Option<StoredObject> {
    let mut o = decode_head(c)?;
    let n = c.u32()?;
    o.fields.reserve(n as usize);
    for _ in 0..n {
        let field = field_name(c.str()?);
        o.fields.push(FieldHash {
            field,
            hash: c.u64()?,
        });
    }
    Some(o)
}

fn decode_head(c: &mut Cursor<'_>) -> Option<StoredObject> {
    let lo = c.u64()?;
    let hi = c.u64()?;
    let flags = c.u8()?;
    let since = match flags & 16 {
        0 => None,
        _ => Some(Date::unpack(c.u32()?)?),
    };
    let lms_id = if flags & 4 != 0 {
        Some(c.str()?.to_string())
    } else {
        None
    };
    let parent = if flags & 8 != 0 {
        Some(c.str()?.to_string())
    } else {
        None
    };
    Some(StoredObject {
        fingerprint: u128::from(lo) | u128::from(hi) << 64,
        active: flags & 1 != 0,
        invited: flags & 2 != 0,
        lms_id,
        parent,
        fields: Vec::new(),
        since,
        invite_due: flags & 32 != 0,
    })
}

/// The field names of a store's objects, each kept once: an object in the
/// store names its fields by their index here (`encode_stored`), which
/// makes it less than half the size of one that spells them out (the
/// journal's `encode_object`). Indexes are never reused or renumbered.
#[derive(Debug, Default)]
pub(crate) struct FieldNames {
    list: Vec<FieldName>,
    ids: ahash::AHashMap<FieldName, u16>,
    /// Names added since the list was last saved.
    pub(crate) unsaved: bool,
    /// The index after the last one [`FieldNames::id`] gave.
    next: u16,
}

impl FieldNames {
    /// The list as saved by [`FieldNames::encode`].
    pub(crate) fn decode(bytes: &[u8]) -> Option<FieldNames> {
        let mut c = Cursor(bytes);
        let mut names = FieldNames::default();
        for _ in 0..c.u32()? {
            let name = field_name(c.str()?);
            names.ids.insert(name, names.list.len() as u16);
            names.list.push(name);
        }
        Some(names)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = (self.list.len() as u32).to_le_bytes().to_vec();
        for name in &self.list {
            put_str(&mut out, name.as_str());
        }
        out
    }

    /// The index of `name`, added if new. Objects' fields come in name
    /// order, mostly in the order they were added: the index after the
    /// last one asked for is tried before the map.
    fn id(&mut self, name: FieldName) -> u16 {
        let guess = self.next as usize;
        let id = match self.list.get(guess) {
            Some(&n) if n == name => guess as u16,
            _ => match self.ids.get(&name) {
                Some(&id) => id,
                None => {
                    let id = u16::try_from(self.list.len()).expect("fewer than 65,536 field names");
                    self.ids.insert(name, id);
                    self.list.push(name);
                    self.unsaved = true;
                    id
                }
            },
        };
        self.next = id.wrapping_add(1);
        id
    }
}

/// An object as the store's tables keep it: as [`encode_object`], with
/// each field name an index into `names` (two bytes).
pub(crate) fn encode_stored(o: &StoredObject, names: &mut FieldNames, out: &mut Vec<u8>) {
    encode_head(o, out);
    out.extend_from_slice(&(o.fields.len() as u16).to_le_bytes());
    for f in &o.fields {
        out.extend_from_slice(&names.id(f.field).to_le_bytes());
        out.extend_from_slice(&f.hash.to_le_bytes());
    }
}

pub(crate) fn decode_stored(bytes: &[u8], names: &FieldNames) -> Option<StoredObject> {
    let mut c = Cursor(bytes);
    let mut o = decode_head(&mut c)?;
    let n = u16::from_le_bytes(c.take(2)?.try_into().ok()?);
    o.fields.reserve(n as usize);
    for _ in 0..n {
        let id = u16::from_le_bytes(c.take(2)?.try_into().ok()?);
        o.fields.push(FieldHash {
            field: *names.list.get(id as usize)?,
            hash: c.u64()?,
        });
    }
    Some(o)
}

/// What the differ reads of a stored object, without decoding the rest.
pub(crate) fn decode_prior(bytes: &[u8]) -> Option<PriorEntry> {
    let mut c = Cursor(bytes);
    let lo = c.u64()?;
    let hi = c.u64()?;
    let flags = c.u8()?;
    let since = match flags & 16 {
        0 => None,
        _ => Some(Date::unpack(c.u32()?)?),
    };
    Some(PriorEntry {
        fingerprint: u128::from(lo) | u128::from(hi) << 64,
        active: flags & 1 != 0,
        since,
        invite_due: flags & 32 != 0,
    })
}

pub(crate) fn kind_code(k: ObjectKind) -> u8 {
    match k {
        ObjectKind::User => 0,
        ObjectKind::Group => 1,
        ObjectKind::Segment => 2,
    }
}

pub(crate) fn kind_of(c: u8) -> Option<ObjectKind> {
    Some(match c {
        0 => ObjectKind::User,
        1 => ObjectKind::Group,
        2 => ObjectKind::Segment,
        _ => return None,
    })
}

pub(crate) fn action_code(a: Action) -> u8 {
    match a {
        Action::Create => 0,
        Action::Update => 1,
        Action::Unchanged => 2,
        Action::Deactivate => 3,
        Action::Delete => 4,
        Action::Reject => 5,
    }
}

pub(crate) fn action_of(c: u8) -> Option<Action> {
    Some(match c {
        0 => Action::Create,
        1 => Action::Update,
        2 => Action::Unchanged,
        3 => Action::Deactivate,
        4 => Action::Delete,
        5 => Action::Reject,
        _ => return None,
    })
}

/// A `muster-state/3` journal's begin record body (written now only by
/// tests; [`decode_pending`] still reads them).
#[cfg(test)]
pub(crate) fn encode_pending(op: &PendingOp, out: &mut Vec<u8>) {
    out.extend_from_slice(&[kind_code(op.kind), action_code(op.action)]);
    put_str(out, &op.key);
    encode_object(&op.object, out);
}

pub(crate) fn decode_pending(id: u64, bytes: &[u8]) -> Option<PendingOp> {
    let mut c = Cursor(bytes);
    let kind = kind_of(c.u8()?)?;
    let action = action_of(c.u8()?)?;
    let key = c.str()?.to_string();
    let object = decode_object_from(&mut c)?;
    Some(PendingOp {
        id,
        kind,
        key,
        action,
        invite: false,
        object,
    })
}
