//! `muster daemon`: runs each tenant on its schedule until stopped.
//!
//! - **Schedule**: each tenant's cron expression in its time zone
//!   ([`crate::schedule`]; default `0 4 * * *` UTC).
//! - **One run at a time**: tenants are run one after the other by one
//!   thread, and [`crate::pipeline::run_tenant`] holds an exclusive lock on the
//!   tenant's `<state>.lock`, so a manual `muster run` of the same tenant
//!   never overlaps a scheduled one (the later one waits for the next slot).
//! - **Missed runs**: the next due time is kept in the tenant's state store.
//!   A daemon that starts after a due time passed (it was down, or busy
//!   with another tenant) runs the tenant once at start, however many
//!   slots were missed — the files waiting in the inbox are the same — then
//!   follows the schedule. A tenant seen for the first time waits for its
//!   first slot.
//! - **Stopping**: SIGTERM or SIGINT sets the stop flag: the batch in
//!   flight is finished and committed, nothing more is sent, the file being
//!   written stays in the inbox for the next run, and the daemon returns (exit
//!   0). A second signal exits at once (the journal makes that safe too).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use crate::config::{Config, Tenant};
use crate::pipeline::{run_tenant_with_progress, FileReport, RunError, RunOptions, RunProgress};
use crate::store::RedbStore;

const NEXT_DUE: &str = "next_due";

/// Reads the tenant's next due time from its store.
fn stored_due(tenant: &Tenant) -> Option<Timestamp> {
    let store = RedbStore::open(&tenant.state).ok()?;
    store.daemon_value(NEXT_DUE).ok()??.parse().ok()
}

fn store_due(tenant: &Tenant, due: Timestamp) {
    let saved = RedbStore::open(&tenant.state)
        .and_then(|mut s| s.set_daemon_value(NEXT_DUE, &due.to_string()));
    if let Err(e) = saved {
        tracing::warn!(tenant = %tenant.name, error = %e, "could not record the next due time");
    }
}

/// The next slot of `tenant` after `after`; far away if it never fires.
fn next_slot(tenant: &Tenant, after: Timestamp) -> Timestamp {
    match tenant.schedule.next_after(after, &tenant.time_zone) {
        Some(z) => z.timestamp(),
        None => {
            tracing::warn!(tenant = %tenant.name, "the schedule never fires");
            Timestamp::MAX
        }
    }
}

/// The outcome of one scheduled run.
pub type RunOutcome = Result<Vec<FileReport>, RunError>;

/// Runs the tenants of `config` (only `only`, when given) on their
/// schedules until `stop` is set. `progress` hears how far each run has
/// come, `report` its outcome.
pub fn run_daemon(
    config: &Config,
    only: Option<&str>,
    stop: Arc<AtomicBool>,
    progress: &mut dyn FnMut(&Tenant, RunProgress<'_>),
    report: &mut dyn FnMut(&Tenant, &RunOutcome),
) {
    let tenants: Vec<&Tenant> = config
        .tenants
        .iter()
        .filter(|t| only.is_none_or(|n| t.name == n))
        .collect();
    let now = Timestamp::now();
    let mut due: Vec<Timestamp> = tenants
        .iter()
        .map(|t| {
            let due = match stored_due(t) {
                Some(d) if d <= now => {
                    tracing::info!(tenant = %t.name, missed = %d, "a scheduled run was missed: running now");
                    now
                }
                Some(d) => d,
                None => {
                    let d = next_slot(t, now);
                    store_due(t, d);
                    d
                }
            };
            tracing::info!(tenant = %t.name, next = %due, "scheduled");
            due
        })
        .collect();
    let opts = RunOptions {
        stop: Some(stop.clone()),
        ..RunOptions::default()
    };
    while !stop.load(Ordering::SeqCst) {
        let now = Timestamp::now();
        for (i, tenant) in tenants.iter().enumerate() {
            if due[i] > now || stop.load(Ordering::SeqCst) {
                continue;
            }
            tracing::info!(tenant = %tenant.name, "run started");
            let result = run_tenant_with_progress(tenant, &opts, &mut |p| progress(tenant, p));
            report(tenant, &result);
            match &result {
                Err(RunError::Stopped) => {
                    tracing::info!(tenant = %tenant.name, "stopped; the rest is left for the next run");
                    return;
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
            due[i] = next_slot(tenant, Timestamp::now());
            store_due(tenant, due[i]);
            tracing::info!(tenant = %tenant.name, next = %due[i], "scheduled");
        }
        // Sleep to the next due time, looking at the stop flag often.
        let next = due.iter().min().copied().unwrap_or(Timestamp::MAX);
        let wait = next.duration_since(Timestamp::now());
        let wait = Duration::try_from(wait).unwrap_or(Duration::ZERO);
        std::thread::sleep(wait.min(Duration::from_millis(200)));
    }
    tracing::info!("stopped");
}
