//! The pipeline: one tenant's files, from the inbox to the sink and
//! `processed/` ([`Pipeline`] over any source, store and sink a caller
//! brings; [`run_tenant`] over a configured tenant, as `muster run`).
//!
//! # What a run does
//!
//! 1. Recovery: operations a crash left in the store's journal are asked of
//!    the sink; those it applied are committed, the others dropped (they are
//!    planned again below).
//! 2. Pickup: files of the inbox matching a pattern, not `.part` / `.tmp` /
//!    dot files, whose size is the same across two looks `settle_ms` apart;
//!    groups first, then segments, then users (so a users file can name the
//!    groups of the same run). Each is fetched as one snapshot
//!    ([`crate::source::Fetched`]). A file with the same bytes as one
//!    applied before is planned again all the same (its rows come out
//!    `unchanged`, at no write), so the end dates reached since act
//!    (SPEC §3); its results and summary name the earlier file.
//! 3. Per file (`file.rs`): read, compare with the store and settle the
//!    updates ([`crate::plan`], [`crate::diff`]), then the guards
//!    ([`crate::guard`]); a held file writes nothing and stays in the inbox
//!    (its results go to `processed/` as `<stem>.<timestamp>.held.results.csv`)
//!    until `--force` releases it or a newer file of its pattern supersedes
//!    it (it is then moved to `processed/` as `<stem>.<timestamp>.superseded.csv`,
//!    unapplied). Then the write pass
//!    (`apply.rs`) builds each write from the snapshot (`build.rs`,
//!    `links.rs`) and sends them in batches (`writer.rs`) — journalled in
//!    the store first, committed only once the sink acknowledged them —
//!    deletions last.
//! 4. The results CSV and a summary JSON (`report.rs`) go to `processed/`
//!    under a temporary name, then are renamed; the original is moved
//!    beside them (`processed.rs`): `<stem>.<UTC timestamp>.csv`,
//!    `.results.csv`, `.summary.json`.
//!
//! `--dry-run` plans and checks the guards but writes nothing to the sink or
//! the store and moves nothing: its results and summary go to `processed/`
//! as `<stem>.<timestamp>.dry-run.results.csv` / `.dry-run.summary.json`.
//! It never calls the sink (a dry run needs no LMS) and leaves a crash's
//! journal to the next real run.

mod apply;
mod build;
mod file;
mod history;
mod links;
mod processed;
mod rebuild;
mod report;
mod retry;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Tenant;
use crate::model::ObjectKind;
use crate::profile::{Date, Profile};
use crate::sink::{Ack, Operation, Sink};
use crate::source::{Fetched, Source, SourceError};
use crate::store::{PendingOp, RedbStore, StateStore, StoreError};

/// Options of one run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub dry_run: bool,
    pub force: bool,
    /// "Today" for end dates; default: today in each profile's time zone.
    pub today: Option<Date>,
    /// Set (e.g. on SIGTERM) to stop cleanly: the batches sent are
    /// finished and committed, nothing more is sent, the file stays in the
    /// inbox for the next run, and the run returns [`RunError::Stopped`].
    pub stop: Option<Arc<AtomicBool>>,
    /// Why the run starts: for a tenant of a `[cluster]`, how its lease is
    /// claimed and whether its next due time moves on.
    pub trigger: Trigger,
}

/// Why a run starts. For a tenant whose state a `[cluster]` shares (SPEC
/// §9), it is how the run claims the tenant's lease; the embedded store
/// needs none of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Trigger {
    /// `muster run` (or `muster state copy`): claimed whenever no other
    /// muster holds the tenant; its due time is left as it is.
    #[default]
    Manual,
    /// The daemon, at the tenant's slot: claimed only if no other daemon
    /// ran the slot; the next due time moves on when the run ends.
    Due,
    /// The daemon, asked to run the tenant now: claimed whenever no other
    /// muster holds it; the next due time moves on when the run ends.
    Now,
}

impl RunOptions {
    fn stopping(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
    }
}

