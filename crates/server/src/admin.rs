//! `berth admin`: the management REST API (`/api/v1`) from the command
//! line, for operators and scripts. Every command is one or a few HTTP
//! requests with Basic credentials; output is a plain table, or the API's
//! JSON with `--json`. Errors print the API's message and exit non-zero.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

#[derive(Args)]
pub(crate) struct AdminArgs {
    /// The registry's URL, e.g. https://registry.example.com.
    #[arg(long, env = "BERTH_URL")]
    url: String,
    /// Account to act as (a user, or a robot `robot$…`).
    #[arg(long, env = "BERTH_ADMIN_USER")]
    user: String,
    /// Read the password (or personal access token, or robot secret) from
    /// the first line of standard input; otherwise it is taken from
    /// BERTH_ADMIN_PASSWORD.
    #[arg(long)]
    password_stdin: bool,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// PEM certificate(s) to trust, for a registry with a private CA.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// User accounts (system admin).
    #[command(subcommand)]
    Users(UsersCommand),
    /// Projects.
    #[command(subcommand)]
    Projects(ProjectsCommand),
    /// Project members and their roles.
    #[command(subcommand)]
    Members(MembersCommand),
    /// Robot accounts.
    #[command(subcommand)]
    Robots(RobotsCommand),
    /// Your personal access tokens.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Read the audit log, newest first.
    Audit(AuditArgs),
    /// Token signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// Where a new password comes from: `--password-file`, else
/// BERTH_USER_PASSWORD.
#[derive(Args)]
struct NewPassword {
    /// File whose first line is the new password (else BERTH_USER_PASSWORD).
    #[arg(long)]
    password_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum UsersCommand {
    List,
    /// Create a local account.
    Create {
        name: String,
        #[arg(long)]
        email: Option<String>,
        /// Make the user a system admin.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        password: NewPassword,
    },
    Delete {
        name: String,
    },
    /// Set a password: your own (your login password is the old one), or,
    /// as a system admin, anybody's.
    Passwd {
        name: String,
        #[command(flatten)]
        password: NewPassword,
    },
}

#[derive(Subcommand)]
enum ProjectsCommand {
    List,
    Create {
        name: String,
        /// Anybody, anonymous included, may pull.
        #[arg(long)]
        public: bool,
    },
    Delete {
        name: String,
    },
}

/// Exactly one of a user or a group.
#[derive(Args)]
#[group(required = true, multiple = false)]
struct Member {
    #[arg(long)]
    user: Option<String>,
    #[arg(long)]
    group: Option<String>,
}

#[derive(Subcommand)]
enum MembersCommand {
    List {
        project: String,
    },
    /// Add a user or group, or change its role.
    Add {
        project: String,
        #[command(flatten)]
        member: Member,
        /// project_admin, maintainer, developer, guest or limited_guest.
        #[arg(long)]
        role: String,
    },
    Remove {
        project: String,
        #[command(flatten)]
        member: Member,
    },
}

#[derive(Subcommand)]
enum RobotsCommand {
    /// System robots, or a project's with --project.
    List {
        #[arg(long)]
        project: Option<String>,
    },
    /// Create a robot; its secret is printed once.
    Create {
        name: String,
        /// Create a project robot (else a system robot).
        #[arg(long)]
        project: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
        /// Permissions, repeatable: [NAMESPACE=]RESOURCE:ACTION[,…] where
        /// NAMESPACE is a project, `*` (all projects) or `system`, and
        /// defaults to --project; `pull` and `push` are short for
        /// repository:pull and repository:pull,repository:push.
        #[arg(long = "access")]
        access: Vec<String>,
        /// Permissions as the API's JSON list of grants.
        #[arg(long)]
        permissions_json: Option<String>,
        /// Days until it expires; -1 never [default: 30].
        #[arg(long, allow_hyphen_values = true)]
        expires_in_days: Option<i64>,
    },
    /// Give a robot a new secret (printed once); the old one stops working.
    Rotate {
        id: i64,
    },
    Delete {
        id: i64,
    },
}

#[derive(Subcommand)]
enum TokensCommand {
    List,
    /// Create a token; it is printed once.
    Create {
        name: String,
        /// 1 to 365.
        #[arg(long)]
        expires_in_days: i64,
        /// Scopes, as for `robots create --access` (NAMESPACE required).
        #[arg(long = "access")]
        access: Vec<String>,
    },
    Delete {
        id: i64,
    },
}

#[derive(Args)]
struct AuditArgs {
    #[arg(long)]
    actor: Option<String>,
    #[arg(long)]
    project: Option<String>,
    #[arg(long)]
    action: Option<String>,
    /// RFC 3339 or milliseconds since the epoch.
    #[arg(long)]
    since: Option<String>,
    /// RFC 3339 or milliseconds since the epoch.
    #[arg(long)]
    until: Option<String>,
    #[arg(long, default_value_t = 100)]
    limit: u32,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// A new signing key; older ones verify for two token lifetimes more.
    Rotate,
}

pub(crate) async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        std::env::var("BERTH_ADMIN_PASSWORD").map_err(|_| {
            anyhow::anyhow!("no password: pass --password-stdin or set BERTH_ADMIN_PASSWORD")
        })?
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    let mut http =
        reqwest::Client::builder().user_agent(concat!("berth-admin/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &args.ca_cert {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{} is not a PEM certificate", path.display()))?
        {
            http = http.add_root_certificate(cert);
        }
    }
    let client = Client {
        http: http.build().context("building the HTTP client")?,
        base: format!("{}/api/v1", args.url.trim_end_matches('/')),
        user: args.user.clone(),
        password: password.clone(),
    };
    let out = Output { json: args.json };
    match args.command {
        AdminCommand::Users(cmd) => users(&client, &out, cmd, &args.user, &password).await,
        AdminCommand::Projects(cmd) => projects(&client, &out, cmd).await,
        AdminCommand::Members(cmd) => members(&client, &out, cmd).await,
        AdminCommand::Robots(cmd) => robots(&client, &out, cmd).await,
        AdminCommand::Tokens(cmd) => tokens(&client, &out, cmd).await,
        AdminCommand::Audit(a) => audit(&client, &out, a).await,
        AdminCommand::Keys(KeysCommand::Rotate) => {
            let v = client.call("POST", "/system/keys/rotate", None).await?;
            out.one(&v, || {
                format!(
                    "signing key {} signs from now on; {} older key(s) stop verifying at {}",
                    s(&v["kid"]),
                    v["retiring"],
                    s(&v["retire_at"])
                )
            });
            Ok(())
        }
    }
}

