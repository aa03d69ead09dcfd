//! The HTTP layer: the OCI distribution API under `/v2`, the token
//! endpoint under `/service`, plus `/healthz`, `/readyz` and `/metrics`.
//!
//! It only adapts: requests are parsed into typed core calls, and core errors
//! become the spec's JSON error bodies in one place (`error.rs`). It depends
//! on `core` and `oci`, never on `storage` or `meta`.

mod dist;
mod error;
mod observe;
mod session;
mod token;
mod v1;

pub use v1::settings::{
    AuthSettings, GcSettings, LdapSettings, MetadataSettings, OidcSettings, Settings,
    StorageSettings, UploadSettings, WorkloadSettings,
};

use axum::Router;
use axum::routing::{any, get};
use berth_core::{Access, Registry};
use metrics_exporter_prometheus::PrometheusHandle;

/// What the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct App {
    pub registry: Registry,
    pub access: Access,
    pub auth: AuthConfig,
    /// What `/api/v1/system/settings` shows: filled once at start.
    pub settings: std::sync::Arc<Settings>,
}

/// How clients are told to authenticate.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// The token endpoint URL in challenges; derived from the request's
    /// `Host` (and `X-Forwarded-Proto`) when unset.
    pub realm: Option<String>,
    /// Whether this server speaks HTTPS (for the derived realm).
    pub tls: bool,
}

/// Builds the application router. `metrics` renders `/metrics`; without it
/// the endpoint answers 404 (tests that build many routers).
pub fn router(app: App, metrics: Option<PrometheusHandle>) -> Router {
    let registry = app.registry.clone();
    let v2 = Router::new()
        .route("/v2", any(dist::dispatch))
        .route("/v2/", any(dist::dispatch))
        .route("/v2/{*rest}", any(dist::dispatch))
        .route("/service/token", get(token::get).post(token::post))
        .route("/service/jwks", get(token::jwks))
        .route("/api/v1/auth/oidc/login", get(session::oidc_login))
        .route("/api/v1/auth/oidc/callback", get(session::oidc_callback))
        .route(
            "/api/v1/auth/oidc/refresh",
            axum::routing::post(session::oidc_refresh),
        )
        .route("/api/v1/auth/login", axum::routing::post(session::login))
        .route("/api/v1/auth/logout", axum::routing::post(session::logout))
        .nest("/api/v1", v1::routes(&app))
        .with_state(app);
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
