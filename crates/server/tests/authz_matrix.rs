//! The authorization matrix: every endpoint of `/v2`, `/service/token` and
//! `/api/v1`, asked by every kind of caller (anonymous, each project role,
//! robots with and without the permission, a member of another project,
//! the system admin) against the real binary. Each cell is judged allowed
//! or denied and compared with an expectation written by hand from
//! Harbor's documented role permissions (`rbac_role.go`, anchors §6.2), not
//! from Berth's own role table. The test prints the whole table and fails
//! on any unexpected allow, unexpected deny, or a cell whose answer was not
//! one the fixture arranged (so the cell would not prove anything).
//!
//! `/v2` rows run twice: with Basic credentials and with a bearer token
//! from `/service/token` asked for the scopes the request needs.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine as _;
use common::{Berth, digest_of, service_env};
use serde_json::{Value, json};

const ADMIN_PASSWORD: &str = "authz-matrix-admin-1";

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

// ---------------------------------------------------------------------------
// The columns.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Who {
    Anonymous,
    LimitedGuest,
    Guest,
    Developer,
    Maintainer,
    ProjectAdmin,
    /// `robot$p+full`: pull, push and delete in `p`.
    RobotFull,
    /// `robot$p+pullonly`: pull in `p`.
    RobotPullOnly,
    /// `robot$q+ci`: pull and push in `q`, nothing in `p`.
    RobotOther,
    /// `other`: developer of `q`, nothing in `p`.
    OtherMember,
    Admin,
}

use Who::*;

const COLUMNS: [Who; 11] = [
    Anonymous,
    LimitedGuest,
    Guest,
    Developer,
    Maintainer,
    ProjectAdmin,
    RobotFull,
    RobotPullOnly,
    RobotOther,
    OtherMember,
    Admin,
];

impl Who {
    fn label(self) -> &'static str {
        match self {
            Anonymous => "anon",
            LimitedGuest => "l-guest",
            Guest => "guest",
            Developer => "dev",
            Maintainer => "maint",
            ProjectAdmin => "p-admin",
            RobotFull => "r-full",
            RobotPullOnly => "r-pull",
            RobotOther => "r-other",
            OtherMember => "other",
            Admin => "admin",
        }
    }

    /// The account name the column logs in as.
    fn account(self) -> Option<&'static str> {
        match self {
            Anonymous => None,
            LimitedGuest => Some("lguest"),
            Guest => Some("guest"),
            Developer => Some("developer"),
            Maintainer => Some("maintainer"),
            ProjectAdmin => Some("padmin"),
            RobotFull => Some("robot$p+full"),
            RobotPullOnly => Some("robot$p+pullonly"),
            RobotOther => Some("robot$q+ci"),
            OtherMember => Some("other"),
            Admin => Some("admin"),
        }
    }
}

// ---------------------------------------------------------------------------
// Expectations, by hand. Harbor's `rolePoliciesMap`
// (src/common/rbac/project/rbac_role.go) and the role matrix of anchors
// §6.2: every member role pulls (limited guest included); push from
// developer; deleting artifacts from maintainer; listing members and robots
// and the project's logs from guest; changing the project, its members and
// its robots for the project admin; users, groups, the catalog, system
// robots, the whole audit log and the signing keys for the system admin
// only. Lifecycle: every member role reads the quota and lists artifacts;
// tag retention (policy, runs, history) from developer; immutable tag
// rules from maintainer; setting quotas and garbage collection for the
// system admin only. Robots hold exactly their grants. `other` and
// `robot$q+ci` hold nothing in `p`; anonymous nothing in a private project.

const EVERYBODY: &[Who] = &COLUMNS;
const AUTHENTICATED: &[Who] = &[
    LimitedGuest,
    Guest,
    Developer,
    Maintainer,
    ProjectAdmin,
    RobotFull,
    RobotPullOnly,
    RobotOther,
    OtherMember,
    Admin,
];
/// User accounts (robots have no personal access tokens, in Harbor either).
const USERS: &[Who] = &[
    LimitedGuest,
    Guest,
    Developer,
    Maintainer,
    ProjectAdmin,
    OtherMember,
    Admin,
];
/// `repository:pull` in `p`.
const PULL_P: &[Who] = &[
    LimitedGuest,
    Guest,
    Developer,
    Maintainer,
    ProjectAdmin,
    RobotFull,
    RobotPullOnly,
    Admin,
];
/// `repository:push` in `p`.
const PUSH_P: &[Who] = &[Developer, Maintainer, ProjectAdmin, RobotFull, Admin];
/// Deleting manifests and blobs in `p` (`artifact:delete`).
const DELETE_P: &[Who] = &[Maintainer, ProjectAdmin, RobotFull, Admin];
/// Reading project `p` itself (`self:read`), its quota (`quota:read`) and
/// its artifacts (`artifact:list`): every member role. Robots hold
/// repository (and, `robot$p+full`, `artifact:delete`) grants only.
const READ_P: &[Who] = &[
    LimitedGuest,
    Guest,
    Developer,
    Maintainer,
    ProjectAdmin,
    Admin,
];
/// `member:list`, `robot:list`, `robot:read`, `log:list` in `p`.
const GUEST_UP_P: &[Who] = &[Guest, Developer, Maintainer, ProjectAdmin, Admin];
/// `tag-retention:create/read/update/delete/list/operate` in `p`.
const DEVELOPER_UP_P: &[Who] = &[Developer, Maintainer, ProjectAdmin, Admin];
/// `immutable-tag:create/update/delete/list` in `p`.
const MAINTAINER_UP_P: &[Who] = &[Maintainer, ProjectAdmin, Admin];
/// Restoring from `p`'s trash: `artifact:create` and `artifact:delete`
/// (`robot$p+full` holds only the second).
const RESTORE_P: &[Who] = &[Maintainer, ProjectAdmin, Admin];
/// `self:update`, `member:create/update/delete`, `robot:create/update/delete`.
const PROJECT_ADMIN_P: &[Who] = &[ProjectAdmin, Admin];
/// System-level permissions.
const SYSTEM_ADMIN: &[Who] = &[Admin];
/// Whoever sees project `q` in a listing.
const SEES_Q: &[Who] = &[RobotOther, OtherMember, Admin];

/// Cells where Berth is deliberately stricter than Harbor's table, as its
/// code documents: the expectation stays Harbor's and is printed as such;
/// these cells are then expected denied. Only allow → deny is accepted here
/// (checked), so this list can never hide an unexpected allow. Remove an
/// entry to hold Berth to Harbor's rule instead.
const STRICTER_THAN_HARBOR: &[(&str, Who, &str)] = &[
    (
        "DELETE /api/v1/projects/p",
        ProjectAdmin,
        "deleting a project is system-level in Berth (access::manage::projects); \
         Harbor's rbac_role.go gives projectAdmin self:delete",
    ),
    (
        "GET /api/v1/audit?project=p",
        Guest,
        "Berth shows a project's audit events to its project admins only \
         (access::manage::audit_log); Harbor's log:list is guest and up",
    ),
    ("GET /api/v1/audit?project=p", Developer, "as for guest"),
    ("GET /api/v1/audit?project=p", Maintainer, "as for guest"),
];

// ---------------------------------------------------------------------------
// Cells and the table.

/// What a cell allowed: `A` for a plain allow; the token's actions; `push`
/// (a plain upload session) and `mount` for a cross-repository mount;
/// `listed` for a listing.
type Caps = BTreeSet<String>;

fn caps(items: &[&str]) -> Caps {
    items.iter().map(|s| s.to_string()).collect()
}

/// `{A}` for the columns in `allowed`, `{}` for the others.
fn allowed(who_may: &'static [Who]) -> impl Fn(Who) -> Caps {
    move |who| {
        if who_may.contains(&who) {
            caps(&["A"])
        } else {
            Caps::new()
        }
    }
}

/// What a request showed.
struct Seen {
    caps: Caps,
    status: u16,
    /// Set when the answer was not one the fixture arranged, so the cell
    /// proves nothing (or an anonymous `/v2` denial lacked its challenge).
    bad: Option<String>,
}

struct Cell {
    expected: Caps,
    /// Harbor's expectation when [`STRICTER_THAN_HARBOR`] overrode it.
    harbor: Option<Caps>,
    seen: Seen,
}

