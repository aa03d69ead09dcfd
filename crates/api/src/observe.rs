//! Health, readiness, Prometheus metrics and the per-request middleware that
//! records request counts, latency and internal errors.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_core::Registry;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::dist::RouteLabel;
use crate::error::InternalError;

pub(crate) async fn healthz() -> &'static str {
    "ok"
}

pub(crate) async fn readyz(State(registry): State<Registry>) -> Response {
    match registry.ready().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
        }
    }
}

pub(crate) async fn metrics(handle: PrometheusHandle) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}

/// Records each request's route, method, status and latency, and logs the
/// text of internal errors (which clients never see).
pub(crate) async fn track(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    let elapsed = start.elapsed().as_secs_f64();
    let route = resp.extensions().get::<RouteLabel>().map_or("ops", |r| r.0);
    let status = resp.status().as_u16();
    metrics::counter!(
        "berth_http_requests_total",
        "route" => route,
        "method" => method.to_string(),
        "status" => status.to_string()
    )
    .increment(1);
    metrics::histogram!("berth_http_request_duration_seconds", "route" => route, "method" => method.to_string())
        .record(elapsed);
    if let Some(InternalError(e)) = resp.extensions().get::<InternalError>() {
        tracing::error!(%method, %path, error = %e, "internal error");
    } else {
        tracing::debug!(%method, %path, status, elapsed, "request");
    }
    resp
}
