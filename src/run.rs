//! `muster run`: one tenant's files, from the inbox to the sink and
//! `processed/`.
//!
//! # What a run does
//!
//! 1. Recovery: operations a crash left in the store's journal are asked of
//!    the sink; those it applied are committed, the others dropped (they are
//!    planned again below).
//! 2. Pickup: files of the inbox matching a pattern, not `.part` / `.tmp` /
//!    dot files, whose size is the same across two looks `settle_ms` apart;
//!    groups first, then segments, then users (so a users file can name the
//!    groups of the same run).
//! 3. Per file: plan against the store ([`crate::plan`]), check the guards
//!    ([`crate::guard`]); a held file writes nothing. Then a second read of
//!    the file sends the planned writes in batches — journalled in the store
//!    first, committed only once the sink acknowledged them — deletions
//!    last.
//! 4. The results CSV and a summary JSON go to `processed/` under a
//!    temporary name, then are renamed; the original is moved beside them:
//!    `<stem>.<UTC timestamp>.csv`, `.results.csv`, `.summary.json`.
//!
//! `--dry-run` plans and checks the guards but writes nothing to the sink or
//! the store and moves nothing: its results and summary go to `processed/`
//! as `<stem>.<timestamp>.dry-run.results.csv` / `.dry-run.summary.json`.
//! It does not open the sink (a dry run needs no LMS) and leaves a crash's
//! journal to the next real run.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::code::Code;
use crate::config::Tenant;
use crate::diff::{changed_fields, FieldHash, Fingerprinter, Prior};
use crate::guard::{self, Verdict};
use crate::plan::{self, Action, FileError, Plan, PlannedRow};
use crate::profile::{Cell, Date, FieldKind, FieldName, Layout, MappedRow, ObjectKind, Profile};
use crate::reader::Record;
use crate::results::{Outcome, ResultsWriter};
use crate::sink::{Ack, KnownId, Operation, Sink, Value};
use crate::snapshot::RecordsAt;
use crate::source::{Source, SourceError};
use crate::store::{JournalSync, PendingOp, RedbStore, StateStore, StoreError, StoredObject};

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
    /// Lines per action, in the order of [`Action::ALL`].
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
        let group_file = tenant
            .files
            .iter()
            .any(|(_, p)| p.object == ObjectKind::Group);
        crate::sink::open(&tenant.sink, group_file)?
    };
    if !opts.dry_run {
        recover(&mut store, sink.as_mut())?;
    }
    let mut source = crate::source::open(&tenant.source, &tenant.spool())?;
    let files = pick_up(tenant, source.as_mut())?;
    let mut reports = Vec::new();
    for (name, profile) in files {
        if opts.stopping() {
            return Err(RunError::Stopped);
        }
        let local = source.fetch(&name)?;
        let result = (|| {
            let hash = content_hash(&local)?;
            if let Some(earlier) = store.seen_content(hash)? {
                return skip_seen(source.as_mut(), &name, &earlier, opts);
            }
            let file = InboxFile {
                name: &name,
                local: &local,
                hash,
            };
            process_file(
                tenant,
                profile,
                &file,
                source.as_mut(),
                &mut store,
                sink.as_mut(),
                opts,
                progress,
            )
        })();
        source.release(&local);
        reports.push(result?);
        // The file's writes are durable in the journal; folding them into
        // the tables, when due, waits until its plan is freed and its
        // results are out.
        store.sync()?;
    }
    sink.finish()?;
    Ok(reports)
}

/// The sink of a dry run: nothing reaches it.
struct DryRun;

