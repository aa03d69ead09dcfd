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
    /// A project's immutable tag rules.
    #[command(subcommand)]
    ImmutableRules(ImmutableRulesCommand),
    /// A project's quota: limits and exact usage.
    #[command(subcommand)]
    Quota(QuotaCommand),
    /// A project's deleted manifests and tags, and restoring them.
    #[command(subcommand)]
    Trash(TrashCommand),
    /// A project's tag retention policy, its runs and their history.
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// A repository's artifacts with push and pull times and pull counts.
    Artifacts(ArtifactsArgs),
    /// The settings the server runs with, secrets left out (system admin).
    Settings,
    /// The LDAP directory.
    #[command(subcommand)]
    Ldap(LdapCommand),
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
enum LdapCommand {
    /// Connect, bind with the search account and search a sample of users.
    Test,
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
        AdminCommand::ImmutableRules(cmd) => immutable_rules(&client, &out, cmd).await,
        AdminCommand::Quota(cmd) => quota(&client, &out, cmd).await,
        AdminCommand::Trash(cmd) => trash(&client, &out, cmd).await,
        AdminCommand::Retention(cmd) => retention(&client, &out, cmd).await,
        AdminCommand::Artifacts(a) => artifacts(&client, &out, a).await,
        AdminCommand::Settings => {
            let v = client.call("GET", "/system/settings", None).await?;
            // Nested and read by people: indented JSON either way.
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(())
        }
        AdminCommand::Ldap(LdapCommand::Test) => {
            let v = client.call("POST", "/system/ldap/test", None).await?;
            out.one(&v, || match v["configured"].as_bool() {
                Some(true) if v["bind_ok"] == json!(true) => format!(
                    "LDAP: connected ({}), search account accepted, {} user(s) in the sample, {} ms",
                    if v["tls"] == json!(true) { "TLS" } else { "no TLS" },
                    v["users_found"],
                    v["elapsed_ms"]
                ),
                Some(true) => "LDAP: connected, but the search account's bind was rejected (check bind_dn and bind_password)".to_string(),
                _ => "LDAP is not configured ([auth.ldap])".to_string(),
            });
            if v["configured"] == json!(true) && v["bind_ok"] != json!(true) {
                bail!("the LDAP search account was rejected");
            }
            Ok(())
        }
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

// ---------------------------------------------------------------------------
// Immutable tag rules and quotas.

#[derive(Subcommand)]
enum ImmutableRulesCommand {
    List {
        project: String,
    },
    /// Add a rule: tags it selects are created once, then never moved nor
    /// deleted. Patterns are doublestar globs (`*`, `**`, `?`, `[a-z]`, `{a,b}`).
    Create {
        project: String,
        /// Tag pattern, e.g. `release-*`.
        #[arg(long)]
        tags: String,
        /// The rule applies to tags NOT matching --tags.
        #[arg(long)]
        exclude_tags: bool,
        /// Repository pattern, over the path inside the project.
        #[arg(long, default_value = "**")]
        repositories: String,
        /// The rule applies to repositories NOT matching --repositories.
        #[arg(long)]
        exclude_repositories: bool,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// Change a rule's patterns, or enable or disable it.
    Update {
        project: String,
        id: i64,
        #[arg(long)]
        tags: Option<String>,
        #[arg(long, requires = "tags")]
        exclude_tags: bool,
        #[arg(long)]
        repositories: Option<String>,
        #[arg(long, requires = "repositories")]
        exclude_repositories: bool,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
    },
    Delete {
        project: String,
        id: i64,
    },
}

#[derive(Subcommand)]
enum QuotaCommand {
    /// Limits, usage, and what the usage is made of.
    Show { project: String },
    /// Set limits (system admin). Sizes take B, KiB, MiB, GiB, TiB (or
    /// KB, MB, GB, TB in powers of 1000); `-1` or `unlimited` removes a limit.
    Set {
        project: String,
        #[arg(long, allow_hyphen_values = true)]
        storage: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
        artifacts: Option<String>,
        /// Record a `quota.warning` audit event when usage crosses this percentage.
        #[arg(long)]
        warn_percent: Option<i64>,
    },
}

fn selector(pattern: &str, exclude: bool) -> Value {
    json!({"pattern": pattern, "decoration": if exclude { "excludes" } else { "matches" }})
}

fn selector_text(v: &Value) -> String {
    let not = if s(&v["decoration"]) == "excludes" {
        "not "
    } else {
        ""
    };
    format!("{not}{}", s(&v["pattern"]))
}

fn rule_text(v: &Value) -> String {
    format!(
        "immutable rule {} in project {}: repositories {}, tags {}{}",
        v["id"],
        s(&v["project"]),
        selector_text(&v["repositories"]),
        selector_text(&v["tags"]),
        if v["disabled"].as_bool() == Some(true) {
            " (disabled)"
        } else {
            ""
        }
    )
}

async fn immutable_rules(
    client: &Client,
    out: &Output,
    cmd: ImmutableRulesCommand,
) -> anyhow::Result<()> {
    match cmd {
        ImmutableRulesCommand::List { project } => {
            let v = client
                .call(
                    "GET",
                    &format!("/projects/{}/immutable-rules", seg(&project)),
                    None,
                )
                .await?;
            let items = v["items"].as_array().cloned().unwrap_or_default();
            out.table(
                &items,
                &["ID", "REPOSITORIES", "TAGS", "DISABLED", "CREATED BY"],
                |r| {
                    vec![
                        r["id"].to_string(),
                        selector_text(&r["repositories"]),
                        selector_text(&r["tags"]),
                        yes(&r["disabled"]),
                        s(&r["created_by"]),
                    ]
                },
            );
        }
        ImmutableRulesCommand::Create {
            project,
            tags,
            exclude_tags,
            repositories,
            exclude_repositories,
            disabled,
        } => {
            let body = json!({
                "repositories": selector(&repositories, exclude_repositories),
                "tags": selector(&tags, exclude_tags),
                "disabled": disabled,
            });
            let v = client
                .call(
                    "POST",
                    &format!("/projects/{}/immutable-rules", seg(&project)),
                    Some(body),
                )
                .await?;
            out.one(&v, || format!("created {}", rule_text(&v)));
        }
        ImmutableRulesCommand::Update {
            project,
            id,
            tags,
            exclude_tags,
            repositories,
            exclude_repositories,
            enable,
            disable,
        } => {
            let mut body = json!({});
            if let Some(t) = &tags {
                body["tags"] = selector(t, exclude_tags);
            }
            if let Some(r) = &repositories {
                body["repositories"] = selector(r, exclude_repositories);
            }
            if enable || disable {
                body["disabled"] = json!(disable);
            }
            let v = client
                .call(
                    "PATCH",
                    &format!("/projects/{}/immutable-rules/{id}", seg(&project)),
                    Some(body),
                )
                .await?;
            out.one(&v, || format!("updated {}", rule_text(&v)));
        }
        ImmutableRulesCommand::Delete { project, id } => {
            client
                .call(
                    "DELETE",
                    &format!("/projects/{}/immutable-rules/{id}", seg(&project)),
                    None,
                )
                .await?;
            out.done(&format!("immutable rule {id} of project {project} deleted"));
        }
    }
    Ok(())
}

/// `12GiB`, `500 MB`, `1048576`, `-1`, `unlimited` as bytes (-1 unlimited).
fn parse_size(text: &str) -> anyhow::Result<i64> {
    let t = text.trim();
    if t == "-1" || t.eq_ignore_ascii_case("unlimited") {
        return Ok(-1);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("{text:?} is not a size (e.g. 10GiB, 500MB, 1048576)"))?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        other => bail!("{text:?}: unknown unit {other:?} (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"),
    };
    let bytes = (number * factor).round();
    if !(0.0..9.0e18).contains(&bytes) {
        bail!("{text:?} is out of range");
    }
    Ok(bytes as i64)
}

fn limit_text(v: &Value, bytes: bool) -> String {
    match v.as_i64() {
        Some(n) if n < 0 => "unlimited".into(),
        Some(n) if bytes => format!("{} ({n} bytes)", human(n)),
        Some(n) => n.to_string(),
        None => s(v),
    }
}

/// Bytes for people, as the registry's messages write them.
fn human(n: i64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n.abs() < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v.abs() >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

fn quota_text(v: &Value) -> String {
    let e = &v["explain"];
    let n = |x: &Value| x.as_i64().unwrap_or(0);
    let ratio = match v["usage_ratio"].as_f64() {
        Some(r) => format!("{:.1}% of the fuller limit", r * 100.0),
        None => "no limit".into(),
    };
    format!(
        "project {}\n  storage limit:   {}\n  artifact limit:  {}\n  warn at:         {}%\n  \
         storage used:    {} ({} bytes; {ratio})\n    referenced:    {} in {} blobs\n    \
         linked only:   {} in {} blobs (uploaded or mounted, referenced by no manifest)\n    \
         manifests:     {}\n  pending deletion: {} in {} deleted manifests (restore window)\n  \
         artifacts:       {}",
        s(&v["project"]),
        limit_text(&v["limits"]["storage_bytes"], true),
        limit_text(&v["limits"]["artifacts"], false),
        v["warn_percent"],
        human(n(&v["usage"]["storage_bytes"])),
        n(&v["usage"]["storage_bytes"]),
        human(n(&e["referenced_bytes"])),
        n(&e["referenced_blobs"]),
        human(n(&e["linked_only_bytes"])),
        n(&e["linked_only_blobs"]),
        human(n(&e["manifest_bytes"])),
        human(n(&e["pending_deletion_bytes"])),
        n(&e["pending_deletion_artifacts"]),
        n(&v["usage"]["artifacts"]),
    )
}

async fn quota(client: &Client, out: &Output, cmd: QuotaCommand) -> anyhow::Result<()> {
    match cmd {
        QuotaCommand::Show { project } => {
            let v = client
                .call("GET", &format!("/projects/{}/quota", seg(&project)), None)
                .await?;
            out.one(&v, || quota_text(&v));
        }
        QuotaCommand::Set {
            project,
            storage,
            artifacts,
            warn_percent,
        } => {
            let mut body = json!({});
            if let Some(t) = &storage {
                body["storage_bytes"] = json!(parse_size(t)?);
            }
            if let Some(t) = &artifacts {
                body["artifacts"] = json!(if t.eq_ignore_ascii_case("unlimited") {
                    -1
                } else {
                    t.parse::<i64>()
                        .map_err(|_| anyhow::anyhow!("--artifacts {t:?} is not a number"))?
                });
            }
            if let Some(w) = warn_percent {
                body["warn_percent"] = json!(w);
            }
            if body.as_object().is_some_and(|o| o.is_empty()) {
                bail!("give --storage, --artifacts or --warn-percent");
            }
            let v = client
                .call(
                    "PUT",
                    &format!("/projects/{}/quota", seg(&project)),
                    Some(body),
                )
                .await?;
            out.one(&v, || quota_text(&v));
        }
    }
    Ok(())
}

#[cfg(test)]
mod policy_tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("-1").unwrap(), -1);
        assert_eq!(parse_size("unlimited").unwrap(), -1);
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("12MiB").unwrap(), 12 << 20);
        assert_eq!(parse_size("1.5 GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("500MB").unwrap(), 500_000_000);
        assert_eq!(parse_size("0").unwrap(), 0);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert_eq!(human(10 * 1024 * 1024 + 512 * 1024), "10.5 MiB");
    }

    #[test]
    fn rule_texts() {
        let v = json!({"id": 3, "project": "team", "disabled": false,
            "repositories": {"pattern": "**", "decoration": "matches"},
            "tags": {"pattern": "latest", "decoration": "excludes"}});
        assert_eq!(
            rule_text(&v),
            "immutable rule 3 in project team: repositories **, tags not latest"
        );
    }
}

