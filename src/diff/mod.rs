//! Comparing a snapshot with what was applied last time.
//!
//! The differ needs, per key, only what the last applied state says in a few
//! bytes — its [`PriorEntry`](crate::store::PriorEntry), which the store
//! provides: the fingerprint and whether the object is active. A row's
//! fingerprint ([`Fingerprinter`]) hashes its normalised fields; which
//! fields of a changed row differ is asked afterwards, for the few rows
//! whose fingerprint moved ([`changed_fields`]).

pub(crate) mod decide;
mod fingerprint;

pub use fingerprint::{changed_fields, Fingerprinter, PositionHashes};
