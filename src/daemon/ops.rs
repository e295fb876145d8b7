//! The daemon's operations endpoint (`[daemon] listen`, SPEC §8): health,
//! Prometheus metrics and the JSON API, served by axum on a one-thread
//! tokio runtime beside the scheduler. The fleet's state the endpoint
//! shows is kept here ([`Fleet`]): the scheduler and the workers update
//! it, the handlers read it.
//!
//! Every POST needs the bearer token; every request does when the
//! endpoint is not bound to loopback. A missing or wrong token is `401`
//! with nothing else said; tokens are compared in constant time.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::config::{Listen, Tenant};
use crate::model::Action;
use crate::pipeline::{RunRecord, TenantStatus};
use crate::results::Outcome;
use crate::secret::Secret;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabel {
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    tenant: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RowLabels {
    tenant: String,
    kind: String,
    action: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    tenant: String,
    status: String,
}

/// The series of `/metrics`.
struct Metrics {
    registry: Registry,
    runs: Family<RunLabels, Counter>,
    rows: Family<RowLabels, Counter>,
    duration: Family<TenantLabel, Histogram>,
    last_end: Family<TenantLabel, Gauge<f64, AtomicU64>>,
    held: Family<TenantLabel, Gauge>,
    in_progress: Gauge,
    requests: Family<RequestLabels, Counter>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let runs = Family::<RunLabels, Counter>::default();
        let rows = Family::<RowLabels, Counter>::default();
        let duration = Family::<TenantLabel, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.5, 2.0, 16))) as fn() -> Histogram,
        );
        let last_end = Family::<TenantLabel, Gauge<f64, AtomicU64>>::default();
        let held = Family::<TenantLabel, Gauge>::default();
        let in_progress = Gauge::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("muster_runs", "Runs by tenant and result", runs.clone());
        registry.register(
            "muster_rows",
            "Result lines by tenant, object kind, action and outcome",
            rows.clone(),
        );
        registry.register(
            "muster_run_duration_seconds",
            "How long runs took",
            duration.clone(),
        );
        registry.register(
            "muster_last_run_end_timestamp_seconds",
            "When the tenant's last run ended (Unix time)",
            last_end.clone(),
        );
        registry.register(
            "muster_held_files",
            "Files a safety guard holds in the tenant's inbox",
            held.clone(),
        );
        registry.register(
            "muster_runs_in_progress",
            "Runs going on now",
            in_progress.clone(),
        );
        registry.register(
            "muster_sink_requests",
            "Requests sent to the LMS by tenant and answer status (error: no answer)",
            requests.clone(),
        );
        Metrics {
            registry,
            runs,
            rows,
            duration,
            last_end,
            held,
            in_progress,
            requests,
        }
    }
}

/// What the endpoint shows of the fleet, kept up to date by the daemon.
pub struct Fleet {
    tenants: Mutex<BTreeMap<String, View>>,
    metrics: Metrics,
    /// Tenants asked to run now (`POST …/run`), for the scheduler.
    run_now: Mutex<Vec<String>>,
    /// The scheduler runs.
    pub(super) alive: AtomicBool,
    /// The tenants' configurations, for the handlers that read stores.
    config: Mutex<BTreeMap<String, Arc<Tenant>>>,
}

#[derive(Clone, Debug, Default)]
struct View {
    running: bool,
    next_run: Option<String>,
    last_run: Option<RunRecord>,
    held: Vec<String>,
}

impl Fleet {
    pub(super) fn new() -> Arc<Fleet> {
        Arc::new(Fleet {
            tenants: Mutex::new(BTreeMap::new()),
            metrics: Metrics::new(),
            run_now: Mutex::new(Vec::new()),
            alive: AtomicBool::new(true),
            config: Mutex::new(BTreeMap::new()),
        })
    }

    fn view(&self, name: &str, f: impl FnOnce(&mut View)) {
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        f(tenants.entry(name.to_string()).or_default());
    }

