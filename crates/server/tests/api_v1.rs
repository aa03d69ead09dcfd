//! The management API (`/api/v1`) and `berth admin` against the real
//! binary: authentication, users and passwords, the last-admin guard,
//! projects and members and their effect on `/v2`, robots (secrets shown
//! once, scopes, expiry, disabling, rotation, robots creating robots),
//! personal access tokens, the audit log, signing key rotation and the
//! OpenAPI document.

mod common;

use std::process::Command;

use base64::Engine as _;
use common::{ADMIN_PASSWORD, ADMIN_USER, Berth, HttpResponse, digest_of, http_anonymous};
use serde_json::{Value, json};

/// `Authorization: Basic …` for `user:password`.
fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Who sends a request.
#[derive(Clone, Copy)]
enum As<'a> {
    Anonymous,
    Basic(&'a str, &'a str),
    Bearer(&'a str),
}

const ADMIN: As<'static> = As::Basic(ADMIN_USER, ADMIN_PASSWORD);

struct Api {
    url: String,
}

impl Api {
    fn new(berth: &Berth) -> Api {
        Api {
            url: berth.url.clone(),
        }
    }

    fn raw(&self, who: As<'_>, method: &str, path: &str, body: Option<Value>) -> HttpResponse {
        let auth = match who {
            As::Anonymous => None,
            As::Basic(u, p) => Some(basic(u, p)),
            As::Bearer(t) => Some(format!("Bearer {t}")),
        };
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        let body = body.map(|b| {
            headers.push(("Content-Type", "application/json"));
            serde_json::to_vec(&b).unwrap()
        });
        http_anonymous(method, &format!("{}{path}", self.url), &headers, body)
    }

    /// A management request: its status and JSON body (`null` if empty).
    fn call(&self, who: As<'_>, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let r = self.raw(who, method, &format!("/api/v1{path}"), body);
        let v = if r.body.is_empty() {
            Value::Null
        } else {
            r.json()
        };
        (r.status, v)
    }

    /// A request that must succeed.
    fn ok(&self, who: As<'_>, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(who, method, path, body);
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {v}"
        );
        v
    }

    /// A request that must fail with `status`; returns the error message.
    fn fails(
        &self,
        who: As<'_>,
        method: &str,
        path: &str,
        body: Option<Value>,
        status: u16,
    ) -> String {
        let (got, v) = self.call(who, method, path, body);
        assert_eq!(got, status, "{method} {path}: {v}");
        v["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn create_user(&self, name: &str, password: &str) {
        self.ok(
            ADMIN,
            "POST",
            "/users",
            Some(json!({"name": name, "password": password})),
        );
    }

    /// Status of starting a blob upload in `project/app` (push).
    fn push_status(&self, who: As<'_>, project: &str) -> u16 {
        self.raw(
            who,
            "POST",
            &format!("/v2/{project}/app/blobs/uploads/"),
            None,
        )
        .status
    }

    /// Pushes a blob to `project/app` as the admin; returns its digest.
    fn seed_blob(&self, project: &str) -> String {
        let data = format!("blob of {project}").into_bytes();
        let digest = digest_of(&data);
        let r = http_anonymous(
            "POST",
            &format!(
                "{}/v2/{project}/app/blobs/uploads/?digest={digest}",
                self.url
            ),
            &[("Authorization", &basic(ADMIN_USER, ADMIN_PASSWORD))],
            Some(data),
        );
        assert_eq!(
            r.status,
            201,
            "seed blob: {}",
            String::from_utf8_lossy(&r.body)
        );
        digest
    }

    /// Status of reading a blob of `project/app` (pull).
    fn pull_status(&self, who: As<'_>, project: &str, digest: &str) -> u16 {
        self.raw(
            who,
            "GET",
            &format!("/v2/{project}/app/blobs/{digest}"),
            None,
        )
        .status
    }
}

