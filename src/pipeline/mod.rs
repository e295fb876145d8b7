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
//!    ([`crate::source::Fetched`]) and skipped if its content was applied.
//! 3. Per file (`file.rs`): read, compare with the store and settle the
//!    updates ([`crate::plan`], [`crate::diff`]), then the guards
//!    ([`crate::guard`]); a held file writes nothing. Then the write pass
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
mod links;
mod processed;
mod report;
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
    /// Refused (header, not text) or held by a guard: nothing applied.
    Refused,
    /// The sink could not be reached for some writes (exit 1).
    SinkUnavailable,
}

/// The report of one file.
#[derive(Clone, Debug)]
pub struct FileReport {
    pub file: PathBuf,
    pub status: FileStatus,
    pub results: Option<PathBuf>,
    pub summary: String,
    /// Records read.
    pub records: u64,
    /// Lines per action, in the order of [`Action::ALL`](crate::model::Action::ALL).
    pub counts: [usize; 6],
}

/// How far a run has come, for progress displays.
#[derive(Clone, Debug)]
pub enum RunProgress<'a> {
    Reading {
        file: &'a Path,
        records: u64,
        bytes: u64,
    },
    Writing {
        file: &'a Path,
        written: u64,
    },
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
        for (name, profile) in files {
            if opts.stopping() {
                return Err(RunError::Stopped);
            }
            let fetched = self.source.fetch(&name)?;
            let result = self.take_file(&name, &fetched, profile, opts, progress);
            self.source.release(&fetched.local);
            reports.push(result?);
            // The file's writes are durable in the journal; folding them
            // into the tables, when due, waits until its plan is freed and
            // its results are out.
            self.store.sync()?;
        }
        if !opts.dry_run {
            self.sink.finish()?;
        }
        Ok(reports)
    }

    /// One file fetched: skipped if its content was applied before, else
    /// processed.
    fn take_file(
        &mut self,
        name: &str,
        fetched: &Fetched,
        profile: &Profile,
        opts: &RunOptions,
        progress: &mut dyn FnMut(RunProgress<'_>),
    ) -> Result<FileReport, RunError> {
        if let Some(earlier) = self.store.seen_content(fetched.hash)? {
            return skip_seen(self.source, name, &earlier, opts);
        }
        let file = InboxFile { name, fetched };
        self.process_file(profile, &file, opts, progress)
    }
}

/// Runs one tenant.
pub fn run_tenant(tenant: &Tenant, opts: &RunOptions) -> Result<Vec<FileReport>, RunError> {
    run_tenant_with_progress(tenant, opts, &mut |_| {})
}

/// [`run_tenant`], telling `progress` how far it has come.
pub fn run_tenant_with_progress(
    tenant: &Tenant,
    opts: &RunOptions,
    progress: &mut dyn FnMut(RunProgress<'_>),
) -> Result<Vec<FileReport>, RunError> {
    // One run of a tenant at a time, across processes (a manual run and
    // the daemon): an exclusive lock on `<state>.lock`, held to the end.
    let lock_path = PathBuf::from(format!("{}.lock", tenant.state.display()));
    if let Some(dir) = lock_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let lock = File::create(&lock_path).map_err(io(&lock_path))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(RunError::Busy(tenant.name.clone())),
        Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
    }
    let mut store = RedbStore::open(&tenant.state)?;
    // A dry run sends nothing, so it needs no LMS (it works offline) and
    // leaves a crash's journal to the next real run.
    let mut sink: Box<dyn Sink> = if opts.dry_run {
        Box::new(DryRun)
    } else {
        let job = tenant.job();
        crate::sink::open(&tenant.sink, job.has(ObjectKind::Group))?
    };
    let mut source = crate::source::open(&tenant.source, &tenant.spool())?;
    Pipeline {
        job: tenant.job(),
        source: source.as_mut(),
        store: &mut store,
        sink: sink.as_mut(),
    }
    .run(opts, progress)
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

/// A file whose content was processed before (a crash left it in the
/// inbox after its results were published, or it was dropped again): it
/// is moved to `processed/` without being applied a second time.
fn skip_seen(
    source: &mut dyn Source,
    name: &str,
    earlier: &str,
    opts: &RunOptions,
) -> Result<FileReport, RunError> {
    tracing::warn!(
        file = name,
        earlier,
        "same content as a file processed before; not applied again"
    );
    let stem = Path::new(name)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("file");
    if !opts.dry_run {
        let stamp = processed::stamped(source, stem, "")?;
        source.archive(name, &format!("{stamp}.csv"))?;
    }
    Ok(FileReport {
        file: PathBuf::from(name),
        status: FileStatus::Clean,
        results: None,
        summary: format!("same content as {earlier}, processed before: not applied again"),
        records: 0,
        counts: [0; 6],
    })
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

/// The inbox files to process now, in dependency order: matching a
/// pattern, not ignored, and the same size across two looks `settle_ms`
/// apart.
fn pick_up<'t>(
    job: Job<'t>,
    source: &mut dyn Source,
) -> Result<Vec<(String, &'t Profile)>, RunError> {
    let first = source.list()?;
    if job.settle_ms > 0 {
        std::thread::sleep(Duration::from_millis(job.settle_ms));
    }
    let second = source.list()?;
    let mut files = Vec::new();
    for (name, size) in first {
        if crate::source::ignored(&name) {
            continue;
        }
        let Some((_, profile)) = job.files.iter().find(|(p, _)| p.matches(&name)) else {
            continue;
        };
        if second.iter().find(|(n, _)| *n == name).map(|(_, s)| *s) != Some(size) {
            tracing::info!(file = name, "still being written; left for the next run");
            continue;
        }
        files.push((name, profile));
    }
    let rank = |k: ObjectKind| match k {
        ObjectKind::Group => 0,
        ObjectKind::Segment => 1,
        ObjectKind::User => 2,
    };
    files.sort_by(|a, b| rank(a.1.object).cmp(&rank(b.1.object)).then(a.0.cmp(&b.0)));
    Ok(files)
}