impl Sink for DryRun {
    fn apply(&mut self, batch: &[Operation]) -> Result<Vec<Ack>, crate::sink::SinkError> {
        Err(crate::sink::SinkError {
            sink: "dry run".into(),
            message: format!("{} operations sent during a dry run", batch.len()),
        })
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
    local: &'a Path,
    hash: u128,
}

/// xxh3-128 of a file's bytes: the same content is never processed twice.
fn content_hash(path: &Path) -> Result<u128, RunError> {
    let mut file = File::open(path).map_err(io(path))?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(path)(e)),
        }
    }
    Ok(hasher.digest128())
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
        let stamp = stamped(source, stem, "")?;
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
    tenant: &'t Tenant,
    source: &mut dyn Source,
) -> Result<Vec<(String, &'t Profile)>, RunError> {
    let first = source.list()?;
    if tenant.settle_ms > 0 {
        std::thread::sleep(Duration::from_millis(tenant.settle_ms));
    }
    let second = source.list()?;
    let mut files = Vec::new();
    for (name, size) in first {
        if crate::source::ignored(&name) {
            continue;
        }
        let Some((_, profile)) = tenant.files.iter().find(|(p, _)| p.matches(&name)) else {
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

/// `<stem>.<UTC timestamp>`, not taken yet in the source's `processed/`.
fn stamped(source: &mut dyn Source, stem: &str, suffix: &str) -> Result<String, RunError> {
    let ts = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let mut name = format!("{stem}.{ts}");
    let mut n = 1;
    while source.processed_exists(&format!("{name}{suffix}.csv"))?
        || source.processed_exists(&format!("{name}{suffix}.results.csv"))?
    {
        n += 1;
        name = format!("{stem}.{ts}-{n}");
    }
    Ok(name)
}

/// Publishes the results and summary of a file, records its content as
/// applied (`applied`: not a file refused or held, which `--force` or a fix
/// may send again), and moves the original beside them (not on a dry run,
/// nor when `keep`: a file whose sink was unavailable, for the next run).
fn finish_file(
    source: &mut dyn Source,
    store: &mut RedbStore,
    opts: &RunOptions,
    file: &InboxFile<'_>,
    (stamp, applied, keep): (&str, bool, bool),
    staged: &[&Path],
) -> Result<(), RunError> {
    for local in staged {
        let name = local
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        source.publish(local, &name)?;
    }
    if !opts.dry_run {
        let to = format!("{stamp}.csv");
        if applied {
            store.remember_content(file.hash, &to)?;
        }
        if !keep {
            source.archive(file.name, &to)?;
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temporary name and a rename.
fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<(), RunError> {
    let tmp = path.with_extension("tmp");
    let mut w = BufWriter::new(File::create(&tmp).map_err(io(&tmp))?);
    write(&mut w).map_err(io(&tmp))?;
    let f = w.into_inner().map_err(|e| io(&tmp)(e.into_error()))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Per plan row: what happened. 16 bytes a row: the rest, which few rows
/// have, is boxed (a million rows' lines are then 16 MB of fresh memory,
/// not 56).
#[derive(Clone, Debug)]
struct Line {
    outcome: Outcome,
    more: Option<Box<LineMore>>,
}

/// What a [`Line`] keeps apart.
#[derive(Clone, Debug, Default)]
struct LineMore {
    /// The sink's code and message for a write it failed.
    code: Option<Code>,
    message: Option<String>,
    /// The LMS's id for the object, when the sink's acknowledgement gave
    /// one: the row's second-wave write carries it on to the store.
    lms_id: Option<String>,
}

const _: () = assert!(std::mem::size_of::<Line>() == 16);

impl Line {
    fn new(outcome: Outcome) -> Line {
        Line {
            outcome,
            more: None,
        }
    }

    /// A write the sink failed: its code and message.
    fn failed(code: Code, message: String) -> Line {
        Line {
            outcome: Outcome::Failed,
            more: Some(Box::new(LineMore {
                code: Some(code),
                message: Some(message),
                lms_id: None,
            })),
        }
    }

    fn code(&self) -> Option<Code> {
        self.more.as_ref().and_then(|m| m.code)
    }

    fn message(&self) -> Option<&str> {
        self.more.as_ref().and_then(|m| m.message.as_deref())
    }

    fn lms_id(&self) -> Option<&String> {
        self.more.as_ref().and_then(|m| m.lms_id.as_ref())
    }

    fn set_lms_id(&mut self, lms_id: Option<String>) {
        if lms_id.is_some() || self.more.is_some() {
            self.more.get_or_insert_default().lms_id = lms_id;
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn process_file(
    tenant: &Tenant,
    profile: &Profile,
    file: &InboxFile<'_>,
    source: &mut dyn Source,
    store: &mut RedbStore,
    sink: &mut dyn Sink,
    opts: &RunOptions,
    progress: &mut dyn FnMut(RunProgress<'_>),
) -> Result<FileReport, RunError> {
    let started = Instant::now();
    let today = opts.today.unwrap_or_else(|| profile.today());
    let path = file.local;
    let stem = Path::new(file.name)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("file")
        .to_string();
    let suffix = if opts.dry_run { ".dry-run" } else { "" };
    let name = stamped(source, &stem, suffix)?;
    let results_path = source.staging().join(format!("{name}{suffix}.results.csv"));
    let summary_path = source
        .staging()
        .join(format!("{name}{suffix}.summary.json"));
    let shown = PathBuf::from(file.name);
    let kind = profile.object;
    let ms = || started.elapsed().as_millis() as u64;
    let size = std::fs::metadata(path).map_err(io(path))?.len();
    // A users file's groups and segments must name objects of the tenant's
    // group and segment files, when it has them (processed before it).
    let has = |k: ObjectKind| tenant.files.iter().any(|(_, p)| p.object == k);
    let groups = if kind == ObjectKind::User && has(ObjectKind::Group) {
        Some(store.prior(ObjectKind::Group)?)
    } else {
        None
    };
    let segments = if kind == ObjectKind::User && has(ObjectKind::Segment) {
        Some(store.prior(ObjectKind::Segment)?)
    } else {
        None
    };
    let refs = plan::ListRefs {
        groups: groups.as_ref().map(|p| p as &dyn Prior),
        segments: segments.as_ref().map(|p| p as &dyn Prior),
    };
    // The last applied state is loaded (and indexed) on its own thread
    // while the pool reads the file: the two need nothing of each other.
    let store_ref: &RedbStore = store;
    let (prior, planned) = std::thread::scope(|s| {
        let loading = s.spawn(|| {
            store_ref.prior(kind).inspect(|prior| {
                prior.index();
                tracing::debug!(ms = ms(), objects = prior.len(), "run: prior loaded");
            })
        });
        let planned = File::open(path).map_err(io(path)).map(|f| {
            plan::read_with(
                profile,
                f,
                today,
                plan::ReadOptions {
                    size_hint: Some(size),
                    refs,
                    ..plan::ReadOptions::default()
                },
                &mut |p| {
                    progress(RunProgress::Reading {
                        file: path,
                        records: p.records,
                        bytes: p.bytes,
                    })
                },
            )
        });
        let prior = loading
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (prior, planned)
    });
    let prior = prior?;
    let mut plan = match planned? {
        Ok(plan) => plan,
        Err(FileError::Read(crate::reader::ReadError::Io(e))) => return Err(io(path)(e)),
        Err(e) => {
            // Refused whole: a header-only results file, the original moved.
            tracing::warn!(file = %path.display(), error = %e, "file refused");
            write_atomically(&results_path, |w| ResultsWriter::new(w).map(|_| ()))?;
            let summary = summary_json(
                tenant,
                profile,
                source.describe(),
                file.name,
                None,
                &Verdict::default(),
                opts,
                started,
                Some(&e.to_string()),
            );
            write_atomically(&summary_path, |w| w.write_all(summary.as_bytes()))?;
            let staged = [results_path.as_path(), summary_path.as_path()];
            finish_file(source, store, opts, file, (&name, false, false), &staged)?;
            return Ok(FileReport {
                file: shown,
                status: FileStatus::Refused,
                results: Some(source.location(&format!("{name}{suffix}.results.csv"))),
                summary: format!("refused: {e}"),
                records: 0,
                counts: [0; 6],
            });
        }
    };
    tracing::debug!(ms = ms(), "run: file read");
    plan.against(profile, &prior);
    tracing::debug!(ms = ms(), "run: compared");
    let verdict = guard::check(
        &plan,
        &profile.safety,
        prior.len(),
        store.last_records(kind)?,
        opts.force,
    );
    let base = if verdict.held() {
        Outcome::Held
    } else if opts.dry_run {
        Outcome::Planned
    } else {
        Outcome::Ok
    };
    let mut lines: Vec<Line> = (0..plan.len())
        .map(|i| {
            Line::new(
                if base == Outcome::Ok && plan.row(i).action == Action::Reject {
                    Outcome::Failed
                } else {
                    base
                },
            )
        })
        .collect();
    let mut unavailable = false;
    if !verdict.held() {
        let mut written = 0u64;
        let mut on_write = |n: usize| {
            written += n as u64;
            progress(RunProgress::Writing {
                file: path,
                written,
            });
        };
        unavailable = write_pass(
            tenant,
            profile,
            path,
            &mut plan,
            &mut lines,
            store,
            sink,
            opts,
            refs,
            &mut on_write,
        )?;
        if !opts.dry_run && !unavailable {
            store.set_last_records(kind, plan.records)?;
        }
        tracing::debug!(ms = ms(), "run: written");
    }
    write_atomically(&results_path, |w| {
        let lines = &lines;
        let plan = &plan;
        ResultsWriter::new(w)?.write_rows(lines.len(), |i| {
            let (row, line) = (plan.row(i), &lines[i]);
            // The sink's code and message, where it gave one, win.
            let row = PlannedRow {
                code: line.code().or(row.code),
                message: line.message().unwrap_or(row.message),
                ..row
            };
            (row, line.outcome)
        })
    })?;
    let summary = summary_json(
        tenant,
        profile,
        source.describe(),
        file.name,
        Some((&plan, &lines)),
        &verdict,
        opts,
        started,
        None,
    );
    write_atomically(&summary_path, |w| w.write_all(summary.as_bytes()))?;
    // A file whose sink was unavailable stays in the inbox (its results
    // are published): the next run takes it again and resumes its writes,
    // what was applied coming out unchanged.
    let applied = !verdict.held() && !unavailable;
    let staged = [results_path.as_path(), summary_path.as_path()];
    finish_file(
        source,
        store,
        opts,
        file,
        (&name, applied, unavailable),
        &staged,
    )?;
    tracing::debug!(ms = ms(), "run: results written, file moved");
    let tally = plan.tally();
    let status = if unavailable {
        FileStatus::SinkUnavailable
    } else if verdict.held() {
        FileStatus::Refused
    } else if tally.is_clean()
        && lines
            .iter()
            .all(|l| l.code().is_none() && l.outcome != Outcome::Failed)
    {
        FileStatus::Clean
    } else {
        FileStatus::Rows
    };
    let mut text = format!("{} records", plan.records);
    for a in Action::ALL {
        let n = tally.count(a);
        if n > 0 {
            text.push_str(&format!(", {n} {}", a.as_str()));
        }
    }
    for reason in &verdict.reasons {
        text.push_str(&format!("; held: {reason}"));
    }
    Ok(FileReport {
        file: shown,
        status,
        results: Some(source.location(&format!("{name}{suffix}.results.csv"))),
        summary: text,
        records: plan.records,
        counts: tally.by_action,
    })
}

/// The fields of a row as an operation carries them: every field the file
/// states that `wanted` (given its name) says yes to.
fn fields_of(
    profile: &Profile,
    row: &MappedRow,
    wanted: impl Fn(&str) -> bool,
) -> Vec<(FieldName, Value)> {
    let mut out = Vec::new();
    for (slot, spec) in profile.slots.iter().enumerate() {
        if !wanted(spec.name) {
            continue;
        }
        let value = match row.cell(slot) {
            Cell::Absent => continue,
            Cell::Empty if profile.empty == crate::profile::EmptyCell::Keep => continue,
            Cell::Empty if spec.kind == FieldKind::List => Value::List(Vec::new()),
            Cell::Empty => Value::Text(String::new()),
            Cell::Value { .. } if spec.kind == FieldKind::List => {
                Value::List(row.items(slot).map(str::to_string).collect())
            }
            Cell::Value { .. } => Value::Text(row.get(slot).unwrap_or_default().to_string()),
        };
        out.push((spec.name, value));
    }
    out
}

/// One planned write: what the sink gets, and what the journal keeps.
fn planned_write(
    id: u64,
    kind: ObjectKind,
    action: Action,
    key: String,
    fields: Vec<(FieldName, Value)>,
    invite: bool,
    object: StoredObject,
) -> (Operation, PendingOp) {
    let op = Operation {
        op: id,
        kind,
        action,
        key: key.clone(),
        fields,
        invite,
        lms_id: object.lms_id.clone(),
        ids: Vec::new(),
        fresh: action == Action::Create,
    };
    (
        op,
        PendingOp {
            id,
            kind,
            key,
            action,
            object,
        },
    )
}

/// Removes from an operation's fields the references the plan found
/// unresolved: a manager or parent id, and group or segment names the
/// tenant's files do not have.
fn drop_unresolved(
    fields: &mut Vec<(FieldName, Value)>,
    refs: plan::ListRefs<'_>,
    reference_unresolved: bool,
) {
    fields.retain(|(name, _)| {
        !(reference_unresolved && matches!(&**name, "manager_id" | "parent_id"))
    });
    for (name, value) in fields.iter_mut() {
        let known = match &**name {
            "groups" | "admin_groups" => refs.groups,
            "segments" => refs.segments,
            _ => None,
        };
        if let (Some(known), Value::List(items)) = (known, value) {
            items.retain(|i| known.get(i).is_some());
        }
    }
}

/// The second read: builds and sends the planned writes in batches,
/// deletions last. Returns whether the sink was unavailable for some.
#[allow(clippy::too_many_arguments)]
fn write_pass(
    tenant: &Tenant,
    profile: &Profile,
    path: &Path,
    plan: &mut Plan,
    lines: &mut [Line],
    store: &mut RedbStore,
    sink: &mut dyn Sink,
    opts: &RunOptions,
    refs: plan::ListRefs<'_>,
    on_write: &mut dyn FnMut(usize),
) -> Result<bool, RunError> {
    std::thread::scope(|scope| {
        let mut w = Writer::start(scope, store, sink, lines, opts, on_write);
        let sent = plan_and_send(tenant, profile, path, plan, &mut w, refs);
        // What was sent is committed, whatever stopped the pass.
        let settled = w.finish();
        sent.and(settled)
    })
}

/// [`write_pass`]'s body: the writes built from the file, sent through `w`.
fn plan_and_send(
    tenant: &Tenant,
    profile: &Profile,
    path: &Path,
    plan: &mut Plan,
    w: &mut Writer<'_>,
    refs: plan::ListRefs<'_>,
) -> Result<(), RunError> {
    let opts = w.opts;
    let kind = profile.object;
    let records = plan.records as usize;
    let writes = (0..records)
        .filter(|&i| is_write(plan.row(i).action))
        .count();
    if !opts.dry_run {
        w.store.reserve_writes(kind, writes);
    }
    let mut batch: Vec<PlannedWrite> = Vec::new();
    let mut deletions: Vec<PlannedWrite> = Vec::new();
    // Rows whose links follow in the second wave (built then from the file
    // again, so memory holds a few bytes per row, not the operations).
    let mut link_wave: Vec<LinkRow> = Vec::new();
    // Groups are written parent first: hold them until the file is read.
    let hold = kind == ObjectKind::Group;
    // What the plan learns from the writes built (an update whose changed
    // fields are named, or that turns out unchanged): set once the wave is
    // built, the plan being read meanwhile on the builder's thread.
    let mut resolved: Vec<(usize, Action, String)> = Vec::new();
    let first = FirstWave {
        profile,
        plan,
        refs,
        fingerprinter: Fingerprinter::new(profile),
    };
    // The rows are read and their creates built on a thread of their own,
    // in file order, while this one journals and sends them; a row the
    // store has something for comes raw, built here (the store is this
    // thread's).
    let file = RecordsAt::open(
        profile,
        File::open(path).map_err(io(path))?,
        sparse(writes, records),
    )
    .map_err(file_error(path))?;
    let layout = file.layout().clone();
    std::thread::scope(|scope| -> Result<(), RunError> {
        let (tx, built) = crossbeam_channel::bounded(2);
        let (first, layout) = (&first, &layout);
        scope.spawn(move || first.read(file, layout, path, tx));
        let mut row = MappedRow::new();
        for chunk in built {
            for item in chunk? {
                let (idx, built) = match item {
                    FirstItem::Built(idx, built) => (idx, built),
                    FirstItem::Raw(idx, rec) => {
                        let key = plan.row(idx).key.unwrap_or_default();
                        let stored = w.store.get(kind, key)?;
                        (idx, first.build(&rec, layout, &mut row, idx, stored))
                    }
                };
                let planned = plan.row(idx);
                let action = planned.action;
                let (fields, invite, object) = match built {
                    Built::Skip => continue,
                    Built::Unchanged => {
                        resolved.push((idx, Action::Unchanged, planned.message.to_string()));
                        continue;
                    }
                    Built::Write {
                        message,
                        fields,
                        invite,
                        object,
                        link,
                    } => {
                        if let Some(message) = message {
                            resolved.push((idx, Action::Update, message));
                        }
                        if let Some(link) = link {
                            link_wave.push(link);
                            if w.lines[idx].lms_id().is_none() {
                                w.lines[idx].set_lms_id(object.lms_id.clone());
                            }
                            // An update of links only: nothing for this wave.
                            if action == Action::Update && fields.is_empty() {
                                continue;
                            }
                        }
                        (fields, invite, object)
                    }
                };
                let id = if opts.dry_run {
                    0
                } else {
                    w.store.next_op_id()?
                };
                let key = planned.key.unwrap_or_default().to_string();
                let (op, pending) = planned_write(id, kind, action, key, fields, invite, object);
                if action == Action::Delete {
                    deletions.push((idx, op, pending));
                } else {
                    batch.push((idx, op, pending));
                    if !hold && batch.len() >= tenant.batch_size {
                        w.send(std::mem::take(&mut batch))?;
                    }
                }
            }
        }
        Ok(())
    })?;
    for (idx, action, message) in resolved {
        let code = plan.row(idx).code;
        plan.set_row(idx, action, code, message);
    }
    if hold {
        let depth = plan.parent_depths();
        batch.sort_by_key(|(idx, _, _)| depth[*idx]);
    }
    let size = tenant.batch_size;
    w.send_all(std::mem::take(&mut batch), size)?;
    // Rows the missing rule adds, after the file's rows.
    for idx in records..plan.len() {
        let planned = plan.row(idx);
        let key = planned.key.unwrap_or_default().to_string();
        let Some(stored) = w.store.get(kind, &key)? else {
            continue;
        };
        let id = if opts.dry_run {
            0
        } else {
            w.store.next_op_id()?
        };
        let action = planned.action;
        let object = StoredObject {
            active: false,
            ..stored
        };
        let (op, pending) = planned_write(id, kind, action, key, Vec::new(), false, object);
        if action == Action::Delete {
            deletions.push((idx, op, pending));
        } else {
            batch.push((idx, op, pending));
        }
    }
    w.send_all(batch, size)?;
    // The links of the users written (not of those whose write failed):
    // every write of the first wave settled.
    w.settle_all()?;
    tracing::debug!(links = link_wave.len(), "run: first wave written");
    link_wave.retain(|l| w.lines[l.row as usize].outcome != Outcome::Failed);
    let links = LinkWave {
        profile,
        path,
        plan,
        refs,
    };
    links.send(link_wave, w, size)?;
    // Deletions last; groups children first.
    w.settle_all()?;
    tracing::debug!("run: links written");
    if kind == ObjectKind::Group {
        children_first(&mut deletions, w.store)?;
    }
    w.send_all(deletions, size)?;
    w.settle_all()?;
    if !opts.dry_run {
        w.store.sync_journal()?;
    }
    Ok(())
}

/// Rows of the first wave read and built at a time by [`FirstWave::read`].
const FIRST_CHUNK: usize = 1024;

/// A row of the first wave as its builder's thread hands it over.
enum FirstItem {
    /// A create, built.
    Built(usize, Built),
    /// A row the store has something for: its record, built by the
    /// thread that has the store.
    Raw(usize, Record),
}

/// Rows of the first wave, read and built at a time.
type FirstChunk = Result<Vec<FirstItem>, RunError>;

/// A row of the first wave, built from its record and what the store has
/// for it.
enum Built {
    /// The record no longer maps: cannot happen (it was planned from the
    /// same bytes).
    Skip,
    /// An update whose every field normalises to what was applied.
    Unchanged,
    Write {
        /// An update's new plan message (which fields changed).
        message: Option<String>,
        fields: Vec<(FieldName, Value)>,
        invite: bool,
        object: StoredObject,
        /// Its links, sent in the second wave.
        link: Option<LinkRow>,
    },
}

/// What building a first-wave row reads.
struct FirstWave<'a> {
    profile: &'a Profile,
    plan: &'a Plan,
    refs: plan::ListRefs<'a>,
    fingerprinter: Fingerprinter,
}

impl FirstWave<'_> {
    /// Reads the write rows of `file` in order and builds the creates, a
    /// chunk at a time, into `out`; other rows go raw. Stops at a read
    /// error (sent) or when the receiver is gone.
    fn read(
        &self,
        mut file: RecordsAt<File>,
        layout: &Layout,
        path: &Path,
        out: crossbeam_channel::Sender<FirstChunk>,
    ) {
        let plan = self.plan;
        let mut rec = Record::new();
        let mut row = MappedRow::new();
        let mut chunk = Vec::with_capacity(FIRST_CHUNK);
        for idx in 0..plan.records as usize {
            let action = plan.row(idx).action;
            if !is_write(action) {
                continue;
            }
            match file.read_at(plan.record_start(idx), &mut rec) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    let _ = out.send(Err(file_error(path)(e)));
                    return;
                }
            }
            chunk.push(if action == Action::Create {
                FirstItem::Built(idx, self.build(&rec, layout, &mut row, idx, None))
            } else {
                FirstItem::Raw(idx, rec.clone())
            });
            if chunk.len() == FIRST_CHUNK {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(FIRST_CHUNK));
                if out.send(Ok(full)).is_err() {
                    return;
                }
            }
        }
        let _ = out.send(Ok(chunk));
    }

    /// Builds the write of plan row `idx` from its record; `stored` is
    /// what the store has for its key (none for a create).
    fn build(
        &self,
        rec: &Record,
        layout: &Layout,
        row: &mut MappedRow,
        idx: usize,
        stored: Option<StoredObject>,
    ) -> Built {
        let (profile, plan) = (self.profile, self.plan);
        let kind = profile.object;
        let planned = plan.row(idx);
        let action = planned.action;
        if profile.map(rec, layout, row).is_err() {
            return Built::Skip;
        }
        let hashes = self.fingerprinter.field_hashes(row);
        let mut message = None;
        let mut fields = match action {
            Action::Create => fields_of(profile, row, |_| true),
            Action::Update => {
                let changed = stored.as_ref().map_or_else(
                    || hashes.iter().map(|h| h.field).collect(),
                    |s| changed_fields(&s.fields, &hashes),
                );
                if changed.is_empty() {
                    return Built::Unchanged;
                }
                let changed_message = format!("changed: {}", changed.join(", "));
                message = Some(if planned.message.is_empty() {
                    changed_message
                } else {
                    format!("{changed_message}; {}", planned.message)
                });
                fields_of(profile, row, |name| changed.iter().any(|c| **c == *name))
            }
            _ => Vec::new(),
        };
        if action == Action::Deactivate {
            fields.clear();
        }
        // Applied without links that resolve to nothing.
        drop_unresolved(&mut fields, self.refs, plan.reference_unresolved(idx));
        let invite =
            action == Action::Create && profile.invite_on_create && kind == ObjectKind::User;
        let parent = match (kind, profile.reference_slot) {
            (ObjectKind::Group, Some(slot)) if !plan.reference_unresolved(idx) => {
                row.get(slot).map(str::to_string)
            }
            _ => None,
        };
        let object = StoredObject {
            fingerprint: plan.fingerprint(idx),
            active: plan.active_after(idx),
            invited: invite || stored.as_ref().is_some_and(|s| s.invited),
            lms_id: stored.as_ref().and_then(|s| s.lms_id.clone()),
            parent,
            fields: hashes,
        };
        // A user's manager and memberships go in a second wave, once every
        // user of the file exists (SPEC §3 step 4).
        let mut links = match (kind, action) {
            (ObjectKind::User, Action::Create | Action::Update) => take_links(&mut fields),
            _ => Vec::new(),
        };
        if action == Action::Create {
            // A new user with no manager or membership has nothing to link
            // (an update that empties one does: it removes the link).
            links.retain(|(_, v)| !v.is_empty());
        }
        if links.is_empty() {
            return Built::Write {
                message,
                fields,
                invite,
                object,
                link: None,
            };
        }
        // Until the links are acknowledged the store says they are not
        // applied: after a crash between the waves, the next run sees the
        // row changed and sends them again.
        let link = LinkRow {
            row: idx as u32,
            links: LINK_FIELDS
                .iter()
                .enumerate()
                .filter(|(_, f)| links.iter().any(|(name, _)| name == *f))
                .fold(0u8, |m, (k, _)| m | 1 << k),
            invited: object.invited,
            fresh: action == Action::Create,
        };
        let first = StoredObject {
            fingerprint: stored.as_ref().map_or(0, |s| s.fingerprint),
            fields: without_links(&object.fields, stored.as_ref().map(|s| &s.fields[..])),
            ..object
        };
        Built::Write {
            message,
            fields,
            invite,
            object: first,
            link: Some(link),
        }
    }
}

/// Whether a planned action is a write (to the sink and the store).
fn is_write(a: Action) -> bool {
    matches!(
        a,
        Action::Create | Action::Update | Action::Deactivate | Action::Delete
    )
}

/// A file that could not be read again for its writes, as the run's error.
fn file_error(path: &Path) -> impl Fn(FileError) -> RunError + '_ {
    move |e| io(path)(std::io::Error::other(e.to_string()))
}

/// Whether `wanted` records of a file of `records` are few enough to seek
/// to each rather than read the file through (a day 2 writes about 2 % of
/// its rows; a first import, all).
fn sparse(wanted: usize, records: usize) -> bool {
    wanted * 16 < records
}

/// One planned write: its plan row, what the sink gets, what the journal keeps.
type PlannedWrite = (usize, Operation, PendingOp);

/// The fields that link a user to other objects: written in the second wave.
const LINK_FIELDS: [&str; 4] = ["manager_id", "groups", "admin_groups", "segments"];

/// A row whose links go in the second wave: which (bits of
/// [`LINK_FIELDS`]) and whether the user is invited (kept in the store).
struct LinkRow {
    row: u32,
    links: u8,
    invited: bool,
    /// Created in this run: no links to undo.
    fresh: bool,
}

/// The second wave of a file: its rows' links, built from the file read
/// once more (only the link rows are mapped), sent in batches.
struct LinkWave<'a> {
    profile: &'a Profile,
    path: &'a Path,
    plan: &'a Plan,
    refs: plan::ListRefs<'a>,
}

impl LinkWave<'_> {
    fn send(&self, rows: Vec<LinkRow>, w: &mut Writer<'_>, size: usize) -> Result<(), RunError> {
        if rows.is_empty() {
            return Ok(());
        }
        let opts = w.opts;
        let plan = self.plan;
        // The links are built from the file on a thread of their own, a
        // chunk at a time, while this one journals and sends them.
        std::thread::scope(|scope| {
            let (tx, built) = crossbeam_channel::bounded(2);
            let rows = &rows;
            scope.spawn(move || self.build(rows, tx));
            let mut batch: Vec<PlannedWrite> = Vec::new();
            for chunk in built {
                for (link, fields, mut object) in chunk? {
                    let i = link.row as usize;
                    // Known once the first wave was acknowledged.
                    object.lms_id = w.lines[i].lms_id().cloned();
                    let id = if opts.dry_run {
                        0
                    } else {
                        w.store.next_op_id()?
                    };
                    let key = plan.row(i).key.unwrap_or_default().to_string();
                    let kind = self.profile.object;
                    let (mut op, pending) =
                        planned_write(id, kind, Action::Update, key, fields, false, object);
                    op.fresh = link.fresh;
                    batch.push((i, op, pending));
                    if batch.len() >= size {
                        w.send(std::mem::take(&mut batch))?;
                    }
                }
            }
            w.send(batch)
        })
    }

    /// Reads the rows' records and builds their links' fields and objects
    /// (without the LMS id), in chunks, into `out`. Stops at a read error
    /// (sent) or when the receiver is gone.
    fn build<'r>(&self, rows: &'r [LinkRow], out: crossbeam_channel::Sender<LinkChunk<'r>>) {
        let (profile, path, plan) = (self.profile, self.path, self.plan);
        let read_err = file_error(path);
        let seek = sparse(rows.len(), plan.records as usize);
        let file = File::open(path)
            .map_err(io(path))
            .and_then(|f| RecordsAt::open(profile, f, seek).map_err(&read_err));
        let mut file = match file {
            Ok(file) => file,
            Err(e) => {
                let _ = out.send(Err(e));
                return;
            }
        };
        let layout = file.layout().clone();
        let fingerprinter = Fingerprinter::new(profile);
        let (mut rec, mut row) = (Record::new(), MappedRow::new());
        for chunk in rows.chunks(LINK_CHUNK) {
            let mut built = Vec::with_capacity(chunk.len());
            for link in chunk {
                let i = link.row as usize;
                match file.read_at(plan.record_start(i), &mut rec) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        let _ = out.send(Err(read_err(e)));
                        return;
                    }
                }
                if profile.map(&rec, &layout, &mut row).is_err() {
                    continue; // planned from the same bytes: cannot differ
                }
                let wanted = |name: &str| {
                    LINK_FIELDS
                        .iter()
                        .position(|f| *f == name)
                        .is_some_and(|k| link.links & 1 << k != 0)
                };
                let mut fields = fields_of(profile, &row, wanted);
                drop_unresolved(&mut fields, self.refs, plan.reference_unresolved(i));
                let object = StoredObject {
                    fingerprint: plan.fingerprint(i),
                    active: plan.active_after(i),
                    invited: link.invited,
                    lms_id: None,
                    parent: None,
                    fields: fingerprinter.field_hashes(&row),
                };
                built.push((link, fields, object));
            }
            if out.send(Ok(built)).is_err() {
                return;
            }
        }
    }
}

