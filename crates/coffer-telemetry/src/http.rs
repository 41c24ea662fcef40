//! The HTTP endpoints of a long-running process (`coffer worker`, `scheduler`, `janitor --every`):
//!
//! - `GET /metrics`: Prometheus text format.
//! - `GET /healthz`: 200 while the process serves requests (a liveness probe; a process that
//!   answers here but is not ready must not be restarted for it).
//! - `GET /readyz`: 200 when every [`ReadinessCheck`] passes, else 503 with the failing checks,
//!   one per line (a readiness probe: the catalog answers, the consumer is connected).
//!
//! The server stops with the process's shutdown token, after the work has drained, so probes
//! keep answering (not ready) while a worker finishes its jobs.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::TelemetryError;

/// How often histograms are compacted when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);
/// How long one readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// A named check `/readyz` runs: `Ok(())` when ready, else why not.
pub struct ReadinessCheck {
    /// Shown in the response (`catalog`, `amqp`).
    pub name: &'static str,
    /// The check.
    pub check: Box<dyn Fn() -> CheckFuture + Send + Sync>,
}

/// What a check returns.
pub type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

impl std::fmt::Debug for ReadinessCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadinessCheck")
            .field("name", &self.name)
            .finish()
    }
}

#[derive(Clone)]
struct AppState {
    metrics: PrometheusHandle,
    checks: Arc<Vec<ReadinessCheck>>,
}

/// A running server.
#[derive(Debug)]
pub struct HttpServer {
    /// The address bound (the port chosen when 0 was asked for).
    pub addr: SocketAddr,
    /// Ends when the server has stopped.
    pub task: tokio::task::JoinHandle<()>,
}

/// Binds `addr` and serves until `shutdown` is cancelled.
pub async fn serve(
    addr: SocketAddr,
    metrics: PrometheusHandle,
    checks: Vec<ReadinessCheck>,
    shutdown: CancellationToken,
) -> Result<HttpServer, TelemetryError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| TelemetryError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| TelemetryError::Bind { addr, source })?;
    tokio::spawn(upkeep(metrics.clone(), shutdown.clone()));
    let state = AppState {
        metrics,
        checks: Arc::new(checks),
    };
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readiness))
        .with_state(state);
    let task = tokio::spawn(async move {
        let stopped = shutdown.cancelled_owned();
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::warn!(error = %e, "http server failed");
        }
    });
    tracing::info!(addr = %bound, "http server listening (/metrics, /healthz, /readyz)");
    Ok(HttpServer { addr: bound, task })
}

async fn render_metrics(State(state): State<AppState>) -> String {
    state.metrics.render()
}

async fn readiness(State(state): State<AppState>) -> (StatusCode, String) {
    let results = futures::future::join_all(state.checks.iter().map(|c| async {
        let outcome = tokio::time::timeout(CHECK_TIMEOUT, (c.check)())
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {CHECK_TIMEOUT:?}")));
        (c.name, outcome)
    }))
    .await;
    let mut body = String::new();
    let mut ready = true;
    for (name, outcome) in results {
        match outcome {
            Ok(()) => body.push_str(&format!("{name}: ok\n")),
            Err(why) => {
                ready = false;
                body.push_str(&format!("{name}: {why}\n"));
            }
        }
    }
    let status = match ready {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, body)
}

async fn upkeep(metrics: PrometheusHandle, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(UPKEEP_INTERVAL) => metrics.run_upkeep(),
        }
    }
}