/// What stopped a run: the next run resumes safely.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sink(#[from] crate::sink::SinkError),
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A stop was asked for ([`RunOptions::stop`]); what was sent is
    /// committed, the rest is left for the next run.
    #[error("stopped on request; the rest is left for the next run")]
    Stopped,
    /// Another process is running this tenant.
    #[error("tenant {0} is being run by another muster process; try again when it is done")]
    Busy(String),
    /// A daemon's claim on a tenant's slot that another daemon of the
    /// cluster ran already ([`Trigger::Due`]): nothing was done.
    #[error("tenant {tenant}'s slot was run by another muster; it is next due at {next}")]
    NotDue {
        tenant: String,
        next: jiff::Timestamp,
    },
    /// muster stopped on a panic (a bug, or a file it trusted was damaged):
    /// what was sent is in the journal, which the next run recovers.
    #[error("muster stopped on an internal error: {0} (a bug, or a damaged state store; what was sent is in the store's journal, which the next run recovers if the store can be read)")]
    Internal(String),
    /// The state store is missing while `processed/` shows files were
    /// applied: a run would create again everything the LMS has.
    #[error("the state store {state} is missing, but {evidence} in processed/ shows files were applied: a run without the store would create again everything the LMS has, so this tenant is not run. Restore the store and its journal together from a backup (or, to start over on an LMS that is empty again, move processed/ aside)")]
    StoreMissing { state: String, evidence: String },
    /// The state store's folder or lock file cannot be made: the
    /// configuration's `state` must change (no later run gets over it).
    #[error("the state store {path} cannot be made: {error} (check `state` in the configuration)")]
    StatePath { path: String, error: std::io::Error },
}

impl RunError {
    /// Whether the next run resumes where this one stopped once the cause
    /// is gone (an LMS or a server back, a disk with room): not for a
    /// damaged or missing store, nor a configuration at fault, which need
    /// someone to act first.
    pub fn resumes(&self) -> bool {
        match self {
            RunError::Store(e) => e.resumable(),
            RunError::StoreMissing { .. } | RunError::Internal(_) => false,
            other => !other.is_configuration(),
        }
    }

    /// Whether the run lost its lease on a `[cluster]` tenant: another
    /// muster takes the run over.
    pub fn lease_lost(&self) -> bool {
        matches!(self, RunError::Store(e) if matches!(e.kind, crate::store::StoreErrorKind::LeaseLost))
    }

    /// Whether the state store is lost or damaged: `muster state rebuild`
    /// (or a backup) is what gets the tenant going again.
    pub fn needs_rebuild(&self) -> bool {
        match self {
            RunError::Store(e) => matches!(e.kind, crate::store::StoreErrorKind::Damaged(_)),
            RunError::StoreMissing { .. } => true,
            _ => false,
        }
    }

    /// Whether the configuration is at fault (a missing inbox, a state
    /// path that cannot be made): no later run gets over it until it is
    /// changed.
    pub fn is_configuration(&self) -> bool {
        match self {
            RunError::StatePath { .. } => true,
            RunError::Source(e) => matches!(e.kind, crate::source::SourceErrorKind::Missing(_)),
            _ => false,
        }
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> RunError + '_ {
    move |error| RunError::Io {
        path: path.display().to_string(),
        error,
    }
}

/// How one file ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileStatus {
    /// Every line fine.
    Clean,
    /// Some lines rejected, failed or carrying a code.
    Rows,
    /// Refused whole (its header, or not text): nothing applied; moved to
    /// `processed/`.
    Refused,
    /// Held by a safety guard: nothing applied; it stays in the inbox until
    /// released (`--force`) or superseded.
    Held,
    /// Held, and a newer file of the same pattern came: moved to
    /// `processed/` unapplied (`<stem>.<timestamp>.superseded.csv`), the newer
    /// one planned instead.
    Superseded,
    /// The sink could not be reached for some writes (exit 1).
    SinkUnavailable,
}

impl FileStatus {
    /// In a word or two, for tables and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            FileStatus::Clean => "ok",
            FileStatus::Rows => "rows with problems",
            FileStatus::Refused => "refused",
            FileStatus::Held => "held",
            FileStatus::Superseded => "superseded",
            FileStatus::SinkUnavailable => "sink unavailable",
        }
    }
}

