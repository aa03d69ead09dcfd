//! `/projects/{name}/retention`: a project's tag retention policy (Harbor's
//! rule model), running it (dry or not) and its run history; and
//! `/projects/{name}/artifacts?repository=…`: a repository's artifacts with
//! their tags, push and pull times and pull counts.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_core::ArtifactInfo;
use berth_core::retention::{
    PolicyInfo, RetentionExecution, RetentionItem, RetentionPolicy, RetentionRule, RetentionRun,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Errors;
use super::extract::{Auth, Body, Params, id, opt_time, time};
use crate::App;
use crate::error::ApiError;

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route(
            "/projects/{name}/retention",
            get(get_policy).put(put_policy).delete(delete_policy),
        )
        .route("/projects/{name}/retention/run", post(run))
        .route("/projects/{name}/retention/executions", get(executions))
        .route("/projects/{name}/retention/executions/{id}", get(execution))
        .route(
            "/projects/{name}/retention/executions/{id}/items",
            get(execution_items),
        )
        .route("/projects/{name}/artifacts", get(artifacts))
}

// -- Documented shapes ---------------------------------------------------------
// The handlers (de)serialize the core's types; these describe them for the
// OpenAPI document, and the tests below keep the two in step.

/// A retention policy: rules that say what to retain (OR-ed), and an
/// optional cron schedule. Everything in a repository a rule applies to
/// that no rule retains is deleted.
#[derive(Serialize, Deserialize, ToSchema)]
#[allow(dead_code)]
#[schema(example = json!({
    "rules": [{
        "template": "latestPushedK", "params": {"latestPushedK": 10},
        "repositories": {"decoration": "repoMatches", "pattern": "**"},
        "tags": {"decoration": "matches", "pattern": "**", "untagged": false}
    }],
    "schedule": "0 0 0 * * *"
}))]
pub(crate) struct PolicyBody {
    /// At most 15.
    rules: Vec<RuleDoc>,
    /// Cron, UTC: 5 fields, or 6 with seconds first (`0 0 0 * * *` is daily
    /// at midnight). Absent or null: on demand only.
    schedule: Option<String>,
}

/// One rule.
#[derive(Serialize, Deserialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct RuleDoc {
    #[serde(default)]
    disabled: bool,
    /// `latestPushedK` (the K most recently pushed artifacts),
    /// `latestPulledN` (the N most recently pulled), `nDaysSinceLastPush`
    /// (pushed within D days), `nDaysSinceLastPull` (pulled within D days),
    /// `always`.
    #[schema(example = "latestPushedK")]
    template: String,
    /// The template's parameter under its name, e.g. `{"latestPushedK": 10}`;
    /// `{}` for `always`.
    #[schema(value_type = Object)]
    params: serde_json::Value,
    repositories: RepoSelectorDoc,
    tags: TagSelectorDoc,
}

/// The repositories a rule applies to, by their path inside the project
/// (`sub/app` for `team/sub/app`).
#[derive(Serialize, Deserialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct RepoSelectorDoc {
    /// `repoMatches` or `repoExcludes`.
    #[schema(example = "repoMatches")]
    decoration: String,
    /// Doublestar: `*`, `**`, `?`, `[a-z]`, `{a,b}`.
    #[schema(example = "**")]
    pattern: String,
}

/// The artifacts a rule looks at: those with a tag that matches
/// (`matches`) or with a tag that does not (`excludes`); untagged ones only
/// with `untagged: true`.
#[derive(Serialize, Deserialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct TagSelectorDoc {
    /// `matches` or `excludes`.
    #[schema(example = "matches")]
    decoration: String,
    #[schema(example = "**")]
    pattern: String,
    #[serde(default)]
    untagged: bool,
}

// -- Responses -----------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub(crate) struct PolicyDto {
    project: String,
    #[schema(value_type = Vec<RuleDoc>)]
    rules: Vec<RetentionRule>,
    schedule: Option<String>,
    /// When the schedule runs next (RFC 3339).
    next_run_at: Option<String>,
    created_at: String,
    updated_at: String,
}