async fn users(
    client: &Client,
    out: &Output,
    cmd: UsersCommand,
    me: &str,
    my_password: &str,
) -> anyhow::Result<()> {
    match cmd {
        UsersCommand::List => {
            let items = client.list("/users").await?;
            out.table(
                &items,
                &["NAME", "EMAIL", "SOURCE", "ADMIN", "DISABLED"],
                |u| {
                    vec![
                        s(&u["name"]),
                        s(&u["email"]),
                        s(&u["source"]),
                        yes(&u["system_admin"]),
                        yes(&u["disabled"]),
                    ]
                },
            );
        }
        UsersCommand::Create {
            name,
            email,
            admin,
            password,
        } => {
            let body = json!({
                "name": name,
                "email": email,
                "password": new_password(&password)?,
                "system_admin": admin,
            });
            let v = client.call("POST", "/users", Some(body)).await?;
            out.one(&v, || {
                format!(
                    "user {} created{}",
                    s(&v["name"]),
                    if admin { " (system admin)" } else { "" }
                )
            });
        }
        UsersCommand::Delete { name } => {
            client
                .call("DELETE", &format!("/users/{}", seg(&name)), None)
                .await?;
            out.done(&format!("user {name} deleted"));
        }
        UsersCommand::Passwd { name, password } => {
            let mut body = json!({ "new_password": new_password(&password)? });
            if name == me {
                body["old_password"] = json!(my_password);
            }
            client
                .call(
                    "PUT",
                    &format!("/users/{}/password", seg(&name)),
                    Some(body),
                )
                .await?;
            out.done(&format!("password of {name} changed"));
        }
    }
    Ok(())
}

async fn projects(client: &Client, out: &Output, cmd: ProjectsCommand) -> anyhow::Result<()> {
    match cmd {
        ProjectsCommand::List => {
            let items = client.list("/projects").await?;
            out.table(&items, &["NAME", "PUBLIC", "CREATED"], |p| {
                vec![s(&p["name"]), yes(&p["public"]), s(&p["created_at"])]
            });
        }
        ProjectsCommand::Create { name, public } => {
            let v = client
                .call(
                    "POST",
                    "/projects",
                    Some(json!({"name": name, "public": public})),
                )
                .await?;
            out.one(&v, || {
                format!(
                    "project {} created ({})",
                    s(&v["name"]),
                    if public { "public" } else { "private" }
                )
            });
        }
        ProjectsCommand::Delete { name } => {
            client
                .call("DELETE", &format!("/projects/{}", seg(&name)), None)
                .await?;
            out.done(&format!("project {name} deleted"));
        }
    }
    Ok(())
}

