//! The audit log, written behind the request: events go into a channel and
//! one task stores them in batches (one transaction per batch), so a pull
//! does not wait for an audit row. Optionally each event is also appended
//! to a file as one JSON line, and/or sent to syslog (RFC 5424 over the
//! local datagram socket, facility "log audit"), for shipping to a SIEM.
//!
//! What is lost on a crash is at most the last batch (a fraction of a
//! second); the registry's data itself never depends on the audit log.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use berth_auth::Principal;
use berth_meta::{AuditEntry, MetaStore};
use tokio::sync::{mpsc, oneshot};

use super::now_millis;
use crate::{Error, Result};

const BATCH: usize = 256;
const LINGER: Duration = Duration::from_millis(100);

/// One security-relevant event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub actor: String,
    /// `anonymous`, `user`, `robot` or `system`.
    pub actor_kind: &'static str,
    /// Dotted verb, e.g. `login`, `artifact.push`, `robot.create`.
    pub action: String,
    /// What it was done to, e.g. `repository/team/app:v1`, `user/alice`.
    pub resource: String,
    pub project: Option<String>,
    /// `success`, `failure` or `denied`.
    pub result: &'static str,
    pub source_addr: Option<String>,
    pub details: Option<String>,
}

impl AuditEvent {
    /// An event done by `principal`, succeeded.
    pub fn by(principal: &Principal, action: &str, resource: impl Into<String>) -> AuditEvent {
        AuditEvent {
            actor: principal.subject().to_string(),
            actor_kind: principal.kind(),
            action: action.to_string(),
            resource: resource.into(),
            project: None,
            result: "success",
            source_addr: None,
            details: None,
        }
    }

    /// An event done by a token's subject (`""` for anonymous).
    pub fn by_subject(subject: &str, action: &str, resource: impl Into<String>) -> AuditEvent {
        AuditEvent {
            actor: subject.to_string(),
            actor_kind: subject_kind(subject),
            action: action.to_string(),
            resource: resource.into(),
            project: None,
            result: "success",
            source_addr: None,
            details: None,
        }
    }

    /// An event of the system itself (bootstrap, jobs).
    pub fn system(
        action: &str,
        resource: impl Into<String>,
        project: Option<&str>,
        details: &str,
    ) -> AuditEvent {
        AuditEvent::by_system_actor("system", action, resource, project, details)
    }

    /// An event of a named part of the system (`retention`, `gc`), so that
    /// its work can be told apart from that of whoever started it.
    pub fn by_system_actor(
        actor: &str,
        action: &str,
        resource: impl Into<String>,
        project: Option<&str>,
        details: &str,
    ) -> AuditEvent {
        AuditEvent {
            actor: actor.into(),
            actor_kind: "system",
            action: action.into(),
            resource: resource.into(),
            project: project.map(str::to_string),
            result: "success",
            source_addr: None,
            details: Some(details.to_string()),
        }
    }

    pub fn project(mut self, project: impl Into<String>) -> AuditEvent {
        self.project = Some(project.into());
        self
    }

    pub fn result(mut self, result: &'static str) -> AuditEvent {
        self.result = result;
        self
    }

    pub fn from_addr(mut self, addr: Option<std::net::IpAddr>) -> AuditEvent {
        self.source_addr = addr.map(|a| a.to_string());
        self
    }

    pub fn details(mut self, details: impl Into<String>) -> AuditEvent {
        self.details = Some(details.into());
        self
    }

    fn entry(self, at: i64) -> AuditEntry {
        AuditEntry {
            occurred_at: at,
            actor: self.actor,
            actor_kind: self.actor_kind.to_string(),
            action: self.action,
            resource: self.resource,
            project: self.project,
            result: self.result.to_string(),
            source_addr: self.source_addr,
            details: self.details,
        }
    }
}

/// The kind of a token subject: robots are named `robot$…`.
pub(crate) fn subject_kind(subject: &str) -> &'static str {
    if subject.is_empty() {
        "anonymous"
    } else if berth_auth::is_robot_name(subject) {
        "robot"
    } else {
        "user"
    }
}

enum Msg {
    Event(AuditEntry),
    Flush(oneshot::Sender<()>),
}

/// Hands events to the writer task. Cheap to clone.
#[derive(Clone)]
pub struct Auditor {
    tx: mpsc::UnboundedSender<Msg>,
}