impl Cell {
    fn unexpected_allow(&self) -> bool {
        !self.seen.caps.is_subset(&self.expected)
    }

    fn unexpected_deny(&self) -> bool {
        !self.expected.is_subset(&self.seen.caps)
    }

    fn text(&self) -> String {
        let mark = if self.unexpected_allow() {
            "!"
        } else if self.unexpected_deny() {
            "?"
        } else if self.seen.bad.is_some() {
            "~"
        } else if self.harbor.is_some() {
            "*"
        } else {
            " "
        };
        format!("{}{mark}{}", short(&self.expected), self.seen.status)
    }
}

/// `A`, `D`, or the abbreviated capabilities (`pl+ps+dl`, `ps+mt`, `L`).
fn short(c: &Caps) -> String {
    if c.is_empty() {
        return "D".into();
    }
    c.iter()
        .map(|s| match s.as_str() {
            "pull" => "pl".to_string(),
            "push" => "ps".to_string(),
            "delete" => "dl".to_string(),
            "mount" => "mt".to_string(),
            "listed" => "L".to_string(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join("+")
}

struct Row {
    name: String,
    cells: Vec<Cell>,
}

#[derive(Default)]
struct Matrix {
    rows: Vec<Row>,
}

impl Matrix {
    /// Runs one row: every column asks once.
    fn row(
        &mut self,
        name: impl Into<String>,
        expect: impl Fn(Who) -> Caps,
        mut run: impl FnMut(Who) -> Seen,
    ) {
        let name = name.into();
        let mut cells = Vec::new();
        for who in COLUMNS {
            let mut expected = expect(who);
            let mut harbor = None;
            if STRICTER_THAN_HARBOR
                .iter()
                .any(|(row, w, _)| *row == name && *w == who)
            {
                assert!(
                    !expected.is_empty(),
                    "STRICTER_THAN_HARBOR may only turn an allow into a deny: {name} × {}",
                    who.label()
                );
                harbor = Some(std::mem::take(&mut expected));
            }
            cells.push(Cell {
                expected,
                harbor,
                seen: run(who),
            });
        }
        self.rows.push(Row { name, cells });
    }

    /// The table and its mismatches, with the counts of unexpected allows,
    /// unexpected denies and answers not arranged.
    fn report(&self) -> (String, usize, usize, usize) {
        let width = self.rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
        let mut out = String::new();
        out.push_str(&format!("{:width$}", "", width = width));
        for who in COLUMNS {
            out.push_str(&format!(" {:>12}", who.label()));
        }
        out.push('\n');
        for row in &self.rows {
            out.push_str(&format!("{:width$}", row.name, width = width));
            for cell in &row.cells {
                out.push_str(&format!(" {:>12}", cell.text()));
            }
            out.push('\n');
        }
        out.push_str(
            "\nlegend: expected (A allow, D deny, or what a token/mount/listing should hold), \
             then the status seen; ! unexpected allow, ? unexpected deny, ~ answer not arranged, \
             * Berth stricter than Harbor by design\n",
        );
        let (mut allows, mut denies, mut bad, mut total) = (0, 0, 0, 0);
        let mut details = String::new();
        for row in &self.rows {
            for (who, cell) in COLUMNS.iter().zip(&row.cells) {
                total += 1;
                let what = if cell.unexpected_allow() {
                    allows += 1;
                    Some("UNEXPECTED ALLOW")
                } else if cell.unexpected_deny() {
                    denies += 1;
                    Some("unexpected deny")
                } else {
                    None
                };
                if let Some(what) = what {
                    details.push_str(&format!(
                        "{what}: {} × {}: expected {}, seen {} ({}){}\n",
                        row.name,
                        who.label(),
                        short(&cell.expected),
                        short(&cell.seen.caps),
                        cell.seen.status,
                        cell.seen
                            .bad
                            .as_deref()
                            .map(|b| format!(": {b}"))
                            .unwrap_or_default()
                    ));
                } else if let Some(b) = &cell.seen.bad {
                    bad += 1;
                    details.push_str(&format!(
                        "answer not arranged: {} × {}: {b}\n",
                        row.name,
                        who.label()
                    ));
                }
                if let Some(h) = &cell.harbor {
                    details.push_str(&format!(
                        "stricter than Harbor (by design): {} × {}: Harbor {}, Berth {} ({})\n",
                        row.name,
                        who.label(),
                        short(h),
                        short(&cell.expected),
                        STRICTER_THAN_HARBOR
                            .iter()
                            .find(|(r, w, _)| *r == row.name && w == who)
                            .map(|(_, _, why)| *why)
                            .unwrap_or_default()
                    ));
                }
            }
        }
        out.push('\n');
        out.push_str(&details);
        out.push_str(&format!(
            "\nrows: {}, columns: {}, cells: {total}; unexpected allows: {allows}, \
             unexpected denies: {denies}, answers not arranged: {bad}\n",
            self.rows.len(),
            COLUMNS.len()
        ));
        (out, allows, denies, bad)
    }
}

// ---------------------------------------------------------------------------
// HTTP.

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn text(&self) -> String {
        let t = String::from_utf8_lossy(&self.body);
        t.chars().take(300).collect()
    }
}

/// How a `/v2` request authenticates.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    Basic,
    Bearer,
}

impl Pass {
    fn label(self) -> &'static str {
        match self {
            Pass::Basic => "basic",
            Pass::Bearer => "bearer",
        }
    }
}

/// The fixture and a client.
struct World {
    url: String,
    client: reqwest::blocking::Client,
    /// Passwords and robot secrets, per column.
    secrets: Vec<(Who, String)>,
    config: (String, Vec<u8>),
    layer: (String, Vec<u8>),
    manifest: (String, Vec<u8>),
    /// A layer of `q/app` only.
    q_layer: String,
    /// `/v2/p/app/blobs/uploads/ID` of a session the admin opened.
    session: String,
    robot_pullonly_id: i64,
    spare_robot_id: i64,
    group_id: i64,
    /// A disabled immutable tag rule of `p` that selects nothing.
    immutable_rule_id: i64,
    /// A dry retention run of `p`.
    retention_run_id: i64,
}