fn grants(project: &str, actions: &[&str]) -> Value {
    json!({
        "namespace": {"kind": "project", "project": project},
        "access": actions.iter().map(|a| json!({"resource": "repository", "action": a})).collect::<Vec<_>>(),
    })
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn anonymous_and_bearer_callers_are_refused_except_on_public_endpoints() {
    let berth = Berth::start();
    let api = Api::new(&berth);

    let info = api.ok(As::Anonymous, "GET", "/system/info", None);
    assert!(info["version"].is_string());
    assert!(
        info["auth"].as_array().unwrap().contains(&json!("local")),
        "{info}"
    );

    let doc = api.raw(As::Anonymous, "GET", "/api/v1/openapi.json", None);
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/me",
        "/api/v1/users",
        "/api/v1/users/{name}/password",
        "/api/v1/users/me/tokens",
        "/api/v1/groups",
        "/api/v1/projects",
        "/api/v1/projects/{name}/members",
        "/api/v1/projects/{name}/robots",
        "/api/v1/robots/{id}/secret",
        "/api/v1/audit",
        "/api/v1/system/keys/rotate",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"]["CreateRobot"].is_object());

    // Anonymous: 401 with a Basic challenge.
    let r = api.raw(As::Anonymous, "GET", "/api/v1/me", None);
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .starts_with("Basic realm=\"berth\""),
        "{:?}",
        r.headers
    );
    assert_eq!(r.json()["errors"][0]["code"], "UNAUTHORIZED");
    api.fails(As::Anonymous, "GET", "/users", None, 401);
    api.fails(
        As::Anonymous,
        "POST",
        "/projects",
        Some(json!({"name": "x"})),
        401,
    );
    // A wrong password is a 401 too.
    api.fails(
        As::Basic(ADMIN_USER, "wrong-password"),
        "GET",
        "/me",
        None,
        401,
    );

    // A registry token is for /v2 only.
    let token = http_anonymous(
        "GET",
        &format!(
            "{}/service/token?service=berth&scope=repository:library/x:pull",
            berth.url
        ),
        &[("Authorization", &basic(ADMIN_USER, ADMIN_PASSWORD))],
        None,
    )
    .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = api.raw(As::Bearer(&token), "GET", "/api/v1/me", None);
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").starts_with("Basic"));
    let v2 = api.raw(As::Bearer(&token), "GET", "/v2/", None);
    assert_eq!(v2.status, 200, "the same token works on /v2");

    // Anonymous sees public projects only.
    api.ok(
        ADMIN,
        "POST",
        "/projects",
        Some(json!({"name": "open", "public": true})),
    );
    api.ok(ADMIN, "POST", "/projects", Some(json!({"name": "closed"})));
    assert_eq!(
        names(&api.ok(As::Anonymous, "GET", "/projects", None)),
        ["open"]
    );
    assert_eq!(
        names(&api.ok(ADMIN, "GET", "/projects", None)),
        ["closed", "library", "open"]
    );
    // Pagination: one at a time, following `next`.
    let first = api.ok(ADMIN, "GET", "/projects?limit=1", None);
    assert_eq!(names(&first), ["closed"]);
    let next = first["next"].as_str().unwrap();
    let second = api.ok(
        ADMIN,
        "GET",
        &format!("/projects?limit=1&after={next}"),
        None,
    );
    assert_eq!(names(&second), ["library"]);
    let m = api.fails(ADMIN, "GET", "/projects?limit=0", None, 400);
    assert!(m.starts_with("limit:"), "{m}");

    // Unknown endpoints and malformed bodies answer JSON errors.
    let (status, v) = api.call(ADMIN, "GET", "/nope", None);
    assert_eq!(
        (status, v["errors"][0]["code"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    let m = api.fails(
        ADMIN,
        "POST",
        "/projects",
        Some(json!({"name": "x", "colour": 1})),
        400,
    );
    assert!(m.contains("colour"), "{m}");
}

#[test]
fn users_passwords_and_the_last_admin_guard() {
    let berth = Berth::start();
    let api = Api::new(&berth);
    let alice = As::Basic("alice", "alice-password-1");

    let created = api.ok(
        ADMIN,
        "POST",
        "/users",
        Some(
            json!({"name": "alice", "password": "alice-password-1", "email": "alice@example.org"}),
        ),
    );
    assert_eq!(created["name"], "alice");
    assert_eq!(created["source"], "local");
    assert!(created.get("password").is_none() && !created.to_string().contains("alice-password"));
    api.fails(
        ADMIN,
        "POST",
        "/users",
        Some(json!({"name": "alice", "password": "whatever-1"})),
        409,
    );
    let m = api.fails(
        ADMIN,
        "POST",
        "/users",
        Some(json!({"name": "robot$x", "password": "whatever-1"})),
        400,
    );
    assert!(m.starts_with("name:"), "{m}");
    let m = api.fails(
        ADMIN,
        "POST",
        "/users",
        Some(json!({"name": "bob", "password": "short"})),
        400,
    );
    assert!(m.starts_with("password:"), "{m}");
    assert_eq!(
        names(&api.ok(ADMIN, "GET", "/users", None)),
        ["admin", "alice"]
    );

    // A user reads and updates their own email, nothing more.
    let me = api.ok(alice, "GET", "/me", None);
    assert_eq!(
        (me["name"].as_str(), me["kind"].as_str()),
        (Some("alice"), Some("user"))
    );
    assert_eq!(me["system_admin"], false);
    api.ok(alice, "GET", "/users/alice", None);
    api.fails(alice, "GET", "/users", None, 403);
    api.fails(alice, "GET", "/users/admin", None, 403);
    let updated = api.ok(
        alice,
        "PATCH",
        "/users/alice",
        Some(json!({"email": "a@example.net"})),
    );
    assert_eq!(updated["email"], "a@example.net");
    api.fails(
        alice,
        "PATCH",
        "/users/alice",
        Some(json!({"system_admin": true})),
        403,
    );
    api.fails(
        alice,
        "PATCH",
        "/users/admin",
        Some(json!({"email": "x@y.z"})),
        403,
    );
    api.fails(
        alice,
        "POST",
        "/users",
        Some(json!({"name": "eve", "password": "eve-password"})),
        403,
    );
    let cleared = api.ok(ADMIN, "PATCH", "/users/alice", Some(json!({"email": null})));
    assert!(cleared["email"].is_null());

    // Changing one's own password needs the old one.
    let m = api.fails(
        alice,
        "PUT",
        "/users/alice/password",
        Some(json!({"new_password": "alice-password-2"})),
        400,
    );
    assert!(m.starts_with("old_password:"), "{m}");
    let m = api.fails(
        alice,
        "PUT",
        "/users/alice/password",
        Some(json!({"old_password": "not-it-at-all", "new_password": "alice-password-2"})),
        400,
    );
    assert!(m.starts_with("old_password:"), "{m}");
    let m = api.fails(
        alice,
        "PUT",
        "/users/alice/password",
        Some(json!({"old_password": "alice-password-1", "new_password": "short"})),
        400,
    );
    assert!(m.starts_with("new_password:"), "{m}");
    api.ok(
        alice,
        "PUT",
        "/users/alice/password",
        Some(json!({"old_password": "alice-password-1", "new_password": "alice-password-2"})),
    );
    api.fails(alice, "GET", "/me", None, 401);
    let alice2 = As::Basic("alice", "alice-password-2");
    api.ok(alice2, "GET", "/me", None);
    // Nor may a user set somebody else's.
    api.fails(
        alice2,
        "PUT",
        "/users/admin/password",
        Some(json!({"new_password": "taken-over-1"})),
        403,
    );
    // A system admin sets another user's password without the old one.
    api.ok(
        ADMIN,
        "PUT",
        "/users/alice/password",
        Some(json!({"new_password": "alice-password-3"})),
    );
    api.fails(alice2, "GET", "/me", None, 401);
    let alice3 = As::Basic("alice", "alice-password-3");
    api.ok(alice3, "GET", "/me", None);
    // …but their own needs it too.
    let m = api.fails(
        ADMIN,
        "PUT",
        "/users/admin/password",
        Some(json!({"new_password": "admin-pass-new"})),
        400,
    );
    assert!(m.starts_with("old_password:"), "{m}");

    // The last enabled system admin cannot be demoted, disabled or deleted.
    let m = api.fails(
        ADMIN,
        "PATCH",
        "/users/admin",
        Some(json!({"system_admin": false})),
        409,
    );
    assert!(m.contains("last enabled system admin"), "{m}");
    api.fails(
        ADMIN,
        "PATCH",
        "/users/admin",
        Some(json!({"disabled": true})),
        409,
    );
    api.fails(ADMIN, "DELETE", "/users/admin", None, 409);
    // With a second admin, the first may go.
    api.ok(
        ADMIN,
        "PATCH",
        "/users/alice",
        Some(json!({"system_admin": true})),
    );
    assert_eq!(api.ok(alice3, "GET", "/me", None)["system_admin"], true);
    api.ok(
        alice3,
        "PATCH",
        "/users/admin",
        Some(json!({"system_admin": false})),
    );
    api.fails(ADMIN, "GET", "/users", None, 403);
    api.fails(
        alice3,
        "PATCH",
        "/users/alice",
        Some(json!({"disabled": true})),
        409,
    );
    api.ok(
        alice3,
        "PATCH",
        "/users/admin",
        Some(json!({"system_admin": true})),
    );

    // Disabled accounts cannot log in; deleted ones neither.
    api.create_user("bob", "bob-password-1");
    let bob = As::Basic("bob", "bob-password-1");
    api.ok(bob, "GET", "/me", None);
    let v = api.ok(
        ADMIN,
        "PATCH",
        "/users/bob",
        Some(json!({"disabled": true})),
    );
    assert_eq!(v["disabled"], true);
    api.fails(bob, "GET", "/me", None, 401);
    api.ok(
        ADMIN,
        "PATCH",
        "/users/bob",
        Some(json!({"disabled": false})),
    );
    api.ok(bob, "GET", "/me", None);
    api.ok(ADMIN, "DELETE", "/users/bob", None);
    api.fails(bob, "GET", "/me", None, 401);
    api.fails(ADMIN, "GET", "/users/bob", None, 404);
    api.fails(ADMIN, "DELETE", "/users/bob", None, 404);
}

#[test]
fn members_and_their_roles_decide_v2_access() {
    let berth = Berth::start();
    let api = Api::new(&berth);
    for u in ["dev", "guest", "outsider"] {
        api.create_user(u, &format!("{u}-password-1"));
    }
    let dev = As::Basic("dev", "dev-password-1");
    let guest = As::Basic("guest", "guest-password-1");
    let outsider = As::Basic("outsider", "outsider-password-1");

    let team = api.ok(ADMIN, "POST", "/projects", Some(json!({"name": "team"})));
    assert_eq!(team["public"], false);
    api.fails(
        ADMIN,
        "POST",
        "/projects",
        Some(json!({"name": "team"})),
        409,
    );
    let m = api.fails(
        ADMIN,
        "POST",
        "/projects",
        Some(json!({"name": "Bad_Name"})),
        400,
    );
    assert!(m.starts_with("name:"), "{m}");
    api.fails(dev, "POST", "/projects", Some(json!({"name": "mine"})), 403);
    api.ok(
        ADMIN,
        "POST",
        "/projects",
        Some(json!({"name": "open", "public": true})),
    );
    let digest = api.seed_blob("team");

    // Nobody but the admin (its creator and project admin) is in yet.
    assert_eq!(api.push_status(dev, "team"), 403);
    assert_eq!(api.pull_status(dev, "team", &digest), 403);
    assert_eq!(names(&api.ok(outsider, "GET", "/projects", None)), ["open"]);
    api.fails(outsider, "GET", "/projects/team", None, 403);
    api.fails(ADMIN, "GET", "/projects/nope", None, 404);

    let added = api.ok(
        ADMIN,
        "POST",
        "/projects/team/members",
        Some(json!({"user": "dev", "role": "developer"})),
    );
    assert_eq!(
        (added["kind"].as_str(), added["role"].as_str()),
        (Some("user"), Some("developer"))
    );
    api.ok(
        ADMIN,
        "POST",
        "/projects/team/members",
        Some(json!({"user": "guest", "role": "guest"})),
    );
    api.fails(
        ADMIN,
        "POST",
        "/projects/team/members",
        Some(json!({"user": "dev", "role": "guest"})),
        409,
    );
    api.fails(
        ADMIN,
        "POST",
        "/projects/team/members",
        Some(json!({"user": "ghost", "role": "guest"})),
        404,
    );
    let m = api.fails(
        ADMIN,
        "POST",
        "/projects/team/members",
        Some(json!({"user": "dev", "role": "boss"})),
        400,
    );
    assert!(m.contains("role"), "{m}");

    // A developer pushes; a guest pulls but does not push; others nothing.
    assert_eq!(api.push_status(dev, "team"), 202);
    assert_eq!(api.pull_status(dev, "team", &digest), 200);
    assert_eq!(api.push_status(guest, "team"), 403);
    assert_eq!(api.pull_status(guest, "team", &digest), 200);
    assert_eq!(api.push_status(outsider, "team"), 403);
    assert_eq!(api.pull_status(outsider, "team", &digest), 403);
    assert_eq!(
        names(&api.ok(dev, "GET", "/projects", None)),
        ["open", "team"]
    );
    let mine = api.ok(dev, "GET", "/projects/team", None);
    assert_eq!(mine["roles"], json!(["developer"]));

    // Guests list members; only project admins change them.
    let members = api.ok(guest, "GET", "/projects/team/members", None);
    assert_eq!(names(&members), ["admin", "dev", "guest"]);
    api.fails(outsider, "GET", "/projects/team/members", None, 403);
    api.fails(
        dev,
        "POST",
        "/projects/team/members",
        Some(json!({"user": "outsider", "role": "guest"})),
        403,
    );
    api.fails(
        dev,
        "PATCH",
        "/projects/team",
        Some(json!({"public": true})),
        403,
    );

    // Role changes and removal take effect at once.
    let v = api.ok(
        ADMIN,
        "PUT",
        "/projects/team/members/user/guest",
        Some(json!({"role": "developer"})),
    );
    assert_eq!(v["role"], "developer");
    assert_eq!(api.push_status(guest, "team"), 202);
    api.ok(ADMIN, "DELETE", "/projects/team/members/user/dev", None);
    assert_eq!(api.push_status(dev, "team"), 403);
    assert_eq!(api.pull_status(dev, "team", &digest), 403);
    api.fails(
        ADMIN,
        "DELETE",
        "/projects/team/members/user/dev",
        None,
        404,
    );
    api.fails(
        ADMIN,
        "PUT",
        "/projects/team/members/user/dev",
        Some(json!({"role": "guest"})),
        404,
    );
    api.fails(
        ADMIN,
        "PUT",
        "/projects/team/members/robot/dev",
        Some(json!({"role": "guest"})),
        400,
    );

    // A project admin manages members and visibility, not deletion.
    api.ok(
        ADMIN,
        "PUT",
        "/projects/team/members/user/guest",
        Some(json!({"role": "project_admin"})),
    );
    api.ok(
        guest,
        "POST",
        "/projects/team/members",
        Some(json!({"user": "outsider", "role": "limited_guest"})),
    );
    assert_eq!(api.pull_status(outsider, "team", &digest), 200);
    let v = api.ok(
        guest,
        "PATCH",
        "/projects/team",
        Some(json!({"public": true})),
    );
    assert_eq!(v["public"], true);
    assert_eq!(
        api.pull_status(As::Anonymous, "team", &digest),
        200,
        "public now"
    );
    api.fails(guest, "DELETE", "/projects/team", None, 403);

    // Groups: a local group's members get the group's role.
    let group = api.ok(ADMIN, "POST", "/groups", Some(json!({"name": "builders"})));
    let gid = group["id"].as_i64().unwrap();
    api.ok(ADMIN, "POST", "/projects", Some(json!({"name": "grouped"})));
    api.ok(
        ADMIN,
        "POST",
        "/projects/grouped/members",
        Some(json!({"group": "builders", "role": "developer"})),
    );
    assert_eq!(api.push_status(dev, "grouped"), 403);
    api.ok(ADMIN, "POST", &format!("/groups/{gid}/members/dev"), None);
    assert_eq!(api.push_status(dev, "grouped"), 202);
    let me = api.ok(dev, "GET", "/me", None);
    assert_eq!(me["groups"], json!(["builders"]));
    api.ok(ADMIN, "DELETE", &format!("/groups/{gid}/members/dev"), None);
    assert_eq!(api.push_status(dev, "grouped"), 403);
    // A directory group can get a role before anybody logged in.
    let v = api.ok(
        ADMIN,
        "POST",
        "/projects/grouped/members",
        Some(json!({"group": "cn=ops,dc=example,dc=org", "group_source": "ldap", "role": "guest"})),
    );
    assert_eq!(v["group_source"], "ldap");
    let m = api.fails(ADMIN, "POST", "/groups/0/members/dev", None, 404);
    assert!(m.contains("group"), "{m}");
    let groups = api.ok(ADMIN, "GET", "/groups", None);
    assert_eq!(names(&groups), ["builders", "cn=ops,dc=example,dc=org"]);
    api.fails(dev, "GET", "/groups", None, 403);

    // Deletion: never library, never a project with repositories.
    api.fails(ADMIN, "DELETE", "/projects/library", None, 409);
    let m = api.fails(ADMIN, "DELETE", "/projects/team", None, 409);
    assert!(m.contains("repositories"), "{m}");
    api.ok(ADMIN, "DELETE", "/projects/grouped", None);
    api.fails(ADMIN, "GET", "/projects/grouped", None, 404);
}

#[test]
fn robots_secrets_scopes_expiry_and_rotation() {
    let berth = Berth::start();
    let api = Api::new(&berth);
    api.ok(ADMIN, "POST", "/projects", Some(json!({"name": "team"})));
    api.ok(ADMIN, "POST", "/projects", Some(json!({"name": "other"})));
    let team_blob = api.seed_blob("team");
    let other_blob = api.seed_blob("other");

    // A project robot: the secret is in the creation answer only.
    let created = api.ok(
        ADMIN,
        "POST",
        "/projects/team/robots",
        Some(json!({"name": "ci", "description": "CI", "permissions": [grants("team", &["pull", "push"])]})),
    );
    let name = created["name"].as_str().unwrap().to_string();
    let secret = created["secret"].as_str().unwrap().to_string();
    let id = created["id"].as_i64().unwrap();
    assert_eq!(name, "robot$team+ci");
    assert_eq!(created["level"], "project");
    assert!(created["expires_at"].is_string(), "30 days by default");
    let read = api.ok(ADMIN, "GET", &format!("/robots/{id}"), None);
    assert!(read.get("secret").is_none(), "{read}");
    let listed = api.ok(ADMIN, "GET", "/projects/team/robots", None);
    assert_eq!(names(&listed), [name.as_str()]);
    assert!(!listed.to_string().contains(&secret));
    api.fails(
        ADMIN,
        "POST",
        "/projects/team/robots",
        Some(json!({"name": "ci", "permissions": [grants("team", &["pull"])]})),
        409,
    );

    // docker login-style Basic on /v2: within its permissions only.
    let robot = As::Basic(&name, &secret);
    assert_eq!(api.push_status(robot, "team"), 202);
    assert_eq!(api.pull_status(robot, "team", &team_blob), 200);
    assert_eq!(api.push_status(robot, "other"), 403);
    assert_eq!(api.pull_status(robot, "other", &other_blob), 403);
    let me = api.ok(robot, "GET", "/me", None);
    assert_eq!(me["kind"], "robot");
    assert_eq!(
        me["permissions"],
        json!([grants("team", &["pull", "push"])])
    );
    api.fails(robot, "GET", "/users/me/tokens", None, 403);
    api.fails(robot, "GET", "/users", None, 403);

    // Project robots hold permissions in their project only; grants are
    // validated (push needs pull).
    let m = api.fails(
        ADMIN,
        "POST",
        "/projects/team/robots",
        Some(json!({"name": "x", "permissions": [grants("other", &["pull"])]})),
        400,
    );
    assert!(m.starts_with("permissions:"), "{m}");
    let m = api.fails(
        ADMIN,
        "POST",
        "/projects/team/robots",
        Some(json!({"name": "x", "permissions": [grants("team", &["push"])]})),
        400,
    );
    assert!(m.contains("pull"), "{m}");
    let m = api.fails(
        ADMIN,
        "POST",
        "/robots",
        Some(json!({"name": "Bad Name", "permissions": [grants("team", &["pull"])]})),
        400,
    );
    assert!(m.starts_with("name:"), "{m}");
    let m = api.fails(
        ADMIN,
        "POST",
        "/robots",
        Some(
            json!({"name": "x", "permissions": [grants("team", &["pull"])], "expires_in_days": 0}),
        ),
        400,
    );
    assert!(m.starts_with("expires_in_days:"), "{m}");

    // A system robot that may create robots, and pull from team.
    let creator = api.ok(
        ADMIN,
        "POST",
        "/robots",
        Some(json!({
            "name": "factory",
            "expires_in_days": -1,
            "permissions": [
                {"namespace": {"kind": "system"}, "access": [
                    {"resource": "robot", "action": "create"},
                    {"resource": "robot", "action": "list"}]},
                grants("team", &["pull"]),
            ],
        })),
    );
    assert!(creator["expires_at"].is_null(), "never expires");
    assert_eq!(creator["name"], "robot$factory");
    let factory_secret = creator["secret"].as_str().unwrap().to_string();
    let factory = As::Basic("robot$factory", &factory_secret);
    let child = api.ok(
        factory,
        "POST",
        "/robots",
        Some(json!({"name": "child", "permissions": [grants("team", &["pull"])]})),
    );
    assert_eq!(child["created_by"], "robot$factory");
    // Beyond its own scope: refused (Harbor ≥ 2.12).
    let m = api.fails(
        factory,
        "POST",
        "/robots",
        Some(json!({"name": "greedy", "permissions": [grants("team", &["pull", "push"])]})),
        403,
    );
    assert!(m.contains("holds itself"), "{m}");
    api.fails(
        factory,
        "POST",
        "/robots",
        Some(json!({"name": "elsewhere", "permissions": [grants("other", &["pull"])]})),
        403,
    );
    api.fails(
        factory,
        "POST",
        "/robots",
        Some(json!({"name": "admin", "permissions": [{"namespace": {"kind": "system"}, "access": [{"resource": "user", "action": "create"}]}]})),
        403,
    );
    // Not robot:create in the project either.
    api.fails(
        factory,
        "POST",
        "/projects/team/robots",
        Some(json!({"name": "p", "permissions": [grants("team", &["pull"])]})),
        403,
    );
    let listed = api.ok(factory, "GET", "/robots", None);
    assert_eq!(names(&listed), ["robot$factory", "robot$child"]);
    // Changing a robot or rotating its secret needs the authority to have
    // given its permissions: a robot that may update robots cannot take
    // over a stronger one.
    let keeper = api.ok(
        ADMIN,
        "POST",
        "/robots",
        Some(json!({
            "name": "keeper",
            "permissions": [
                {"namespace": {"kind": "system"}, "access": [{"resource": "robot", "action": "update"}]},
                grants("team", &["pull"]),
            ],
        })),
    );
    let keeper = As::Basic("robot$keeper", keeper["secret"].as_str().unwrap());
    let (fid, cid) = (
        creator["id"].as_i64().unwrap(),
        child["id"].as_i64().unwrap(),
    );
    api.fails(keeper, "POST", &format!("/robots/{fid}/secret"), None, 403);
    api.fails(
        keeper,
        "PATCH",
        &format!("/robots/{fid}"),
        Some(json!({"disabled": true})),
        403,
    );
    let child_rotated = api.ok(keeper, "POST", &format!("/robots/{cid}/secret"), None);
    assert!(child_rotated["secret"].is_string());
    // …and a robot rotates its own secret.
    let own = api.ok(factory, "POST", &format!("/robots/{fid}/secret"), None);
    let factory_secret = own["secret"].as_str().unwrap().to_string();
    api.ok(
        As::Basic("robot$factory", &factory_secret),
        "GET",
        "/me",
        None,
    );
    api.fails(factory, "GET", "/me", None, 401);

    // Disabled: refused; enabled again: accepted.
    let v = api.ok(
        ADMIN,
        "PATCH",
        &format!("/robots/{id}"),
        Some(json!({"disabled": true, "description": "paused"})),
    );
    assert_eq!(
        (v["disabled"].as_bool(), v["description"].as_str()),
        (Some(true), Some("paused"))
    );
    assert_eq!(api.push_status(robot, "team"), 401);
    api.ok(
        ADMIN,
        "PATCH",
        &format!("/robots/{id}"),
        Some(json!({"disabled": false})),
    );
    assert_eq!(api.push_status(robot, "team"), 202);

    // Expired: refused.
    let past = "2000-01-01T00:00:00Z";
    let v = api.ok(
        ADMIN,
        "PATCH",
        &format!("/robots/{id}"),
        Some(json!({"expires_at": past})),
    );
    assert_eq!(v["expires_at"], "2000-01-01T00:00:00.000Z");
    assert_eq!(api.push_status(robot, "team"), 401);
    api.fails(robot, "GET", "/me", None, 401);
    api.ok(
        ADMIN,
        "PATCH",
        &format!("/robots/{id}"),
        Some(json!({"expires_at": null})),
    );
    assert_eq!(api.push_status(robot, "team"), 202);

    // Narrowing permissions takes effect at once.
    api.ok(
        ADMIN,
        "PATCH",
        &format!("/robots/{id}"),
        Some(json!({"permissions": [grants("team", &["pull"])]})),
    );
    assert_eq!(api.push_status(robot, "team"), 403);
    assert_eq!(api.pull_status(robot, "team", &team_blob), 200);

    // Rotation: the new secret works, the old one does not.
    let rotated = api.ok(ADMIN, "POST", &format!("/robots/{id}/secret"), None);
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    assert_eq!(api.pull_status(robot, "team", &team_blob), 401);
    let robot2 = As::Basic(&name, &new_secret);
    assert_eq!(api.pull_status(robot2, "team", &team_blob), 200);

    // Deleted: gone.
    api.ok(ADMIN, "DELETE", &format!("/robots/{id}"), None);
    assert_eq!(api.pull_status(robot2, "team", &team_blob), 401);
    api.fails(ADMIN, "GET", &format!("/robots/{id}"), None, 404);

    // Deleting a project removes its robots.
    let r = api.ok(ADMIN, "POST", "/projects", Some(json!({"name": "temp"})));
    assert_eq!(r["name"], "temp");
    let t = api.ok(
        ADMIN,
        "POST",
        "/projects/temp/robots",
        Some(json!({"name": "t", "permissions": [grants("temp", &["pull"])]})),
    );
    api.ok(ADMIN, "DELETE", "/projects/temp", None);
    let tname = t["name"].as_str().unwrap();
    api.fails(
        As::Basic(tname, t["secret"].as_str().unwrap()),
        "GET",
        "/me",
        None,
        401,
    );
}

#[test]
fn personal_access_tokens_are_scoped_shown_once_and_revocable() {
    let berth = Berth::start();
    let api = Api::new(&berth);
    api.create_user("alice", "alice-password-1");
    let alice = As::Basic("alice", "alice-password-1");
    api.ok(ADMIN, "POST", "/projects", Some(json!({"name": "team"})));
    api.ok(ADMIN, "POST", "/projects", Some(json!({"name": "other"})));
    api.ok(
        ADMIN,
        "POST",
        "/projects/team/members",
        Some(json!({"user": "alice", "role": "developer"})),
    );
    let blob = api.seed_blob("team");

    let full = api.ok(
        alice,
        "POST",
        "/users/me/tokens",
        Some(json!({"name": "laptop", "expires_in_days": 30})),
    );
    let full_secret = full["secret"].as_str().unwrap().to_string();
    assert!(full_secret.starts_with("berth_pat_"));
    assert!(full["scopes"].is_null());
    let scoped = api.ok(
        alice,
        "POST",
        "/users/me/tokens",
        Some(
            json!({"name": "ci-pull", "expires_in_days": 1, "scopes": [grants("team", &["pull"])]}),
        ),
    );
    let scoped_secret = scoped["secret"].as_str().unwrap().to_string();
    let listed = api.ok(alice, "GET", "/users/me/tokens", None);
    assert_eq!(names(&listed), ["laptop", "ci-pull"]);
    assert!(
        !listed.to_string().contains("berth_pat_"),
        "secrets are shown once"
    );
    api.fails(
        alice,
        "POST",
        "/users/me/tokens",
        Some(json!({"name": "laptop", "expires_in_days": 3})),
        409,
    );
    for days in [0, 366] {
        let m = api.fails(
            alice,
            "POST",
            "/users/me/tokens",
            Some(json!({"name": "x", "expires_in_days": days})),
            400,
        );
        assert!(m.starts_with("expires_in_days:"), "{m}");
    }
    let m = api.fails(
        alice,
        "POST",
        "/users/me/tokens",
        Some(json!({"name": "x", "expires_in_days": 3, "scopes": [grants("other", &["pull"])]})),
        400,
    );
    assert!(m.contains("not a member"), "{m}");
    let m = api.fails(
        alice,
        "POST",
        "/users/me/tokens",
        Some(json!({"name": "x"})),
        400,
    );
    assert!(m.contains("expires_in_days"), "{m}");

    // The full token does what alice may; the scoped one only pulls.
    let full_as = As::Basic("alice", &full_secret);
    let scoped_as = As::Basic("alice", &scoped_secret);
    assert_eq!(api.push_status(full_as, "team"), 202);
    assert_eq!(api.pull_status(scoped_as, "team", &blob), 200);
    assert_eq!(api.push_status(scoped_as, "team"), 403);
    let me = api.ok(scoped_as, "GET", "/me", None);
    assert_eq!(me["auth_method"], "personal_token");
    assert_eq!(me["permissions"], json!([grants("team", &["pull"])]));
    // The token belongs to alice: another name does not work with it.
    api.fails(As::Basic("admin", &full_secret), "GET", "/me", None, 401);
    // A token cannot make tokens.
    let m = api.fails(
        full_as,
        "POST",
        "/users/me/tokens",
        Some(json!({"name": "more", "expires_in_days": 365})),
        403,
    );
    assert!(m.contains("password"), "{m}");
    // last_used_at is recorded.
    let listed = api.ok(alice, "GET", "/users/me/tokens", None);
    assert!(listed["items"][0]["last_used_at"].is_string(), "{listed}");

    // Revoked: stops working at once.
    let id = full["id"].as_i64().unwrap();
    api.ok(alice, "DELETE", &format!("/users/me/tokens/{id}"), None);
    assert_eq!(api.push_status(full_as, "team"), 401);
    api.fails(
        alice,
        "DELETE",
        &format!("/users/me/tokens/{id}"),
        None,
        404,
    );
    // Somebody else's token id is not theirs to delete.
    let sid = scoped["id"].as_i64().unwrap();
    api.fails(
        ADMIN,
        "DELETE",
        &format!("/users/me/tokens/{sid}"),
        None,
        404,
    );
    assert_eq!(api.pull_status(scoped_as, "team", &blob), 200);
}

#[test]
fn the_audit_log_records_changes_and_filters_them() {
    let berth = Berth::start();
    let api = Api::new(&berth);
    api.create_user("pa", "pa-password-1");
    api.create_user("dev", "dev-password-1");
    let pa = As::Basic("pa", "pa-password-1");
    let dev = As::Basic("dev", "dev-password-1");
    api.ok(ADMIN, "POST", "/projects", Some(json!({"name": "team"})));
    api.ok(ADMIN, "POST", "/projects", Some(json!({"name": "other"})));
    api.ok(
        ADMIN,
        "POST",
        "/projects/team/members",
        Some(json!({"user": "pa", "role": "project_admin"})),
    );
    api.ok(
        pa,
        "POST",
        "/projects/team/members",
        Some(json!({"user": "dev", "role": "developer"})),
    );
    api.ok(
        pa,
        "PUT",
        "/projects/team/members/user/dev",
        Some(json!({"role": "maintainer"})),
    );
    let robot = api.ok(
        pa,
        "POST",
        "/projects/team/robots",
        Some(json!({"name": "ci", "permissions": [grants("team", &["pull"])]})),
    );
    let rid = robot["id"].as_i64().unwrap();
    api.ok(pa, "POST", &format!("/robots/{rid}/secret"), None);
    api.ok(
        pa,
        "PATCH",
        &format!("/robots/{rid}"),
        Some(json!({"disabled": true})),
    );
    api.ok(pa, "DELETE", &format!("/robots/{rid}"), None);
    api.ok(pa, "DELETE", "/projects/team/members/user/dev", None);
    let tok = api.ok(
        dev,
        "POST",
        "/users/me/tokens",
        Some(json!({"name": "t", "expires_in_days": 1})),
    );
    api.ok(
        dev,
        "DELETE",
        &format!("/users/me/tokens/{}", tok["id"]),
        None,
    );
    api.ok(
        dev,
        "PUT",
        "/users/dev/password",
        Some(json!({"old_password": "dev-password-1", "new_password": "dev-password-2"})),
    );
    let dev = As::Basic("dev", "dev-password-2");
    api.ok(
        ADMIN,
        "PATCH",
        "/projects/other",
        Some(json!({"public": true})),
    );
    api.ok(ADMIN, "POST", "/system/keys/rotate", None);

    let all = api.ok(ADMIN, "GET", "/audit?limit=1000", None);
    let items = all["items"].as_array().unwrap();
    let has = |actor: &str, action: &str, project: Option<&str>| {
        items.iter().any(|e| {
            e["actor"] == actor
                && e["action"] == action
                && e["project"].as_str() == project
                && e["result"] == "success"
        })
    };
    for (actor, action, project) in [
        ("admin", "user.create", None),
        ("admin", "project.create", Some("team")),
        ("admin", "member.add", Some("team")),
        ("pa", "member.add", Some("team")),
        ("pa", "member.update", Some("team")),
        ("pa", "member.remove", Some("team")),
        ("pa", "robot.create", Some("team")),
        ("pa", "robot.rotate", Some("team")),
        ("pa", "robot.update", Some("team")),
        ("pa", "robot.delete", Some("team")),
        ("dev", "token.create", None),
        ("dev", "token.delete", None),
        ("dev", "user.password", None),
        ("admin", "project.update", Some("other")),
        ("admin", "keys.rotate", None),
    ] {
        assert!(
            has(actor, action, project),
            "{actor} {action} {project:?} missing from {all}"
        );
    }
    // Newest first, RFC 3339 times, a source address.
    let t0 = items[0]["time_ms"].as_i64().unwrap();
    let t1 = items[items.len() - 1]["time_ms"].as_i64().unwrap();
    assert!(t0 >= t1);
    assert!(items[0]["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(items[0]["source_addr"], "127.0.0.1");

    // Filters.
    let only = |q: &str| {
        api.ok(ADMIN, "GET", &format!("/audit?{q}"), None)["items"]
            .as_array()
            .unwrap()
            .clone()
    };
    let creates = only("action=robot.create");
    assert!(!creates.is_empty() && creates.iter().all(|e| e["action"] == "robot.create"));
    assert!(only("actor=pa").iter().all(|e| e["actor"] == "pa"));
    assert!(
        only("project=other")
            .iter()
            .all(|e| e["project"] == "other")
    );
    assert!(only("since=2999-01-01T00:00:00Z").is_empty());
    assert!(
        only(&format!("until={t1}"))
            .iter()
            .all(|e| e["time_ms"].as_i64().unwrap() < t1)
    );
    let m = api.fails(ADMIN, "GET", "/audit?since=yesterday", None, 400);
    assert!(m.starts_with("since:"), "{m}");
    // Paging with `next` visits every event once.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let q = match &after {
            Some(a) => format!("/audit?actor=pa&limit=2&after={a}"),
            None => "/audit?actor=pa&limit=2".into(),
        };
        let page = api.ok(ADMIN, "GET", &q, None);
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_i64().unwrap()),
        );
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    let direct: Vec<i64> = only("actor=pa&limit=1000")
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(seen, direct);

    // A project admin reads their project's events only; others nothing.
    let mine = api.ok(pa, "GET", "/audit?project=team", None);
    assert!(
        mine["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["project"] == "team")
    );
    assert!(!mine["items"].as_array().unwrap().is_empty());
    api.fails(pa, "GET", "/audit", None, 403);
    api.fails(pa, "GET", "/audit?project=other", None, 403);
    api.ok(
        ADMIN,
        "POST",
        "/projects/team/members",
        Some(json!({"user": "dev", "role": "developer"})),
    );
    api.fails(dev, "GET", "/audit?project=team", None, 403);
}

#[test]
fn key_rotation_keeps_earlier_tokens_valid() {
    let berth = Berth::start();
    let api = Api::new(&berth);
    let token_of = || {
        http_anonymous(
            "GET",
            &format!(
                "{}/service/token?service=berth&scope=repository:library/x:pull",
                berth.url
            ),
            &[("Authorization", &basic(ADMIN_USER, ADMIN_PASSWORD))],
            None,
        )
        .json()["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let kid_of = |token: &str| {
        let header = token.split('.').next().unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap();
        serde_json::from_slice::<Value>(&bytes).unwrap()["kid"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let jwks_kids = || -> Vec<String> {
        let v = http_anonymous("GET", &format!("{}/service/jwks", berth.url), &[], None).json();
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect()
    };
    let before = token_of();
    assert_eq!(jwks_kids().len(), 1);

    api.create_user("alice", "alice-password-1");
    api.fails(
        As::Basic("alice", "alice-password-1"),
        "POST",
        "/system/keys/rotate",
        None,
        403,
    );
    let rotated = api.ok(ADMIN, "POST", "/system/keys/rotate", None);
    let new_kid = rotated["kid"].as_str().unwrap().to_string();
    assert_eq!(rotated["retiring"], 1);
    assert!(rotated["retire_at"].is_string());

    let kids = jwks_kids();
    assert_eq!(kids.len(), 2, "{kids:?}");
    assert!(kids.contains(&new_kid) && kids.contains(&kid_of(&before)));
    // The token issued before still verifies; new ones use the new key.
    assert_eq!(
        api.raw(As::Bearer(&before), "GET", "/v2/", None).status,
        200
    );
    let after = token_of();
    assert_eq!(kid_of(&after), new_kid);
    assert_eq!(api.raw(As::Bearer(&after), "GET", "/v2/", None).status, 200);
}

/// Runs `berth admin` against `berth` as the admin.
fn admin_cli(berth: &Berth, args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("admin")
        .args(["--url", &berth.url, "--user", ADMIN_USER])
        .args(args)
        .env("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env_remove("BERTH_USER_PASSWORD")
        .envs(envs.iter().copied())
        .output()
        .expect("run berth admin")
}

fn stdout_ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "berth admin failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn the_admin_cli_manages_users_projects_and_robots() {
    let berth = Berth::start();
    let api = Api::new(&berth);

    let out = stdout_ok(&admin_cli(
        &berth,
        &["users", "create", "bob", "--email", "bob@example.org"],
        &[("BERTH_USER_PASSWORD", "bob-password-1")],
    ));
    assert!(out.contains("user bob created"), "{out}");
    api.ok(As::Basic("bob", "bob-password-1"), "GET", "/me", None);
    let out = stdout_ok(&admin_cli(&berth, &["users", "list"], &[]));
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("EMAIL"),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("bob ") && l.contains("bob@example.org")),
        "{out}"
    );
    let json: Value = serde_json::from_str(&stdout_ok(&admin_cli(
        &berth,
        &["--json", "users", "list"],
        &[],
    )))
    .unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);

    // Errors: the API's message, a non-zero exit.
    let failed = admin_cli(
        &berth,
        &["users", "create", "bob"],
        &[("BERTH_USER_PASSWORD", "bob-password-1")],
    );
    assert!(!failed.status.success());
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(
        err.contains("409 CONFLICT") && err.contains("already exists"),
        "{err}"
    );
    let failed = admin_cli(&berth, &["users", "create", "carol"], &[]);
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("BERTH_USER_PASSWORD"));

    // The settings, and the directory check without a directory.
    let settings: Value =
        serde_json::from_str(&stdout_ok(&admin_cli(&berth, &["settings"], &[]))).unwrap();
    assert_eq!(settings["auth"]["service"], json!("berth"));
    assert_eq!(settings["storage"]["backend"], json!("fs"));
    assert_eq!(settings["metadata"]["engine"], json!("sqlite"));
    assert_eq!(settings["auth"]["ldap"], Value::Null);
    let out = stdout_ok(&admin_cli(&berth, &["ldap", "test"], &[]));
    assert!(out.contains("LDAP is not configured"), "{out}");

    stdout_ok(&admin_cli(&berth, &["projects", "create", "team"], &[]));
    let out = stdout_ok(&admin_cli(
        &berth,
        &["members", "add", "team", "--user", "bob", "--role", "guest"],
        &[],
    ));
    assert!(out.contains("bob is guest"), "{out}");
    // Adding again changes the role.
    let out = stdout_ok(&admin_cli(
        &berth,
        &[
            "members",
            "add",
            "team",
            "--user",
            "bob",
            "--role",
            "developer",
        ],
        &[],
    ));
    assert!(out.contains("bob is developer"), "{out}");
    assert_eq!(
        api.push_status(As::Basic("bob", "bob-password-1"), "team"),
        202
    );

    // A robot: the secret is printed once and works on /v2.
    let out = stdout_ok(&admin_cli(
        &berth,
        &[
            "robots",
            "create",
            "ci",
            "--project",
            "team",
            "--access",
            "push",
            "--expires-in-days",
            "-1",
        ],
        &[],
    ));
    assert!(
        out.contains("robot$team+ci") && out.contains("expires never"),
        "{out}"
    );
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .expect("secret line")
        .trim()
        .to_string();
    assert_eq!(
        api.push_status(As::Basic("robot$team+ci", &secret), "team"),
        202
    );
    let out = stdout_ok(&admin_cli(
        &berth,
        &["robots", "list", "--project", "team"],
        &[],
    ));
    assert!(
        out.contains("robot$team+ci") && out.contains("team=repository:pull,repository:push"),
        "{out}"
    );
    assert!(!out.contains(&secret));
    let id = api.ok(ADMIN, "GET", "/projects/team/robots", None)["items"][0]["id"].to_string();
    let rotated: Value = serde_json::from_str(&stdout_ok(&admin_cli(
        &berth,
        &["--json", "robots", "rotate", &id],
        &[],
    )))
    .unwrap();
    assert_eq!(
        api.push_status(As::Basic("robot$team+ci", &secret), "team"),
        401
    );
    assert_eq!(
        api.push_status(
            As::Basic("robot$team+ci", rotated["secret"].as_str().unwrap()),
            "team"
        ),
        202
    );
    stdout_ok(&admin_cli(&berth, &["robots", "delete", &id], &[]));

    // --password-stdin; tokens; the audit log; keys.
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args([
            "admin",
            "--url",
            &berth.url,
            "--user",
            "bob",
            "--password-stdin",
            "tokens",
            "create",
            "laptop",
            "--expires-in-days",
            "7",
        ])
        .env_remove("BERTH_ADMIN_PASSWORD")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"bob-password-1\n")
        .unwrap();
    let out = stdout_ok(&child.wait_with_output().unwrap());
    assert!(
        out.contains("token laptop") && out.contains("secret: berth_pat_"),
        "{out}"
    );
    let out = stdout_ok(&admin_cli(
        &berth,
        &["audit", "--action", "robot.create"],
        &[],
    ));
    assert!(out.contains("robot$team+ci"), "{out}");
    let out = stdout_ok(&admin_cli(&berth, &["keys", "rotate"], &[]));
    assert!(out.contains("signs from now on"), "{out}");
    stdout_ok(&admin_cli(
        &berth,
        &["members", "remove", "team", "--user", "bob"],
        &[],
    ));
    assert_eq!(
        api.push_status(As::Basic("bob", "bob-password-1"), "team"),
        403
    );
    stdout_ok(&admin_cli(&berth, &["users", "delete", "bob"], &[]));
    api.fails(As::Basic("bob", "bob-password-1"), "GET", "/me", None, 401);
}

/// Audit forwarding: every event also goes, as one JSON line, to the file
/// `BERTH_AUTH_AUDIT_FILE` names and, in an RFC 5424 message (facility
/// "log audit"), to the syslog socket `BERTH_AUTH_AUDIT_SYSLOG` names (here
/// a datagram socket the test listens on, as `/dev/log` would be).
#[test]
fn audit_events_are_forwarded_to_a_file_and_syslog() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let socket_path = dir.path().join("log.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let berth = Berth::start_env(
        &dir.path().join("data"),
        "127.0.0.1:0",
        &[],
        &[
            (
                "BERTH_AUTH_AUDIT_FILE".into(),
                file.to_str().unwrap().into(),
            ),
            (
                "BERTH_AUTH_AUDIT_SYSLOG".into(),
                socket_path.to_str().unwrap().into(),
            ),
        ],
    );
    let api = Api::new(&berth);
    api.ok(
        ADMIN,
        "POST",
        "/projects",
        Some(json!({"name": "forwarded", "public": false})),
    );
    api.fails(
        As::Basic("admin", "not-the-password"),
        "GET",
        "/me",
        None,
        401,
    );

    // The file: JSON lines, written behind the database (poll).
    let wanted = |e: &Value| {
        (e["action"] == json!("project.create") && e["actor"] == json!("admin"))
            || (e["action"] == json!("login") && e["result"] == json!("failure"))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let events: Vec<Value> = loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let events: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        if events.iter().filter(|e| wanted(e)).count() >= 2 || std::time::Instant::now() > deadline
        {
            break events;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(
        events.iter().filter(|e| wanted(e)).count(),
        2,
        "the file holds the project creation and the failed login: {events:?}"
    );
    let created = events
        .iter()
        .find(|e| e["action"] == json!("project.create"))
        .unwrap();
    assert_eq!(created["result"], json!("success"));
    assert!(created["time_ms"].as_i64().unwrap() > 0);
    assert!(
        !std::fs::read_to_string(&file)
            .unwrap()
            .contains("not-the-password"),
        "no password in the audit trail"
    );

    // Syslog: the same events, one datagram each.
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 65536];
    while !(seen
        .iter()
        .any(|m: &String| m.contains("\"project.create\""))
        && seen
            .iter()
            .any(|m| m.contains("\"login\"") && m.contains("\"failure\"")))
    {
        let n = socket.recv(&mut buf).expect("a syslog message within 10 s");
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let message = seen
        .iter()
        .find(|m| m.contains("\"project.create\""))
        .unwrap();
    assert!(
        message.starts_with("<110>1 ") && message.contains(" berth - audit - {"),
        "{message}"
    );
    assert!(seen.iter().all(|m| !m.contains("not-the-password")));
}
