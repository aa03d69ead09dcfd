//! The HTTP layer: the OCI distribution API under `/v2`, plus `/healthz`,
//! `/readyz` and `/metrics`.
//!
//! It only adapts: requests are parsed into typed core calls, and core errors
//! become the spec's JSON error bodies in one place (`error.rs`). It depends
//! on `core` and `oci`, never on `storage` or `meta`.

mod dist;
mod error;
mod observe;

use axum::Router;
use axum::routing::{any, get};
use berth_core::Registry;
use metrics_exporter_prometheus::PrometheusHandle;

/// Builds the application router. `metrics` renders `/metrics`; without it
/// the endpoint answers 404 (tests that build many routers).
pub fn router(registry: Registry, metrics: Option<PrometheusHandle>) -> Router {
    let v2 = Router::new()
        .route("/v2", any(dist::dispatch))
        .route("/v2/", any(dist::dispatch))
        .route("/v2/{*rest}", any(dist::dispatch))
        .with_state(registry.clone());
    let ops = Router::new()
        .route("/healthz", get(observe::healthz))
        .route("/readyz", get(observe::readyz))
        .with_state(registry);
    let ops = match metrics {
        Some(handle) => ops.route("/metrics", get(move || observe::metrics(handle.clone()))),
        None => ops,
    };
    v2.merge(ops)
        .layer(axum::middleware::from_fn(observe::track))
}