impl World {
    fn send(
        &self,
        auth: Option<&str>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Resp {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let url = format!("{}{path}", self.url);
        let mut req = self.client.request(method.clone(), &url);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .unwrap_or_else(|e| panic!("{method} {url}: reading the body: {e}"))
            .to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    fn secret(&self, who: Who) -> &str {
        self.secrets
            .iter()
            .find(|(w, _)| *w == who)
            .map(|(_, s)| s.as_str())
            .unwrap_or_else(|| panic!("no secret for {}", who.label()))
    }

    /// The column's Basic `Authorization` value (none for anonymous).
    fn basic_of(&self, who: Who) -> Option<String> {
        who.account().map(|name| basic(name, self.secret(who)))
    }

    /// A management request as `who`, with a JSON body.
    fn v1(&self, who: Who, method: &str, path: &str, body: Option<Value>) -> Resp {
        let auth = self.basic_of(who);
        let (headers, body): (&[(&str, &str)], _) = match body {
            Some(b) => (
                &[("Content-Type", "application/json")],
                Some(serde_json::to_vec(&b).expect("JSON")),
            ),
            None => (&[], None),
        };
        self.send(
            auth.as_deref(),
            method,
            &format!("/api/v1{path}"),
            headers,
            body,
        )
    }

    /// A management request as the admin that must succeed.
    fn admin_ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let r = self.v1(Admin, method, path, body);
        assert!(
            (200..300).contains(&r.status),
            "setup: {method} /api/v1{path}: {} {}",
            r.status,
            r.text()
        );
        r.json()
    }

    /// `GET /service/token` as `who` for `scopes`: status and token.
    fn token(&self, who: Who, scopes: &[String]) -> (Resp, Option<String>) {
        let query: Vec<String> = scopes
            .iter()
            .map(|s| format!("scope={}", urlencode(s)))
            .collect();
        let path = if query.is_empty() {
            "/service/token".to_string()
        } else {
            format!("/service/token?{}", query.join("&"))
        };
        let r = self.send(self.basic_of(who).as_deref(), "GET", &path, &[], None);
        let token = token_of(&r);
        (r, token)
    }

    /// `POST /service/token` (`grant_type=password`) as `who` for `scope`.
    fn token_post(&self, who: Who, scope: &str) -> (Resp, Option<String>) {
        let mut form = vec![
            ("grant_type", "password".to_string()),
            ("client_id", "authz-matrix".to_string()),
            ("scope", scope.to_string()),
        ];
        if let Some(name) = who.account() {
            form.push(("username", name.to_string()));
            form.push(("password", self.secret(who).to_string()));
        }
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let r = self.send(
            None,
            "POST",
            "/service/token",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(body.into_bytes()),
        );
        let token = token_of(&r);
        (r, token)
    }

    /// A `/v2` request as `who`, authenticated as `pass` says; with a
    /// bearer token asked for `scopes`. `Err` when no token could be had.
    #[allow(clippy::too_many_arguments)]
    fn v2(
        &self,
        who: Who,
        pass: Pass,
        scopes: &[String],
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Resp, String> {
        let auth = match pass {
            Pass::Basic => self.basic_of(who),
            Pass::Bearer => match self.token(who, scopes) {
                (_, Some(t)) => Some(format!("Bearer {t}")),
                (r, None) => {
                    return Err(format!(
                        "no token for {scopes:?}: {} {}",
                        r.status,
                        r.text()
                    ));
                }
            },
        };
        Ok(self.send(auth.as_deref(), method, path, headers, body))
    }
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn token_of(r: &Resp) -> Option<String> {
    if r.status != 200 {
        return None;
    }
    let v = r.json();
    v["token"]
        .as_str()
        .or_else(|| v["access_token"].as_str())
        .map(str::to_string)
}

/// The `access` claim of a JWT, as `(type, name, actions)`.
fn access_of(token: &str) -> Vec<(String, String, Vec<String>)> {
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .expect("the payload is base64url");
    let claims: Value = serde_json::from_slice(&bytes).expect("the payload is JSON");
    claims["access"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    (
                        e["type"].as_str().unwrap_or_default().to_string(),
                        e["name"].as_str().unwrap_or_default().to_string(),
                        e["actions"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .map(|x| x.as_str().unwrap_or_default().to_string())
                                    .collect()
                            })
                            .unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A token answer as capabilities: the actions granted on `(kind, name)`;
/// anything granted on another target counts as `kind:name:action` (more
/// than asked). No token (401/403) is nothing granted.
fn token_seen(r: &Resp, token: Option<&str>, kind: &str, name: &str, who: Who) -> Seen {
    match token {
        Some(t) => {
            let mut c = Caps::new();
            for (k, n, actions) in access_of(t) {
                for a in actions {
                    if k == kind && n == name {
                        c.insert(a);
                    } else {
                        c.insert(format!("{k}:{n}:{a}"));
                    }
                }
            }
            Seen {
                caps: c,
                status: r.status,
                bad: None,
            }
        }
        None => {
            let refused = matches!(r.status, 401 | 403)
                // A password grant without credentials is a bad request.
                || (who == Anonymous && r.status == 400);
            Seen {
                caps: Caps::new(),
                status: r.status,
                bad: (!refused).then(|| format!("status {}: {}", r.status, r.text())),
            }
        }
    }
}

/// A plain cell: 401/403 is a denial, anything else an allow, which must
/// be one of the `ok` statuses the fixture arranged. On `/v2`, an anonymous
/// denial must be a 401 with a Bearer challenge.
fn by_status(r: &Resp, who: Who, ok: &[u16], v2: bool) -> Seen {
    if matches!(r.status, 401 | 403) {
        let challenge = r.header("www-authenticate");
        let bad = (v2
            && who == Anonymous
            && !(r.status == 401 && challenge.starts_with("Bearer realm=")))
        .then(|| {
            format!(
                "anonymous /v2 denial without a Bearer challenge: {} {challenge:?}",
                r.status
            )
        });
        return Seen {
            caps: Caps::new(),
            status: r.status,
            bad,
        };
    }
    Seen {
        caps: caps(&["A"]),
        status: r.status,
        bad: (!ok.contains(&r.status))
            .then(|| format!("status {} (arranged {ok:?}): {}", r.status, r.text())),
    }
}

/// A cell whose request could not be made (no token).
fn failed(why: String) -> Seen {
    Seen {
        caps: Caps::new(),
        status: 0,
        bad: Some(why),
    }
}

// ---------------------------------------------------------------------------
// The fixture.

fn grant(project: &str, access: &[(&str, &str)]) -> Value {
    json!({
        "namespace": {"kind": "project", "project": project},
        "access": access
            .iter()
            .map(|(r, a)| json!({"resource": r, "action": a}))
            .collect::<Vec<_>>(),
    })
}

fn user_password(name: &str) -> String {
    format!("{name}-password-1")
}

/// Pushes a blob to `repo` as the admin, in one POST.
fn push_blob(w: &World, repo: &str, data: &[u8]) -> String {
    let digest = digest_of(data);
    let r = w.send(
        w.basic_of(Admin).as_deref(),
        "POST",
        &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
        &[("Content-Type", "application/octet-stream")],
        Some(data.to_vec()),
    );
    assert_eq!(
        r.status,
        201,
        "setup: pushing a blob to {repo}: {}",
        r.text()
    );
    digest
}

fn manifest_of(config: &(String, Vec<u8>), layer: &(String, Vec<u8>)) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config.0,
            "size": config.1.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer.0,
            "size": layer.1.len(),
        }],
    }))
    .expect("manifest JSON")
}

fn push_manifest(w: &World, repo: &str, tag: &str, manifest: &[u8]) {
    let r = w.send(
        w.basic_of(Admin).as_deref(),
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("Content-Type", OCI_MANIFEST)],
        Some(manifest.to_vec()),
    );
    assert_eq!(r.status, 201, "setup: manifest {repo}:{tag}: {}", r.text());
}

/// The retention policy of `p`: keep the latest pushed artifact of
/// `p/scratch`, which holds one, so a real run deletes nothing; no other
/// repository is in its scope.
fn retention_policy() -> Value {
    json!({
        "rules": [{
            "template": "latestPushedK",
            "params": {"latestPushedK": 1},
            "repositories": {"decoration": "repoMatches", "pattern": "scratch"},
            "tags": {"decoration": "matches", "pattern": "**", "untagged": false},
        }],
    })
}

/// A disabled immutable tag rule that selects no repository of `p`, so it
/// guards no row's tag.
fn immutable_rule(tags: &str) -> Value {
    json!({
        "repositories": {"pattern": "matrix-none"},
        "tags": {"pattern": tags},
        "disabled": true,
    })
}

/// Puts a tag of `p/trash` in the restore window: the admin tags the image
/// `tag`, then deletes the tag. Returns the trash entry's id.
fn trash_tag(w: &World, tag: &str) -> i64 {
    push_manifest(w, "p/trash", tag, &w.manifest.1);
    let r = w.send(
        w.basic_of(Admin).as_deref(),
        "DELETE",
        &format!("/v2/p/trash/manifests/{tag}"),
        &[],
        None,
    );
    assert_eq!(r.status, 202, "setup: deleting p/trash:{tag}: {}", r.text());
    let list = w.admin_ok("GET", "/projects/p/trash?limit=1000", None);
    list["items"]
        .as_array()
        .and_then(|items| {
            items.iter().find(|i| {
                i["repository"] == "p/trash"
                    && i["kind"] == "tag"
                    && i["tags"]
                        .as_array()
                        .is_some_and(|t| t.iter().any(|x| x == tag))
            })
        })
        .and_then(|i| i["id"].as_i64())
        .unwrap_or_else(|| panic!("setup: no trash entry for p/trash:{tag}: {list}"))
}

