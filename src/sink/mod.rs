//! Where writes go: the LMS, or the JSONL outbox.
//!
//! A [`Sink`] takes a batch of [`Operation`]s and answers one [`Ack`] per
//! operation: applied (with the LMS's id), rejected by the LMS (not retried)
//! or unavailable (retried by the next run). Only applied operations are
//! committed to the state store. After a crash, [`Sink::recover`] tells
//! which journalled operations the LMS already has, so none is applied twice.

mod jsonl;
pub mod scim;

pub use jsonl::JsonlOutbox;
#[cfg(feature = "scim")]
pub use scim::ScimSink;

use serde::Serialize;

use crate::model::{Action, Field, FieldName, ObjectKind};
use crate::store::PendingOp;

/// Which sink a tenant writes to (`[tenant.sink]`, validated).
#[derive(Clone, Debug)]
pub enum SinkConfig {
    /// The JSONL outbox file.
    Jsonl { path: std::path::PathBuf },
    /// A SCIM 2.0 LMS.
    Scim(scim::ScimConfig),
}

impl SinkConfig {
    /// The sink as messages name it (a URL without its user info).
    pub fn describe(&self) -> String {
        match self {
            SinkConfig::Jsonl { path } => format!("the outbox {}", path.display()),
            SinkConfig::Scim(scim) => {
                format!("the LMS at {}", crate::secret::redact_url(&scim.url))
            }
        }
    }
}

/// Opens the sink `config` names. `group_file`: the tenant has a group
/// file, so groups are never made on demand from users' group names (a
/// group of that file that failed to be written is not remade under its
/// key as a name).
pub fn open(config: &SinkConfig, group_file: bool) -> Result<Box<dyn Sink>, SinkError> {
    Ok(match config {
        SinkConfig::Jsonl { path } => Box::new(JsonlOutbox::open(path)?),
        #[cfg(feature = "scim")]
        SinkConfig::Scim(scim) => {
            let mut scim = scim.clone();
            scim.create_missing_groups &= !group_file;
            Box::new(ScimSink::open(&scim)?)
        }
        #[cfg(not(feature = "scim"))]
        SinkConfig::Scim(scim) => {
            let _ = group_file;
            return Err(SinkError::new(
                scim.url.clone(),
                SinkErrorKind::Unsupported(
                    "this muster was built without the `scim` feature".into(),
                ),
            ));
        }
    })
}

/// A field value as the file states it, normalised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Text(String),
    List(Vec<String>),
}

impl Value {
    /// An empty text or an empty list.
    pub fn is_empty(&self) -> bool {
        match self {
            Value::Text(t) => t.is_empty(),
            Value::List(l) => l.is_empty(),
        }
    }
}

/// One write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// Unique across runs; the idempotency key.
    pub op: u64,
    pub kind: ObjectKind,
    pub action: Action,
    pub key: String,
    /// The fields the file states (all of them for a create, the changed
    /// ones for an update; none for a deactivation or a deletion).
    pub fields: Vec<(FieldName, Value)>,
    /// Invite the user: a create under a profile with `invite_on_create`,
    /// or an update whose `invite_from` date came (SPEC §11).
    pub invite: bool,
    /// An update that makes the object active again (it was deactivated,
    /// and its row is back, active).
    pub reactivate: bool,
    /// The object's id in the LMS, when the state store has it.
    pub lms_id: Option<String>,
    /// The LMS ids the store has for the objects this operation names
    /// (manager, parent, groups, segments). Filled only for a sink that
    /// asks for them ([`Sink::wants_ids`]).
    pub ids: Vec<KnownId>,
    /// The object has no links to undo: it did not exist before this run,
    /// or its links were never written.
    pub fresh: bool,
}

impl Operation {
    /// The objects this operation names by key: its manager, its parent
    /// group, the groups and segments it is a member of. (`admin_groups`
    /// are written as keys and name nothing to resolve.)
    pub fn named(&self) -> Vec<(ObjectKind, &str)> {
        let mut out = Vec::new();
        for (field, value) in &self.fields {
            match (field, value) {
                (Field::ManagerId, Value::Text(k)) if !k.is_empty() => {
                    out.push((ObjectKind::User, k.as_str()))
                }
                (Field::ParentId, Value::Text(k)) if !k.is_empty() => {
                    out.push((ObjectKind::Group, k.as_str()))
                }
                (Field::Groups, Value::List(items)) => {
                    out.extend(items.iter().map(|k| (ObjectKind::Group, k.as_str())))
                }
                (Field::Segments, Value::List(items)) => {
                    out.extend(items.iter().map(|k| (ObjectKind::Segment, k.as_str())))
                }
                _ => {}
            }
        }
        out
    }
}