impl From<PolicyInfo> for PolicyDto {
    fn from(p: PolicyInfo) -> PolicyDto {
        PolicyDto {
            project: p.project,
            rules: p.policy.rules,
            schedule: p.policy.schedule,
            next_run_at: opt_time(p.next_run_at),
            created_at: time(p.created_at),
            updated_at: time(p.updated_at),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunRequest {
    /// Report what would be deleted, delete nothing.
    #[serde(default)]
    dry_run: bool,
}

/// A run of the policy.
#[derive(Serialize, ToSchema)]
pub(crate) struct ExecutionDto {
    id: i64,
    project: String,
    /// `manual` or `schedule`.
    trigger: String,
    dry_run: bool,
    /// `running`, `succeeded` or `failed`.
    status: String,
    /// Who started it; `system` for the schedule.
    actor: String,
    /// The rules it applied.
    #[schema(value_type = Vec<RuleDoc>)]
    rules: serde_json::Value,
    /// Artifacts of the repositories in scope.
    artifacts: i64,
    /// Artifacts that stay (retained by a rule, not candidates, or kept
    /// because of an immutable tag or a new tag).
    retained: i64,
    /// Deleted; in a dry run, to be deleted.
    deleted: i64,
    errors: i64,
    error: Option<String>,
    started_at: String,
    finished_at: Option<String>,
}

impl From<RetentionExecution> for ExecutionDto {
    fn from(e: RetentionExecution) -> ExecutionDto {
        ExecutionDto {
            id: e.id,
            project: e.project,
            trigger: e.trigger,
            dry_run: e.dry_run,
            status: e.status,
            actor: e.actor,
            rules: e.rules,
            artifacts: e.artifacts,
            retained: e.retained,
            deleted: e.deleted,
            errors: e.errors,
            error: e.error,
            started_at: time(e.started_at),
            finished_at: opt_time(e.finished_at),
        }
    }
}

/// What a run decided for one artifact and what came of it.
#[derive(Serialize, ToSchema)]
pub(crate) struct ItemDto {
    repository: String,
    digest: String,
    /// Its tags when evaluated.
    tags: Vec<String>,
    /// `retain` or `delete`: the rules' decision.
    action: String,
    /// `retained`, `would_delete` (dry run), `deleted`, `kept_immutable`
    /// (an immutable tag keeps it), `kept_changed` (tagged again since it
    /// was evaluated), `already_gone`, `failed`.
    outcome: String,
    /// Indices of the rules that retained it.
    rules: Vec<usize>,
    /// Why, in words (which rule retained it, or why it stays).
    reason: String,
    pushed_at: String,
    pulled_at: Option<String>,
}

impl From<RetentionItem> for ItemDto {
    fn from(i: RetentionItem) -> ItemDto {
        ItemDto {
            repository: i.repository,
            digest: i.digest,
            tags: i.tags,
            action: i.action,
            outcome: i.outcome,
            rules: i.rules,
            reason: i.reason,
            pushed_at: time(i.pushed_at),
            pulled_at: opt_time(i.pulled_at),
        }
    }
}

/// A finished run with every artifact's line.
#[derive(Serialize, ToSchema)]
pub(crate) struct RunDto {
    execution: ExecutionDto,
    items: Vec<ItemDto>,
}

impl From<RetentionRun> for RunDto {
    fn from(r: RetentionRun) -> RunDto {
        RunDto {
            execution: r.execution.into(),
            items: r.items.into_iter().map(ItemDto::from).collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ExecutionList {
    items: Vec<ExecutionDto>,
    next: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ItemList {
    items: Vec<ItemDto>,
    next: Option<String>,
}

/// An artifact: a manifest in a repository.
#[derive(Serialize, ToSchema)]
pub(crate) struct ArtifactDto {
    repository: String,
    digest: String,
    media_type: String,
    artifact_type: Option<String>,
    /// Tags, by name.
    tags: Vec<String>,
    /// The manifest's bytes plus those of the blobs it references directly
    /// (an index: its own bytes).
    size: i64,
    /// The latest push of the manifest or of one of its tags (RFC 3339).
    pushed_at: String,
    /// When the manifest was first pushed.
    created_at: String,
    /// The latest pull (a manifest GET); null when never pulled. Pulls are
    /// written a few seconds behind.
    pulled_at: Option<String>,
    pull_count: i64,
    /// The artifact it refers to (signatures, SBOMs).
    subject: Option<String>,
}

impl From<ArtifactInfo> for ArtifactDto {
    fn from(a: ArtifactInfo) -> ArtifactDto {
        ArtifactDto {
            repository: a.repository,
            digest: a.digest,
            media_type: a.media_type,
            artifact_type: a.artifact_type,
            tags: a.tags,
            size: a.size,
            pushed_at: time(a.pushed_at),
            created_at: time(a.created_at),
            pulled_at: opt_time(a.pulled_at),
            pull_count: a.pull_count,
            subject: a.subject,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ArtifactList {
    items: Vec<ArtifactDto>,
    next: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct ArtifactParams {
    /// The repository's full name, e.g. `team/sub/app` (`alpine` or
    /// `library/alpine` in `library`).
    repository: String,
    /// 1 to 1000, default 100.
    limit: Option<u32>,
    /// The `next` of the previous page.
    after: Option<String>,
}

// -- Handlers ------------------------------------------------------------------

/// The project's retention policy (tag-retention:read: developer and up).
#[utoipa::path(get, operation_id = "get_retention_policy", path = "/api/v1/projects/{name}/retention",
    tag = "retention", params(("name" = String, Path, description = "Project name")),
    responses((status = 200, body = PolicyDto), Errors), security(("basic" = [])))]
pub(crate) async fn get_policy(
    State(app): State<App>,
    Auth(actor): Auth,
    Path(name): Path<String>,
) -> Result<Json<PolicyDto>, ApiError> {
    let p = app
        .registry
        .retention_policy(&app.access, &actor, &name)
        .await?;
    Ok(Json(p.into()))
}

/// Creates (201) or replaces (200) the project's retention policy
/// (tag-retention:create or update: developer and up).
#[utoipa::path(put, operation_id = "set_retention_policy", path = "/api/v1/projects/{name}/retention",
    tag = "retention", request_body = PolicyBody,
    params(("name" = String, Path, description = "Project name")),
    responses((status = 200, body = PolicyDto), (status = 201, body = PolicyDto), Errors),
    security(("basic" = [])))]
pub(crate) async fn put_policy(
    State(app): State<App>,
    Auth(actor): Auth,
    Path(name): Path<String>,
    Body(body): Body<RetentionPolicy>,
) -> Result<(StatusCode, Json<PolicyDto>), ApiError> {
    let (p, created) = app
        .registry
        .set_retention_policy(&app.access, &actor, &name, body)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(p.into())))
}

/// Removes the project's retention policy and its schedule; the run
/// history stays (tag-retention:delete: developer and up).
#[utoipa::path(delete, operation_id = "delete_retention_policy", path = "/api/v1/projects/{name}/retention",
    tag = "retention", params(("name" = String, Path, description = "Project name")),
    responses((status = 204, description = "Deleted"), Errors), security(("basic" = [])))]
pub(crate) async fn delete_policy(
    State(app): State<App>,
    Auth(actor): Auth,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.registry
        .delete_retention_policy(&app.access, &actor, &name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Runs the policy now and answers when it is done, with every artifact's
/// line. `{"dry_run": true}` deletes nothing and lists exactly what would
/// go. (tag-retention:operate: developer and up)
#[utoipa::path(post, operation_id = "run_retention", path = "/api/v1/projects/{name}/retention/run",
    tag = "retention", request_body = RunRequest,
    params(("name" = String, Path, description = "Project name")),
    responses((status = 200, body = RunDto), Errors), security(("basic" = [])))]
pub(crate) async fn run(
    State(app): State<App>,
    Auth(actor): Auth,
    Path(name): Path<String>,
    Body(body): Body<RunRequest>,
) -> Result<Json<RunDto>, ApiError> {
    let r = app
        .registry
        .run_retention(&app.access, &actor, &name, body.dry_run)
        .await?;
    Ok(Json(r.into()))
}

/// The project's retention runs, newest first (tag-retention:list).
#[utoipa::path(get, operation_id = "list_retention_executions",
    path = "/api/v1/projects/{name}/retention/executions", tag = "retention",
    params(("name" = String, Path, description = "Project name"), super::PageParams),
    responses((status = 200, body = ExecutionList), Errors), security(("basic" = [])))]
pub(crate) async fn executions(
    State(app): State<App>,
    Auth(actor): Auth,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<ExecutionList>, ApiError> {
    let params = Params::parse(q.as_deref());
    let page = app
        .registry
        .retention_executions(&app.access, &actor, &name, params.page()?)
        .await?;
    Ok(Json(ExecutionList {
        items: page.items.into_iter().map(ExecutionDto::from).collect(),
        next: page.next,
    }))
}

/// One retention run (tag-retention:read).
#[utoipa::path(get, operation_id = "get_retention_execution",
    path = "/api/v1/projects/{name}/retention/executions/{id}", tag = "retention",
    params(("name" = String, Path, description = "Project name"),
           ("id" = i64, Path, description = "Run id")),
    responses((status = 200, body = ExecutionDto), Errors), security(("basic" = [])))]