fn setup(url: &str) -> World {
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()
        .expect("HTTP client");
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = b"the authorization matrix layer".to_vec();
    let config = (digest_of(config), config.to_vec());
    let layer = (digest_of(&layer), layer);
    let manifest = manifest_of(&config, &layer);
    let mut w = World {
        url: url.trim_end_matches('/').to_string(),
        client,
        secrets: vec![(Admin, ADMIN_PASSWORD.to_string())],
        manifest: (digest_of(&manifest), manifest),
        config,
        layer,
        q_layer: String::new(),
        session: String::new(),
        robot_pullonly_id: 0,
        spare_robot_id: 0,
        group_id: 0,
        immutable_rule_id: 0,
        retention_run_id: 0,
    };

    // Users, and the projects with one member per role.
    for who in [
        LimitedGuest,
        Guest,
        Developer,
        Maintainer,
        ProjectAdmin,
        OtherMember,
    ] {
        let name = who.account().unwrap();
        w.admin_ok(
            "POST",
            "/users",
            Some(json!({"name": name, "password": user_password(name)})),
        );
        w.secrets.push((who, user_password(name)));
    }
    w.admin_ok("POST", "/projects", Some(json!({"name": "p"})));
    w.admin_ok("POST", "/projects", Some(json!({"name": "q"})));
    for (who, role) in [
        (LimitedGuest, "limited_guest"),
        (Guest, "guest"),
        (Developer, "developer"),
        (Maintainer, "maintainer"),
        (ProjectAdmin, "project_admin"),
    ] {
        w.admin_ok(
            "POST",
            "/projects/p/members",
            Some(json!({"user": who.account().unwrap(), "role": role})),
        );
    }
    w.admin_ok(
        "POST",
        "/projects/q/members",
        Some(json!({"user": "other", "role": "developer"})),
    );

    // Robots.
    let robot = |project: &str, name: &str, access: &[(&str, &str)]| -> (i64, String) {
        let v = w.admin_ok(
            "POST",
            &format!("/projects/{project}/robots"),
            Some(json!({
                "name": name,
                "permissions": [grant(project, access)],
                "expires_in_days": -1,
            })),
        );
        (
            v["id"].as_i64().expect("robot id"),
            v["secret"].as_str().expect("robot secret").to_string(),
        )
    };
    let (_, full) = robot(
        "p",
        "full",
        &[
            ("repository", "pull"),
            ("repository", "push"),
            ("repository", "delete"),
            ("artifact", "delete"),
        ],
    );
    let (pullonly_id, pullonly) = robot("p", "pullonly", &[("repository", "pull")]);
    let (_, ci) = robot("q", "ci", &[("repository", "pull"), ("repository", "push")]);
    let (spare_id, _) = robot("p", "spare", &[("repository", "pull")]);
    w.secrets.push((RobotFull, full));
    w.secrets.push((RobotPullOnly, pullonly));
    w.secrets.push((RobotOther, ci));
    w.robot_pullonly_id = pullonly_id;
    w.spare_robot_id = spare_id;
    let group = w.admin_ok("POST", "/groups", Some(json!({"name": "matrix-group"})));
    w.group_id = group["id"].as_i64().expect("group id");

    // An image in p/app, another in q/app.
    push_blob(&w, "p/app", &w.config.1.clone());
    push_blob(&w, "p/app", &w.layer.1.clone());
    push_manifest(&w, "p/app", "v1", &w.manifest.1.clone());
    let q_config = push_blob(&w, "q/app", &w.config.1.clone());
    let q_layer_bytes = b"a layer only q/app holds".to_vec();
    w.q_layer = push_blob(&w, "q/app", &q_layer_bytes);
    let q_manifest = manifest_of(
        &(q_config, w.config.1.clone()),
        &(w.q_layer.clone(), q_layer_bytes),
    );
    push_manifest(&w, "q/app", "v1", &q_manifest);

    // The lifecycle fixture: p/scratch is the only repository the retention
    // policy applies to; p/trash holds the tags deleted into the restore
    // window (one now, so the trash lists something; one per cell of the
    // restore row). A dry retention run for the history rows, and an
    // immutable tag rule for the rule rows.
    for repo in ["p/scratch", "p/trash"] {
        push_blob(&w, repo, &w.config.1.clone());
        push_blob(&w, repo, &w.layer.1.clone());
        push_manifest(&w, repo, "base", &w.manifest.1.clone());
    }
    trash_tag(&w, "gone");
    w.admin_ok("PUT", "/projects/p/retention", Some(retention_policy()));
    let run = w.admin_ok(
        "POST",
        "/projects/p/retention/run",
        Some(json!({"dry_run": true})),
    );
    w.retention_run_id = run["execution"]["id"].as_i64().expect("retention run id");
    let rule = w.admin_ok(
        "POST",
        "/projects/p/immutable-rules",
        Some(immutable_rule("matrix-setup")),
    );
    w.immutable_rule_id = rule["id"].as_i64().expect("immutable rule id");

    // An upload session in p/app.
    let r = w.send(
        w.basic_of(Admin).as_deref(),
        "POST",
        "/v2/p/app/blobs/uploads/",
        &[],
        None,
    );
    assert_eq!(r.status, 202, "setup: upload session: {}", r.text());
    let location = r.header("location").to_string();
    w.session = match location.strip_prefix(&w.url) {
        Some(path) => path.to_string(),
        None => location,
    };
    assert!(
        w.session.starts_with("/v2/p/app/blobs/uploads/"),
        "{}",
        w.session
    );

    // Every credential works (else every denial below would prove nothing).
    for who in AUTHENTICATED {
        let r = w.v1(*who, "GET", "/me", None);
        assert_eq!(
            (r.status, r.json()["name"].as_str()),
            (200, who.account()),
            "setup: {} cannot log in: {}",
            who.label(),
            r.text()
        );
    }
    w
}

// ---------------------------------------------------------------------------
// The rows.

/// How a `/v2` row is judged.
enum V2Expect {
    /// Allowed for these columns, with one of these statuses.
    Plain(&'static [Who], &'static [u16]),
    /// A cross-repository mount: 201 (mounted) for `mounted`, 202 (a plain
    /// upload session, no mount) for `session`, denied for the others.
    Mount {
        mounted: &'static [Who],
        session: &'static [Who],
    },
}

struct V2Row {
    label: String,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    /// The scopes a bearer token is asked for.
    scopes: Vec<String>,
    expect: V2Expect,
}

