//! The SCIM 2.0 sink (RFC 7643/7644; the HTTP client is the `scim`
//! feature, the settings are always built): users, groups and segments written
//! to an LMS, through `/Bulk` when `/ServiceProviderConfig` offers it and
//! one request per resource otherwise. `docs/scim.md` has the mapping.
//!
//! One [`Sink::apply`](crate::sink::Sink::apply) takes a batch (at most the tenant's `batch_size`
//! operations) and answers an acknowledgement per operation:
//!
//! 1. **Ids.** The LMS ids the state store has come with the operations;
//!    the others (an object the store lost, a manager muster never wrote)
//!    are found by `externalId`, twenty to a filter.
//! 2. **Writes.** Creates (POST), updates and deactivations (PATCH with
//!    only what changed), deletions (DELETE), cut into Bulk requests of at
//!    most `maxOperations` and `maxPayloadSize` (a 413 halves a request).
//!    They go to `senders` threads through a bounded channel, so what is
//!    in memory is one batch however slow the LMS is. A batch in which an
//!    operation names an object created in the same batch (a parent group,
//!    a manager) is sent in order instead, with `bulkId:` references
//!    inside a request and real ids across requests.
//! 3. **Existing users.** A create the LMS refuses as a duplicate (409) is
//!    linked instead: the user with that `userName` (or e-mail) gets the
//!    file's attributes, and nobody is invited.
//! 4. **Memberships** are written on the groups: one PATCH per group per
//!    batch adds and removes members.
//!
//! The client (`client.rs`) retries 408, 429, 5xx and lost connections; an operation
//! still failing is [`Ack::Unavailable`](crate::sink::Ack::Unavailable) (the next run sends it again), a
//! refusal is [`Ack::Rejected`](crate::sink::Ack::Rejected) with the LMS's own message. Invitations
//! happen once: the invite attribute is only in a create's POST, a retried
//! POST that meets its own earlier success is linked (not re-sent), and
//! after a crash [`Sink::recover`](crate::sink::Sink::recover) finds journalled creates by `externalId`.

#[cfg(feature = "scim")]
mod client;
mod config;
#[cfg_attr(not(feature = "scim"), allow(dead_code))]
mod map;
#[cfg(feature = "scim")]
mod sink;

pub(crate) use config::ScimFile;
pub use config::{BulkMode, ScimConfig, SegmentMapping};
pub use map::{is_text_field, INVITE_ATTRIBUTE};
#[cfg(feature = "scim")]
pub use sink::ScimSink;
