//! The run history (SPEC §8): every run of a tenant that took a file or
//! failed, recorded in its state store with its result and, per file, its
//! profile, records, counts by action and outcome, hold reasons and
//! results path; the newest `keep_runs` kept. A run that found nothing to
//! do is not recorded (a daemon looking every few minutes would push the
//! runs that did something out).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{FileReport, FileStatus, RunError};
use crate::store::{StateStore, StoreError};

/// One run, as the history keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: u64,
    /// RFC 3339, UTC.
    pub started: String,
    pub ended: String,
    /// `ok`, `rows_failed`, `held`, `refused` or `failed`: the worst of
    /// its files', or `failed` when the run stopped on an error.
    pub result: String,
    /// Why it failed, when it did.
    pub error: Option<String>,
    pub files: Vec<FileRecord>,
    /// The requests its sink sent to the LMS, by the answer's status (an
    /// HTTP code, or `error` when none came); empty for a JSONL outbox.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, u64>,
}

/// One file of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    pub name: String,
    pub profile: String,
    /// The file's result: `ok`, `rows_failed`, `held`, `refused`,
    /// `failed` (the LMS could not be reached) or `superseded`.
    pub status: String,
    pub records: u64,
    /// `{action: {outcome: n}}`.
    pub counts: serde_json::Map<String, serde_json::Value>,
    /// Why it was held, refused or superseded.
    pub reasons: Vec<String>,
    /// Its results CSV, where the source keeps it.
    pub results: Option<String>,
}

/// The result word of a file.
fn result_of(status: &FileStatus) -> &'static str {
    match status {
        FileStatus::Clean | FileStatus::Superseded => "ok",
        FileStatus::Rows => "rows_failed",
        FileStatus::Held => "held",
        FileStatus::Refused => "refused",
        FileStatus::SinkUnavailable => "failed",
    }
}

