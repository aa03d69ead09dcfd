//! `/projects/{name}/immutable-rules` and `/projects/{name}/quota`: the
//! policies that guard pushes and deletions (`berth_core::policy`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use berth_core::policy::manage::{
    ImmutableRuleInfo, ImmutableRulePatch, NewImmutableRule, QuotaInfo, QuotaPatch, SelectorSpec,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Errors;
use super::extract::{Auth, Body, time};
use crate::App;
use crate::error::ApiError;

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route(
            "/projects/{name}/immutable-rules",
            get(list_rules).post(create_rule),
        )
        .route(
            "/projects/{name}/immutable-rules/{id}",
            get(get_rule).patch(update_rule).delete(delete_rule),
        )
        .route("/projects/{name}/quota", get(get_quota).put(set_quota))
}

/// Whether a selector picks what matches its pattern or everything else.
/// Harbor's `repoMatches` / `repoExcludes` are accepted too.
#[derive(Serialize, Deserialize, ToSchema, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Decoration {
    #[default]
    #[serde(alias = "repoMatches")]
    Matches,
    #[serde(alias = "repoExcludes")]
    Excludes,
}

/// A doublestar pattern: `*` (not across `/`), `**` (across `/`), `?`,
/// `[a-z]`, `[!a-z]`, `{a,b}`. Repository patterns match the path inside
/// the project (`app` for `team/app`, `sub/app` for `team/sub/app`).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SelectorDto {
    #[schema(example = "release-*")]
    pub(crate) pattern: String,
    #[serde(default)]
    pub(crate) decoration: Decoration,
}

impl From<SelectorDto> for SelectorSpec {
    fn from(s: SelectorDto) -> SelectorSpec {
        SelectorSpec {
            pattern: s.pattern,
            excludes: s.decoration == Decoration::Excludes,
        }
    }
}

impl From<SelectorSpec> for SelectorDto {
    fn from(s: SelectorSpec) -> SelectorDto {
        SelectorDto {
            pattern: s.pattern,
            decoration: if s.excludes {
                Decoration::Excludes
            } else {
                Decoration::Matches
            },
        }
    }
}

/// A tag this rule selects (repository and tag) is created once, then
/// never moved to another manifest nor deleted, by anybody.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct ImmutableRuleDto {
    pub(crate) id: i64,
    pub(crate) project: String,
    pub(crate) repositories: SelectorDto,
    pub(crate) tags: SelectorDto,
    pub(crate) disabled: bool,
    pub(crate) created_by: String,
    pub(crate) created_at: String,
    pub(crate) updated_at: String,
}

