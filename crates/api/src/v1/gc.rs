//! `/system/gc` (garbage collection on demand and its history) and
//! `/projects/{name}/trash` (the restore window: deleted manifests and tags,
//! and restoring them). The work is the core's (`Registry::collect_garbage`,
//! `Registry::restore_trash`); permissions are checked with `decide()`
//! (`Access::authorize_gc`, `Access::authorize_trash`).

use axum::extract::{Path, RawQuery, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_core::{GcReport, TrashItem};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Errors;
use super::extract::{Auth, Params, id, parse_json, time};
use crate::App;
use crate::error::ApiError;

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/system/gc", post(run))
        .route("/system/gc/runs", get(runs))
        .route("/projects/{name}/trash", get(trash))
        .route("/projects/{name}/trash/{id}/restore", post(restore))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunGc {
    /// Count what would go without deleting anything.
    #[serde(default)]
    pub(crate) dry_run: bool,
}

/// What a GC run did (or, dry, would do).
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct GcReportDto {
    pub(crate) id: i64,
    /// `schedule`, `api` or `cli`.
    pub(crate) trigger: String,
    pub(crate) dry_run: bool,
    pub(crate) started_at: String,
    pub(crate) finished_at: String,
    pub(crate) duration_ms: u64,
    pub(crate) blobs_deleted: u64,
    pub(crate) bytes_reclaimed: u64,
    /// Untagged manifests collected (`[gc] delete_untagged`).
    pub(crate) manifests_deleted: u64,
    /// Blob links nothing in their repository referenced.
    pub(crate) links_removed: u64,
    /// Trash entries whose restore window was over.
    pub(crate) trash_purged: u64,
    /// Store objects without a metadata row (crash leftovers).
    pub(crate) orphans_deleted: u64,
    pub(crate) orphan_bytes: u64,
    /// Why the run stopped early, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

impl From<GcReport> for GcReportDto {
    fn from(r: GcReport) -> GcReportDto {
        GcReportDto {
            id: r.id,
            duration_ms: r.duration().as_millis() as u64,
            trigger: r.trigger,
            dry_run: r.dry_run,
            started_at: time(r.started_at),
            finished_at: time(r.finished_at),
            blobs_deleted: r.blobs_deleted,
            bytes_reclaimed: r.bytes_reclaimed,
            manifests_deleted: r.manifests_deleted,
            links_removed: r.links_removed,
            trash_purged: r.trash_purged,
            orphans_deleted: r.orphans_deleted,
            orphan_bytes: r.orphan_bytes,
            error: r.error,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct GcRunList {
    pub(crate) items: Vec<GcReportDto>,
    /// The `after` of the next (older) page.
    pub(crate) next: Option<String>,
}

/// A deleted manifest or tag, restorable until `expires_at`.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct TrashItemDto {
    pub(crate) id: i64,
    pub(crate) repository: String,
    /// `manifest` (deleted by digest, with its tags) or `tag` (one tag
    /// deleted by name; the manifest stayed).
    pub(crate) kind: String,
    pub(crate) digest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) media_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) size: Option<u64>,
    pub(crate) tags: Vec<String>,
    pub(crate) deleted_at: String,
    pub(crate) deleted_by: String,
    /// When garbage collection may purge it.
    pub(crate) expires_at: String,
}

impl From<TrashItem> for TrashItemDto {
    fn from(t: TrashItem) -> TrashItemDto {
        TrashItemDto {
            id: t.id,
            repository: t.repository,
            kind: t.kind,
            digest: t.digest,
            media_type: t.media_type,
            size: t.size,
            tags: t.tags,
            deleted_at: time(t.deleted_at),
            deleted_by: t.deleted_by,
            expires_at: time(t.expires_at),
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct TrashList {
    pub(crate) items: Vec<TrashItemDto>,
    pub(crate) next: Option<String>,
}

/// Runs garbage collection now, on this node, and answers its report
/// (system admin: `garbage-collection:create`). Safe while pushes run.
#[utoipa::path(post, operation_id = "run_gc", path = "/api/v1/system/gc", tag = "system",
    request_body = RunGc,
    responses((status = 200, body = GcReportDto), Errors), security(("basic" = [])))]
pub(crate) async fn run(
    State(app): State<App>,
    Auth(actor): Auth,
    body: axum::body::Bytes,
) -> Result<Json<GcReportDto>, ApiError> {
    app.access.authorize_gc(&actor, true)?;
    // An empty body is a real run.
    let dry_run = if body.iter().all(u8::is_ascii_whitespace) {
        false
    } else {
        parse_json::<RunGc>(&body)?.dry_run
    };
    let report = app.registry.collect_garbage(dry_run, "api").await?;
    app.access.auditor().record(
        berth_core::access::AuditEvent::by(&actor.principal, "gc.run", "system/gc")
            .from_addr(actor.origin.addr)
            .details(format!(
                "dry_run={dry_run}, blobs={}, bytes={}",
                report.blobs_deleted, report.bytes_reclaimed
            )),
    );
    Ok(Json(report.into()))
}

/// Past GC runs, newest first (system admin: `garbage-collection:list`).
#[utoipa::path(get, operation_id = "list_gc_runs", path = "/api/v1/system/gc/runs", tag = "system",
    params(super::PageParams),
    responses((status = 200, body = GcRunList), Errors), security(("basic" = [])))]
pub(crate) async fn runs(
    State(app): State<App>,
    Auth(actor): Auth,
    RawQuery(q): RawQuery,
) -> Result<Json<GcRunList>, ApiError> {
    app.access.authorize_gc(&actor, false)?;
    let params = Params::parse(q.as_deref());
    let page = params.page()?;
    let before = page.after.map(|a| id("after", a)).transpose()?;
    let mut items = app.registry.gc_runs(before, page.limit + 1).await?;
    let next = if items.len() > page.limit {
        items.truncate(page.limit);
        items.last().map(|r| r.id.to_string())
    } else {
        None
    };
    Ok(Json(GcRunList {
        items: items.into_iter().map(GcReportDto::from).collect(),
        next,
    }))
}

/// Deleted manifests and tags of a project still in the restore window,
/// oldest first (`artifact:delete`: maintainer and up).
#[utoipa::path(get, operation_id = "list_trash", path = "/api/v1/projects/{name}/trash", tag = "trash",
    params(("name" = String, Path, description = "Project name"), super::PageParams),
    responses((status = 200, body = TrashList), Errors), security(("basic" = [])))]