pub(crate) async fn execution(
    State(app): State<App>,
    Auth(actor): Auth,
    Path((name, run)): Path<(String, String)>,
) -> Result<Json<ExecutionDto>, ApiError> {
    let run = id("id", &run)?;
    let e = app
        .registry
        .retention_execution(&app.access, &actor, &name, run)
        .await?;
    Ok(Json(e.into()))
}

/// What one run decided for each artifact, in order (tag-retention:read).
#[utoipa::path(get, operation_id = "list_retention_execution_items",
    path = "/api/v1/projects/{name}/retention/executions/{id}/items", tag = "retention",
    params(("name" = String, Path, description = "Project name"),
           ("id" = i64, Path, description = "Run id"), super::PageParams),
    responses((status = 200, body = ItemList), Errors), security(("basic" = [])))]
pub(crate) async fn execution_items(
    State(app): State<App>,
    Auth(actor): Auth,
    Path((name, run)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Json<ItemList>, ApiError> {
    let run = id("id", &run)?;
    let params = Params::parse(q.as_deref());
    let page = app
        .registry
        .retention_execution_items(&app.access, &actor, &name, run, params.page()?)
        .await?;
    Ok(Json(ItemList {
        items: page.items.into_iter().map(ItemDto::from).collect(),
        next: page.next,
    }))
}

/// A repository's artifacts in digest order, with tags, size, push and
/// pull times and pull counts (artifact:list: limited guest and up).
#[utoipa::path(get, operation_id = "list_artifacts", path = "/api/v1/projects/{name}/artifacts",
    tag = "artifacts",
    params(("name" = String, Path, description = "Project name"), ArtifactParams),
    responses((status = 200, body = ArtifactList), Errors), security(("basic" = [])))]