impl From<ImmutableRuleInfo> for ImmutableRuleDto {
    fn from(r: ImmutableRuleInfo) -> ImmutableRuleDto {
        ImmutableRuleDto {
            id: r.id,
            project: r.project,
            repositories: r.repositories.into(),
            tags: r.tags.into(),
            disabled: r.disabled,
            created_by: r.created_by,
            created_at: time(r.created_at),
            updated_at: time(r.updated_at),
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct ImmutableRuleList {
    pub(crate) items: Vec<ImmutableRuleDto>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateImmutableRule {
    pub(crate) repositories: SelectorDto,
    pub(crate) tags: SelectorDto,
    #[serde(default)]
    pub(crate) disabled: bool,
}

/// What is left out stays as it is.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateImmutableRule {
    pub(crate) repositories: Option<SelectorDto>,
    pub(crate) tags: Option<SelectorDto>,
    pub(crate) disabled: Option<bool>,
}

/// Limits; `-1` is unlimited.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct QuotaLimits {
    pub(crate) storage_bytes: i64,
    pub(crate) artifacts: i64,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct QuotaUsage {
    /// Distinct blobs and manifest bodies of the project: a blob shared by
    /// several of its repositories counts once.
    pub(crate) storage_bytes: i64,
    /// Manifests in the project's repositories.
    pub(crate) artifacts: i64,
}

/// What `usage.storage_bytes` is made of:
/// `referenced_bytes + linked_only_bytes + manifest_bytes`.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct QuotaExplain {
    /// Blobs some manifest of the project references.
    pub(crate) referenced_bytes: i64,
    pub(crate) referenced_blobs: i64,
    /// Blobs uploaded or mounted into the project that no manifest of it
    /// references (yet): a push in progress, or left over until garbage
    /// collection.
    pub(crate) linked_only_bytes: i64,
    pub(crate) linked_only_blobs: i64,
    /// Manifest bodies.
    pub(crate) manifest_bytes: i64,
    /// Held for the restore window by deleted manifests: the blobs only
    /// they reference (part of `linked_only_bytes` while still linked) and
    /// their bodies (kept aside, not in `storage_bytes`). Garbage
    /// collection may take them once the window has passed.
    pub(crate) pending_deletion_bytes: i64,
    /// Deleted manifests in the restore window.
    pub(crate) pending_deletion_artifacts: i64,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct QuotaDto {
    pub(crate) project: String,
    pub(crate) limits: QuotaLimits,
    /// A `quota.warning` audit event is recorded when usage crosses this
    /// share of a limit.
    pub(crate) warn_percent: i64,
    pub(crate) usage: QuotaUsage,
    pub(crate) explain: QuotaExplain,
    /// Usage over limit, the fuller of the two; null when unlimited.
    pub(crate) usage_ratio: Option<f64>,
    /// Usage was at or above the warning threshold when last checked.
    pub(crate) warned: bool,
}

impl From<QuotaInfo> for QuotaDto {
    fn from(q: QuotaInfo) -> QuotaDto {
        QuotaDto {
            project: q.project,
            limits: QuotaLimits {
                storage_bytes: q.storage_limit,
                artifacts: q.artifact_limit,
            },
            warn_percent: q.warn_percent,
            usage: QuotaUsage {
                storage_bytes: q.usage.storage_bytes(),
                artifacts: q.usage.manifests,
            },
            explain: QuotaExplain {
                referenced_bytes: q.usage.referenced_bytes,
                referenced_blobs: q.usage.referenced_blobs,
                linked_only_bytes: q.usage.linked_only_bytes,
                linked_only_blobs: q.usage.linked_only_blobs,
                manifest_bytes: q.usage.manifest_bytes,
                pending_deletion_bytes: q.pending_deletion.blob_bytes
                    + q.pending_deletion.manifest_bytes,
                pending_deletion_artifacts: q.pending_deletion.manifests,
            },
            usage_ratio: q.ratio,
            warned: q.warned,
        }
    }
}

/// What is left out stays as it is (a new quota: unlimited, warning at 85%).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetQuota {
    /// Bytes; `-1` unlimited.
    pub(crate) storage_bytes: Option<i64>,
    /// Manifests; `-1` unlimited.
    pub(crate) artifacts: Option<i64>,
    /// 1 to 100.
    pub(crate) warn_percent: Option<i64>,
}

fn rule_id(id: &str) -> Result<i64, ApiError> {
    id.parse::<i64>().map_err(|_| {
        ApiError::from(berth_core::Error::NotFound(format!(
            "{id:?} is not an immutable tag rule id"
        )))
    })
}

/// A project's immutable tag rules (immutable-tag:list: maintainer and up).
#[utoipa::path(get, operation_id = "list_immutable_rules", path = "/api/v1/projects/{name}/immutable-rules",
    tag = "policies", params(("name" = String, Path, description = "Project name")),
    responses((status = 200, body = ImmutableRuleList), Errors), security(("basic" = [])))]
pub(crate) async fn list_rules(
    State(app): State<App>,
    Auth(actor): Auth,
    Path(name): Path<String>,
) -> Result<Json<ImmutableRuleList>, ApiError> {
    let items = app.access.list_immutable_rules(&actor, &name).await?;
    Ok(Json(ImmutableRuleList {
        items: items.into_iter().map(ImmutableRuleDto::from).collect(),
    }))
}

/// Adds an immutable tag rule (immutable-tag:create: maintainer and up).
#[utoipa::path(post, operation_id = "create_immutable_rule", path = "/api/v1/projects/{name}/immutable-rules",
    tag = "policies", request_body = CreateImmutableRule,
    params(("name" = String, Path, description = "Project name")),
    responses((status = 201, body = ImmutableRuleDto), Errors), security(("basic" = [])))]
