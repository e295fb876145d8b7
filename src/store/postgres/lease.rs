//! Leases: which daemon runs a cluster tenant (SPEC §9).
//!
//! Each tenant has a row in `muster_leases`: who holds it, until when, and
//! a fencing token raised by every claim. A run claims the row (`SELECT …
//! FOR UPDATE SKIP LOCKED`: two daemons claiming at once never both get
//! it), a thread renews it every third of `lease_ms` while the run goes
//! on, and the run releases it when it ends, moving the tenant's next due
//! time on in the same transaction when the run was for a slot. A daemon
//! that dies stops renewing: once `lease_ms` has passed, another daemon's
//! claim takes the run over (the journal's recovery settles what the dead
//! one sent).
//!
//! The fence: every write of a run's store ([`super::PostgresStore`])
//! checks, in its own transaction, that the lease's token is still the
//! tenant's and the lease has not lapsed, sharing the row until it
//! commits (only the renewing thread renews). A daemon that
//! lost its lease — paused past it, or cut off from the database — commits
//! nothing more; and before each batch goes to the sink, the run checks on
//! its own clock that the last renewal is younger than the lease, so a
//! daemon resumed after a pause does not send the batch it was about to.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::{connect_client, Shown};
use crate::store::{StoreError, StoreErrorKind, NEXT_DUE};

/// A run's hold on its tenant's lease, shared by the renewing thread, the
/// store's fenced writes and the check before each batch is sent.
pub(crate) struct Fence {
    pub(crate) token: i64,
    pub(crate) lease: Duration,
    /// When the lease was last known to be held (a renewal or a fenced
    /// write), on this process's monotonic clock (which runs on while the
    /// process is stopped).
    confirmed: Mutex<Instant>,
}

impl Fence {
    pub(crate) fn confirm(&self, at: Instant) {
        let mut last = self.confirmed.lock().unwrap_or_else(|p| p.into_inner());
        *last = (*last).max(at);
    }

    /// Whether the lease is still held by this clock's reckoning.
    pub(crate) fn held(&self) -> bool {
        let last = *self.confirmed.lock().unwrap_or_else(|p| p.into_inner());
        // A margin for the time a renewal takes to reach the database.
        last.elapsed() < self.lease.mul_f64(0.9)
    }

    /// The statement that renews the lease (the renewer's): one row when
    /// the lease is still this run's.
    pub(crate) const RENEW: &'static str = "UPDATE muster_leases \
        SET expires = clock_timestamp() + make_interval(secs => $3) \
        WHERE tenant = $1 AND token = $2 AND holder IS NOT NULL AND expires > clock_timestamp()";

    /// The statement that checks the lease inside a write's transaction:
    /// one row when the lease is still this run's. It shares the row
    /// (writes on two connections of a run do not wait on each other)
    /// and holds it until the write commits: a claim skips the tenant,
    /// and a renewal waits, meanwhile.
    pub(crate) const HELD: &'static str = "SELECT 1 FROM muster_leases \
        WHERE tenant = $1 AND token = $2 AND holder IS NOT NULL AND expires > clock_timestamp() \
        FOR SHARE";

    pub(crate) fn seconds(&self) -> f64 {
        self.lease.as_secs_f64()
    }
}

/// What a claim found.
pub enum Claim {
    /// The tenant is this run's until the lease is released.
    Held(Lease),
    /// Another muster holds the tenant (its lease is live), or is claiming
    /// it at this moment.
    Busy,
    /// A claim for the tenant's slot, when the slot was run already: the
    /// tenant is next due at this time.
    NotDue(Timestamp),
}

/// A tenant's lease, held: renewed by a thread until released or dropped.
pub struct Lease {
    tenant: String,
    shown: Shown,
    pub(crate) fence: Arc<Fence>,
    client: Arc<Mutex<postgres::Client>>,
    /// Dropped to stop the renewing thread.
    renewing: Option<crossbeam_channel::Sender<()>>,
    renewer: Option<std::thread::JoinHandle<()>>,
    /// The next due time written when the lease is dropped unreleased
    /// (a run that panicked): the slot after the claim, for a slot's run.
    due_when_dropped: Option<Timestamp>,
}

/// Who holds a lease, for the people reading `muster_leases` or
/// `muster status`: the host name and the process id.
fn holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into());
    format!("{host} pid {}", std::process::id())
}