/// Link rows built at a time by [`LinkWave::build`].
const LINK_CHUNK: usize = 1024;

/// Links built from the file: the row, the link fields, the object after.
type LinkChunk<'r> = Result<Vec<(&'r LinkRow, Vec<(FieldName, Value)>, StoredObject)>, RunError>;

/// Moves the link fields out of `fields`.
fn take_links(fields: &mut Vec<(FieldName, Value)>) -> Vec<(FieldName, Value)> {
    let (links, rest) = std::mem::take(fields)
        .into_iter()
        .partition(|(name, _)| LINK_FIELDS.contains(&&**name));
    *fields = rest;
    links
}

/// Field hashes as they stand after the first wave: `new` for the other
/// fields, `old` (what the store had) for the links.
fn without_links(new: &[FieldHash], old: Option<&[FieldHash]>) -> Vec<FieldHash> {
    let is_link = |f: &FieldHash| LINK_FIELDS.contains(&f.field);
    let mut out: Vec<FieldHash> = new.iter().filter(|f| !is_link(f)).cloned().collect();
    out.extend(
        old.unwrap_or_default()
            .iter()
            .filter(|f| is_link(f))
            .cloned(),
    );
    out.sort();
    out
}

/// Orders group deletions children first: deepest in the hierarchy the
/// store holds (what was applied) first.
fn children_first(deletions: &mut Vec<PlannedWrite>, store: &RedbStore) -> Result<(), RunError> {
    let mut depths = Vec::with_capacity(deletions.len());
    for (_, op, _) in deletions.iter() {
        let mut depth = 0usize;
        let mut seen = std::collections::HashSet::new();
        let mut at = store
            .get(ObjectKind::Group, &op.key)?
            .and_then(|o| o.parent);
        while let Some(parent) = at {
            if !seen.insert(parent.clone()) {
                break; // a cycle in what was applied: stop counting
            }
            depth += 1;
            at = store
                .get(ObjectKind::Group, &parent)?
                .and_then(|o| o.parent);
        }
        depths.push(depth);
    }
    let mut order: Vec<(usize, PlannedWrite)> =
        depths.into_iter().zip(deletions.drain(..)).collect();
    order.sort_by_key(|(depth, _)| std::cmp::Reverse(*depth));
    deletions.extend(order.into_iter().map(|(_, w)| w));
    Ok(())
}