fn member_path(project: &str, m: &Member) -> (String, String) {
    match (&m.user, &m.group) {
        (Some(u), _) => (
            format!("/projects/{}/members/user/{}", seg(project), seg(u)),
            format!("user {u}"),
        ),
        (None, Some(g)) => (
            format!("/projects/{}/members/group/{}", seg(project), seg(g)),
            format!("group {g}"),
        ),
        (None, None) => unreachable!("clap requires one"),
    }
}

async fn members(client: &Client, out: &Output, cmd: MembersCommand) -> anyhow::Result<()> {
    match cmd {
        MembersCommand::List { project } => {
            let items = client
                .list(&format!("/projects/{}/members", seg(&project)))
                .await?;
            out.table(&items, &["KIND", "NAME", "ROLE"], |m| {
                vec![s(&m["kind"]), s(&m["name"]), s(&m["role"])]
            });
        }
        MembersCommand::Add {
            project,
            member,
            role,
        } => {
            let body = json!({"user": member.user, "group": member.group, "role": role});
            let path = format!("/projects/{}/members", seg(&project));
            let (member_path, who) = member_path(&project, &member);
            let v = match client.call("POST", &path, Some(body)).await {
                Ok(v) => v,
                // Already a member: change the role instead.
                Err(e) if e.to_string().contains("CONFLICT") => {
                    client
                        .call("PUT", &member_path, Some(json!({"role": role})))
                        .await?
                }
                Err(e) => return Err(e),
            };
            out.one(&v, || {
                format!("{who} is {} in project {project}", s(&v["role"]))
            });
        }
        MembersCommand::Remove { project, member } => {
            let (path, who) = member_path(&project, &member);
            client.call("DELETE", &path, None).await?;
            out.done(&format!("{who} removed from project {project}"));
        }
    }
    Ok(())
}

async fn robots(client: &Client, out: &Output, cmd: RobotsCommand) -> anyhow::Result<()> {
    match cmd {
        RobotsCommand::List { project } => {
            let path = match &project {
                Some(p) => format!("/projects/{}/robots", seg(p)),
                None => "/robots".to_string(),
            };
            let items = client.list(&path).await?;
            out.table(
                &items,
                &["ID", "NAME", "EXPIRES", "DISABLED", "PERMISSIONS"],
                |r| {
                    vec![
                        r["id"].to_string(),
                        s(&r["name"]),
                        or_never(&r["expires_at"]),
                        yes(&r["disabled"]),
                        grants_summary(&r["permissions"]),
                    ]
                },
            );
        }
        RobotsCommand::Create {
            name,
            project,
            description,
            access,
            permissions_json,
            expires_in_days,
        } => {
            let mut permissions = match &permissions_json {
                Some(text) => match serde_json::from_str::<Value>(text)
                    .context("--permissions-json is not JSON")?
                {
                    Value::Array(list) => list,
                    _ => bail!("--permissions-json must be a JSON list of grants"),
                },
                None => Vec::new(),
            };
            for spec in &access {
                permissions.push(parse_access(spec, project.as_deref())?);
            }
            if permissions.is_empty() {
                bail!("give the robot's permissions with --access or --permissions-json");
            }
            let mut body = json!({
                "name": name,
                "description": description,
                "permissions": permissions,
            });
            if let Some(days) = expires_in_days {
                body["expires_in_days"] = json!(days);
            }
            let path = match &project {
                Some(p) => format!("/projects/{}/robots", seg(p)),
                None => "/robots".to_string(),
            };
            let v = client.call("POST", &path, Some(body)).await?;
            out.one(&v, || secret_message("robot", &v));
        }
        RobotsCommand::Rotate { id } => {
            let v = client
                .call("POST", &format!("/robots/{id}/secret"), None)
                .await?;
            out.one(&v, || secret_message("robot", &v));
        }
        RobotsCommand::Delete { id } => {
            client
                .call("DELETE", &format!("/robots/{id}"), None)
                .await?;
            out.done(&format!("robot {id} deleted"));
        }
    }
    Ok(())
}