/// Claims `tenant`'s lease for `lease`. `due_only`: the claim is for the
/// tenant's scheduled slot, refused ([`Claim::NotDue`]) when the tenant's
/// stored next due time is after now (another daemon ran the slot).
/// `next_due`: the next due time written if the lease is dropped without
/// being released (a run that panicked), so that it is not run again at
/// once.
pub fn claim(
    url: &str,
    tenant: &str,
    lease: Duration,
    due_only: bool,
    next_due: Option<Timestamp>,
) -> Result<Claim, StoreError> {
    let (mut client, shown) = connect_client(url, tenant)?;
    let err = |e: postgres::Error| shown.error(e);
    let claimed: Result<Result<i64, Claim>, postgres::Error> = (|| {
        // Inserted once; never waiting on a row another claim or write
        // holds (the select sees it).
        client.execute(
            "INSERT INTO muster_leases (tenant) SELECT $1 \
             WHERE NOT EXISTS (SELECT 1 FROM muster_leases WHERE tenant = $1) \
             ON CONFLICT DO NOTHING",
            &[&tenant],
        )?;
        let mut tx = client.transaction()?;
        let Some(row) = tx.query_opt(
            "SELECT holder IS NOT NULL AND expires > clock_timestamp() FROM muster_leases \
             WHERE tenant = $1 FOR UPDATE SKIP LOCKED",
            &[&tenant],
        )?
        else {
            return Ok(Err(Claim::Busy));
        };
        if row.get::<_, bool>(0) {
            return Ok(Err(Claim::Busy));
        }
        if due_only {
            let due: Option<String> = tx
                .query_opt(
                    "SELECT value FROM muster_daemon WHERE tenant = $1 AND name = $2",
                    &[&tenant, &NEXT_DUE],
                )?
                .map(|r| r.get(0));
            if let Some(due) = due.and_then(|d| d.parse::<Timestamp>().ok()) {
                if due > Timestamp::now() {
                    return Ok(Err(Claim::NotDue(due)));
                }
            }
        }
        let token: i64 = tx
            .query_one(
                "UPDATE muster_leases SET token = token + 1, holder = $2, \
                 expires = clock_timestamp() + make_interval(secs => $3) \
                 WHERE tenant = $1 RETURNING token",
                &[&tenant, &holder(), &lease.as_secs_f64()],
            )?
            .get(0);
        tx.commit()?;
        Ok(Ok(token))
    })();
    let token = match claimed.map_err(err)? {
        Ok(token) => token,
        Err(refused) => return Ok(refused),
    };
    let fence = Arc::new(Fence {
        token,
        lease,
        confirmed: Mutex::new(Instant::now()),
    });
    let client = Arc::new(Mutex::new(client));
    let (renewing, stop) = crossbeam_channel::bounded::<()>(0);
    let renewer = {
        let (client, fence, tenant, shown) = (
            client.clone(),
            fence.clone(),
            tenant.to_string(),
            shown.clone(),
        );
        std::thread::Builder::new()
            .name(format!("lease {tenant}"))
            .spawn(move || renew(&client, &fence, &tenant, &shown, &stop))
    }
    .map_err(|e| StoreError {
        path: shown.to_string(),
        kind: StoreErrorKind::Database(format!("the lease's thread: {e}")),
    })?;
    Ok(Claim::Held(Lease {
        tenant: tenant.to_string(),
        shown,
        fence,
        client,
        renewing: Some(renewing),
        renewer: Some(renewer),
        due_when_dropped: next_due,
    }))
}

/// Renews the lease every third of its length until told to stop; ends
/// when the lease is lost (the run's next write then fails on the fence).
fn renew(
    client: &Mutex<postgres::Client>,
    fence: &Fence,
    tenant: &str,
    shown: &Shown,
    stop: &crossbeam_channel::Receiver<()>,
) {
    let every = fence.lease / 3;
    while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = stop.recv_timeout(every) {
        let asked = Instant::now();
        let renewed = client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .execute(Fence::RENEW, &[&tenant, &fence.token, &fence.seconds()]);
        match renewed {
            Ok(1) => fence.confirm(asked),
            Ok(_) => {
                tracing::error!(%tenant, "the tenant's lease was lost (another muster took the run over): this run commits nothing more");
                return;
            }
            // A database out of reach: tried again; the lease lapses if
            // it stays so.
            Err(e) => {
                tracing::warn!(%tenant, error = %shown.error(e), "the tenant's lease could not be renewed")
            }
        }
    }
}

impl Lease {
    /// Lets the tenant go (a run writes its slot's next due time through
    /// its fenced store first). A lease lost meanwhile is left alone.
    pub fn release(mut self) -> Result<(), StoreError> {
        self.due_when_dropped = None;
        self.stop_renewing();
        self.let_go(None)
    }

    fn stop_renewing(&mut self) {
        self.renewing = None;
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.join();
        }
    }

    fn let_go(&self, next_due: Option<Timestamp>) -> Result<(), StoreError> {
        let mut client = self.client.lock().unwrap_or_else(|p| p.into_inner());
        let released: Result<(), postgres::Error> = (|| {
            let mut tx = client.transaction()?;
            let held = tx.execute(
                "UPDATE muster_leases SET holder = NULL, expires = NULL \
                 WHERE tenant = $1 AND token = $2",
                &[&self.tenant, &self.fence.token],
            )?;
            if held == 1 {
                if let Some(due) = next_due {
                    tx.execute(
                        "INSERT INTO muster_daemon (tenant, name, value) VALUES ($1, $2, $3) \
                         ON CONFLICT (tenant, name) DO UPDATE SET value = EXCLUDED.value",
                        &[&self.tenant, &NEXT_DUE, &due.to_string()],
                    )?;
                }
            }
            tx.commit()
        })();
        released.map_err(|e| self.shown.error(e))
    }

    /// The token this lease fences the tenant's writes with.
    pub fn token(&self) -> i64 {
        self.fence.token
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.renewer.is_none() {
            return;
        }
        self.stop_renewing();
        let due = self.due_when_dropped.take();
        if let Err(e) = self.let_go(due) {
            tracing::warn!(tenant = %self.tenant, error = %e, "the tenant's lease could not be released: it lapses");
        }
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("tenant", &self.tenant)
            .field("token", &self.fence.token)
            .finish()
    }
}

/// Who holds `tenant`'s lease now, if anyone does and it has not lapsed.
pub(crate) fn live_holder(
    client: &mut postgres::Client,
    tenant: &str,
) -> Result<Option<String>, postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT holder FROM muster_leases WHERE tenant = $1 \
             AND holder IS NOT NULL AND expires > clock_timestamp()",
            &[&tenant],
        )?
        .map(|r| r.get(0)))
}