fn v2_rows(w: &World) -> Vec<V2Row> {
    let pull = vec!["repository:p/app:pull".to_string()];
    let push = vec!["repository:p/app:pull,push".to_string()];
    let delete = vec!["repository:p/app:delete".to_string()];
    let missing = digest_of(b"nothing has this digest");
    let bogus = "/v2/p/app/blobs/uploads/00000000-0000-4000-8000-000000000000";
    let accept = vec![("Accept", OCI_MANIFEST.to_string())];
    let row =
        |label: &str, method: &'static str, path: String, scopes: &[String], expect: V2Expect| {
            V2Row {
                label: label.to_string(),
                method,
                path,
                headers: Vec::new(),
                body: None,
                scopes: scopes.to_vec(),
                expect,
            }
        };
    let (manifest, layer) = (&w.manifest.0, &w.layer.0);
    vec![
        // Authenticated callers only (the 401 is how clients find the token
        // endpoint). A token issued to anonymous authenticates nobody: in
        // Harbor the token's security context is authenticated only with a
        // subject (v2token `IsAuthenticated`: `len(name) > 0`).
        row(
            "GET /v2/",
            "GET",
            "/v2/".into(),
            &[],
            V2Expect::Plain(AUTHENTICATED, &[200]),
        ),
        row(
            "GET /v2/_catalog",
            "GET",
            "/v2/_catalog".into(),
            &["registry:catalog:*".to_string()],
            V2Expect::Plain(SYSTEM_ADMIN, &[200]),
        ),
        row(
            "GET /v2/p/app/tags/list",
            "GET",
            "/v2/p/app/tags/list".into(),
            &pull,
            V2Expect::Plain(PULL_P, &[200]),
        ),
        V2Row {
            headers: accept.clone(),
            ..row(
                "GET manifest by tag",
                "GET",
                "/v2/p/app/manifests/v1".into(),
                &pull,
                V2Expect::Plain(PULL_P, &[200]),
            )
        },
        V2Row {
            headers: accept.clone(),
            ..row(
                "HEAD manifest by tag",
                "HEAD",
                "/v2/p/app/manifests/v1".into(),
                &pull,
                V2Expect::Plain(PULL_P, &[200]),
            )
        },
        V2Row {
            headers: accept.clone(),
            ..row(
                "GET manifest by digest",
                "GET",
                format!("/v2/p/app/manifests/{manifest}"),
                &pull,
                V2Expect::Plain(PULL_P, &[200]),
            )
        },
        V2Row {
            headers: accept.clone(),
            ..row(
                "HEAD manifest by digest",
                "HEAD",
                format!("/v2/p/app/manifests/{manifest}"),
                &pull,
                V2Expect::Plain(PULL_P, &[200]),
            )
        },
        // The same manifest under the same tag: allowed callers change
        // nothing.
        V2Row {
            headers: vec![("Content-Type", OCI_MANIFEST.to_string())],
            body: Some(w.manifest.1.clone()),
            ..row(
                "PUT manifest v1 (same bytes)",
                "PUT",
                "/v2/p/app/manifests/v1".into(),
                &push,
                V2Expect::Plain(PUSH_P, &[201]),
            )
        },
        // Authorization comes before existence: allowed callers get 404.
        row(
            "DELETE manifest <missing digest>",
            "DELETE",
            format!("/v2/p/app/manifests/{missing}"),
            &delete,
            V2Expect::Plain(DELETE_P, &[404]),
        ),
        row(
            "GET blob <layer>",
            "GET",
            format!("/v2/p/app/blobs/{layer}"),
            &pull,
            V2Expect::Plain(PULL_P, &[200]),
        ),
        row(
            "HEAD blob <layer>",
            "HEAD",
            format!("/v2/p/app/blobs/{layer}"),
            &pull,
            V2Expect::Plain(PULL_P, &[200]),
        ),
        row(
            "DELETE blob <missing digest>",
            "DELETE",
            format!("/v2/p/app/blobs/{missing}"),
            &delete,
            V2Expect::Plain(DELETE_P, &[404]),
        ),
        row(
            "POST upload start",
            "POST",
            "/v2/p/app/blobs/uploads/".into(),
            &push,
            V2Expect::Plain(PUSH_P, &[202]),
        ),
        // The admin's real session (a read): allowed callers see it (204)
        // or, if sessions were private, 404.
        row(
            "GET upload session (admin's)",
            "GET",
            w.session.clone(),
            &push,
            V2Expect::Plain(PUSH_P, &[204, 404]),
        ),
        row(
            "GET upload session <bogus id>",
            "GET",
            bogus.into(),
            &push,
            V2Expect::Plain(PUSH_P, &[404]),
        ),
        V2Row {
            headers: vec![("Content-Type", "application/octet-stream".to_string())],
            body: Some(b"x".to_vec()),
            ..row(
                "PATCH upload session <bogus id>",
                "PATCH",
                bogus.into(),
                &push,
                V2Expect::Plain(PUSH_P, &[404]),
            )
        },
        V2Row {
            headers: vec![("Content-Type", "application/octet-stream".to_string())],
            body: Some(b"x".to_vec()),
            ..row(
                "PUT upload session <bogus id>",
                "PUT",
                format!("{bogus}?digest={}", digest_of(b"x")),
                &push,
                V2Expect::Plain(PUSH_P, &[404]),
            )
        },
        row(
            "DELETE upload session <bogus id>",
            "DELETE",
            bogus.into(),
            &push,
            V2Expect::Plain(PUSH_P, &[404]),
        ),
        row(
            "GET referrers <manifest>",
            "GET",
            format!("/v2/p/app/referrers/{manifest}"),
            &pull,
            V2Expect::Plain(PULL_P, &[200]),
        ),
        // Mounting needs push on the target and pull on the source; with
        // push only, a plain session opens instead (202).
        row(
            "POST mount p/app <layer> -> q/app",
            "POST",
            format!("/v2/q/app/blobs/uploads/?mount={layer}&from=p/app"),
            &[
                "repository:q/app:pull,push".to_string(),
                "repository:p/app:pull".to_string(),
            ],
            V2Expect::Mount {
                mounted: &[Admin],
                session: &[RobotOther, OtherMember],
            },
        ),
        row(
            "POST mount q/app <q layer> -> p/app",
            "POST",
            format!("/v2/p/app/blobs/uploads/?mount={}&from=q/app", w.q_layer),
            &[
                "repository:p/app:pull,push".to_string(),
                "repository:q/app:pull".to_string(),
            ],
            V2Expect::Mount {
                mounted: &[Admin],
                session: &[Developer, Maintainer, ProjectAdmin, RobotFull],
            },
        ),
    ]
}

fn run_v2(m: &mut Matrix, w: &World) {
    for spec in v2_rows(w) {
        for pass in [Pass::Basic, Pass::Bearer] {
            let expect = |who: Who| match &spec.expect {
                V2Expect::Plain(allowed, _) => {
                    if allowed.contains(&who) {
                        caps(&["A"])
                    } else {
                        Caps::new()
                    }
                }
                V2Expect::Mount { mounted, session } => {
                    if mounted.contains(&who) {
                        caps(&["mount", "push"])
                    } else if session.contains(&who) {
                        caps(&["push"])
                    } else {
                        Caps::new()
                    }
                }
            };
            let run = |who: Who| {
                let headers: Vec<(&str, &str)> =
                    spec.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let r = match w.v2(
                    who,
                    pass,
                    &spec.scopes,
                    spec.method,
                    &spec.path,
                    &headers,
                    spec.body.clone(),
                ) {
                    Ok(r) => r,
                    Err(why) => return failed(why),
                };
                match &spec.expect {
                    V2Expect::Plain(_, ok) => by_status(&r, who, ok, true),
                    V2Expect::Mount { .. } => {
                        let mut seen = by_status(&r, who, &[201, 202], true);
                        match r.status {
                            201 => seen.caps = caps(&["mount", "push"]),
                            202 => seen.caps = caps(&["push"]),
                            _ => {}
                        }
                        seen
                    }
                }
            };
            m.row(format!("{} [{}]", spec.label, pass.label()), expect, run);
        }
    }
}

fn run_token(m: &mut Matrix, w: &World) {
    let all_p = "repository:p/app:pull,push,delete";
    // What each column may do in p/app, by hand.
    let p_actions = |who: Who| match who {
        LimitedGuest | Guest | RobotPullOnly => caps(&["pull"]),
        Developer => caps(&["pull", "push"]),
        Maintainer | ProjectAdmin | RobotFull | Admin => caps(&["pull", "push", "delete"]),
        Anonymous | RobotOther | OtherMember => Caps::new(),
    };
    let all_q = "repository:q/app:pull,push,delete";
    let q_actions = |who: Who| match who {
        RobotOther | OtherMember => caps(&["pull", "push"]),
        Admin => caps(&["pull", "push", "delete"]),
        _ => Caps::new(),
    };
    let catalog = "registry:catalog:*";
    let catalog_actions = |who: Who| {
        if who == Admin {
            caps(&["*"])
        } else {
            Caps::new()
        }
    };

    m.row(format!("GET /service/token {all_p}"), p_actions, |who| {
        let (r, t) = w.token(who, &[all_p.to_string()]);
        token_seen(&r, t.as_deref(), "repository", "p/app", who)
    });
    m.row(format!("POST /service/token {all_p}"), p_actions, |who| {
        let (r, t) = w.token_post(who, all_p);
        token_seen(&r, t.as_deref(), "repository", "p/app", who)
    });
    m.row(format!("GET /service/token {all_q}"), q_actions, |who| {
        let (r, t) = w.token(who, &[all_q.to_string()]);
        token_seen(&r, t.as_deref(), "repository", "q/app", who)
    });
    m.row(format!("POST /service/token {all_q}"), q_actions, |who| {
        let (r, t) = w.token_post(who, all_q);
        token_seen(&r, t.as_deref(), "repository", "q/app", who)
    });
    m.row(
        format!("GET /service/token {catalog}"),
        catalog_actions,
        |who| {
            let (r, t) = w.token(who, &[catalog.to_string()]);
            token_seen(&r, t.as_deref(), "registry", "catalog", who)
        },
    );
    m.row(
        format!("POST /service/token {catalog}"),
        catalog_actions,
        |who| {
            let (r, t) = w.token_post(who, catalog);
            token_seen(&r, t.as_deref(), "registry", "catalog", who)
        },
    );
    m.row("GET /service/jwks", allowed(EVERYBODY), |who| {
        let r = w.send(
            w.basic_of(who).as_deref(),
            "GET",
            "/service/jwks",
            &[],
            None,
        );
        by_status(&r, who, &[200], false)
    });
}