pub(crate) async fn artifacts(
    State(app): State<App>,
    Auth(actor): Auth,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<ArtifactList>, ApiError> {
    let params = Params::parse(q.as_deref());
    let repository = params.get("repository").ok_or_else(|| {
        ApiError::from(berth_core::Error::Invalid(format!(
            "repository: required, the full name (e.g. {name}/app)"
        )))
    })?;
    let page = app
        .registry
        .list_artifacts(&app.access, &actor, &name, repository, params.page()?)
        .await?;
    Ok(Json(ArtifactList {
        items: page.items.into_iter().map(ArtifactDto::from).collect(),
        next: page.next,
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The documented policy shape is what the handler reads and answers.
    #[test]
    fn documented_policy_is_what_the_handlers_read() {
        let body = json!({
            "rules": [
                {"disabled": false, "template": "latestPushedK", "params": {"latestPushedK": 10},
                 "repositories": {"decoration": "repoMatches", "pattern": "**"},
                 "tags": {"decoration": "matches", "pattern": "**", "untagged": false}},
                {"disabled": true, "template": "always", "params": {},
                 "repositories": {"decoration": "repoExcludes", "pattern": "tools/**"},
                 "tags": {"decoration": "excludes", "pattern": "dev-*", "untagged": true}}
            ],
            "schedule": "0 0 0 * * *"
        });
        let real: RetentionPolicy = serde_json::from_value(body.clone()).unwrap();
        let documented: PolicyBody = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(serde_json::to_value(&real).unwrap(), body);
        assert_eq!(serde_json::to_value(&documented).unwrap(), body);
    }

    #[test]
    fn the_document_lists_the_retention_routes() {
        use utoipa::OpenApi as _;
        let doc: serde_json::Value =
            serde_json::from_str(&super::super::ApiDoc::openapi().to_json().unwrap()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for (path, methods) in [
            (
                "/api/v1/projects/{name}/retention",
                &["get", "put", "delete"][..],
            ),
            ("/api/v1/projects/{name}/retention/run", &["post"]),
            ("/api/v1/projects/{name}/retention/executions", &["get"]),
            (
                "/api/v1/projects/{name}/retention/executions/{id}",
                &["get"],
            ),
            (
                "/api/v1/projects/{name}/retention/executions/{id}/items",
                &["get"],
            ),
            ("/api/v1/projects/{name}/artifacts", &["get"]),
        ] {
            let entry = paths.get(path).unwrap_or_else(|| panic!("{path} missing"));
            for m in methods {
                assert!(entry.get(*m).is_some(), "{m} {path} missing");
            }
        }
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for s in [
            "PolicyBody",
            "PolicyDto",
            "RunDto",
            "ItemDto",
            "ArtifactList",
        ] {
            assert!(schemas.contains_key(s), "schema {s} missing");
        }
        assert_eq!(
            json!(doc["components"]["schemas"]["RunRequest"]["properties"]["dry_run"]["type"]),
            json!("boolean")
        );
    }
}