/// The report of one file.
#[derive(Clone, Debug)]
pub struct FileReport {
    pub file: PathBuf,
    pub status: FileStatus,
    /// Why it was refused, held or superseded, in one line; else none.
    pub why: Option<String>,
    pub results: Option<PathBuf>,
    pub summary: String,
    /// Records read.
    pub records: u64,
    /// Lines per action, in the order of [`Action::ALL`](crate::model::Action::ALL).
    pub counts: [usize; 6],
    /// The profile it was read with.
    pub profile: String,
    /// Lines per action and outcome.
    pub outcomes: Counts,
}

/// Lines by action and outcome, in the orders of
/// [`Action::ALL`](crate::model::Action::ALL) and
/// [`Outcome::ALL`](crate::results::Outcome::ALL).
pub type Counts = [[u64; 4]; 6];

pub use history::{
    history_of, open_results, release, runs, tenant_status, FileRecord, ReleaseError, RunRecord,
    TenantStatus,
};
pub use rebuild::{rebuild_tenant, Rebuilt};
pub use report::counts_json;
pub use writer::WriteProgress;

/// How far a run has come, for progress displays: the phases of each file
/// in turn.
#[derive(Clone, Debug)]
pub enum RunProgress<'a> {
    /// The run holds its tenant (its lock, and under `[cluster]` its
    /// lease) and begins.
    Started,
    /// Reading the file: `bytes` of `size` read.
    Reading {
        file: &'a Path,
        records: u64,
        bytes: u64,
        size: u64,
    },
    /// Comparing the file with the store, and settling its updates.
    Planning { file: &'a Path },
    /// Writing to the sink.
    Writing {
        file: &'a Path,
        progress: WriteProgress,
    },
    /// Saving the state store (folding its journal into its tables).
    Saving,
}

/// The writes of a file, in the order they are sent (SPEC §3 step 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WritePhase {
    /// Creates, updates and deactivations (groups parent first).
    Objects,
    /// The users' manager links and memberships, once every object exists.
    Links,
    /// Deletions, last (groups children first).
    Deletions,
}

impl WritePhase {
    pub fn as_str(self) -> &'static str {
        match self {
            WritePhase::Objects => "creates and updates",
            WritePhase::Links => "links",
            WritePhase::Deletions => "deletions",
        }
    }
}

/// What a run of one tenant reads: the files its inbox may hold, each
/// with its profile, and how its writes are batched. [`Tenant::job`] is a
/// configured tenant's; a library caller builds its own.
#[derive(Clone, Copy, Debug)]
pub struct Job<'a> {
    /// Names the tenant in summaries and logs.
    pub name: &'a str,
    /// File name patterns and the profile of each; a file takes the first
    /// pattern it matches.
    pub files: &'a [(glob::Pattern, Profile)],
    /// Operations per sink batch (at least 1).
    pub batch_size: usize,
    /// A file is taken once its size is the same across two looks this
    /// many milliseconds apart (0: one look).
    pub settle_ms: u64,
}

impl Job<'_> {
    /// Whether one of the files is of `kind`.
    fn has(&self, kind: ObjectKind) -> bool {
        self.files.iter().any(|(_, p)| p.object == kind)
    }
}

impl Tenant {
    /// What a run of this tenant reads.
    pub fn job(&self) -> Job<'_> {
        Job {
            name: &self.name,
            files: &self.files,
            batch_size: self.batch_size,
            settle_ms: self.settle_ms,
        }
    }
}

/// The whole pipeline over what the caller brings: the inbox, the state
/// store and the sink. [`run_tenant`] is this over a configured tenant's
/// (the embedded store, its sink, its folder or SFTP inbox).
pub struct Pipeline<'a> {
    pub job: Job<'a>,
    pub source: &'a mut dyn Source,
    pub store: &'a mut dyn StateStore,
    /// Never called on a dry run.
    pub sink: &'a mut dyn Sink,
}