pub(crate) async fn trash(
    State(app): State<App>,
    Auth(actor): Auth,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<TrashList>, ApiError> {
    app.access.authorize_trash(&actor, &name, false).await?;
    let params = Params::parse(q.as_deref());
    let page = params.page()?;
    let after = page.after.map(|a| id("after", a)).transpose()?;
    let mut items = app
        .registry
        .list_trash(&name, after, page.limit + 1)
        .await?;
    let next = if items.len() > page.limit {
        items.truncate(page.limit);
        items.last().map(|t| t.id.to_string())
    } else {
        None
    };
    Ok(Json(TrashList {
        items: items.into_iter().map(TrashItemDto::from).collect(),
        next,
    }))
}

/// Brings a deleted manifest (with its tags) or tag back. 409 when one of
/// its tags now names another manifest (the message names the tag) or a
/// child manifest of an index is gone (`artifact:create` and
/// `artifact:delete`: maintainer and up).
#[utoipa::path(post, operation_id = "restore_trash", path = "/api/v1/projects/{name}/trash/{id}/restore", tag = "trash",
    params(("name" = String, Path, description = "Project name"),
           ("id" = i64, Path, description = "Trash entry id")),
    responses((status = 200, body = TrashItemDto), Errors), security(("basic" = [])))]
pub(crate) async fn restore(
    State(app): State<App>,
    Auth(actor): Auth,
    Path((name, entry)): Path<(String, String)>,
) -> Result<Json<TrashItemDto>, ApiError> {
    let entry = id("id", &entry)?;
    app.access.authorize_trash(&actor, &name, true).await?;
    let item = app.registry.restore_trash(&name, entry).await?;
    app.access.auditor().record(
        berth_core::access::AuditEvent::by(
            &actor.principal,
            "artifact.restore",
            format!("repository/{}@{}", item.repository, item.digest),
        )
        .project(name)
        .from_addr(actor.origin.addr)
        .details(format!("trash={entry}, tags={}", item.tags.join(","))),
    );
    Ok(Json(item.into()))
}