pub(crate) async fn create_rule(
    State(app): State<App>,
    Auth(actor): Auth,
    Path(name): Path<String>,
    Body(body): Body<CreateImmutableRule>,
) -> Result<(StatusCode, Json<ImmutableRuleDto>), ApiError> {
    let rule = app
        .access
        .create_immutable_rule(
            &actor,
            &name,
            NewImmutableRule {
                repositories: body.repositories.into(),
                tags: body.tags.into(),
                disabled: body.disabled,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(rule.into())))
}

/// One immutable tag rule (immutable-tag:list).
#[utoipa::path(get, operation_id = "get_immutable_rule", path = "/api/v1/projects/{name}/immutable-rules/{id}",
    tag = "policies",
    params(("name" = String, Path, description = "Project name"), ("id" = i64, Path, description = "Rule id")),
    responses((status = 200, body = ImmutableRuleDto), Errors), security(("basic" = [])))]
pub(crate) async fn get_rule(
    State(app): State<App>,
    Auth(actor): Auth,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<ImmutableRuleDto>, ApiError> {
    let rule = app
        .access
        .get_immutable_rule(&actor, &name, rule_id(&id)?)
        .await?;
    Ok(Json(rule.into()))
}

/// Changes a rule's selectors or enables/disables it (immutable-tag:update).
#[utoipa::path(patch, operation_id = "update_immutable_rule", path = "/api/v1/projects/{name}/immutable-rules/{id}",
    tag = "policies", request_body = UpdateImmutableRule,
    params(("name" = String, Path, description = "Project name"), ("id" = i64, Path, description = "Rule id")),
    responses((status = 200, body = ImmutableRuleDto), Errors), security(("basic" = [])))]
pub(crate) async fn update_rule(
    State(app): State<App>,
    Auth(actor): Auth,
    Path((name, id)): Path<(String, String)>,
    Body(body): Body<UpdateImmutableRule>,
) -> Result<Json<ImmutableRuleDto>, ApiError> {
    let rule = app
        .access
        .update_immutable_rule(
            &actor,
            &name,
            rule_id(&id)?,
            ImmutableRulePatch {
                repositories: body.repositories.map(Into::into),
                tags: body.tags.map(Into::into),
                disabled: body.disabled,
            },
        )
        .await?;
    Ok(Json(rule.into()))
}

/// Deletes a rule (immutable-tag:delete).
#[utoipa::path(delete, operation_id = "delete_immutable_rule", path = "/api/v1/projects/{name}/immutable-rules/{id}",
    tag = "policies",
    params(("name" = String, Path, description = "Project name"), ("id" = i64, Path, description = "Rule id")),
    responses((status = 204, description = "Deleted"), Errors), security(("basic" = [])))]
pub(crate) async fn delete_rule(
    State(app): State<App>,
    Auth(actor): Auth,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    app.access
        .delete_immutable_rule(&actor, &name, rule_id(&id)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A project's limits, its exact usage and what the usage is made of
/// (quota:read: project members).
#[utoipa::path(get, operation_id = "get_quota", path = "/api/v1/projects/{name}/quota",
    tag = "policies", params(("name" = String, Path, description = "Project name")),
    responses((status = 200, body = QuotaDto), Errors), security(("basic" = [])))]
pub(crate) async fn get_quota(
    State(app): State<App>,
    Auth(actor): Auth,
    Path(name): Path<String>,
) -> Result<Json<QuotaDto>, ApiError> {
    Ok(Json(app.access.get_quota(&actor, &name).await?.into()))
}

/// Sets a project's limits and warning threshold (quota:update: system
/// admins). Pushes that would exceed a limit are refused with `DENIED`.
#[utoipa::path(put, operation_id = "set_quota", path = "/api/v1/projects/{name}/quota",
    tag = "policies", request_body = SetQuota,
    params(("name" = String, Path, description = "Project name")),
    responses((status = 200, body = QuotaDto), Errors), security(("basic" = [])))]
pub(crate) async fn set_quota(
    State(app): State<App>,
    Auth(actor): Auth,
    Path(name): Path<String>,
    Body(body): Body<SetQuota>,
) -> Result<Json<QuotaDto>, ApiError> {
    let q = app
        .access
        .set_quota(
            &actor,
            &name,
            QuotaPatch {
                storage_limit: body.storage_bytes,
                artifact_limit: body.artifacts,
                warn_percent: body.warn_percent,
            },
        )
        .await?;
    Ok(Json(q.into()))
}