/// A batch the sink answered: its acknowledgements, and its operations.
type Applied = (Vec<Ack>, Vec<Operation>);

/// Journals, sends and commits batches of writes, in a pipeline of three
/// threads: this one builds and journals batch k+2 while a second makes
/// batch k+1's journal records durable (its fsync) and the sink applies
/// batch k on a third. Batches reach the sink in the order sent, each
/// only once its records are durable; each is committed when its
/// acknowledgements come back, in that order.
struct Writer<'a> {
    store: &'a mut RedbStore,
    lines: &'a mut [Line],
    opts: &'a RunOptions,
    on_write: &'a mut dyn FnMut(usize),
    wants_ids: bool,
    to_sync: Option<crossbeam_channel::Sender<(JournalSync, Vec<Operation>)>>,
    /// Each batch's acknowledgements, with its operations handed back to be
    /// freed here (the sink's thread is a first import's slowest stage).
    from_sink: crossbeam_channel::Receiver<Result<Applied, RunError>>,
    /// Sent and not yet committed, oldest first: each batch's plan rows
    /// and journal records.
    in_flight: std::collections::VecDeque<(Vec<usize>, Vec<PendingOp>)>,
    /// The sink was unavailable for some write.
    unavailable: bool,
}

impl<'a> Writer<'a> {
    /// Starts the journal's fsync thread and the sink's thread in `scope`.
    fn start<'s>(
        scope: &'s std::thread::Scope<'s, '_>,
        store: &'a mut RedbStore,
        sink: &'s mut dyn Sink,
        lines: &'a mut [Line],
        opts: &'a RunOptions,
        on_write: &'a mut dyn FnMut(usize),
    ) -> Writer<'a> {
        let wants_ids = sink.wants_ids();
        let (to_sync, journalled) = crossbeam_channel::bounded::<(JournalSync, Vec<Operation>)>(1);
        let (to_sink, batches) = crossbeam_channel::bounded::<Vec<Operation>>(1);
        let (acks, from_sink) = crossbeam_channel::unbounded();
        let sync_failed = acks.clone();
        scope.spawn(move || {
            for (journal, ops) in journalled {
                // Durable before sent. A failure is answered in the place
                // of the batch before (its acknowledgements, if it had
                // some, are then lost: like a crash, the next run's
                // recovery settles both).
                if let Err(e) = journal.sync() {
                    let _ = sync_failed.send(Err(e.into()));
                    break;
                }
                if to_sink.send(ops).is_err() {
                    break;
                }
            }
        });
        scope.spawn(move || {
            for ops in batches {
                let answer = sink
                    .apply(&ops)
                    .map_err(RunError::from)
                    .map(|acks| (acks, ops));
                let failed = answer.is_err();
                // After a failure nothing more is applied: the batches
                // behind it stay journalled for the next run's recovery.
                if acks.send(answer).is_err() || failed {
                    break;
                }
            }
        });
        Writer {
            store,
            lines,
            opts,
            on_write,
            wants_ids,
            to_sync: Some(to_sync),
            from_sink,
            in_flight: Default::default(),
            unavailable: false,
        }
    }

    /// Sends `writes` in batches of `size`, in order.
    fn send_all(&mut self, mut writes: Vec<PlannedWrite>, size: usize) -> Result<(), RunError> {
        while !writes.is_empty() {
            let rest = writes.split_off(writes.len().min(size));
            self.send(std::mem::replace(&mut writes, rest))?;
        }
        Ok(())
    }

    /// Journals one batch and queues it for the sink; commits the batch
    /// before it once that one is acknowledged.
    fn send(&mut self, batch: Vec<PlannedWrite>) -> Result<(), RunError> {
        if batch.is_empty() || self.opts.dry_run {
            return Ok(());
        }
        // A stop asked for: nothing more is sent (what was sent is
        // committed by `finish`).
        if self.opts.stopping() {
            return Err(RunError::Stopped);
        }
        let n = batch.len();
        let mut rows = Vec::with_capacity(n);
        let mut ops = Vec::with_capacity(n);
        let mut pending = Vec::with_capacity(n);
        for (idx, op, p) in batch {
            rows.push(idx);
            ops.push(op);
            pending.push(p);
        }
        if self.wants_ids {
            known_ids(&mut ops, self.store)?;
        }
        let journal = self.store.begin_unsynced(&pending)?;
        if self
            .to_sync
            .as_ref()
            .and_then(|s| s.send((journal, ops)).ok())
            .is_none()
        {
            // The fsync or the sink's thread ended on an error: the batches
            // before this one tell which (this one stays journalled, never
            // sent).
            self.settle_all()?;
            return Err(self.sink_stopped());
        }
        self.in_flight.push_back((rows, pending));
        // One being made durable, one at the sink: the next is built meanwhile.
        while self.in_flight.len() > 2 {
            self.settle_oldest()?;
        }
        Ok(())
    }

    /// Waits for every batch sent and commits it.
    fn settle_all(&mut self) -> Result<(), RunError> {
        while !self.in_flight.is_empty() {
            self.settle_oldest()?;
        }
        Ok(())
    }

    /// Settles what was sent and stops the sink's thread; returns whether
    /// the sink was unavailable for some write. A sink error leaves its
    /// batch, and those queued behind it, journalled: the next run
    /// recovers them.
    fn finish(mut self) -> Result<bool, RunError> {
        let settled = self.settle_all();
        self.to_sync = None;
        settled.map(|()| self.unavailable)
    }

    fn sink_stopped(&self) -> RunError {
        RunError::Sink(crate::sink::SinkError {
            sink: "sink".into(),
            message: "the sink's thread stopped".into(),
        })
    }

    /// Commits the oldest batch sent once the sink answers for it, and
    /// records each line's outcome.
    fn settle_oldest(&mut self) -> Result<(), RunError> {
        let Some((rows, pending)) = self.in_flight.pop_front() else {
            return Ok(());
        };
        // A sink error leaves the batch journalled: the next run recovers it.
        let (acks, ops) = self.from_sink.recv().map_err(|_| self.sink_stopped())??;
        let n = rows.len();
        let lines = &mut *self.lines;
        let mut acked = Vec::with_capacity(n);
        let mut dropped = Vec::new();
        for ((idx, mut op), ack) in rows.into_iter().zip(pending).zip(acks) {
            let (code, message) = match ack {
                Ack::Applied { lms_id, linked } => {
                    if lms_id.is_some() {
                        op.object.lms_id = lms_id;
                    }
                    if linked {
                        // An existing LMS user was linked: nobody was invited.
                        op.object.invited = false;
                    }
                    if op.object.lms_id.is_some() {
                        lines[idx].set_lms_id(op.object.lms_id.clone());
                    }
                    acked.push(op);
                    continue;
                }
                Ack::Rejected { message } => (Code::SinkRejected, message),
                Ack::Unavailable { message } => {
                    self.unavailable = true;
                    (Code::SinkUnavailable, message)
                }
            };
            lines[idx] = Line::failed(code, message);
            dropped.push(op.id);
        }
        self.store.commit(&acked, &dropped)?;
        (self.on_write)(n);
        // Freed here rather than on the sink's thread (see `from_sink`).
        drop(ops);
        Ok(())
    }
}