// ---------------------------------------------------------------------------
// The restore window.

#[derive(Subcommand)]
enum TrashCommand {
    /// Deleted manifests and tags still restorable, oldest first.
    List { project: String },
    /// Bring an entry back (its tag names must be free).
    Restore { project: String, id: i64 },
}

async fn trash(client: &Client, out: &Output, cmd: TrashCommand) -> anyhow::Result<()> {
    match cmd {
        TrashCommand::List { project } => {
            let items = client
                .list(&format!("/projects/{}/trash", seg(&project)))
                .await?;
            out.table(
                &items,
                &[
                    "ID",
                    "REPOSITORY",
                    "KIND",
                    "DIGEST",
                    "TAGS",
                    "DELETED BY",
                    "EXPIRES",
                ],
                |t| {
                    let tags: Vec<String> = t["tags"]
                        .as_array()
                        .map(|a| a.iter().map(s).collect())
                        .unwrap_or_default();
                    vec![
                        t["id"].to_string(),
                        s(&t["repository"]),
                        s(&t["kind"]),
                        s(&t["digest"]),
                        tags.join(","),
                        s(&t["deleted_by"]),
                        s(&t["expires_at"]),
                    ]
                },
            );
        }
        TrashCommand::Restore { project, id } => {
            let v = client
                .call(
                    "POST",
                    &format!("/projects/{}/trash/{id}/restore", seg(&project)),
                    None,
                )
                .await?;
            out.one(&v, || {
                format!(
                    "restored {}@{} (tags: {})",
                    s(&v["repository"]),
                    s(&v["digest"]),
                    v["tags"]
                        .as_array()
                        .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
                        .unwrap_or_default()
                )
            });
        }
    }
    Ok(())
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

// ---------------------------------------------------------------------------
// Tag retention and artifacts.

#[derive(Subcommand)]
enum RetentionCommand {
    /// The policy: rules, schedule, next run.
    Show { project: String },
    /// Create or replace the policy: from a JSON file (`-` for standard
    /// input) in the API's shape, or one rule from flags.
    Set {
        project: String,
        /// The policy as JSON: {"rules": [...], "schedule": "..."}.
        #[arg(long, conflicts_with = "template")]
        file: Option<PathBuf>,
        /// One rule: latestPushedK, latestPulledN, nDaysSinceLastPush,
        /// nDaysSinceLastPull or always.
        #[arg(long)]
        template: Option<String>,
        /// K, N or D of the template.
        #[arg(long, requires = "template")]
        param: Option<i64>,
        /// Repository pattern, over the path inside the project.
        #[arg(long, default_value = "**")]
        repositories: String,
        /// The rule applies to repositories NOT matching --repositories.
        #[arg(long)]
        exclude_repositories: bool,
        /// Tag pattern.
        #[arg(long, default_value = "**")]
        tags: String,
        /// The rule looks at artifacts with a tag NOT matching --tags.
        #[arg(long)]
        exclude_tags: bool,
        /// The rule also looks at untagged artifacts.
        #[arg(long)]
        untagged: bool,
        /// Cron schedule, UTC (5 fields, or 6 with seconds first).
        #[arg(long, conflicts_with = "file")]
        schedule: Option<String>,
    },
    /// Remove the policy (the history stays).
    Delete { project: String },
    /// Run the policy now; with --dry-run, list what would go.
    Run {
        project: String,
        #[arg(long)]
        dry_run: bool,
    },
    /// The runs, newest first.
    Executions { project: String },
    /// One run, with what it decided for each artifact.
    Execution { project: String, id: i64 },
}

#[derive(Args)]
struct ArtifactsArgs {
    project: String,
    /// The repository's full name, e.g. team/app.
    repository: String,
}

fn retention_policy_from_flags(cmd: &RetentionCommand) -> anyhow::Result<Value> {
    let RetentionCommand::Set {
        file,
        template,
        param,
        repositories,
        exclude_repositories,
        tags,
        exclude_tags,
        untagged,
        schedule,
        ..
    } = cmd
    else {
        bail!("not a set command");
    };
    if let Some(path) = file {
        let text = if path.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin()).context("reading the policy from stdin")?
        } else {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        };
        return serde_json::from_str(&text).context("the policy is not JSON");
    }
    let Some(template) = template else {
        bail!("give the policy with --file, or one rule with --template");
    };
    let params = match param {
        Some(n) => json!({ template.as_str(): n }),
        None => json!({}),
    };
    Ok(json!({
        "rules": [{
            "template": template,
            "params": params,
            "repositories": {
                "decoration": if *exclude_repositories { "repoExcludes" } else { "repoMatches" },
                "pattern": repositories,
            },
            "tags": {
                "decoration": if *exclude_tags { "excludes" } else { "matches" },
                "pattern": tags,
                "untagged": untagged,
            },
        }],
        "schedule": schedule,
    }))
}