impl Pipeline<'_> {
    /// Recovers what a crash left in the journal (not on a dry run), then
    /// takes each file of the inbox through the pipeline: groups first,
    /// then segments, then users. `progress` is told how far it has come.
    pub fn run(
        &mut self,
        opts: &RunOptions,
        progress: &mut dyn FnMut(RunProgress<'_>),
    ) -> Result<Vec<FileReport>, RunError> {
        if !opts.dry_run {
            recover(self.store, self.sink)?;
        }
        let files = pick_up(self.job, self.source)?;
        let mut reports = Vec::new();
        for (i, picked) in files.iter().enumerate() {
            if opts.stopping() {
                return Err(RunError::Stopped);
            }
            let name = &picked.name;
            let fetched = self.source.fetch(name)?;
            let result = self.take_file(name, &fetched, picked.profile, opts, progress);
            self.source.release(&fetched.local);
            let mut report = result?;
            let newer = files[i + 1..].iter().find(|f| f.pattern == picked.pattern);
            if let (FileStatus::Held, Some(newer), false) = (&report.status, newer, opts.dry_run) {
                supersede(self.source, &mut report, &newer.name)?;
                // A release of it no longer applies (a later file of the
                // same name is another file).
                self.store.set_released(name, false)?;
            }
            reports.push(report);
            // The file's writes are durable in the journal; folding them
            // into the tables, when due, waits until its plan is freed and
            // its results are out.
            if !opts.dry_run {
                progress(RunProgress::Saving);
            }
            self.store.sync()?;
        }
        if !opts.dry_run {
            self.sink.finish()?;
        }
        Ok(reports)
    }

    /// One file fetched, processed. One with the same content as a file
    /// applied before is processed all the same: its rows come out
    /// `unchanged` at no write, but the end dates reached since act.
    fn take_file(
        &mut self,
        name: &str,
        fetched: &Fetched,
        profile: &Profile,
        opts: &RunOptions,
        progress: &mut dyn FnMut(RunProgress<'_>),
    ) -> Result<FileReport, RunError> {
        let earlier = self.store.seen_content(fetched.hash)?;
        if let Some(earlier) = &earlier {
            tracing::info!(
                file = ?name,
                earlier = ?earlier,
                "same content as a file applied before: planned again for the dates reached since"
            );
        }
        let file = InboxFile {
            name,
            fetched,
            earlier: earlier.as_deref(),
        };
        self.process_file(profile, &file, opts, progress)
    }
}

/// Runs one tenant.
pub fn run_tenant(tenant: &Tenant, opts: &RunOptions) -> Result<Vec<FileReport>, RunError> {
    run_tenant_with_progress(tenant, opts, &mut |_| {})
}

/// [`run_tenant`], telling `progress` how far it has come. A panic inside
/// (a bug, or a damaged file read) ends this tenant's run with
/// [`RunError::Internal`], not the process: the other tenants of a daemon
/// go on.
pub fn run_tenant_with_progress(
    tenant: &Tenant,
    opts: &RunOptions,
    progress: &mut dyn FnMut(RunProgress<'_>),
) -> Result<Vec<FileReport>, RunError> {
    let run = std::panic::AssertUnwindSafe(|| run_locked(tenant, opts, progress));
    std::panic::catch_unwind(run).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        Err(RunError::Internal(what))
    })
}