/// Where audit events are forwarded besides the database.
#[derive(Debug, Clone, Default)]
pub struct AuditForwarding {
    /// Append one JSON line per event.
    pub file: Option<PathBuf>,
    /// A syslog datagram socket, usually `/dev/log`.
    pub syslog: Option<PathBuf>,
}

struct Sinks {
    file: Option<std::fs::File>,
    syslog: Option<(std::os::unix::net::UnixDatagram, PathBuf)>,
    host: String,
}

impl Auditor {
    pub(super) fn start(meta: MetaStore, forwarding: AuditForwarding) -> Result<Auditor> {
        let file = forwarding
            .file
            .map(|path| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| Error::Invalid(format!("audit file {}: {e}", path.display())))
            })
            .transpose()?;
        let syslog = forwarding
            .syslog
            .map(|path| {
                std::os::unix::net::UnixDatagram::unbound()
                    .map(|s| (s, path.clone()))
                    .map_err(|e| Error::Invalid(format!("audit syslog {}: {e}", path.display())))
            })
            .transpose()?;
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
            .unwrap_or_else(|| "-".into());
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(meta, Sinks { file, syslog, host }, rx));
        Ok(Auditor { tx })
    }

    /// Queues an event; never blocks, never fails the caller.
    pub fn record(&self, event: AuditEvent) {
        let _ = self.tx.send(Msg::Event(event.entry(now_millis())));
    }

    /// Waits until every event queued before this call is stored.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

async fn write_loop(meta: MetaStore, mut sinks: Sinks, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let mut batch: Vec<AuditEntry> = Vec::new();
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        let first = match rx.recv().await {
            Some(m) => m,
            None => return,
        };
        let push = |m: Msg, batch: &mut Vec<AuditEntry>, waiters: &mut Vec<_>| match m {
            Msg::Event(e) => batch.push(e),
            Msg::Flush(w) => waiters.push(w),
        };
        push(first, &mut batch, &mut waiters);
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH && waiters.is_empty() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(m)) => push(m, &mut batch, &mut waiters),
                Ok(None) | Err(_) => break,
            }
        }
        while let Ok(m) = rx.try_recv() {
            push(m, &mut batch, &mut waiters);
        }
        if !batch.is_empty() {
            if let Err(e) = store(&meta, &batch).await {
                tracing::error!(error = %e, events = batch.len(), "audit log write failed");
            }
            forward(&mut sinks, &batch);
            batch.clear();
        }
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
    }
}

fn forward(sinks: &mut Sinks, batch: &[AuditEntry]) {
    if sinks.file.is_none() && sinks.syslog.is_none() {
        return;
    }
    for e in batch {
        let line = serde_json::json!({
            "time_ms": e.occurred_at, "actor": e.actor, "actor_kind": e.actor_kind,
            "action": e.action, "resource": e.resource, "project": e.project,
            "result": e.result, "source_addr": e.source_addr, "details": e.details,
        })
        .to_string();
        if let Some(f) = sinks.file.as_mut()
            && let Err(err) = writeln!(f, "{line}")
        {
            tracing::error!(error = %err, "audit file write failed");
        }
        if let Some((socket, path)) = &sinks.syslog {
            // <110>: facility 13 (log audit) × 8 + severity 6 (info).
            let msg = format!(
                "<110>1 {} {} berth - audit - {line}",
                berth_auth::rfc3339((e.occurred_at / 1000) as u64),
                sinks.host
            );
            if let Err(err) = socket.send_to(msg.as_bytes(), path) {
                tracing::error!(error = %err, "audit syslog send failed");
            }
        }
    }
}

/// Stores `events` now, without an [`Auditor`] (`berth gc` runs without
/// one); they are not forwarded to a file or syslog.
pub(crate) async fn store_now(meta: &MetaStore, events: Vec<AuditEvent>) -> Result<()> {
    let at = now_millis();
    let batch: Vec<AuditEntry> = events.into_iter().map(|e| e.entry(at)).collect();
    store(meta, &batch).await
}

async fn store(meta: &MetaStore, batch: &[AuditEntry]) -> Result<()> {
    let mut tx = meta.begin_identity().await?;
    tx.insert_audit_batch(batch).await?;
    tx.commit().await?;
    Ok(())
}
