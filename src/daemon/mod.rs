//! `muster daemon`: runs each tenant on its schedule until stopped (SPEC §8).
//!
//! - **Schedule**: each tenant's cron expression in its time zone
//!   ([`crate::schedule`]; default `0 4 * * *` UTC).
//! - **Workers**: the scheduler hands due tenants to `[daemon] workers`
//!   threads (default 4), so a tenant whose LMS is slow or down holds up
//!   only itself. A tenant is queued once until its run ends, never run
//!   twice at once; across processes, [`crate::pipeline::run_tenant`]
//!   holds an exclusive lock on the tenant's `<state>.lock`, so a manual
//!   `muster run` never overlaps a scheduled one (the later one waits for
//!   the next slot). Memory is bounded by the workers: one run each.
//! - **Missed runs**: the next due time is kept in the tenant's state store.
//!   A daemon that starts after a due time passed (it was down) runs the
//!   tenant once at start, however many slots were missed — the files
//!   waiting in the inbox are the same — then follows the schedule. A
//!   tenant seen for the first time waits for its first slot.
//! - **Reload**: when [`DaemonOptions::reload`] is set (SIGHUP), the config
//!   is read again: new tenants are scheduled, removed ones finish the run
//!   they are in and are not run again, changed ones run with their new
//!   settings from their next run. A config that does not load is refused
//!   with its error, and the old one kept.
//! - **Stopping**: SIGTERM or SIGINT sets the stop flag: each run in flight
//!   finishes and commits the batch it is sending, nothing more is sent, the
//!   file being written stays in the inbox for the next run, queued runs are
//!   not started, and the daemon returns (exit 0). A second signal exits at
//!   once (the journal makes that safe too).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

mod console;
mod ops;

use crate::config::{Config, Tenant};
use crate::pipeline::{
    run_tenant_with_progress, FileReport, RunError, RunOptions, RunProgress, Trigger,
};
pub use ops::Fleet;

use crate::store::NEXT_DUE;

/// Reads the tenant's next due time from its store.
fn stored_due(tenant: &Tenant) -> Option<Timestamp> {
    let store = crate::pipeline::open_store(tenant).ok()?;
    store.daemon_value(NEXT_DUE).ok()??.parse().ok()
}

fn store_due(tenant: &Tenant, due: Timestamp) {
    let saved = crate::pipeline::open_store(tenant).and_then(|mut s| {
        s.set_daemon_value(NEXT_DUE, &due.to_string())
            .map_err(Into::into)
    });
    if let Err(e) = saved {
        tracing::warn!(tenant = %tenant.name, error = %e, "could not record the next due time");
    }
}

/// When a tenant the daemon starts with (or is given by a reload) is
/// first due: at once if a slot passed while no daemon ran it, else its
/// stored or next slot.
fn first_due(tenant: &Tenant, now: Timestamp) -> Timestamp {
    let due = match stored_due(tenant) {
        Some(d) if d <= now => {
            tracing::info!(tenant = %tenant.name, missed = %d, "a scheduled run was missed: running now");
            now
        }
        Some(d) => d,
        None => {
            let d = tenant.next_slot(now);
            store_due(tenant, d);
            d
        }
    };
    tracing::info!(tenant = %tenant.name, next = %due, "scheduled");
    due
}

/// The outcome of one scheduled run.
pub type RunOutcome = Result<Vec<FileReport>, RunError>;

/// How the daemon is run: which tenants, and the flags its signals set.
#[derive(Clone, Debug, Default)]
pub struct DaemonOptions {
    /// Only this tenant.
    pub only: Option<String>,
    /// Set to stop (SIGTERM, SIGINT).
    pub stop: Arc<AtomicBool>,
    /// The config file, and the flag that asks for it to be read again
    /// (SIGHUP); cleared when it has been.
    pub reload: Option<(PathBuf, Arc<AtomicBool>)>,
}

/// A tenant the scheduler knows.
struct Slot {
    tenant: Arc<Tenant>,
    due: Timestamp,
    /// Queued or running: not queued again until its run ends.
    busy: bool,
    /// Gone from the config: not run again (dropped when its run ends).
    removed: bool,
    /// Asked to run now while busy: run again once this run ends.
    again: bool,
    /// Asked to run now (not at its slot): the run is claimed as such.
    now: bool,
}

impl Slot {
    fn new(tenant: &Tenant, now: Timestamp, fleet: &Fleet) -> Slot {
        let tenant = Arc::new(tenant.clone());
        fleet.add(&tenant, crate::pipeline::tenant_status(&tenant).ok());
        let due = first_due(&tenant, now);
        fleet.scheduled(&tenant.name, due);
        Slot {
            tenant,
            due,
            busy: false,
            removed: false,
            again: false,
            now: false,
        }
    }
}