/// The worse of two results (failed, then refused, then held, then
/// rows_failed, then ok: the order of the exit codes).
fn worse<'a>(a: &'a str, b: &'a str) -> &'a str {
    let rank = |r: &str| {
        ["ok", "rows_failed", "held", "refused", "failed"]
            .iter()
            .position(|x| *x == r)
            .unwrap_or(0)
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

/// Records the run that started at `started` and ended with `outcome`
/// in `store`, keeping `keep` runs; `None` when there is nothing to
/// record (no file, no error).
pub(super) fn record(
    store: &mut dyn StateStore,
    keep: usize,
    started: jiff::Timestamp,
    outcome: &Result<Vec<FileReport>, RunError>,
    requests: Vec<(String, u64)>,
) -> Result<Option<u64>, StoreError> {
    let (files, error) = match outcome {
        Ok(reports) if reports.is_empty() => return Ok(None),
        Ok(reports) => (reports.as_slice(), None),
        Err(e) => (&[][..], Some(e.to_string())),
    };
    let files: Vec<FileRecord> = files
        .iter()
        .map(|r| FileRecord {
            name: r.file.display().to_string(),
            profile: r.profile.clone(),
            status: match r.status {
                FileStatus::Superseded => "superseded",
                ref s => result_of(s),
            }
            .to_string(),
            records: r.records,
            counts: super::report::counts_json(&r.outcomes),
            reasons: r.why.iter().cloned().collect(),
            results: r.results.as_ref().map(|p| p.display().to_string()),
        })
        .collect();
    let result = match outcome {
        Err(_) => "failed",
        Ok(reports) => reports
            .iter()
            .fold("ok", |worst, r| worse(worst, result_of(&r.status))),
    };
    let ended = jiff::Timestamp::now();
    let mut record = RunRecord {
        id: 0,
        started: started.to_string(),
        ended: ended.to_string(),
        result: result.to_string(),
        error,
        files,
        requests: requests.into_iter().collect(),
    };
    let id = store.push_run(keep, &mut |id| {
        record.id = id;
        serde_json::to_vec(&record).unwrap_or_default()
    })?;
    Ok(Some(id))
}

/// The newest `limit` runs of a store's history.
pub fn runs(store: &dyn StateStore, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
    Ok(store
        .runs(limit)?
        .iter()
        .filter_map(|bytes| serde_json::from_slice(bytes).ok())
        .collect())
}

/// What `muster status` shows of a tenant (SPEC §8), as the API's
/// `/api/tenants` will.
#[derive(Clone, Debug, Serialize)]
pub struct TenantStatus {
    pub name: String,
    /// A run holds the tenant's lock now (its store is not read then).
    pub running: bool,
    /// The daemon's next scheduled run (RFC 3339), once a daemon ran it.
    pub next_run: Option<String>,
    pub last_run: Option<RunRecord>,
    /// The files its last run held, not released yet.
    pub held: Vec<String>,
    /// Held files released for the next run.
    pub released: Vec<String>,
}

/// Reads `tenant`'s status from its state store, without a daemon: its
/// lock is taken for the moment it is read (a run starting then waits).
pub fn tenant_status(tenant: &crate::config::Tenant) -> Result<TenantStatus, RunError> {
    let mut status = TenantStatus {
        name: tenant.name.clone(),
        running: false,
        next_run: None,
        last_run: None,
        held: Vec::new(),
        released: Vec::new(),
    };
    let _lock = match super::lock(tenant) {
        Ok(lock) => lock,
        Err(RunError::Busy(_)) => {
            status.running = true;
            return Ok(status);
        }
        Err(e) => return Err(e),
    };
    if tenant.cluster.is_none() && !tenant.state.exists() {
        return Ok(status);
    }
    let store = super::open_store(tenant)?;
    // Under [cluster], a run on another machine holds the tenant's lease.
    if store.run_holder()?.is_some() {
        status.running = true;
    }
    status.next_run = store.daemon_value(crate::store::NEXT_DUE)?;
    status.last_run = runs(store.as_ref(), 1)?.pop();
    if let Some(last) = &status.last_run {
        for f in last.files.iter().filter(|f| f.status == "held") {
            if store.released(&f.name)? {
                status.released.push(f.name.clone());
            } else {
                status.held.push(f.name.clone());
            }
        }
    }
    Ok(status)
}

/// The newest `limit` runs of `tenant`'s history, read under its lock;
/// `None` while a run holds it.
pub fn history_of(
    tenant: &crate::config::Tenant,
    limit: usize,
) -> Result<Option<Vec<RunRecord>>, RunError> {
    let _lock = match super::lock(tenant) {
        Ok(lock) => lock,
        Err(RunError::Busy(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    if tenant.cluster.is_none() && !tenant.state.exists() {
        return Ok(Some(Vec::new()));
    }
    let store = super::open_store(tenant)?;
    Ok(Some(runs(store.as_ref(), limit)?))
}

/// Opens the results CSV a run's file left at `location` (its
/// [`FileRecord::results`]), through `tenant`'s source: a folder inbox's
/// from disk, an SFTP inbox's from its server. It needs no lock: a
/// results file is written once, under a new name.
pub fn open_results(
    tenant: &crate::config::Tenant,
    location: &str,
) -> Result<Box<dyn std::io::Read + Send>, RunError> {
    let mut source = crate::source::open(&tenant.source, &tenant.spool())?;
    Ok(source.read_processed(processed_name(location))?)
}

/// The name in `processed/` of a results file at `location` (a path, or
/// an `sftp://` address).
pub(super) fn processed_name(location: &str) -> &str {
    std::path::Path::new(location)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
}

/// Why `muster release` did not release a file.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The tenant's last run held no file of that name.
    #[error("tenant {tenant}: no held file {file:?} (held now: {held})")]
    NotHeld {
        tenant: String,
        file: String,
        held: String,
    },
}

/// Releases the held file `file` of `tenant`: its next run applies it
/// despite the guards, as `--force` would, for that file only (SPEC §8).
pub fn release(tenant: &crate::config::Tenant, file: &str) -> Result<(), ReleaseError> {
    let status = tenant_status(tenant)?;
    if status.running {
        return Err(RunError::Busy(tenant.name.clone()).into());
    }
    if !status
        .held
        .iter()
        .chain(&status.released)
        .any(|h| h == file)
    {
        let held = if status.held.is_empty() {
            "none".to_string()
        } else {
            status.held.join(", ")
        };
        return Err(ReleaseError::NotHeld {
            tenant: tenant.name.clone(),
            file: file.to_string(),
            held,
        });
    }
    let _lock = super::lock(tenant)?;
    let mut store = super::open_store(tenant)?;
    store.set_released(file, true)?;
    Ok(())
}

/// The events of a run: one per file (a superseded file has none), or one
/// `failed` event for a run that stopped on an error.
pub(super) fn events(
    tenant: &str,
    run_id: Option<u64>,
    outcome: &Result<Vec<FileReport>, RunError>,
) -> Vec<crate::notify::Event> {
    match outcome {
        // Nothing to tell: another muster runs (or ran, or takes over) it.
        Err(RunError::Stopped | RunError::Busy(_) | RunError::NotDue { .. }) => Vec::new(),
        Err(e) if e.lease_lost() => Vec::new(),
        Err(e) => vec![crate::notify::Event {
            event: "failed".into(),
            tenant: tenant.into(),
            run_id,
            file: None,
            profile: None,
            records: 0,
            counts: Default::default(),
            reasons: vec![e.to_string()],
            results: None,
        }],
        Ok(reports) => reports
            .iter()
            .filter_map(|r| {
                if r.status == FileStatus::Superseded {
                    return None;
                }
                let event = result_of(&r.status);
                Some(crate::notify::Event {
                    event: event.into(),
                    tenant: tenant.into(),
                    run_id,
                    file: Some(r.file.display().to_string()),
                    profile: Some(r.profile.clone()),
                    records: r.records,
                    counts: super::report::counts_json(&r.outcomes),
                    reasons: r.why.iter().cloned().collect(),
                    results: r.results.as_ref().map(|p| p.display().to_string()),
                })
            })
            .collect(),
    }
}