    /// A tenant the daemon runs (again, after a reload), with what its
    /// store says.
    pub(super) fn add(&self, tenant: &Arc<Tenant>, status: Option<TenantStatus>) {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tenant.name.clone(), tenant.clone());
        if let Some(s) = status {
            self.settled(&tenant.name, s);
        } else {
            self.view(&tenant.name, |_| {});
        }
    }

    /// A tenant gone from the config.
    pub(super) fn remove(&self, name: &str) {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        self.tenants
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }

    pub(super) fn scheduled(&self, name: &str, next: jiff::Timestamp) {
        self.view(name, |v| v.next_run = Some(next.to_string()));
    }

    pub(super) fn started(&self, name: &str) {
        self.metrics.in_progress.inc();
        self.view(name, |v| v.running = true);
    }

    /// A run ended after `seconds`: its outcome in the metrics; what its
    /// store says now (`status`) in the view.
    pub(super) fn ended(&self, name: &str, seconds: f64, status: Option<TenantStatus>) {
        self.metrics.in_progress.dec();
        let tenant = TenantLabel {
            tenant: name.to_string(),
        };
        self.metrics
            .duration
            .get_or_create(&tenant)
            .observe(seconds);
        let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
        self.metrics.last_end.get_or_create(&tenant).set(now);
        let Some(status) = status else {
            self.view(name, |v| v.running = false);
            return;
        };
        if let Some(run) = &status.last_run {
            let newer = self
                .tenants
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(name)
                .and_then(|v| v.last_run.as_ref())
                .is_none_or(|r| r.id != run.id);
            if newer {
                self.count(name, run);
            }
        }
        self.settled(name, status);
    }

    /// A run that did not start: another muster of the cluster holds the
    /// tenant or ran its slot. What its store says now goes to the view;
    /// nothing to the metrics, which count this daemon's runs.
    pub(super) fn skipped(&self, name: &str, status: Option<TenantStatus>) {
        self.metrics.in_progress.dec();
        match status {
            Some(status) => self.settled(name, status),
            None => self.view(name, |v| v.running = false),
        }
    }

    /// A run's counts into the metrics.
    fn count(&self, name: &str, run: &RunRecord) {
        self.metrics
            .runs
            .get_or_create(&RunLabels {
                tenant: name.to_string(),
                result: run.result.clone(),
            })
            .inc();
        for (status, n) in &run.requests {
            self.metrics
                .requests
                .get_or_create(&RequestLabels {
                    tenant: name.to_string(),
                    status: status.clone(),
                })
                .inc_by(*n);
        }
        let kind = self
            .config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned();
        for file in &run.files {
            let object = kind
                .as_ref()
                .and_then(|t| t.files.iter().find(|(_, p)| p.name == file.profile))
                .map_or("user", |(_, p)| p.object.as_str());
            for action in Action::ALL {
                for outcome in Outcome::ALL {
                    let n = file
                        .counts
                        .get(action.as_str())
                        .and_then(|o| o.get(outcome.as_str()))
                        .and_then(|n| n.as_u64())
                        .unwrap_or(0);
                    if n > 0 {
                        self.metrics
                            .rows
                            .get_or_create(&RowLabels {
                                tenant: name.to_string(),
                                kind: object.to_string(),
                                action: action.as_str().to_string(),
                                outcome: outcome.as_str().to_string(),
                            })
                            .inc_by(n);
                    }
                }
            }
        }
    }

    fn settled(&self, name: &str, status: TenantStatus) {
        self.metrics
            .held
            .get_or_create(&TenantLabel {
                tenant: name.to_string(),
            })
            .set(status.held.len() as i64);
        self.view(name, |v| {
            v.running = status.running;
            v.last_run = status.last_run;
            v.held = status.held;
            if status.next_run.is_some() {
                v.next_run = status.next_run;
            }
        });
    }

    /// The tenants asked to run now, taken.
    pub(super) fn take_run_now(&self) -> Vec<String> {
        std::mem::take(&mut *self.run_now.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn tenant(&self, name: &str) -> Option<Arc<Tenant>> {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }
}

#[derive(Clone)]
struct App {
    fleet: Arc<Fleet>,
    token: Option<Arc<Secret>>,
    loopback: bool,
}

/// Serves the endpoint on `listen` until `stop` is set; on its own
/// thread, with its own runtime. An address that cannot be bound is
/// returned as the error (the daemon does not start).
pub(super) fn serve(
    listen: &Listen,
    fleet: Arc<Fleet>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("the operations endpoint's runtime: {e}"))?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(listen.addr))
        .map_err(|e| format!("[daemon] listen = {:?}: {e}", listen.addr.to_string()))?;
    let app = App {
        fleet,
        token: listen.token.clone().map(Arc::new),
        loopback: listen.addr.ip().is_loopback(),
    };
    let router = Router::new()
        .route("/", get(console))
        .route("/console.js", get(console))
        .route("/console.css", get(console))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/tenants", get(tenants))
        .route("/api/tenants/{name}/runs", get(runs))
        .route("/api/tenants/{name}/run", post(run_now))
        .route(
            "/api/tenants/{name}/runs/{id}/files/{n}/results.csv",
            get(results_csv),
        )
        .route(
            "/api/tenants/{name}/runs/{id}/files/{n}/results",
            get(results_lines),
        )
        .route("/api/tenants/{name}/release", post(release))
        .layer(axum::middleware::from_fn_with_state(app.clone(), authorize))
        .with_state(app);
    tracing::info!(addr = %listen.addr, "operations endpoint listening");
    Ok(std::thread::spawn(move || {
        let shutdown = async move {
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        };
        let served = runtime.block_on(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
        });
        if let Err(e) = served {
            tracing::error!(error = %e, "the operations endpoint stopped");
        }
    }))
}