fn retention_items_table(out: &Output, items: &[Value]) {
    out.table(
        items,
        &["REPOSITORY", "DIGEST", "TAGS", "OUTCOME", "REASON"],
        |i| {
            let tags: Vec<String> = i["tags"]
                .as_array()
                .map(|a| a.iter().map(s).collect())
                .unwrap_or_default();
            vec![
                s(&i["repository"]),
                short_digest(&s(&i["digest"])),
                tags.join(","),
                s(&i["outcome"]),
                s(&i["reason"]),
            ]
        },
    );
}

fn short_digest(d: &str) -> String {
    match d.split_once(':') {
        Some((alg, hex)) if hex.len() > 12 => format!("{alg}:{}", &hex[..12]),
        _ => d.to_string(),
    }
}

fn execution_summary(e: &Value) -> String {
    format!(
        "run {} ({}{}, {}): {} artifact(s), {} retained, {} {}, {} error(s){}",
        e["id"],
        s(&e["trigger"]),
        if e["dry_run"].as_bool() == Some(true) {
            ", dry run"
        } else {
            ""
        },
        s(&e["status"]),
        e["artifacts"],
        e["retained"],
        e["deleted"],
        if e["dry_run"].as_bool() == Some(true) {
            "to delete"
        } else {
            "deleted"
        },
        e["errors"],
        if e["error"].is_null() {
            String::new()
        } else {
            format!("; {}", s(&e["error"]))
        }
    )
}