/// Runs the tenants of `config` on their schedules, `config.daemon.workers`
/// at a time, until `opts.stop` is set, serving the operations endpoint
/// when `config.listen` asks for one. `progress` hears how far each run
/// has come, `report` its outcome (both from the worker running it). An
/// endpoint address that cannot be bound is the error (nothing is run).
pub fn run_daemon(
    config: &Config,
    opts: &DaemonOptions,
    progress: &(dyn Fn(&Tenant, RunProgress<'_>) + Sync),
    report: &(dyn Fn(&Tenant, &RunOutcome) + Sync),
) -> Result<(), String> {
    let fleet = Fleet::new();
    let server = match &config.listen {
        Some(listen) => Some(ops::serve(listen, fleet.clone(), opts.stop.clone())?),
        None => None,
    };
    let now = Timestamp::now();
    let mut slots: Vec<Slot> = chosen(config, opts)
        .map(|t| Slot::new(t, now, &fleet))
        .collect();
    let run_opts = RunOptions {
        stop: Some(opts.stop.clone()),
        ..RunOptions::default()
    };
    let stopping = || opts.stop.load(Ordering::SeqCst);
    let (queue, jobs) = crossbeam_channel::unbounded::<(Arc<Tenant>, Trigger)>();
    let (finished, done) = crossbeam_channel::unbounded::<(String, Ended)>();
    let workers = config.daemon.workers.max(1);
    std::thread::scope(|s| {
        for _ in 0..workers {
            let (jobs, finished, run_opts, fleet) =
                (jobs.clone(), finished.clone(), &run_opts, &fleet);
            s.spawn(move || {
                for (tenant, trigger) in jobs {
                    let mut ended = Ended::Ran;
                    if !stopping() {
                        fleet.started(&tenant.name);
                        let started = std::time::Instant::now();
                        let opts = RunOptions {
                            trigger,
                            ..run_opts.clone()
                        };
                        ended = run_one(&tenant, &opts, progress, report);
                        let status = crate::pipeline::tenant_status(&tenant).ok();
                        match ended {
                            Ended::Ran => {
                                fleet.ended(&tenant.name, started.elapsed().as_secs_f64(), status)
                            }
                            _ => fleet.skipped(&tenant.name, status),
                        }
                    }
                    if finished.send((tenant.name.clone(), ended)).is_err() {
                        return;
                    }
                }
            });
        }
        tracing::info!(workers, tenants = slots.len(), "daemon started");
        while !stopping() {
            if let Some((path, flag)) = &opts.reload {
                if flag.swap(false, Ordering::SeqCst) {
                    reload(&mut slots, path, opts, &fleet);
                }
            }
            let now = Timestamp::now();
            for name in fleet.take_run_now() {
                if let Some(slot) = slots
                    .iter_mut()
                    .find(|s| s.tenant.name == name && !s.removed)
                {
                    tracing::info!(tenant = %name, "asked to run now");
                    if slot.busy {
                        slot.again = true;
                    } else {
                        slot.due = now;
                        slot.now = true;
                    }
                }
            }
            for slot in slots.iter_mut() {
                if !slot.busy && !slot.removed && slot.due <= now {
                    slot.busy = true;
                    let trigger = match std::mem::take(&mut slot.now) {
                        true => Trigger::Now,
                        false => Trigger::Due,
                    };
                    if queue.send((slot.tenant.clone(), trigger)).is_err() {
                        return;
                    }
                }
            }
            // Wait for a run to end or the next due time, looking at the
            // flags often.
            let next = slots
                .iter()
                .filter(|s| !s.busy && !s.removed)
                .map(|s| s.due)
                .min()
                .unwrap_or(Timestamp::MAX);
            let wait = Duration::try_from(next.duration_since(Timestamp::now()))
                .unwrap_or(Duration::ZERO)
                .min(Duration::from_millis(200));
            if let Ok((name, how)) = done.recv_timeout(wait) {
                ended(&mut slots, &name, how, &fleet);
                while let Ok((name, how)) = done.try_recv() {
                    ended(&mut slots, &name, how, &fleet);
                }
            }
        }
        tracing::info!("stopping: the runs in flight finish their batch");
        fleet.alive.store(false, Ordering::SeqCst);
        drop(queue);
    });
    if let Some(server) = server {
        let _ = server.join();
    }
    tracing::info!("stopped");
    Ok(())
}

/// The tenants of `config` the daemon runs.
fn chosen<'c>(config: &'c Config, opts: &DaemonOptions) -> impl Iterator<Item = &'c Tenant> {
    let only = opts.only.clone();
    config
        .tenants
        .iter()
        .filter(move |t| only.as_ref().is_none_or(|n| &t.name == n))
}

/// How a tenant's turn with a worker ended.
#[derive(Clone, Copy, Debug)]
enum Ended {
    /// It ran (whatever the outcome).
    Ran,
    /// Another process held it: tried again soon.
    Busy,
    /// Another daemon of the cluster ran its slot: next due then.
    NotDue(Timestamp),
}