/// [`run_tenant_with_progress`] itself: the tenant's lock held, the
/// store, source and sink opened, the pipeline run.
fn run_locked(
    tenant: &Tenant,
    opts: &RunOptions,
    progress: &mut dyn FnMut(RunProgress<'_>),
) -> Result<Vec<FileReport>, RunError> {
    // Under [cluster] the tenant's lease is its lock, on every machine (a
    // file lock would also hold a daemon stopped past its lease), and is
    // claimed first: a slot another daemon ran costs no connection to the
    // source.
    let (_lock, leased) = match tenant.cluster {
        Some(_) => (None, Some(open_for_run(tenant, opts.trigger)?)),
        None => (Some(lock(tenant)?), None),
    };
    progress(RunProgress::Started);
    let mut source = crate::source::open(&tenant.source, &tenant.spool())?;
    // A store that went missing is not made anew while processed/ shows
    // files were applied (SPEC §6): that run would create everyone again.
    if tenant.cluster.is_none() && !tenant.state.exists() {
        let names = source.processed_names()?;
        if let Some(evidence) = crate::source::applied_original(&names) {
            return Err(RunError::StoreMissing {
                state: tenant.state.display().to_string(),
                evidence: evidence.to_string(),
            });
        }
    }
    let (mut store, lease) = match leased {
        Some(leased) => leased,
        None => (open_store(tenant)?, None),
    };
    let started = jiff::Timestamp::now();
    let mut requests = Vec::new();
    let outcome = run_opened(
        tenant,
        opts,
        progress,
        source.as_mut(),
        store.as_mut(),
        &mut requests,
    );
    // A cluster tenant's slot is over (SPEC §9): its next due time is
    // written under the lease, before the history, so that a daemon dying
    // from here on leaves nothing for another to run again. A run stopped
    // on request is left for another daemon to go on with now.
    let lost = matches!(&outcome, Err(e) if e.lease_lost());
    if lease.is_some()
        && opts.trigger != Trigger::Manual
        && !lost
        && !matches!(outcome, Err(RunError::Stopped))
    {
        let next = tenant.next_slot(jiff::Timestamp::now());
        if let Err(e) = store.set_daemon_value(crate::store::NEXT_DUE, &next.to_string()) {
            tracing::warn!(tenant = %tenant.name, error = %e, "the next due time could not be written");
        }
    }
    // The history (SPEC §8); a run is not failed for want of recording it.
    // A run that lost its lease records nothing: the one that took it
    // over does.
    if !opts.dry_run && !lost {
        let recorded = history::record(
            store.as_mut(),
            tenant.keep_runs,
            started,
            &outcome,
            requests,
        );
        let id = recorded.unwrap_or_else(|e| {
            tracing::warn!(tenant = %tenant.name, error = %e, "the run could not be recorded in the history");
            None
        });
        // Told once the run is over and recorded; never fails it.
        if !tenant.notify.is_empty() {
            let events = history::events(&tenant.name, id, &outcome);
            // An e-mail's results are read where the run left them.
            let mut results = |location: &str| {
                source
                    .read_processed(history::processed_name(location))
                    .map_err(|e| tracing::warn!(results = %location, error = %e, "results not readable for a notification"))
                    .ok()
            };
            crate::notify::send(&tenant.notify, &events, &mut results);
        }
    }
    if let Some(lease) = lease {
        if let Err(e) = lease.release() {
            tracing::warn!(tenant = %tenant.name, error = %e, "the tenant's lease could not be released: it lapses");
        }
    }
    outcome
}

/// [`run_locked`] once the source and the store are open: the sink
/// opened and the pipeline run. The requests the sink sent, by answer
/// status, go to `requests`.
fn run_opened(
    tenant: &Tenant,
    opts: &RunOptions,
    progress: &mut dyn FnMut(RunProgress<'_>),
    source: &mut dyn Source,
    store: &mut dyn StateStore,
    requests: &mut Vec<(String, u64)>,
) -> Result<Vec<FileReport>, RunError> {
    // A dry run sends nothing, so it needs no LMS (it works offline) and
    // leaves a crash's journal to the next real run.
    let mut sink: Box<dyn Sink> = if opts.dry_run {
        Box::new(DryRun)
    } else {
        let job = tenant.job();
        crate::sink::open(&tenant.sink, job.has(ObjectKind::Group))?
    };
    let outcome = Pipeline {
        job: tenant.job(),
        source,
        store,
        sink: sink.as_mut(),
    }
    .run(opts, progress);
    *requests = sink.requests();
    outcome
}

/// A tenant's state store: its embedded store, or under `[cluster]` its
/// state in PostgreSQL (for reading it, or for what needs no lease).
pub fn open_store(tenant: &Tenant) -> Result<Box<dyn StateStore>, RunError> {
    let Some(cluster) = &tenant.cluster else {
        return Ok(Box::new(RedbStore::open(&tenant.state)?));
    };
    #[cfg(feature = "cluster")]
    {
        let store = crate::store::PostgresStore::connect(cluster.url.expose(), &tenant.name)?;
        Ok(Box::new(store))
    }
    #[cfg(not(feature = "cluster"))]
    {
        let _ = cluster;
        Err(without_cluster())
    }
}

/// A run's hold on a `[cluster]` tenant (SPEC §9): its lease.
#[cfg(feature = "cluster")]
pub use crate::store::Lease as RunLease;

/// A run's hold on a `[cluster]` tenant: never held without the feature.
#[cfg(not(feature = "cluster"))]
#[derive(Debug)]
pub enum RunLease {}

#[cfg(not(feature = "cluster"))]
impl RunLease {
    pub fn release(self) -> Result<(), StoreError> {
        match self {}
    }
}

#[cfg(not(feature = "cluster"))]
fn without_cluster() -> RunError {
    RunError::StatePath {
        path: "[cluster]".into(),
        error: std::io::Error::other("this muster is built without the `cluster` feature"),
    }
}

/// The store of a run of `tenant`, and under `[cluster]` the tenant's
/// lease, claimed for `trigger` ([`RunError::Busy`] while another muster
/// holds it, [`RunError::NotDue`] for a slot another daemon ran): the
/// store's writes are fenced by it, and it is released (or dropped) when
/// the run ends.
pub fn open_for_run(
    tenant: &Tenant,
    trigger: Trigger,
) -> Result<(Box<dyn StateStore>, Option<RunLease>), RunError> {
    let Some(cluster) = &tenant.cluster else {
        return Ok((open_store(tenant)?, None));
    };
    #[cfg(feature = "cluster")]
    {
        use crate::store::Claim;
        let url = cluster.url.expose();
        let lease_for = std::time::Duration::from_millis(cluster.lease_ms);
        let next = (trigger != Trigger::Manual).then(|| tenant.next_slot(jiff::Timestamp::now()));
        let due_only = trigger == Trigger::Due;
        let lease = match crate::store::claim(url, &tenant.name, lease_for, due_only, next)? {
            Claim::Held(lease) => lease,
            Claim::Busy => return Err(RunError::Busy(tenant.name.clone())),
            Claim::NotDue(next) => {
                return Err(RunError::NotDue {
                    tenant: tenant.name.clone(),
                    next,
                })
            }
        };
        let mut store = crate::store::PostgresStore::connect(url, &tenant.name)?;
        store.fence_with(&lease)?;
        Ok((Box::new(store), Some(lease)))
    }
    #[cfg(not(feature = "cluster"))]
    {
        let _ = (cluster, trigger);
        Err(without_cluster())
    }
}

/// One run of a tenant at a time, across processes (a manual run, the
/// daemon, a rebuild): an exclusive lock on `<state>.lock`, held while the
/// returned file is open.
fn lock(tenant: &Tenant) -> Result<File, RunError> {
    let lock_path = PathBuf::from(format!("{}.lock", tenant.state.display()));
    let unusable = |error| RunError::StatePath {
        path: tenant.state.display().to_string(),
        error,
    };
    if let Some(dir) = lock_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(unusable)?;
    }
    let lock = File::create(&lock_path).map_err(unusable)?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(RunError::Busy(tenant.name.clone())),
        Err(std::fs::TryLockError::Error(e)) => Err(io(&lock_path)(e)),
    }
}

