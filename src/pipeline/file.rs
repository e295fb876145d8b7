//! One file of a run: planned against the store, held or applied, its
//! results and summary published, the original moved to `processed/`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::apply::{changed, file_error, StoredCache, WritePass};
use super::processed::{finish_file, write_atomically, Staged};
use super::report::Summary;
use super::writer::Line;
use super::{io, FileReport, FileStatus, InboxFile, Pipeline, RunError, RunOptions, RunProgress};
use crate::guard::{self, Verdict};
use crate::model::{Action, ObjectKind};
use crate::plan::{self, FileError, FirstPlan, Plan, PlannedRow, SettleError};
use crate::profile::{Date, Profile};
use crate::results::{Outcome, ResultsWriter};
use crate::store::{MemoryPrior, Prior, StateStore, StoreError};

/// What a file is planned against: the last applied state of its kind and,
/// for a users file of a tenant with group or segment files, the groups
/// and segments its list fields must name.
struct Priors {
    own: MemoryPrior,
    groups: Option<MemoryPrior>,
    segments: Option<MemoryPrior>,
}

impl Priors {
    fn refs(&self) -> plan::ListRefs<'_> {
        plan::ListRefs {
            groups: self.groups.as_ref().map(|p| p as &dyn Prior),
            segments: self.segments.as_ref().map(|p| p as &dyn Prior),
        }
    }
}

/// The groups and the segments a users file's lists must name, if any.
type ListPriors = (Option<MemoryPrior>, Option<MemoryPrior>);

/// A file read and compared: its plan, what it was compared with, and
/// what the guards say.
struct Planned {
    plan: Plan,
    priors: Priors,
    verdict: Verdict,
    /// What the store has for the updates, read when they were settled.
    stored: StoredCache,
}

/// One file being run: what each step of [`Pipeline::process_file`] reads.
struct FileRun<'f> {
    profile: &'f Profile,
    file: &'f InboxFile<'f>,
    opts: &'f RunOptions,
    /// Its results' and summary's names.
    staged: Staged,
    started: Instant,
}

impl FileRun<'_> {
    /// The summary of this file: `plan` with each line's outcome and the
    /// guards' verdict, or (refused whole) why.
    fn summary<'a>(
        &'a self,
        pipeline: &'a Pipeline<'_>,
        plan: Option<(&'a Plan, &'a [Line])>,
        verdict: &'a Verdict,
        refused: Option<&'a str>,
    ) -> Summary<'a> {
        Summary {
            tenant: pipeline.job.name,
            source: pipeline.source.describe(),
            file: self.file.name,
            profile: &self.profile.name,
            dry_run: self.opts.dry_run,
            same_content_as: self.file.earlier,
            plan,
            verdict,
            started: self.started,
            refused,
        }
    }
}

/// The milliseconds since `started`, for the phase lines of the debug log.
fn ms(started: Instant) -> u64 {
    started.elapsed().as_millis() as u64
}