fn run_v1(m: &mut Matrix, w: &World) {
    // One row: `allowed` columns must get one of `ok`.
    let plain = |m: &mut Matrix,
                 method: &str,
                 path: &str,
                 body: Option<Value>,
                 allowed_to: &'static [Who],
                 ok: &'static [u16]| {
        let label = match &body {
            Some(b) if b.to_string().len() <= 40 => format!("{method} /api/v1{path} {b}"),
            Some(_) => format!("{method} /api/v1{path} {{…}}"),
            None => format!("{method} /api/v1{path}"),
        };
        m.row(label, allowed(allowed_to), |who| {
            let r = w.v1(who, method, path, body.clone());
            by_status(&r, who, ok, false)
        });
    };
    let robot = w.robot_pullonly_id;
    let spare = w.spare_robot_id;
    let gid = w.group_id;

    plain(m, "GET", "/openapi.json", None, EVERYBODY, &[200]);
    plain(m, "GET", "/system/info", None, EVERYBODY, &[200]);
    // Who am I: every authenticated caller, and it must be them.
    m.row("GET /api/v1/me", allowed(AUTHENTICATED), |who| {
        let r = w.v1(who, "GET", "/me", None);
        let mut seen = by_status(&r, who, &[200], false);
        if r.status == 200 && r.json()["name"].as_str() != who.account() {
            seen.bad = Some(format!("/me is somebody else: {}", r.text()));
        }
        seen
    });

    // Users: system admin; a user reads and edits their own record.
    plain(m, "GET", "/users", None, SYSTEM_ADMIN, &[200]);
    plain(
        m,
        "POST",
        "/users",
        Some(json!({"name": "robot$not-a-user", "password": "long-enough-1"})),
        SYSTEM_ADMIN,
        &[400],
    );
    plain(
        m,
        "GET",
        "/users/developer",
        None,
        &[Developer, Admin],
        &[200],
    );
    plain(
        m,
        "PATCH",
        "/users/developer",
        Some(json!({"email": "developer@example.org"})),
        &[Developer, Admin],
        &[200],
    );
    plain(m, "DELETE", "/users/nobody", None, SYSTEM_ADMIN, &[404]);
    plain(
        m,
        "PUT",
        "/users/nobody/password",
        Some(json!({"new_password": "long-enough-2"})),
        SYSTEM_ADMIN,
        &[404],
    );
    // Personal access tokens: users only, their own.
    plain(m, "GET", "/users/me/tokens", None, USERS, &[200]);
    plain(
        m,
        "POST",
        "/users/me/tokens",
        Some(json!({"name": "", "expires_in_days": 1})),
        USERS,
        &[400],
    );
    plain(m, "DELETE", "/users/me/tokens/999999", None, USERS, &[404]);

    // Groups: system admin.
    plain(m, "GET", "/groups", None, SYSTEM_ADMIN, &[200]);
    plain(
        m,
        "POST",
        "/groups",
        Some(json!({"name": ""})),
        SYSTEM_ADMIN,
        &[400],
    );
    plain(
        m,
        "GET",
        &format!("/groups/{gid}"),
        None,
        SYSTEM_ADMIN,
        &[200],
    );
    plain(m, "DELETE", "/groups/999999", None, SYSTEM_ADMIN, &[404]);
    plain(
        m,
        "POST",
        &format!("/groups/{gid}/members/nobody"),
        None,
        SYSTEM_ADMIN,
        &[404],
    );
    plain(
        m,
        "DELETE",
        &format!("/groups/{gid}/members/nobody"),
        None,
        SYSTEM_ADMIN,
        &[404],
    );

    // Projects. The listing answers everybody; what it holds is the cell.
    for (project, sees) in [("p", PULL_P), ("q", SEES_Q)] {
        m.row(
            format!("GET /api/v1/projects (lists {project})"),
            |who| {
                if sees.contains(&who) {
                    caps(&["listed"])
                } else {
                    Caps::new()
                }
            },
            |who| {
                let r = w.v1(who, "GET", "/projects?limit=1000", None);
                if r.status != 200 {
                    return Seen {
                        caps: Caps::new(),
                        status: r.status,
                        bad: Some(format!("the listing answers everybody: {}", r.text())),
                    };
                }
                let listed = r.json()["items"]
                    .as_array()
                    .is_some_and(|items| items.iter().any(|i| i["name"] == project));
                Seen {
                    caps: if listed {
                        caps(&["listed"])
                    } else {
                        Caps::new()
                    },
                    status: r.status,
                    bad: None,
                }
            },
        );
    }
    plain(
        m,
        "POST",
        "/projects",
        Some(json!({"name": "Not_Valid"})),
        SYSTEM_ADMIN,
        &[400],
    );
    plain(m, "GET", "/projects/p", None, READ_P, &[200]);
    plain(
        m,
        "PATCH",
        "/projects/p",
        Some(json!({"public": false})),
        PROJECT_ADMIN_P,
        &[200],
    );
    // p holds repositories, so an allowed deletion stops at 409.
    plain(m, "DELETE", "/projects/p", None, PROJECT_ADMIN_P, &[409]);

    // Members.
    plain(m, "GET", "/projects/p/members", None, GUEST_UP_P, &[200]);
    plain(
        m,
        "POST",
        "/projects/p/members",
        Some(json!({"user": "nobody", "role": "guest"})),
        PROJECT_ADMIN_P,
        &[404],
    );
    plain(
        m,
        "PUT",
        "/projects/p/members/user/nobody",
        Some(json!({"role": "guest"})),
        PROJECT_ADMIN_P,
        &[404],
    );
    plain(
        m,
        "DELETE",
        "/projects/p/members/user/nobody",
        None,
        PROJECT_ADMIN_P,
        &[404],
    );

    // Robots.
    plain(m, "GET", "/projects/p/robots", None, GUEST_UP_P, &[200]);
    plain(
        m,
        "POST",
        "/projects/p/robots",
        Some(json!({"name": "Not Valid", "permissions": [grant("p", &[("repository", "pull")])]})),
        PROJECT_ADMIN_P,
        &[400],
    );
    plain(m, "GET", "/robots", None, SYSTEM_ADMIN, &[200]);
    plain(
        m,
        "POST",
        "/robots",
        Some(json!({"name": "Not Valid", "permissions": [grant("p", &[("repository", "pull")])]})),
        SYSTEM_ADMIN,
        &[400],
    );
    // robot$p+pullonly's record: robot:read (guest and up), and the robot
    // itself (its own account, as /me shows it).
    plain(
        m,
        "GET",
        &format!("/robots/{robot}"),
        None,
        &[
            Guest,
            Developer,
            Maintainer,
            ProjectAdmin,
            RobotPullOnly,
            Admin,
        ],
        &[200],
    );
    // robot$p+spare (pull in p): changing it and rotating its secret need
    // robot:update.
    plain(
        m,
        "PATCH",
        &format!("/robots/{spare}"),
        Some(json!({"description": "spare robot"})),
        PROJECT_ADMIN_P,
        &[200],
    );
    plain(
        m,
        "POST",
        &format!("/robots/{spare}/secret"),
        None,
        PROJECT_ADMIN_P,
        &[200],
    );
    // Deleting: each cell gets a robot of its own to delete.
    m.row(
        "DELETE /api/v1/robots/{a fresh robot of p}",
        allowed(PROJECT_ADMIN_P),
        |who| {
            let v = w.admin_ok(
                "POST",
                "/projects/p/robots",
                Some(json!({
                    "name": format!("doomed-{}", who.label()),
                    "permissions": [grant("p", &[("repository", "pull")])],
                })),
            );
            let id = v["id"].as_i64().expect("robot id");
            let r = w.v1(who, "DELETE", &format!("/robots/{id}"), None);
            by_status(&r, who, &[204], false)
        },
    );

    // The audit log: all of it for the system admin; a project's events
    // for whom may list its logs (log:list, guest and up).
    plain(m, "GET", "/audit", None, SYSTEM_ADMIN, &[200]);
    plain(m, "GET", "/audit?project=p", None, GUEST_UP_P, &[200]);

    // Immutable tag rules: maintainer and up. Every rule the rows create is
    // disabled and selects no repository, so it guards no later row's tag.
    let rule = w.immutable_rule_id;
    plain(
        m,
        "GET",
        "/projects/p/immutable-rules",
        None,
        MAINTAINER_UP_P,
        &[200],
    );
    m.row(
        "POST /api/v1/projects/p/immutable-rules {a new rule per cell}",
        allowed(MAINTAINER_UP_P),
        |who| {
            let body = immutable_rule(&format!("created-by-{}", who.label()));
            let r = w.v1(who, "POST", "/projects/p/immutable-rules", Some(body));
            by_status(&r, who, &[201], false)
        },
    );
    plain(
        m,
        "GET",
        &format!("/projects/p/immutable-rules/{rule}"),
        None,
        MAINTAINER_UP_P,
        &[200],
    );
    plain(
        m,
        "PATCH",
        &format!("/projects/p/immutable-rules/{rule}"),
        Some(json!({"disabled": true})),
        MAINTAINER_UP_P,
        &[200],
    );
    // Deleting: each cell gets a rule of its own to delete.
    m.row(
        "DELETE /api/v1/projects/p/immutable-rules/{a fresh rule}",
        allowed(MAINTAINER_UP_P),
        |who| {
            let v = w.admin_ok(
                "POST",
                "/projects/p/immutable-rules",
                Some(immutable_rule(&format!("doomed-{}", who.label()))),
            );
            let id = v["id"].as_i64().expect("rule id");
            let r = w.v1(
                who,
                "DELETE",
                &format!("/projects/p/immutable-rules/{id}"),
                None,
            );
            by_status(&r, who, &[204], false)
        },
    );

    // Quotas: every member role reads them; only the system admin sets
    // them (anchors §6.2). Unlimited, as they were.
    plain(m, "GET", "/projects/p/quota", None, READ_P, &[200]);
    plain(
        m,
        "PUT",
        "/projects/p/quota",
        Some(json!({"storage_bytes": -1, "artifacts": -1})),
        SYSTEM_ADMIN,
        &[200],
    );

    // Tag retention: developer and up. The policy exists (setup), so an
    // allowed PUT replaces it with itself (200).
    let run = w.retention_run_id;
    plain(
        m,
        "GET",
        "/projects/p/retention",
        None,
        DEVELOPER_UP_P,
        &[200],
    );
    plain(
        m,
        "PUT",
        "/projects/p/retention",
        Some(retention_policy()),
        DEVELOPER_UP_P,
        &[200],
    );
    plain(
        m,
        "POST",
        "/projects/p/retention/run",
        Some(json!({"dry_run": true})),
        DEVELOPER_UP_P,
        &[200],
    );
    // A real run: it keeps p/scratch's only artifact and looks at nothing
    // else, so it must delete nothing.
    m.row(
        format!(
            "POST /api/v1/projects/p/retention/run {}",
            json!({"dry_run": false})
        ),
        allowed(DEVELOPER_UP_P),
        |who| {
            let r = w.v1(
                who,
                "POST",
                "/projects/p/retention/run",
                Some(json!({"dry_run": false})),
            );
            let mut seen = by_status(&r, who, &[200], false);
            let e = &r.json()["execution"];
            if r.status == 200
                && (e["dry_run"] != false || e["status"] != "succeeded" || e["deleted"] != 0)
            {
                seen.bad = Some(format!("not a real run that deleted nothing: {}", r.text()));
            }
            seen
        },
    );
    plain(
        m,
        "GET",
        "/projects/p/retention/executions",
        None,
        DEVELOPER_UP_P,
        &[200],
    );
    plain(
        m,
        "GET",
        &format!("/projects/p/retention/executions/{run}"),
        None,
        DEVELOPER_UP_P,
        &[200],
    );
    plain(
        m,
        "GET",
        &format!("/projects/p/retention/executions/{run}/items"),
        None,
        DEVELOPER_UP_P,
        &[200],
    );
    // Deleting: the admin sets the policy again before each cell, and after
    // the row.
    m.row(
        "DELETE /api/v1/projects/p/retention",
        allowed(DEVELOPER_UP_P),
        |who| {
            w.admin_ok("PUT", "/projects/p/retention", Some(retention_policy()));
            let r = w.v1(who, "DELETE", "/projects/p/retention", None);
            by_status(&r, who, &[204], false)
        },
    );
    w.admin_ok("PUT", "/projects/p/retention", Some(retention_policy()));

    // Artifacts: every member role (artifact:list).
    plain(
        m,
        "GET",
        "/projects/p/artifacts?repository=p/app",
        None,
        READ_P,
        &[200],
    );

    // The restore window: listing needs artifact:delete, restoring also
    // artifact:create. Each cell restores a tag of p/trash deleted for it.
    plain(m, "GET", "/projects/p/trash", None, DELETE_P, &[200]);
    m.row(
        "POST /api/v1/projects/p/trash/{id}/restore (a tag deleted for each cell)",
        allowed(RESTORE_P),
        |who| {
            let id = trash_tag(w, &format!("r-{}", who.label()));
            let r = w.v1(
                who,
                "POST",
                &format!("/projects/p/trash/{id}/restore"),
                None,
            );
            by_status(&r, who, &[200], false)
        },
    );

    // Garbage collection: system level (garbage-collection:create, :list).
    plain(
        m,
        "POST",
        "/system/gc",
        Some(json!({"dry_run": true})),
        SYSTEM_ADMIN,
        &[200],
    );
    plain(m, "GET", "/system/gc/runs", None, SYSTEM_ADMIN, &[200]);

    // Last: a real garbage collection (nothing is collectable: every link
    // and object is younger than the grace, untagged manifests are kept,
    // the trash is within its window), deleting a project (q still holds
    // q/app, so an allowed deletion stops at 409) and rotating the signing
    // key.
    m.row(
        format!("POST /api/v1/system/gc {}", json!({"dry_run": false})),
        allowed(SYSTEM_ADMIN),
        |who| {
            let r = w.v1(who, "POST", "/system/gc", Some(json!({"dry_run": false})));
            let mut seen = by_status(&r, who, &[200], false);
            let g = r.json();
            if r.status == 200
                && (g["dry_run"] != false
                    || [
                        "blobs_deleted",
                        "manifests_deleted",
                        "links_removed",
                        "trash_purged",
                        "orphans_deleted",
                    ]
                    .iter()
                    .any(|k| g[*k] != 0))
            {
                seen.bad = Some(format!("GC collected something: {}", r.text()));
            }
            seen
        },
    );
    plain(m, "DELETE", "/projects/q", None, SYSTEM_ADMIN, &[409]);
    plain(m, "POST", "/system/keys/rotate", None, SYSTEM_ADMIN, &[200]);
    m.row(
        "GET /api/v1/system/settings",
        allowed(SYSTEM_ADMIN),
        |who| {
            let r = w.v1(who, "GET", "/system/settings", None);
            let mut seen = by_status(&r, who, &[200], false);
            let v = r.json();
            if r.status == 200
                && (v["auth"]["ldap"]["bind_password_set"] != true
                    || r.text()
                        .contains(&service_env("BERTH_TEST_LDAP_BIND_PASSWORD"))
                    || r.text()
                        .contains(&service_env("BERTH_TEST_OIDC_CLIENT_SECRET")))
            {
                seen.bad = Some(format!("settings wrong or leaking a secret: {}", r.text()));
            }
            seen
        },
    );
    m.row(
        "POST /api/v1/system/ldap/test",
        allowed(SYSTEM_ADMIN),
        |who| {
            let r = w.v1(who, "POST", "/system/ldap/test", None);
            let mut seen = by_status(&r, who, &[200], false);
            let v = r.json();
            if r.status == 200
                && (v["configured"] != true || v["bind_ok"] != true || v["tls"] != true)
            {
                seen.bad = Some(format!("the directory check failed: {}", r.text()));
            }
            seen
        },
    );
}