/// One run of `tenant`, logged and reported (a run that did not start,
/// another muster holding the tenant or having run its slot, is only
/// logged).
fn run_one(
    tenant: &Tenant,
    opts: &RunOptions,
    progress: &(dyn Fn(&Tenant, RunProgress<'_>) + Sync),
    report: &(dyn Fn(&Tenant, &RunOutcome) + Sync),
) -> Ended {
    let result = run_tenant_with_progress(tenant, opts, &mut |p| {
        if let RunProgress::Started = p {
            tracing::info!(tenant = %tenant.name, "run started");
        }
        progress(tenant, p)
    });
    match &result {
        Err(RunError::Busy(_)) => return Ended::Busy,
        Err(RunError::NotDue { next, .. }) => {
            tracing::debug!(tenant = %tenant.name, %next, "its slot was run by another daemon");
            return Ended::NotDue(*next);
        }
        _ => {}
    }
    report(tenant, &result);
    match &result {
        Err(RunError::Stopped) => {
            tracing::info!(tenant = %tenant.name, "stopped; the rest is left for the next run")
        }
        Err(e) if e.lease_lost() => {
            tracing::error!(tenant = %tenant.name, error = %e, "run abandoned; another muster takes it over")
        }
        Err(e) if e.resumes() => {
            tracing::error!(tenant = %tenant.name, error = %e, "run failed; the next one resumes")
        }
        Err(e) => {
            tracing::error!(tenant = %tenant.name, error = %e, "run failed; the tenant needs someone to act first")
        }
        Ok(reports) => {
            tracing::info!(tenant = %tenant.name, files = reports.len(), "run done")
        }
    }
    Ended::Ran
}

/// How soon a tenant another process held (a `muster run`, `status` or
/// `release` of it) is tried again; under `[cluster]`, no later than its
/// lease (a daemon that died holding it is taken over then).
const BUSY_RETRY: Duration = Duration::from_secs(30);

/// A tenant's turn ended: its next slot (soon, when another process held
/// it), or its slot dropped if the config no longer has it. Under
/// `[cluster]`, the next due time is the one the run's lease release
/// wrote (or another daemon's, for a slot it ran).
fn ended(slots: &mut Vec<Slot>, name: &str, how: Ended, fleet: &Fleet) {
    let Some(i) = slots.iter().position(|s| s.busy && s.tenant.name == name) else {
        return;
    };
    if slots[i].removed {
        tracing::info!(tenant = %name, "removed from the config: not run again");
        slots.remove(i);
        fleet.remove(name);
        return;
    }
    let slot = &mut slots[i];
    slot.busy = false;
    let now = Timestamp::now();
    let cluster = slot.tenant.cluster.as_ref();
    if std::mem::take(&mut slot.again) {
        slot.due = now;
        slot.now = true;
    } else {
        match how {
            Ended::Busy => {
                let retry = match cluster {
                    Some(c) => BUSY_RETRY.min(Duration::from_millis(c.lease_ms)),
                    None => BUSY_RETRY,
                };
                slot.due = now + retry;
                tracing::info!(tenant = %name, next = %slot.due, "held by another process: tried again soon");
            }
            Ended::NotDue(next) => slot.due = next,
            Ended::Ran if cluster.is_some() => {
                slot.due = stored_due(&slot.tenant).unwrap_or_else(|| slot.tenant.next_slot(now));
                tracing::info!(tenant = %name, next = %slot.due, "scheduled");
            }
            Ended::Ran => {
                slot.due = slot.tenant.next_slot(now);
                store_due(&slot.tenant, slot.due);
                tracing::info!(tenant = %name, next = %slot.due, "scheduled");
            }
        }
    }
    fleet.scheduled(name, slot.due);
}

/// Reads the config at `path` again: new tenants are scheduled, removed
/// ones are not run again once their run (if any) ends, the others take
/// their new settings. A config that does not load changes nothing.
fn reload(slots: &mut Vec<Slot>, path: &std::path::Path, opts: &DaemonOptions, fleet: &Fleet) {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "config reload refused: the tenants run as before");
            return;
        }
    };
    let now = Timestamp::now();
    let fresh: Vec<&Tenant> = chosen(&config, opts).collect();
    for slot in slots.iter_mut() {
        match fresh.iter().find(|t| t.name == slot.tenant.name) {
            Some(t) => {
                slot.tenant = Arc::new((*t).clone());
                slot.removed = false;
                fleet.add(&slot.tenant, None);
            }
            None if !slot.removed => {
                slot.removed = true;
                tracing::info!(tenant = %slot.tenant.name, "removed from the config");
            }
            None => {}
        }
    }
    for gone in slots.iter().filter(|s| !s.busy && s.removed) {
        fleet.remove(&gone.tenant.name);
    }
    slots.retain(|s| s.busy || !s.removed);
    for t in fresh {
        if !slots.iter().any(|s| s.tenant.name == t.name) {
            tracing::info!(tenant = %t.name, "added by the config");
            slots.push(Slot::new(t, now, fleet));
        }
    }
    tracing::info!(
        tenants = slots.iter().filter(|s| !s.removed).count(),
        "config reloaded"
    );
}