async fn tokens(client: &Client, out: &Output, cmd: TokensCommand) -> anyhow::Result<()> {
    match cmd {
        TokensCommand::List => {
            let items = client.list("/users/me/tokens").await?;
            out.table(
                &items,
                &["ID", "NAME", "EXPIRES", "LAST USED", "SCOPES"],
                |t| {
                    vec![
                        t["id"].to_string(),
                        s(&t["name"]),
                        or_never(&t["expires_at"]),
                        s(&t["last_used_at"]),
                        if t["scopes"].is_null() {
                            "all".into()
                        } else {
                            grants_summary(&t["scopes"])
                        },
                    ]
                },
            );
        }
        TokensCommand::Create {
            name,
            expires_in_days,
            access,
        } => {
            let mut body = json!({"name": name, "expires_in_days": expires_in_days});
            if !access.is_empty() {
                let scopes = access
                    .iter()
                    .map(|spec| parse_access(spec, None))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                body["scopes"] = json!(scopes);
            }
            let v = client.call("POST", "/users/me/tokens", Some(body)).await?;
            out.one(&v, || secret_message("token", &v));
        }
        TokensCommand::Delete { id } => {
            client
                .call("DELETE", &format!("/users/me/tokens/{id}"), None)
                .await?;
            out.done(&format!("token {id} revoked"));
        }
    }
    Ok(())
}

async fn audit(client: &Client, out: &Output, a: AuditArgs) -> anyhow::Result<()> {
    let mut query = vec![("limit", a.limit.to_string())];
    for (k, v) in [
        ("actor", a.actor),
        ("project", a.project),
        ("action", a.action),
        ("since", a.since),
        ("until", a.until),
    ] {
        if let Some(v) = v {
            query.push((k, v));
        }
    }
    let qs: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{k}={}", seg(v)))
        .collect();
    let v = client
        .call("GET", &format!("/audit?{}", qs.join("&")), None)
        .await?;
    let items = v["items"].as_array().cloned().unwrap_or_default();
    if out.json {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    out.table(
        &items,
        &["TIME", "ACTOR", "ACTION", "RESOURCE", "PROJECT", "RESULT"],
        |e| {
            vec![
                s(&e["time"]),
                s(&e["actor"]),
                s(&e["action"]),
                s(&e["resource"]),
                s(&e["project"]),
                s(&e["result"]),
            ]
        },
    );
    Ok(())
}

/// The text after creating a robot or token, with the secret.
fn secret_message(kind: &str, v: &Value) -> String {
    format!(
        "{kind} {} (id {}) expires {}\nsecret: {}\nStore the secret now: it is not shown again.",
        s(&v["name"]),
        v["id"],
        or_never(&v["expires_at"]),
        s(&v["secret"]),
    )
}

/// `[NAMESPACE=]RESOURCE:ACTION[,…]` as an API grant.
fn parse_access(spec: &str, default_project: Option<&str>) -> anyhow::Result<Value> {
    let (namespace, list) = match spec.split_once('=') {
        Some((ns, list)) => (Some(ns), list),
        None => (default_project, spec),
    };
    let namespace = match namespace {
        Some("system") => json!({"kind": "system"}),
        Some("*") => json!({"kind": "all_projects"}),
        Some(project) if !project.is_empty() => json!({"kind": "project", "project": project}),
        _ => bail!("--access {spec:?}: name the namespace, e.g. team=repository:pull"),
    };
    let mut access = Vec::new();
    for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        match item {
            "pull" => access.push(json!({"resource": "repository", "action": "pull"})),
            "push" => {
                access.push(json!({"resource": "repository", "action": "pull"}));
                access.push(json!({"resource": "repository", "action": "push"}));
            }
            _ => {
                let Some((resource, action)) = item.split_once(':') else {
                    bail!("--access {spec:?}: {item:?} is not RESOURCE:ACTION");
                };
                access.push(json!({"resource": resource, "action": action}));
            }
        }
    }
    if access.is_empty() {
        bail!("--access {spec:?} names no permission");
    }
    access.dedup();
    Ok(json!({"namespace": namespace, "access": access}))
}

fn new_password(p: &NewPassword) -> anyhow::Result<String> {
    let text = match &p.password_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))?
            .lines()
            .next()
            .unwrap_or("")
            .to_string(),
        None => std::env::var("BERTH_USER_PASSWORD").map_err(|_| {
            anyhow::anyhow!("no new password: pass --password-file or set BERTH_USER_PASSWORD")
        })?,
    };
    if text.is_empty() {
        bail!("the new password is empty");
    }
    Ok(text)
}

/// A JSON value as table text: strings bare, null empty.
fn s(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(t) => t.clone(),
        other => other.to_string(),
    }
}

fn yes(v: &Value) -> String {
    if v.as_bool() == Some(true) {
        "yes"
    } else {
        "no"
    }
    .into()
}