/// The value of a Set-Cookie named `name`, if the response sets one.
fn set_cookie(r: &Resp, name: &str) -> Option<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .map(|rest| rest.split(';').next().unwrap_or_default().to_string())
}

/// A login endpoint's answer: allowed when it opened a session (200 and a
/// non-empty session cookie), denied with one of `deny`.
fn session_seen(r: &Resp, deny: &[u16]) -> Seen {
    let opened = r.status == 200 && set_cookie(r, "berth_session").is_some_and(|c| !c.is_empty());
    Seen {
        caps: if opened { caps(&["A"]) } else { Caps::new() },
        status: r.status,
        bad: (!opened && !deny.contains(&r.status))
            .then(|| format!("status {} (arranged {deny:?}): {}", r.status, r.text())),
    }
}

/// The browser login endpoints (outside `/api/v1`'s Basic-authenticated
/// router, but under its path): who may open a session, and how.
fn run_sessions(m: &mut Matrix, w: &World) {
    let json_header: &[(&str, &str)] = &[("Content-Type", "application/json")];
    // The UI login with the column's own credentials: users get a session,
    // robots never (they are for pipelines), anonymous has no account.
    m.row(
        "POST /api/v1/auth/login {own credentials}",
        allowed(USERS),
        |who| {
            let (user, password) = match who.account() {
                Some(name) => (name, w.secret(who).to_string()),
                None => ("nobody", "not-a-password".to_string()),
            };
            let body = json!({ "username": user, "password": password });
            let r = w.send(
                None,
                "POST",
                "/api/v1/auth/login",
                json_header,
                Some(body.to_string().into_bytes()),
            );
            session_seen(&r, &[401, 403])
        },
    );
    m.row("POST /api/v1/auth/logout", allowed(EVERYBODY), |who| {
        let r = w.send(
            w.basic_of(who).as_deref(),
            "POST",
            "/api/v1/auth/logout",
            &[],
            None,
        );
        by_status(&r, who, &[204], false)
    });
    // Anybody may begin an OIDC login: it only redirects to the provider.
    let issuer = service_env("BERTH_TEST_OIDC_ISSUER");
    m.row("GET /api/v1/auth/oidc/login", allowed(EVERYBODY), |who| {
        let r = w.send(
            w.basic_of(who).as_deref(),
            "GET",
            "/api/v1/auth/oidc/login",
            &[],
            None,
        );
        let mut seen = by_status(&r, who, &[302], false);
        let location = r.header("location");
        if r.status == 302
            && !(location.starts_with(&issuer) && location.contains("code_challenge="))
        {
            seen.bad = Some(format!("not a PKCE redirect to the provider: {location}"));
        }
        seen
    });
    // Completing one needs the provider's code: a caller holding the
    // login cookie and the right state, but a forged code, gets nothing
    // (whatever Basic credentials it sends along).
    m.row(
        "GET /api/v1/auth/oidc/callback?state=…&code=forged",
        allowed(&[]),
        |who| {
            let begin = w.send(None, "GET", "/api/v1/auth/oidc/login", &[], None);
            let (Some(login), Some(state)) = (
                set_cookie(&begin, "berth_oidc_login"),
                begin
                    .header("location")
                    .split(['?', '&'])
                    .find_map(|p| p.strip_prefix("state="))
                    .map(str::to_string),
            ) else {
                return failed(format!("no OIDC login to complete: {}", begin.status));
            };
            let cookie = format!("berth_oidc_login={login}");
            let basic = w.basic_of(who);
            let mut headers = vec![("Cookie", cookie.as_str())];
            if let Some(b) = &basic {
                headers.push(("Authorization", b.as_str()));
            }
            let r = w.send(
                None,
                "GET",
                &format!("/api/v1/auth/oidc/callback?state={state}&code=forged-code"),
                &headers,
                None,
            );
            session_seen(&r, &[401])
        },
    );
    // Refreshing renews an OIDC session with the provider: a password
    // session (or none) has nothing to refresh.
    m.row("POST /api/v1/auth/oidc/refresh", allowed(&[]), |who| {
        let mut cookie = String::new();
        if let (Some(name), true) = (who.account(), USERS.contains(&who)) {
            let body = json!({ "username": name, "password": w.secret(who) });
            let login = w.send(
                None,
                "POST",
                "/api/v1/auth/login",
                json_header,
                Some(body.to_string().into_bytes()),
            );
            match set_cookie(&login, "berth_session") {
                Some(c) => cookie = format!("berth_session={c}"),
                None => return failed(format!("no password session: {}", login.status)),
            }
        }
        let headers: Vec<(&str, &str)> = if cookie.is_empty() {
            Vec::new()
        } else {
            vec![("Cookie", cookie.as_str())]
        };
        let r = w.send(None, "POST", "/api/v1/auth/oidc/refresh", &headers, None);
        session_seen(&r, &[401])
    });
}