impl Pipeline<'_> {
    /// Plans, guards, applies and publishes one file.
    pub(super) fn process_file(
        &mut self,
        profile: &Profile,
        file: &InboxFile<'_>,
        opts: &RunOptions,
        progress: &mut dyn FnMut(RunProgress<'_>),
    ) -> Result<FileReport, RunError> {
        let started = Instant::now();
        // A retry file (SPEC §11) holds only the rows that failed: nothing
        // missing from it is deactivated or deleted, and its few records
        // are not a shrinking snapshot.
        let retry = super::retry::is_retry_file(file.name);
        let partial;
        let profile = if retry {
            partial = profile.partial();
            &partial
        } else {
            profile
        };
        let today = opts.today.unwrap_or_else(|| profile.today());
        let planned = self.plan_file(profile, file, today, opts, progress)?;
        // The results' names: `.dry-run` or `.held` ones are beside the
        // applied files' in `processed/`, never taken for them.
        let held = planned.as_ref().is_ok_and(|p| p.verdict.held());
        let f = FileRun {
            profile,
            file,
            opts,
            staged: Staged::new(self.source, file.name, opts.dry_run, held)?,
            started,
        };
        let mut planned = match planned {
            Ok(planned) => planned,
            Err(e) => return self.refuse(&f, &e),
        };
        let mut lines = first_lines(&planned.plan, &planned.verdict, opts);
        let mut unavailable = false;
        if !planned.verdict.held() {
            let first = if opts.dry_run {
                None
            } else {
                self.first_plan(profile, file, &planned.plan)?
            };
            let plan = &planned.plan;
            let pass = WritePass {
                profile,
                file,
                batch_size: self.job.batch_size,
                refs: planned.priors.refs(),
                opts,
            };
            let mut on_write = |p: super::WriteProgress| {
                progress(RunProgress::Writing {
                    file: file.local(),
                    progress: p,
                });
            };
            let stored = &mut planned.stored;
            unavailable = pass.run(
                plan,
                &mut lines,
                self.store,
                self.sink,
                stored,
                &mut on_write,
            )?;
            if !opts.dry_run && !unavailable && !retry {
                self.store.set_last_records(profile.object, plan.records)?;
            }
            tracing::debug!(ms = ms(started), "run: written");
            crate::testing::crash_point("after-writes");
            if let Some(first) = first {
                // The inferred rows' lines follow their rows; one brought
                // back was applied by the interrupted run.
                let tail = planned.plan.report_as_first(&first);
                let start = planned.plan.len() - tail.len();
                let old: Vec<Line> = lines.drain(start..).collect();
                lines.extend(tail.into_iter().map(|from| match from {
                    Some(i) => old[i - start].clone(),
                    None => Line::new(Outcome::Ok),
                }));
            }
        }
        self.publish(&f, &planned, &lines, unavailable)?;
        tracing::debug!(ms = ms(started), "run: results written, file moved");
        Ok(report(&f, self.source, &planned, &lines, unavailable))
    }

    /// Reads the file and compares it with the store, then asks the
    /// guards. The store's prior is loaded (and indexed) on its own thread
    /// while the pool reads the file: the two need nothing of each other.
    /// The inner error: the file is refused whole.
    fn plan_file(
        &mut self,
        profile: &Profile,
        file: &InboxFile<'_>,
        today: Date,
        opts: &RunOptions,
        progress: &mut dyn FnMut(RunProgress<'_>),
    ) -> Result<Result<Planned, FileError>, RunError> {
        let started = Instant::now();
        let (kind, path) = (profile.object, file.local());
        let size = std::fs::metadata(path).map_err(io(path))?.len();
        let (groups, segments) = self.list_priors(kind)?;
        let store: &dyn StateStore = self.store;
        let (own, read) = std::thread::scope(|s| {
            let loading = s.spawn(|| {
                store.prior(kind).inspect(|prior| {
                    prior.index();
                    tracing::debug!(ms = ms(started), objects = prior.len(), "run: prior loaded");
                })
            });
            let refs = plan::ListRefs {
                groups: groups.as_ref().map(|p| p as &dyn Prior),
                segments: segments.as_ref().map(|p| p as &dyn Prior),
            };
            let read = File::open(path).map_err(io(path)).map(|f| {
                let opts = plan::ReadOptions {
                    size_hint: Some(size),
                    refs,
                    ..plan::ReadOptions::default()
                };
                plan::read_with(profile, f, today, opts, &mut |p| {
                    progress(RunProgress::Reading {
                        file: path,
                        records: p.records,
                        bytes: p.bytes,
                        size,
                    })
                })
            });
            let own = loading
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            (own, read)
        });
        let priors = Priors {
            own: own?,
            groups,
            segments,
        };
        let mut plan = match read? {
            Ok(plan) => plan,
            Err(FileError::Read(crate::reader::ReadError::Io(e))) => return Err(io(path)(e)),
            Err(e) => return Ok(Err(e)),
        };
        tracing::debug!(ms = ms(started), "run: file read");
        progress(RunProgress::Planning { file: path });
        plan.against(profile, &priors.own);
        let stored = self.settle(&mut plan, profile, path)?;
        tracing::debug!(ms = ms(started), "run: compared");
        // `--force`, or this file released (`muster release`).
        let force = opts.force || (!opts.dry_run && self.store.released(file.name)?);
        let verdict = guard::check(
            &plan,
            &profile.safety,
            priors.own.len(),
            self.store.last_records(kind)?,
            force,
        );
        Ok(Ok(Planned {
            plan,
            priors,
            verdict,
            stored,
        }))
    }

    /// The first plan kept for this file's content, when a run of it was
    /// interrupted (this run resumes it, and reports its rows as that
    /// plan had them); else `plan`'s actions are kept, before any write,
    /// for a run that may resume this one (SPEC §6).
    fn first_plan(
        &mut self,
        profile: &Profile,
        file: &InboxFile<'_>,
        plan: &Plan,
    ) -> Result<Option<FirstPlan>, RunError> {
        let (kind, hash) = (profile.object, file.fetched.hash);
        if let Some(kept) = self.store.kept_plan(kind, hash)? {
            if let Some(first) = FirstPlan::decode(&kept) {
                tracing::info!(file = ?file.name, "resuming an interrupted run of this file: its results tell each row as first planned");
                return Ok(Some(first));
            }
        }
        if let Some(first) = plan.encode_first_plan() {
            self.store.keep_plan(kind, hash, Some(&first))?;
        }
        Ok(None)
    }

    /// A users file's groups and segments must name objects of the
    /// tenant's group and segment files, when it has them (processed
    /// before it): those objects, as the store has them.
    fn list_priors(&self, kind: ObjectKind) -> Result<ListPriors, RunError> {
        let list_prior = |k: ObjectKind| -> Result<Option<MemoryPrior>, RunError> {
            let named = kind == ObjectKind::User && self.job.has(k);
            Ok(if named {
                Some(self.store.prior(k)?)
            } else {
                None
            })
        };
        Ok((
            list_prior(ObjectKind::Group)?,
            list_prior(ObjectKind::Segment)?,
        ))
    }

    /// Settles the plan's updates field by field against what the store
    /// has applied (see [`Plan::settle_updates`]), reading `path` again.
    /// What the store has for the updates is kept for their writes (up to
    /// [`StoredCache::MAX`] of them), not read twice.
    fn settle(
        &self,
        plan: &mut Plan,
        profile: &Profile,
        path: &Path,
    ) -> Result<StoredCache, RunError> {
        let (store, kind): (&dyn StateStore, _) = (self.store, profile.object);
        let snapshot = File::open(path).map_err(io(path))?;
        let mut cache = StoredCache::default();
        let settled = plan.settle_updates(profile, snapshot, |keys| {
            let stored = store.get_many(kind, keys)?;
            let fields = stored
                .iter()
                .map(|o| o.as_ref().map(|o| o.fields.clone()))
                .collect();
            for (key, object) in keys.iter().zip(stored) {
                cache.keep(key, object);
            }
            Ok::<_, StoreError>(fields)
        });
        settled.map_err(|e| match e {
            SettleError::File(e) => file_error(path)(e),
            SettleError::Changed { line } => changed(path, line),
            SettleError::Applied(e) => e.into(),
        })?;
        Ok(cache)
    }

    /// A file refused whole (its header, or not text): a results file with
    /// only its header line, the summary saying why, the original moved.
    fn refuse(&mut self, f: &FileRun<'_>, error: &FileError) -> Result<FileReport, RunError> {
        tracing::info!(file = ?f.file.name, %error, "file refused");
        write_atomically(&f.staged.results, |w| ResultsWriter::new(w).map(|_| ()))?;
        let refused = error.to_string();
        let verdict = Verdict::default();
        let summary = f.summary(self, None, &verdict, Some(&refused)).to_json();
        self.conclude(f, &summary, false, false)?;
        Ok(FileReport {
            file: PathBuf::from(f.file.name),
            status: FileStatus::Refused,
            why: Some(error.to_string()),
            results: Some(self.source.location(&f.staged.results_name())),
            summary: format!("refused: {error}"),
            records: 0,
            counts: [0; 6],
            profile: f.profile.name.clone(),
            outcomes: Default::default(),
        })
    }

    /// Writes the summary and finishes the file: publishes what was
    /// staged, records the content as applied when `applied`, and moves the
    /// original unless `keep` ([`finish_file`]).
    fn conclude(
        &mut self,
        f: &FileRun<'_>,
        summary: &str,
        applied: bool,
        keep: bool,
    ) -> Result<(), RunError> {
        write_atomically(&f.staged.summary, |w| w.write_all(summary.as_bytes()))?;
        let (source, store) = (&mut *self.source, &mut *self.store);
        let kind = f.profile.object;
        finish_file(
            (source, store),
            f.opts,
            (f.file, kind),
            &f.staged,
            applied,
            keep,
        )
    }

    /// Writes the results CSV and the summary, records the content as
    /// applied and moves the original (see [`finish_file`]). A held file,
    /// and one whose sink was unavailable, stays in the inbox (its results
    /// are published): the next run takes it again (and holds it again, or
    /// resumes its writes, what was applied coming out unchanged).
    fn publish(
        &mut self,
        f: &FileRun<'_>,
        planned: &Planned,
        lines: &[Line],
        unavailable: bool,
    ) -> Result<(), RunError> {
        let plan = &planned.plan;
        write_atomically(&f.staged.results, |w| {
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
        // A held file stays in the inbox, to be released or superseded.
        let held = planned.verdict.held();
        // The rows to send again, as they were (not a held file's, nor
        // one whose LMS was down: the whole file is taken again).
        if f.profile.retry_file && !f.opts.dry_run && !held && !unavailable {
            let mut failed: Vec<u64> = (0..lines.len())
                .filter(|&i| lines[i].outcome == Outcome::Failed && plan.row(i).line > 0)
                .map(|i| plan.record_start(i))
                .collect();
            failed.sort_unstable();
            super::retry::write(f.profile, f.file.local(), &failed, &f.staged.retry)?;
        }
        let summary = f
            .summary(self, Some((plan, lines)), &planned.verdict, None)
            .to_json();
        self.conclude(f, &summary, !held && !unavailable, held || unavailable)
    }
}

/// Each plan row's outcome before any write: `held` on every line of a
/// held file, `planned` on a dry run; otherwise `ok`, or `failed` for a
/// rejected row.
fn first_lines(plan: &Plan, verdict: &Verdict, opts: &RunOptions) -> Vec<Line> {
    let base = if verdict.held() {
        Outcome::Held
    } else if opts.dry_run {
        Outcome::Planned
    } else {
        Outcome::Ok
    };
    (0..plan.len())
        .map(|i| {
            let reject = plan.row(i).action == Action::Reject;
            Line::new(if base == Outcome::Ok && reject {
                Outcome::Failed
            } else {
                base
            })
        })
        .collect()
}

/// The report of a file planned (held or applied).
fn report(
    f: &FileRun<'_>,
    source: &dyn crate::source::Source,
    planned: &Planned,
    lines: &[Line],
    unavailable: bool,
) -> FileReport {
    let (plan, verdict) = (&planned.plan, &planned.verdict);
    let tally = plan.tally();
    let status = if unavailable {
        FileStatus::SinkUnavailable
    } else if verdict.held() {
        FileStatus::Held
    } else if tally.is_clean()
        && lines
            .iter()
            .all(|l| l.code().is_none() && l.outcome != Outcome::Failed)
    {
        FileStatus::Clean
    } else {
        FileStatus::Rows
    };
    let mut text = match f.file.earlier {
        Some(earlier) => format!("same content as {earlier}: "),
        None => String::new(),
    };
    text.push_str(&crate::model::counted(plan.records, "record"));
    for a in Action::ALL {
        let n = tally.count(a);
        if n > 0 {
            text.push_str(&format!(", {n} {}", a.as_str()));
        }
    }
    let why = verdict.held().then(|| {
        let reasons: Vec<String> = verdict.reasons.iter().map(|r| r.to_string()).collect();
        reasons.join("; ")
    });
    FileReport {
        file: PathBuf::from(f.file.name),
        status,
        why,
        results: Some(source.location(&f.staged.results_name())),
        summary: text,
        records: plan.records,
        counts: tally.by_action,
        profile: f.profile.name.clone(),
        outcomes: super::report::count(plan, lines),
    }
}
