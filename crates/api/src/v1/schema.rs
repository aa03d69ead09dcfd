//! Schemas of shapes the API takes from `berth-auth` types (permission
//! lists, roles) and of the error body, for the OpenAPI document. The
//! handlers (de)serialize the real types; the tests below keep these
//! descriptions in step with them.

#![allow(dead_code)]

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The error body of every failed request.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct ErrorBody {
    pub(crate) errors: Vec<ErrorItem>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct ErrorItem {
    /// `UNAUTHORIZED`, `DENIED`, `NOT_FOUND`, `CONFLICT`, `INVALID`,
    /// `TOOMANYREQUESTS`, `UNKNOWN`.
    #[schema(example = "INVALID")]
    pub(crate) code: String,
    /// What went wrong; for `INVALID`, it starts with the field's name.
    #[schema(example = "expires_in_days: must be 1 to 365, got 0")]
    pub(crate) message: String,
    pub(crate) detail: Option<serde_json::Value>,
}

/// Permissions in one namespace (Harbor's `{kind, namespace, access}`).
#[derive(Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "namespace": {"kind": "project", "project": "team"},
    "access": [{"resource": "repository", "action": "pull"},
               {"resource": "repository", "action": "push"}]
}))]
pub(crate) struct Grant {
    pub(crate) namespace: Namespace,
    pub(crate) access: Vec<Permission>,
}

/// Where a grant applies: `{"kind":"system"}`, `{"kind":"all_projects"}`
/// (every project, present and future), or `{"kind":"project","project":NAME}`.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct Namespace {
    pub(crate) kind: NamespaceKind,
    /// With `kind: project` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) project: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum NamespaceKind {
    System,
    AllProjects,
    Project,
}

/// One `(resource, action)` pair, with Harbor's names, e.g.
/// `repository`/`pull`, `artifact`/`delete`, `member`/`create`.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct Permission {
    #[schema(example = "repository")]
    pub(crate) resource: String,
    #[schema(example = "pull")]
    pub(crate) action: String,
}

/// A project role, weakest to strongest: limited_guest, guest, developer,
/// maintainer, project_admin.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Role {
    LimitedGuest,
    Guest,
    Developer,
    Maintainer,
    ProjectAdmin,
}

#[cfg(test)]
mod tests {
    use berth_core::access::manage;
    use serde_json::json;

    #[test]
    fn documented_grants_are_what_the_handlers_read() {
        for ns in [
            json!({"kind": "system"}),
            json!({"kind": "all_projects"}),
            json!({"kind": "project", "project": "team"}),
        ] {
            let doc =
                json!({"namespace": ns, "access": [{"resource": "repository", "action": "pull"}]});
            let documented: super::Grant = serde_json::from_value(doc.clone()).unwrap();
            let real: manage::Grant = serde_json::from_value(doc.clone()).unwrap();
            assert_eq!(serde_json::to_value(&real).unwrap(), doc);
            assert_eq!(serde_json::to_value(&documented).unwrap(), doc);
        }
    }

    #[test]
    fn documented_roles_are_what_the_handlers_read() {
        for role in manage::Role::ALL {
            let v = serde_json::to_value(role).unwrap();
            let _: super::Role = serde_json::from_value(v.clone()).unwrap();
            assert_eq!(v, json!(role.as_str()));
        }
    }
}
