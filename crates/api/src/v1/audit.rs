//! `/audit`: the audit log, newest first.

use axum::Json;
use axum::extract::{RawQuery, State};
use berth_core::access::manage::{AuditQuery, AuditRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Errors;
use super::extract::{Auth, Params, time};
use crate::App;
use crate::error::ApiError;

#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct AuditDto {
    pub(crate) id: i64,
    /// RFC 3339.
    pub(crate) time: String,
    /// Milliseconds since the Unix epoch.
    pub(crate) time_ms: i64,
    /// Account name; empty for anonymous.
    pub(crate) actor: String,
    /// `anonymous`, `user`, `robot` or `system`.
    pub(crate) actor_kind: String,
    /// e.g. `login`, `artifact.push`, `robot.create`, `member.add`.
    pub(crate) action: String,
    pub(crate) resource: String,
    pub(crate) project: Option<String>,
    /// `success`, `failure` or `denied`.
    pub(crate) result: String,
    pub(crate) source_addr: Option<String>,
    pub(crate) details: Option<String>,
}

impl From<AuditRecord> for AuditDto {
    fn from(r: AuditRecord) -> AuditDto {
        AuditDto {
            id: r.id,
            time: time(r.occurred_at),
            time_ms: r.occurred_at,
            actor: r.actor,
            actor_kind: r.actor_kind,
            action: r.action,
            resource: r.resource,
            project: r.project,
            result: r.result,
            source_addr: r.source_addr,
            details: r.details,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct AuditList {
    pub(crate) items: Vec<AuditDto>,
    pub(crate) next: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct AuditParams {
    /// Inclusive; RFC 3339 or milliseconds since the epoch.
    since: Option<String>,
    /// Exclusive; RFC 3339 or milliseconds since the epoch.
    until: Option<String>,
    actor: Option<String>,
    /// Required unless the caller is a system admin.
    project: Option<String>,
    action: Option<String>,
    /// 1 to 1000, default 100.
    limit: Option<u32>,
    /// The `next` of the previous page.
    after: Option<String>,
}

/// Audit events, newest first: everything for a system admin; a project's
/// events (`project=NAME`) for its project admin.
#[utoipa::path(get, operation_id = "query_audit", path = "/api/v1/audit", tag = "audit", params(AuditParams),
    responses((status = 200, body = AuditList), Errors), security(("basic" = [])))]
pub(crate) async fn list(
    State(app): State<App>,
    Auth(actor): Auth,
    RawQuery(q): RawQuery,
) -> Result<Json<AuditList>, ApiError> {
    let params = Params::parse(q.as_deref());
    let page = params.page()?;
    let text = |k: &str| params.get(k).map(str::to_string);
    let query = AuditQuery {
        since: params.time("since")?,
        until: params.time("until")?,
        actor: text("actor"),
        project: text("project"),
        action: text("action"),
        after: page.after.map(str::to_string),
        limit: page.limit,
    };
    let page = app.access.query_audit(&actor, query).await?;
    Ok(Json(AuditList {
        items: page.items.into_iter().map(AuditDto::from).collect(),
        next: page.next,
    }))
}