/// Every item of a paged list whose path already has a query.
async fn list_all(client: &Client, path: &str) -> anyhow::Result<Vec<Value>> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..100_000 {
        let page_path = match &after {
            Some(a) => format!("{path}{sep}limit=1000&after={}", seg(a)),
            None => format!("{path}{sep}limit=1000"),
        };
        let v = client.call("GET", &page_path, None).await?;
        items.extend(v["items"].as_array().cloned().unwrap_or_default());
        match v["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    Ok(items)
}

async fn retention(client: &Client, out: &Output, cmd: RetentionCommand) -> anyhow::Result<()> {
    match &cmd {
        RetentionCommand::Show { project } => {
            let v = client
                .call(
                    "GET",
                    &format!("/projects/{}/retention", seg(project)),
                    None,
                )
                .await?;
            out.one(&v, || {
                let rules: Vec<String> = v["rules"]
                    .as_array()
                    .map(|rules| {
                        rules
                            .iter()
                            .enumerate()
                            .map(|(i, r)| {
                                let param = r["params"]
                                    .get(s(&r["template"]))
                                    .map(|p| format!(" {p}"))
                                    .unwrap_or_default();
                                format!(
                                    "  {i}: {}{param}; repositories {} {:?}; tags {} {:?}{}{}",
                                    s(&r["template"]),
                                    s(&r["repositories"]["decoration"]),
                                    s(&r["repositories"]["pattern"]),
                                    s(&r["tags"]["decoration"]),
                                    s(&r["tags"]["pattern"]),
                                    if r["tags"]["untagged"].as_bool() == Some(true) {
                                        ", untagged too"
                                    } else {
                                        ""
                                    },
                                    if r["disabled"].as_bool() == Some(true) {
                                        " (disabled)"
                                    } else {
                                        ""
                                    }
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                format!(
                    "retention policy of {project}\nschedule: {} (next run {})\nrules (any retains):\n{}",
                    or_none(&v["schedule"]),
                    or_none(&v["next_run_at"]),
                    rules.join("\n")
                )
            });
        }
        RetentionCommand::Set { project, .. } => {
            let body = retention_policy_from_flags(&cmd)?;
            let v = client
                .call(
                    "PUT",
                    &format!("/projects/{}/retention", seg(project)),
                    Some(body),
                )
                .await?;
            out.one(&v, || {
                let n = v["rules"].as_array().map(Vec::len).unwrap_or(0);
                format!(
                    "retention policy of {project} set: {n} rule(s), schedule {}",
                    or_none(&v["schedule"])
                )
            });
        }
        RetentionCommand::Delete { project } => {
            client
                .call(
                    "DELETE",
                    &format!("/projects/{}/retention", seg(project)),
                    None,
                )
                .await?;
            out.done(&format!("retention policy of {project} deleted"));
        }
        RetentionCommand::Run { project, dry_run } => {
            let v = client
                .call(
                    "POST",
                    &format!("/projects/{}/retention/run", seg(project)),
                    Some(json!({ "dry_run": dry_run })),
                )
                .await?;
            if out.json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                return Ok(());
            }
            retention_items_table(out, v["items"].as_array().map_or(&[], |a| a));
            println!("{}", execution_summary(&v["execution"]));
        }
        RetentionCommand::Executions { project } => {
            let items = list_all(
                client,
                &format!("/projects/{}/retention/executions", seg(project)),
            )
            .await?;
            out.table(
                &items,
                &[
                    "ID",
                    "TRIGGER",
                    "DRY RUN",
                    "STATUS",
                    "STARTED",
                    "ARTIFACTS",
                    "RETAINED",
                    "DELETED",
                    "ERRORS",
                ],
                |e| {
                    vec![
                        e["id"].to_string(),
                        s(&e["trigger"]),
                        yes(&e["dry_run"]),
                        s(&e["status"]),
                        s(&e["started_at"]),
                        e["artifacts"].to_string(),
                        e["retained"].to_string(),
                        e["deleted"].to_string(),
                        e["errors"].to_string(),
                    ]
                },
            );
        }
        RetentionCommand::Execution { project, id } => {
            let base = format!("/projects/{}/retention/executions/{id}", seg(project));
            let e = client.call("GET", &base, None).await?;
            let items = list_all(client, &format!("{base}/items")).await?;
            if out.json {
                let v = json!({"execution": e, "items": items});
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                return Ok(());
            }
            retention_items_table(out, &items);
            println!("{}", execution_summary(&e));
        }
    }
    Ok(())
}

fn or_none(v: &Value) -> String {
    if v.is_null() { "none".into() } else { s(v) }
}

async fn artifacts(client: &Client, out: &Output, a: ArtifactsArgs) -> anyhow::Result<()> {
    let items = list_all(
        client,
        &format!(
            "/projects/{}/artifacts?repository={}",
            seg(&a.project),
            seg(&a.repository)
        ),
    )
    .await?;
    out.table(
        &items,
        &["DIGEST", "TAGS", "SIZE", "PUSHED", "PULLED", "PULLS"],
        |i| {
            let tags: Vec<String> = i["tags"]
                .as_array()
                .map(|t| t.iter().map(s).collect())
                .unwrap_or_default();
            vec![
                short_digest(&s(&i["digest"])),
                tags.join(","),
                i["size"].to_string(),
                s(&i["pushed_at"]),
                if i["pulled_at"].is_null() {
                    "never".into()
                } else {
                    s(&i["pulled_at"])
                },
                i["pull_count"].to_string(),
            ]
        },
    );
    Ok(())
}

#[cfg(test)]
mod retention_tests {
    use super::*;

    #[test]
    fn one_rule_from_flags() {
        let cmd = RetentionCommand::Set {
            project: "team".into(),
            file: None,
            template: Some("latestPushedK".into()),
            param: Some(5),
            repositories: "tools/**".into(),
            exclude_repositories: true,
            tags: "v*".into(),
            exclude_tags: false,
            untagged: true,
            schedule: Some("0 0 * * *".into()),
        };
        assert_eq!(
            retention_policy_from_flags(&cmd).unwrap(),
            json!({"rules": [{
                "template": "latestPushedK", "params": {"latestPushedK": 5},
                "repositories": {"decoration": "repoExcludes", "pattern": "tools/**"},
                "tags": {"decoration": "matches", "pattern": "v*", "untagged": true}
            }], "schedule": "0 0 * * *"})
        );
        assert_eq!(
            short_digest("sha256:0123456789abcdef0123"),
            "sha256:0123456789ab"
        );
    }
}