/// The token check: POSTs always, everything off loopback but the
/// console's own files (they hold no data; the page asks for the token).
async fn authorize(State(app): State<App>, req: Request, next: Next) -> Response {
    let needed = req.method() == Method::POST
        || (!app.loopback && super::console::asset(req.uri().path()).is_none());
    if needed {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let ok = match (&app.token, given) {
            (Some(token), Some(given)) => {
                use subtle::ConstantTimeEq;
                bool::from(token.expose().as_bytes().ct_eq(given.as_bytes()))
            }
            _ => false,
        };
        if !ok {
            return StatusCode::UNAUTHORIZED.into_response();
        }
    }
    next.run(req).await
}

async fn healthz(State(app): State<App>) -> Response {
    if app.fleet.alive.load(Ordering::SeqCst) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "stopping\n").into_response()
    }
}

async fn metrics(State(app): State<App>) -> Response {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &app.fleet.metrics.registry).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// One tenant in `/api/tenants`.
#[derive(serde::Serialize)]
struct TenantJson {
    name: String,
    running: bool,
    next_run: Option<String>,
    last_run: Option<RunRecord>,
    held: Vec<String>,
}

async fn tenants(State(app): State<App>) -> Json<Vec<TenantJson>> {
    let tenants = app.fleet.tenants.lock().unwrap_or_else(|e| e.into_inner());
    Json(
        tenants
            .iter()
            .map(|(name, v)| TenantJson {
                name: name.clone(),
                running: v.running,
                next_run: v.next_run.clone(),
                last_run: v.last_run.clone(),
                held: v.held.clone(),
            })
            .collect(),
    )
}

#[derive(serde::Deserialize)]
struct Limit {
    limit: Option<usize>,
}