/// The sink of a dry run: nothing reaches it.
struct DryRun;

impl Sink for DryRun {
    fn apply(&mut self, batch: &[Operation]) -> Result<Vec<Ack>, crate::sink::SinkError> {
        let message = format!("{} operations sent during a dry run", batch.len());
        Err(crate::sink::SinkError::other("dry run", message))
    }
    fn recover(
        &mut self,
        _: &[crate::store::PendingOp],
    ) -> Result<Vec<u64>, crate::sink::SinkError> {
        Ok(Vec::new())
    }
}

/// A file taken from the inbox: its name there, a local path with its
/// bytes, and its content hash.
struct InboxFile<'a> {
    name: &'a str,
    fetched: &'a Fetched,
    /// The processed name of an earlier file with the same content.
    earlier: Option<&'a str>,
}

impl InboxFile<'_> {
    /// Where its snapshot is.
    fn local(&self) -> &Path {
        &self.fetched.local
    }

    /// An error unless the snapshot is still the version planned from.
    fn unchanged(&self) -> Result<(), RunError> {
        match self.fetched.unchanged() {
            true => Ok(()),
            false => Err(io(self.local())(std::io::Error::other(
                "the file was rewritten in place while it was being run; the run stops here (what was sent is committed; the next run plans the file again)",
            ))),
        }
    }
}