fn or_never(v: &Value) -> String {
    if v.is_null() { "never".into() } else { s(v) }
}

/// `team: repository:pull,repository:push; *: …`
fn grants_summary(v: &Value) -> String {
    let Some(grants) = v.as_array() else {
        return String::new();
    };
    grants
        .iter()
        .map(|g| {
            let ns = match s(&g["namespace"]["kind"]).as_str() {
                "project" => s(&g["namespace"]["project"]),
                "all_projects" => "*".into(),
                other => other.to_string(),
            };
            let perms: Vec<String> = g["access"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|p| format!("{}:{}", s(&p["resource"]), s(&p["action"])))
                        .collect()
                })
                .unwrap_or_default();
            format!("{ns}={}", perms.join(","))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Percent-encodes one path segment or query value.
fn seg(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

struct Client {
    http: reqwest::Client,
    base: String,
    user: String,
    password: String,
}

impl Client {
    /// One request; the JSON answer (`null` for 204), or the API's error.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).context("HTTP method")?;
        let url = format!("{}{path}", self.base);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .basic_auth(&self.user, Some(&self.password));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .with_context(|| format!("{method} {url}: reading the answer"))?;
        if status.is_success() {
            if bytes.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes)
                .with_context(|| format!("{method} {url}: the answer is not JSON"));
        }
        let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
        let first = parsed.as_ref().and_then(|v| v["errors"].get(0).cloned());
        match first {
            Some(e) => bail!(
                "{} {}: {}",
                status.as_u16(),
                s(&e["code"]),
                s(&e["message"])
            ),
            None => bail!(
                "{} from {method} {url}: {}",
                status,
                String::from_utf8_lossy(&bytes).trim()
            ),
        }
    }

    /// Every item of a list endpoint, following `next`.
    async fn list(&self, path: &str) -> anyhow::Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..10_000 {
            let page_path = match &after {
                Some(a) => format!("{path}?limit=1000&after={}", seg(a)),
                None => format!("{path}?limit=1000"),
            };
            let v = self.call("GET", &page_path, None).await?;
            items.extend(v["items"].as_array().cloned().unwrap_or_default());
            match v["next"].as_str() {
                Some(n) => after = Some(n.to_string()),
                None => break,
            }
        }
        Ok(items)
    }
}

struct Output {
    json: bool,
}

impl Output {
    fn one(&self, v: &Value, text: impl FnOnce() -> String) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        } else {
            println!("{}", text());
        }
    }

    fn done(&self, text: &str) {
        if self.json {
            println!("{}", json!({"ok": true, "message": text}));
        } else {
            println!("{text}");
        }
    }

    fn table(&self, items: &[Value], headers: &[&str], row: impl Fn(&Value) -> Vec<String>) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(items).unwrap_or_default()
            );
            return;
        }
        let rows: Vec<Vec<String>> = items.iter().map(row).collect();
        let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
        for r in &rows {
            for (w, cell) in widths.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: Vec<String>| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            println!("{}", padded.join("  ").trim_end());
        };
        line(headers.iter().map(|h| h.to_string()).collect());
        for r in rows {
            line(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_specs() {
        assert_eq!(
            parse_access("team=push", None).unwrap(),
            json!({"namespace": {"kind": "project", "project": "team"},
                   "access": [{"resource": "repository", "action": "pull"},
                              {"resource": "repository", "action": "push"}]})
        );
        assert_eq!(
            parse_access("pull", Some("team")).unwrap()["namespace"],
            json!({"kind": "project", "project": "team"})
        );
        assert_eq!(
            parse_access("*=artifact:delete", None).unwrap()["namespace"],
            json!({"kind": "all_projects"})
        );
        assert_eq!(
            parse_access("system=project:create", None).unwrap()["access"],
            json!([{"resource": "project", "action": "create"}])
        );
        assert!(parse_access("pull", None).is_err());
        assert!(parse_access("team=", None).is_err());
        assert!(parse_access("team=bogus", None).is_err());
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(seg("robot$team+ci"), "robot%24team%2Bci");
        assert_eq!(seg("a b/c"), "a%20b%2Fc");
        assert_eq!(seg("ok-1.2_3~"), "ok-1.2_3~");
    }

    #[test]
    fn grant_summaries() {
        let v = json!([{"namespace": {"kind": "project", "project": "team"},
                        "access": [{"resource": "repository", "action": "pull"}]},
                       {"namespace": {"kind": "all_projects"},
                        "access": [{"resource": "tag", "action": "list"}]}]);
        assert_eq!(grants_summary(&v), "team=repository:pull; *=tag:list");
    }
}
