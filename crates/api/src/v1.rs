//! The management REST API under `/api/v1`, with its OpenAPI document.

use axum::Router;

use crate::App;

pub(crate) fn routes() -> Router<App> {
    Router::new()
}