/// The LMS ids the store has for what each operation names (its manager,
/// parent, groups and segments), for a sink that writes references by id.
fn known_ids(ops: &mut [Operation], store: &RedbStore) -> Result<(), RunError> {
    for op in ops.iter_mut() {
        let named: Vec<(ObjectKind, String)> = op
            .named()
            .into_iter()
            .map(|(k, key)| (k, key.to_string()))
            .collect();
        for (kind, key) in named {
            if let Some(lms_id) = store.get(kind, &key)?.and_then(|o| o.lms_id) {
                op.ids.push(KnownId { kind, key, lms_id });
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn summary_json(
    tenant: &Tenant,
    profile: &Profile,
    source: String,
    file: &str,
    plan: Option<(&Plan, &[Line])>,
    verdict: &Verdict,
    opts: &RunOptions,
    started: Instant,
    refused: Option<&str>,
) -> String {
    let mut counts = serde_json::Map::new();
    let (mut rows, mut bytes) = (0, 0);
    if let Some((plan, lines)) = plan {
        rows = plan.records;
        bytes = plan.bytes;
        // Counted in an array first: a million lines through JSON maps
        // took ~70 ms.
        let mut n = [[0u64; Outcome::ALL.len()]; Action::ALL.len()];
        for (i, line) in lines.iter().enumerate() {
            n[plan.row(i).action as usize][line.outcome as usize] += 1;
        }
        for (a, by_outcome) in Action::ALL.iter().zip(n) {
            let mut entry = serde_json::Map::new();
            for (o, n) in Outcome::ALL.iter().zip(by_outcome) {
                if n > 0 {
                    entry.insert(o.as_str().into(), n.into());
                }
            }
            if !entry.is_empty() {
                counts.insert(a.as_str().into(), entry.into());
            }
        }
    }
    let summary = serde_json::json!({
        "tenant": tenant.name,
        "source": source,
        "file": file,
        "profile": profile.name,
        "dry_run": opts.dry_run,
        "held": verdict.held(),
        "held_reasons": verdict.reasons,
        "forced": verdict.forced,
        "refused": refused,
        "rows": rows,
        "bytes": bytes,
        "counts": counts,
        "duration_ms": started.elapsed().as_millis() as u64,
    });
    let mut text = serde_json::to_string_pretty(&summary).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::SinkError;
    use std::sync::Mutex;

    /// Applies batches until its `fail_at`-th, which fails as a whole.
    struct FailingSink {
        applied: Arc<Mutex<Vec<u64>>>,
        batches: usize,
        fail_at: usize,
    }

    impl Sink for FailingSink {
        fn apply(&mut self, batch: &[Operation]) -> Result<Vec<Ack>, SinkError> {
            self.batches += 1;
            if self.batches == self.fail_at {
                return Err(SinkError {
                    sink: "test".into(),
                    message: "down".into(),
                });
            }
            self.applied
                .lock()
                .unwrap()
                .extend(batch.iter().map(|o| o.op));
            Ok(vec![Ack::APPLIED; batch.len()])
        }
        fn recover(&mut self, _: &[PendingOp]) -> Result<Vec<u64>, SinkError> {
            Ok(Vec::new())
        }
    }

    fn create(store: &mut RedbStore, row: usize) -> PlannedWrite {
        let object = StoredObject {
            fingerprint: row as u128,
            active: true,
            invited: false,
            lms_id: None,
            parent: None,
            fields: Vec::new(),
        };
        let id = store.next_op_id().unwrap();
        let key = format!("u{row}");
        let (op, pending) = planned_write(
            id,
            ObjectKind::User,
            Action::Create,
            key,
            Vec::new(),
            false,
            object,
        );
        (row, op, pending)
    }

    /// With batches queued behind the one the sink is applying, a sink
    /// failure stops the pass with the sink's error: the batches before it
    /// are committed, it and every batch begun after it stay journalled
    /// (for the next run's recovery) and none of those reached the LMS.
    #[test]
    fn a_sink_failure_commits_what_came_before_and_leaves_the_rest_journalled() {
        for fail_at in 1..=6 {
            let dir = tempfile::tempdir().unwrap();
            let mut store = RedbStore::open(&dir.path().join("s.redb")).unwrap();
            let applied = Arc::new(Mutex::new(Vec::new()));
            let mut sink = FailingSink {
                applied: applied.clone(),
                batches: 0,
                fail_at,
            };
            let (batches, size) = (5, 3);
            let mut lines: Vec<Line> = (0..batches * size)
                .map(|_| Line::new(Outcome::Ok))
                .collect();
            let opts = RunOptions::default();
            let mut written = 0;
            let mut on_write = |n| written += n;
            let result = std::thread::scope(|scope| {
                let mut w = Writer::start(
                    scope,
                    &mut store,
                    &mut sink,
                    &mut lines,
                    &opts,
                    &mut on_write,
                );
                let mut sent = Ok(());
                for b in 0..batches {
                    let batch = (b * size..(b + 1) * size)
                        .map(|row| create(w.store, row))
                        .collect();
                    sent = sent.and_then(|()| w.send(batch));
                }
                let settled = w.finish();
                sent.and(settled)
            });
            let applied = applied.lock().unwrap().clone();
            let pending: Vec<u64> = store.pending().unwrap().iter().map(|p| p.id).collect();
            let committed: Vec<usize> = (0..batches * size)
                .filter(|row| {
                    store
                        .get(ObjectKind::User, &format!("u{row}"))
                        .unwrap()
                        .is_some()
                })
                .collect();
            if fail_at > batches {
                assert!(matches!(result, Ok(false)), "{result:?}");
                assert_eq!(written, batches * size);
                assert!(pending.is_empty());
            } else {
                match result {
                    Err(RunError::Sink(e)) => assert_eq!(e.message, "down", "fail_at {fail_at}"),
                    other => panic!("fail_at {fail_at}: {other:?}"),
                }
                let before = (fail_at - 1) * size;
                assert_eq!(written, before, "fail_at {fail_at}");
                assert_eq!(
                    committed,
                    (0..before).collect::<Vec<_>>(),
                    "fail_at {fail_at}"
                );
                // The failed batch and what was begun behind it: pending,
                // and never applied.
                assert!(pending.len() >= size, "fail_at {fail_at}: {pending:?}");
                assert!(pending.iter().all(|id| !applied.contains(id)));
            }
            let ids = applied.len();
            assert_eq!(
                ids,
                committed.len(),
                "fail_at {fail_at}: applied = committed"
            );
        }
    }
}