/// The LMS id of an object an operation names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownId {
    pub kind: ObjectKind,
    pub key: String,
    pub lms_id: String,
}

/// The LMS's answer for one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ack {
    Applied {
        lms_id: Option<String>,
        /// The object already existed in the LMS and was linked to, not
        /// created: nobody was invited.
        linked: bool,
    },
    /// The LMS refused it (e.g. a 4xx): reported, not retried.
    Rejected { message: String },
    /// The LMS could not be reached: the next run tries again.
    Unavailable { message: String },
}

impl Ack {
    /// Applied as sent: no id from the LMS, nothing linked.
    pub const APPLIED: Ack = Ack::Applied {
        lms_id: None,
        linked: false,
    };
}

/// A sink that failed as a whole (the batch's fate is unknown until
/// [`Sink::recover`]): which sink, and why.
#[derive(Debug, thiserror::Error)]
#[error("sink {sink}: {kind}")]
pub struct SinkError {
    pub sink: String,
    pub kind: SinkErrorKind,
}

/// Why a sink failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkErrorKind {
    /// The sink's own file could not be written (the JSONL outbox).
    #[error("{0}")]
    Io(#[source] std::io::Error),
    /// The LMS could not be reached, or kept failing, after its retries:
    /// the next run tries again.
    #[error("{0}")]
    Unavailable(String),
    /// The LMS refused muster itself (its token, an endpoint it lacks):
    /// nothing will pass until the setting is fixed.
    #[error("{0}")]
    Refused(String),
    /// This muster cannot open such a sink (built without its feature).
    #[error("{0}")]
    Unsupported(String),
    /// What a caller's own sink reports.
    #[error("{0}")]
    Other(String),
}

impl SinkError {
    pub fn new(sink: impl Into<String>, kind: SinkErrorKind) -> SinkError {
        SinkError {
            sink: sink.into(),
            kind,
        }
    }

    /// A caller's own sink failing with `message`.
    pub fn other(sink: impl Into<String>, message: impl Into<String>) -> SinkError {
        SinkError::new(sink, SinkErrorKind::Other(message.into()))
    }
}

/// An object the LMS holds under a key muster gave it, as
/// [`Sink::inventory`] reads it back for `muster state rebuild` (SPEC §6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub kind: ObjectKind,
    pub key: String,
    pub lms_id: Option<String>,
    pub active: bool,
    /// The user was invited (or exists, so that an invitation is not due).
    pub invited: bool,
    /// A group's parent group, by key.
    pub parent: Option<String>,
    /// The field values as last written, when the sink keeps them (the
    /// JSONL outbox); `None` when it cannot tell them (SCIM: the LMS's
    /// attributes are not the file's fields), and the next run then sends
    /// each object's fields once, as an update.
    pub fields: Option<Vec<(FieldName, Value)>>,
}

/// What the LMS holds: [`Sink::inventory`].
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    pub objects: Vec<Found>,
    /// The highest operation id the sink has seen: a rebuilt store hands
    /// out ids above it, so that the sink's own crash recovery (which
    /// matches on ids) never takes a new operation for an old one.
    pub last_op: u64,
}

/// The push side of the pipeline.
pub trait Sink: Send {
    /// Applies a batch; one acknowledgement per operation, in order.
    fn apply(&mut self, batch: &[Operation]) -> Result<Vec<Ack>, SinkError>;
    /// Which of these journalled operations the LMS already applied.
    fn recover(&mut self, pending: &[PendingOp]) -> Result<Vec<u64>, SinkError>;
    /// Whether [`Operation::ids`] should be filled (a sink that writes
    /// references by the LMS's ids). Default: no.
    fn wants_ids(&self) -> bool {
        false
    }
    /// The requests sent to the LMS so far, by the answer's status (an
    /// HTTP code, or `error` when none came), for the daemon's
    /// `muster_sink_requests_total`. Default: none (no requests).
    fn requests(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
    /// Called once after the last batch.
    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    /// Every object the LMS holds under a key muster gave it, for
    /// `muster state rebuild`. Default: this sink cannot tell.
    fn inventory(&mut self) -> Result<Inventory, SinkError> {
        Err(SinkError::new(
            "sink",
            SinkErrorKind::Unsupported("this sink cannot list what it holds".into()),
        ))
    }
}