/// LDAP and OIDC configured (slapd and the idpyoidc provider that
/// `scripts/start-services.sh` runs), so that the directory check and the
/// browser login endpoints answer for real.
fn config_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("berth.toml");
    std::fs::write(&path, common::directory_and_provider_config()).expect("config file");
    path
}

/// Whether a row named `METHOD /path…` asks `method template`, where a
/// `{name}` segment of the template matches any one segment.
fn row_asks(name: &str, method: &str, template: &str) -> bool {
    let mut words = name.split(' ');
    if words.next() != Some(method) {
        return false;
    }
    let Some(path) = words.next().and_then(|p| p.split('?').next()) else {
        return false;
    };
    let (asked, wanted): (Vec<&str>, Vec<&str>) =
        (path.split('/').collect(), template.split('/').collect());
    asked.len() == wanted.len()
        && asked
            .iter()
            .zip(&wanted)
            .all(|(a, t)| a == t || (t.starts_with('{') && !a.is_empty()))
}

/// The endpoints of the OpenAPI document, the login endpoints beside it
/// and the token endpoint that no row asks: the matrix must not fall
/// behind the API.
fn endpoints_without_a_row(m: &Matrix, w: &World) -> Vec<String> {
    let doc = w.v1(Anonymous, "GET", "/openapi.json", None).json();
    let mut wanted: Vec<(String, String)> = [
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/auth/logout"),
        ("GET", "/api/v1/auth/oidc/login"),
        ("GET", "/api/v1/auth/oidc/callback"),
        ("POST", "/api/v1/auth/oidc/refresh"),
        ("GET", "/service/token"),
        ("POST", "/service/token"),
    ]
    .iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    let paths = doc["paths"]
        .as_object()
        .expect("the OpenAPI document has paths");
    for (path, item) in paths {
        for method in item.as_object().into_iter().flat_map(|o| o.keys()) {
            if ["get", "put", "post", "delete", "patch", "head"].contains(&method.as_str()) {
                wanted.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    assert!(wanted.len() > 60, "too few endpoints found: {wanted:?}");
    wanted
        .into_iter()
        .filter(|(method, path)| !m.rows.iter().any(|r| row_asks(&r.name, method, path)))
        .map(|(method, path)| format!("{method} {path}"))
        .collect()
}

#[test]
fn every_endpoint_answers_every_caller_as_harbor_s_roles_say() {
    let temp = tempfile::tempdir().expect("temp dir");
    let config = config_file(temp.path());
    let berth = Berth::start_env(
        &temp.path().join("data"),
        "127.0.0.1:0",
        &["--config", config.to_str().expect("UTF-8 path")],
        &[
            ("BERTH_ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()),
            ("BERTH_AUTH_AUTO_CREATE_PROJECTS".into(), "false".into()),
            // Nothing becomes collectable during the run (the real GC row).
            ("BERTH_GC_GRACE_SECS".into(), "3600".into()),
            ("BERTH_GC_DELETE_UNTAGGED".into(), "false".into()),
        ],
    );
    let world = setup(&berth.url);
    let mut m = Matrix::default();
    run_v2(&mut m, &world);
    run_token(&mut m, &world);
    run_v1(&mut m, &world);
    run_sessions(&mut m, &world);
    let (report, allows, denies, bad) = m.report();
    println!("{report}");
    let missing = endpoints_without_a_row(&m, &world);
    assert!(
        allows == 0 && denies == 0 && bad == 0,
        "authorization matrix: {allows} unexpected allows, {denies} unexpected denies, \
         {bad} answers not arranged\n{report}"
    );
    assert!(missing.is_empty(), "endpoints no row asks: {missing:?}");
}