/// The newest `limit` runs of tenant `name`, read from its store under
/// its lock; else the answer: `404` for no such tenant, `409` while a run
/// holds it.
async fn history(app: &App, name: &str, limit: usize) -> Result<Vec<RunRecord>, Response> {
    let Some(tenant) = app.fleet.tenant(name) else {
        return Err(StatusCode::NOT_FOUND.into_response());
    };
    let read =
        tokio::task::spawn_blocking(move || crate::pipeline::history_of(&tenant, limit)).await;
    match read {
        Ok(Ok(Some(runs))) => Ok(runs),
        Ok(Ok(None)) => Err((
            StatusCode::CONFLICT,
            "a run is going on; try again when it is done\n",
        )
            .into_response()),
        Ok(Err(e)) => Err((StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response()),
        Err(_) => Err(StatusCode::INTERNAL_SERVER_ERROR.into_response()),
    }
}

/// The run history, newest first.
async fn runs(
    State(app): State<App>,
    Path(name): Path<String>,
    Query(q): Query<Limit>,
) -> Response {
    let limit = q.limit.unwrap_or(20).clamp(1, 1000);
    match history(&app, &name, limit).await {
        Ok(runs) => Json(runs).into_response(),
        Err(answer) => answer,
    }
}

/// The tenant, a run's file and its results location, or the answer
/// that says why not.
async fn results_of(
    app: &App,
    name: &str,
    id: u64,
    n: usize,
) -> Result<(Arc<Tenant>, String, String), Response> {
    let tenant = app
        .fleet
        .tenant(name)
        .ok_or_else(|| StatusCode::NOT_FOUND.into_response())?;
    let runs = history(app, name, usize::MAX).await?;
    let (file, results) = runs
        .iter()
        .find(|r| r.id == id)
        .and_then(|r| r.files.get(n))
        .and_then(|f| Some((f.name.clone(), f.results.clone()?)))
        .ok_or_else(|| StatusCode::NOT_FOUND.into_response())?;
    Ok((tenant, file, results))
}

/// A run's file's results CSV, read through the tenant's source (an SFTP
/// inbox's from its server) and streamed as it is read.
async fn results_csv(
    State(app): State<App>,
    Path((name, id, n)): Path<(String, u64, usize)>,
) -> Response {
    let (tenant, _, results) = match results_of(&app, &name, id, n).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    // The first chunk (or the error opening it) decides the status; the
    // rest follows through a channel from the blocking reader.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    tokio::task::spawn_blocking(move || {
        let mut reader = match crate::pipeline::open_results(&tenant, &results) {
            Ok(reader) => reader,
            Err(e) => {
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                return;
            }
        };
        loop {
            let mut chunk = vec![0; 64 << 10];
            match reader.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => {
                    chunk.truncate(n);
                    if tx.blocking_send(Ok(chunk)).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let first = match rx.recv().await {
        None => Vec::new(),
        Some(Ok(chunk)) => chunk,
        Some(Err(e)) => {
            return (StatusCode::NOT_FOUND, format!("{e}\n")).into_response();
        }
    };
    let rest = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let body = futures_util::stream::StreamExt::chain(
        futures_util::stream::once(async move { Ok(first) }),
        rest,
    );
    (
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct LinesQuery {
    outcome: Option<String>,
    code: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
}

/// A page of a results file's lines, for the console.
#[derive(serde::Serialize)]
struct Lines {
    /// The file in the inbox the results are of.
    file: String,
    /// Lines in the file.
    total: u64,
    /// Lines that match the filter.
    matched: u64,
    offset: usize,
    lines: Vec<crate::results::ResultLine>,
    /// Lines by outcome and by code, in the whole file.
    outcomes: BTreeMap<String, u64>,
    codes: BTreeMap<String, u64>,
}

/// A run's file's results lines as JSON, filtered by `outcome` and
/// `code`, `limit` (at most 1000) from `offset` among those that match.
async fn results_lines(
    State(app): State<App>,
    Path((name, id, n)): Path<(String, u64, usize)>,
    Query(q): Query<LinesQuery>,
) -> Response {
    let (tenant, file, results) = match results_of(&app, &name, id, n).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let read = tokio::task::spawn_blocking(move || -> Result<Lines, String> {
        let reader = crate::pipeline::open_results(&tenant, &results).map_err(|e| e.to_string())?;
        let (offset, limit) = (q.offset.unwrap_or(0), q.limit.unwrap_or(100).clamp(1, 1000));
        let mut page = Lines {
            file,
            total: 0,
            matched: 0,
            offset,
            lines: Vec::new(),
            outcomes: BTreeMap::new(),
            codes: BTreeMap::new(),
        };
        let wanted = |want: &Option<String>, got: &str| want.as_deref().is_none_or(|w| w == got);
        crate::results::read_lines(reader, |line| {
            page.total += 1;
            *page.outcomes.entry(line.outcome.clone()).or_default() += 1;
            if !line.code.is_empty() {
                *page.codes.entry(line.code.clone()).or_default() += 1;
            }
            if wanted(&q.outcome, &line.outcome) && wanted(&q.code, &line.code) {
                if page.matched as usize >= offset && page.lines.len() < limit {
                    page.lines.push(line);
                }
                page.matched += 1;
            }
            true
        })
        .map_err(|e| e.to_string())?;
        Ok(page)
    })
    .await;
    match read {
        Ok(Ok(page)) => Json(page).into_response(),
        Ok(Err(e)) => (StatusCode::NOT_FOUND, format!("{e}\n")).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The console's page, style and script.
async fn console(uri: axum::http::Uri) -> Response {
    let Some((kind, body)) = super::console::asset(uri.path()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CONTENT_SECURITY_POLICY, super::console::POLICY),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn run_now(State(app): State<App>, Path(name): Path<String>) -> Response {
    if app.fleet.tenant(&name).is_none() {
        return StatusCode::NOT_FOUND.into_response();
    }
    app.fleet
        .run_now
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(name);
    StatusCode::ACCEPTED.into_response()
}

#[derive(serde::Deserialize)]
struct ReleaseBody {
    file: String,
}

async fn release(
    State(app): State<App>,
    Path(name): Path<String>,
    Json(body): Json<ReleaseBody>,
) -> Response {
    let Some(tenant) = app.fleet.tenant(&name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let done =
        tokio::task::spawn_blocking(move || crate::pipeline::release(&tenant, &body.file)).await;
    match done {
        Ok(Ok(())) => (StatusCode::OK, "released\n").into_response(),
        Ok(Err(e @ crate::pipeline::ReleaseError::NotHeld { .. })) => {
            (StatusCode::NOT_FOUND, format!("{e}\n")).into_response()
        }
        Ok(Err(e)) => (StatusCode::CONFLICT, format!("{e}\n")).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
