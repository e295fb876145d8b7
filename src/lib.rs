//! muster imports HR user snapshots into a learning platform.
//!
//! An employer's HR system drops CSV snapshots of users, groups and segments;
//! muster reads them as a stream, maps each row through a [`Profile`]
//! (format + mapping + rules), compares it with what was applied last time,
//! and writes only the difference. The stages stand on their own, so another
//! ingest service can use just the part it needs:
//!
//! | stage | module | primary types |
//! |---|---|---|
//! | the words every stage shares | [`model`] | [`ObjectKind`](model::ObjectKind), [`Action`], [`Field`](model::Field), [`Code`] |
//! | take a file from an inbox, as one snapshot | [`source`] | [`Source`](source::Source), [`DirSource`](source::DirSource), [`Fetched`](source::Fetched) |
//! | read a delimited file as a stream | [`reader`] | [`SnapshotReader`], [`Record`], [`Position`] |
//! | read one file in parallel pieces, in order | [`reader`] | [`read_chunked`](reader::read_chunked), [`Piece`](reader::Piece), [`Offset`](reader::Offset) |
//! | map and validate rows through a profile | [`profile`] | [`Profile`], [`Layout`](profile::Layout), [`MappedRow`] |
//! | open a file through a profile (header, delimiter) | [`snapshot`] | [`Snapshot`](snapshot::Snapshot) |
//! | plan a whole file (duplicates, references, cycles) | [`plan`] | [`Plan`], [`plan::read`], [`plan::diff_files`] |
//! | decide each row against the last applied state | [`diff`] | [`Fingerprinter`](diff::Fingerprinter) |
//! | hold a file that would do damage | [`guard`] | [`guard::check`], [`Verdict`](guard::Verdict) |
//! | remember what was applied | [`store`] | [`StateStore`](store::StateStore), [`Prior`](store::Prior), [`RedbStore`](store::RedbStore), [`MemoryStore`](store::MemoryStore) |
//! | write to the LMS | [`sink`] | [`Sink`](sink::Sink), [`Operation`](sink::Operation), [`JsonlOutbox`](sink::JsonlOutbox) |
//! | the whole pipeline, over any store and sink | [`pipeline`] | [`Pipeline`](pipeline::Pipeline), [`Job`](pipeline::Job), [`run_tenant`](pipeline::run_tenant) |
//! | configured tenants | [`config`] | [`Config`](config::Config) |
//! | write the results CSV | [`results`] | [`ResultsWriter`], [`Outcome`] |
//! | synthetic snapshots | [`gen`] | [`gen::generate`], [`gen::derive`] |
//!
//! Three ways in, as the `csv` crate offers `csv-core`, `read_byte_record`
//! and `records()`, each a program in `examples/` that `cargo test` runs:
//! the [`SnapshotReader`] alone (`reader_only`); the
//! [`Pipeline`](pipeline::Pipeline) over your own [`Sink`](sink::Sink) and
//! any [`StateStore`](store::StateStore) (`own_sink`); or
//! [`run_tenant`](pipeline::run_tenant) for everything (`pipeline`).
//! `default-features = false` leaves out the binary, SFTP, SCIM and the
//! daemon: no SSH, TLS, HTTP or OpenSSL code.
//!
//! # The reader alone
//!
//! ```
//! use muster::reader::{ReaderOptions, Record, SnapshotReader};
//!
//! let data = "1;\"Dupont; Émilie\";fr\r\n\r\n2;Mark;en\n";
//! let opts = ReaderOptions { delimiter: b';', ..ReaderOptions::default() };
//! let mut reader = SnapshotReader::new(data.as_bytes(), opts);
//! let mut record = Record::new();
//! let mut lines = vec![];
//! while reader.read_record(&mut record).unwrap() {
//!     lines.push((record.position().line, record.get(1).unwrap().to_vec()));
//! }
//! assert_eq!(lines, vec![(1, "Dupont; Émilie".as_bytes().to_vec()), (3, b"Mark".to_vec())]);
//! ```
//!
//! # A whole file through a profile
//!
//! ```
//! use muster::plan::{self, Action};
//! use muster::profile::{Date, Profile};
//!
//! let profile = Profile::preset("winningtemp-groups").unwrap();
//! let file = "Group name;GroupID;Parent groupID\nProduct;prod;\nTeam 1;dev-1;prod\nLost;lost;nowhere\n";
//! let plan = plan::check(&profile, file.as_bytes(), Date::new(2026, 11, 21).unwrap()).unwrap();
//! assert_eq!(plan.count(Action::Create), 3);
//! let lost = plan.rows().last().unwrap();
//! assert_eq!(lost.code.unwrap().as_str(), "unknown_reference");
//! ```
//!
//! The library logs through `tracing` and never installs a subscriber,
//! reads the environment or starts threads of its own.

pub mod config;
#[cfg(feature = "daemon")]
pub mod daemon;
pub mod diff;
pub mod gen;
pub mod guard;
pub mod index;
pub mod model;
pub mod notify;
pub mod pipeline;
pub mod plan;
pub mod profile;
pub mod reader;
pub mod results;
pub mod schedule;
pub mod secret;
pub mod sink;
pub mod snapshot;
pub mod source;
pub mod store;
#[doc(hidden)]
pub mod testing;

pub use model::Code;
pub use plan::{Action, Plan};
pub use profile::{MappedRow, Profile};
pub use reader::{Position, Record, SnapshotReader};
pub use results::{Outcome, ResultsWriter};