/// A held file a newer file of its pattern supersedes: moved to
/// `processed/` as `<stem>.<timestamp>.superseded.csv`, unapplied.
fn supersede(
    source: &mut dyn Source,
    report: &mut FileReport,
    newer: &str,
) -> Result<(), RunError> {
    let name = report.file.to_string_lossy().into_owned();
    let stem = Path::new(&name)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("file");
    let ext = processed::extension(&name);
    let stamp = processed::stamped(source, (stem, ext), ".superseded")?;
    source.archive(&name, &format!("{stamp}.superseded.{ext}"))?;
    tracing::info!(
        file = ?name,
        newer = ?newer,
        "held file superseded by a newer one; moved to processed/ unapplied"
    );
    let held = report.why.take().unwrap_or_default();
    report.status = FileStatus::Superseded;
    report.why = Some(format!(
        "by {newer} (was held: {held}); moved to processed/ unapplied"
    ));
    Ok(())
}

/// Commits the journalled operations the sink already applied; drops the rest.
pub fn recover(store: &mut dyn StateStore, sink: &mut dyn Sink) -> Result<(), RunError> {
    let pending = store.pending()?;
    if pending.is_empty() {
        return Ok(());
    }
    let applied: ahash::AHashSet<u64> = sink.recover(&pending)?.into_iter().collect();
    let (done, dropped): (Vec<PendingOp>, Vec<PendingOp>) =
        pending.into_iter().partition(|p| applied.contains(&p.id));
    let dropped: Vec<u64> = dropped.iter().map(|p| p.id).collect();
    tracing::warn!(
        committed = done.len(),
        dropped = dropped.len(),
        "recovered the writes of an interrupted run"
    );
    store.commit(&done, &dropped)?;
    Ok(())
}

/// An inbox file to process: its name, the index of the pattern it
/// matched in [`Job::files`], and that pattern's profile.
struct Picked<'t> {
    name: String,
    pattern: usize,
    profile: &'t Profile,
}

/// The inbox files to process now, in dependency order (then by name):
/// matching a pattern, not ignored, and the same size across two looks
/// `settle_ms` apart.
fn pick_up<'t>(job: Job<'t>, source: &mut dyn Source) -> Result<Vec<Picked<'t>>, RunError> {
    let first = source.list()?;
    if job.settle_ms > 0 {
        std::thread::sleep(Duration::from_millis(job.settle_ms));
    }
    let second = source.list()?;
    let mut files = Vec::new();
    for (name, size) in first {
        if crate::source::ignored(&name) {
            tracing::debug!(file = ?name, "a partial, temporary or hidden file: never taken");
            continue;
        }
        let Some(pattern) = job.files.iter().position(|(p, _)| p.matches(&name)) else {
            tracing::info!(file = ?name, "matches none of the tenant's file patterns; left in the inbox");
            continue;
        };
        if second.iter().find(|(n, _)| *n == name).map(|(_, s)| *s) != Some(size) {
            tracing::info!(file = ?name, "still being written; left for the next run");
            continue;
        }
        let profile = &job.files[pattern].1;
        files.push(Picked {
            name,
            pattern,
            profile,
        });
    }
    let rank = |k: ObjectKind| match k {
        ObjectKind::Group => 0,
        ObjectKind::Segment => 1,
        ObjectKind::User => 2,
    };
    files.sort_by(|a, b| {
        let by_kind = rank(a.profile.object).cmp(&rank(b.profile.object));
        by_kind.then(a.name.cmp(&b.name))
    });
    Ok(files)
}
