//! Moving the identity tables of migration 0003 (users, groups, projects,
//! members, robots, personal access tokens, signing keys, the audit log),
//! and the projects' lifecycle policies that hang off them (immutable tag
//! rules and quotas of migration 0005, retention policies of 0006).
//!
//! Rows keep their ids, so the foreign keys between them hold on the target,
//! and tables are copied in foreign-key order. Every table is described once
//! in [`TABLES`]; reading, comparing and writing are generic over that
//! description. As for the registry tables, writes are `INSERT … ON
//! CONFLICT DO NOTHING` in keyset pages, so an interrupted copy is finished
//! by running it again.
//!
//! Unlike registry rows, identity rows must never be merged with rows of
//! another installation: a target where a node already created its own
//! `admin` (same id, same name, another account) would otherwise give the
//! source's users the target's admin. So before anything is written, every
//! identity row already on the target must be the source's row (same key,
//! same names, same creation time), as a previous interrupted run left it.
//! The one exception is the `library` project, which the schema migration
//! seeds on both sides: it is taken as present and gets the source's
//! settings.

use std::collections::{HashMap, HashSet};

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{Engine, ExportSource, ImportTarget, LOOKUP_CHUNK, values_list};
use crate::{Error, Result};

/// Bound parameters per multi-row insert (well under both engines' limits).
const INSERT_PARAMS: usize = 900;
/// Rows of the target compared with the source per query.
const CHECK_PAGE: i64 = 400;
/// Examples of conflicting rows named per table.
const EXAMPLES: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Text,
}

/// One identity table as a migration sees it.
struct Table {
    name: &'static str,
    /// Every column, in the order read and written.
    columns: &'static [(&'static str, Kind)],
    /// The primary key (keyset order).
    key: &'static [&'static str],
    /// Columns that must be equal for a target row to be the source's row:
    /// the key, the unique names and the creation time (and what else tells
    /// two accounts apart). Columns that change in use (flags, permissions,
    /// `last_used_at`) are not compared.
    same: &'static [&'static str],
    /// Columns naming a row in messages (never a secret or a hash).
    label: &'static [&'static str],
    /// Whether `id` is a generated identity column (a sequence on PostgreSQL).
    serial: bool,
}

use Kind::{Int, Text};

/// The identity tables, in the order they are copied: every table after
/// those its foreign keys point to.
const TABLES: [Table; 12] = [
    Table {
        name: "users",
        columns: &[
            ("id", Int),
            ("name", Text),
            ("email", Text),
            ("source", Text),
            ("external_id", Text),
            ("password_hash", Text),
            ("system_admin", Int),
            ("disabled", Int),
            ("created_at", Int),
            ("updated_at", Int),
        ],
        key: &["id"],
        // The password hash too: two installations' `admin` accounts have
        // the same id and name, and (rarely) the same creation millisecond,
        // but never the same salted hash.
        same: &[
            "id",
            "name",
            "source",
            "external_id",
            "password_hash",
            "created_at",
        ],
        label: &["id", "name"],
        serial: true,
    },
    Table {
        name: "groups",
        columns: &[
            ("id", Int),
            ("name", Text),
            ("source", Text),
            ("external_id", Text),
            ("created_at", Int),
        ],
        key: &["id"],
        same: &["id", "name", "source", "external_id", "created_at"],
        label: &["id", "source", "name"],
        serial: true,
    },
    Table {
        name: "user_groups",
        columns: &[("user_id", Int), ("group_id", Int)],
        key: &["user_id", "group_id"],
        same: &["user_id", "group_id"],
        label: &["user_id", "group_id"],
        serial: false,
    },
    Table {
        name: "projects",
        columns: &[
            ("id", Int),
            ("name", Text),
            ("is_public", Int),
            ("created_at", Int),
            ("updated_at", Int),
        ],
        key: &["id"],
        same: &["id", "name", "created_at"],
        label: &["id", "name"],
        serial: true,
    },
    Table {
        name: "project_members",
        columns: &[
            ("id", Int),
            ("project_id", Int),
            ("user_id", Int),
            ("group_id", Int),
            ("role", Text),
            ("created_at", Int),
            ("updated_at", Int),
        ],
        key: &["id"],
        same: &["id", "project_id", "user_id", "group_id", "created_at"],
        label: &["id", "project_id", "user_id", "group_id"],
        serial: true,
    },
    // Lifecycle policies of projects (migration 0005).
    Table {
        name: "immutable_rules",
        columns: &[
            ("id", Int),
            ("project_id", Int),
            ("repo_pattern", Text),
            ("repo_excludes", Int),
            ("tag_pattern", Text),
            ("tag_excludes", Int),
            ("disabled", Int),
            ("created_by", Text),
            ("created_at", Int),
            ("updated_at", Int),
        ],
        key: &["id"],
        same: &[
            "id",
            "project_id",
            "repo_pattern",
            "tag_pattern",
            "created_at",
        ],
        label: &["id", "project_id", "tag_pattern"],
        serial: true,
    },
    Table {
        name: "project_quotas",
        columns: &[
            ("project_id", Int),
            ("storage_limit", Int),
            ("artifact_limit", Int),
            ("warn_percent", Int),
            ("warned", Int),
            ("updated_at", Int),
        ],
        key: &["project_id"],
        same: &["project_id"],
        label: &["project_id"],
        serial: false,
    },
    // Retention policies (migration 0006): configuration, so they move;
    // the run history (`retention_executions`, `retention_execution_items`)
    // stays behind (`NOT_MIGRATED_TABLES`). One policy per project, keyed
    // by it; `next_run_at` comes along, so the schedule goes on where it
    // was (a time already past runs once, soon after the target starts).
    Table {
        name: "retention_policies",
        columns: &[
            ("project_id", Int),
            ("rules", Text),
            ("schedule", Text),
            ("next_run_at", Int),
            ("created_at", Int),
            ("updated_at", Int),
        ],
        key: &["project_id"],
        // Replacing a policy keeps its creation time: a policy a node made
        // on the target has another one.
        same: &["project_id", "created_at"],
        label: &["project_id"],
        serial: false,
    },
    Table {
        name: "robots",
        columns: &[
            ("id", Int),
            ("name", Text),
            ("description", Text),
            ("project_id", Int),
            ("permissions", Text),
            ("secret_hash", Text),
            ("expires_at", Int),
            ("disabled", Int),
            ("created_by", Text),
            ("created_at", Int),
            ("updated_at", Int),
        ],
        key: &["id"],
        same: &["id", "name", "project_id", "created_by", "created_at"],
        label: &["id", "name"],
        serial: true,
    },
    Table {
        name: "personal_access_tokens",
        columns: &[
            ("id", Int),
            ("user_id", Int),
            ("name", Text),
            ("token_hash", Text),
            ("scopes", Text),
            ("expires_at", Int),
            ("last_used_at", Int),
            ("created_at", Int),
        ],
        key: &["id"],
        same: &["id", "user_id", "name", "token_hash", "created_at"],
        label: &["id", "user_id", "name"],
        serial: true,
    },
    Table {
        name: "signing_keys",
        columns: &[
            ("kid", Text),
            ("algorithm", Text),
            ("private_pem", Text),
            ("created_at", Int),
            ("retired_at", Int),
        ],
        key: &["kid"],
        same: &["kid", "algorithm", "private_pem", "created_at"],
        label: &["kid"],
        serial: false,
    },
    Table {
        name: "audit_log",
        columns: &[
            ("id", Int),
            ("occurred_at", Int),
            ("actor", Text),
            ("actor_kind", Text),
            ("action", Text),
            ("resource", Text),
            ("project", Text),
            ("result", Text),
            ("source_addr", Text),
            ("details", Text),
        ],
        key: &["id"],
        same: &[
            "id",
            "occurred_at",
            "actor",
            "actor_kind",
            "action",
            "resource",
            "project",
            "result",
        ],
        label: &["id", "action", "actor"],
        serial: true,
    },
];

/// The names of the identity tables a migration copies.
pub(crate) fn table_names() -> impl Iterator<Item = &'static str> {
    TABLES.iter().map(|t| t.name)
}

fn table(name: &str) -> Result<&'static Table> {
    TABLES
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| Error::Url(format!("{name} is not an identity table")))
}

/// One column's value, of either kind, NULL included.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Val {
    Int(Option<i64>),
    Text(Option<String>),
}

impl std::fmt::Display for Val {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Val::Int(Some(v)) => write!(f, "{v}"),
            Val::Text(Some(v)) => write!(f, "{v:?}"),
            Val::Int(None) | Val::Text(None) => f.write_str("NULL"),
        }
    }
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

fn bind<'q>(q: Query<'q>, v: &Val) -> Query<'q> {
    match v {
        Val::Int(i) => q.bind(*i),
        Val::Text(t) => q.bind(t.clone()),
    }
}

/// Rows read with some of a table's columns, by column name.
struct Rows<'t> {
    columns: Vec<(&'static str, Kind)>,
    table: &'t Table,
}

impl<'t> Rows<'t> {
    /// Every column of `table`.
    fn all(table: &'t Table) -> Rows<'t> {
        Rows {
            columns: table.columns.to_vec(),
            table,
        }
    }

    /// The columns compared to tell the source's rows from others.
    fn compared(table: &'t Table) -> Rows<'t> {
        Rows {
            columns: table
                .columns
                .iter()
                .filter(|(c, _)| table.same.contains(c) || table.label.contains(c))
                .copied()
                .collect(),
            table,
        }
    }

    fn select(&self) -> String {
        let cols: Vec<&str> = self.columns.iter().map(|(c, _)| *c).collect();
        cols.join(", ")
    }

    fn read(&self, r: &AnyRow) -> Result<Vec<Val>> {
        self.columns
            .iter()
            .enumerate()
            .map(|(i, (_, kind))| {
                Ok(match kind {
                    Int => Val::Int(r.try_get(i)?),
                    Text => Val::Text(r.try_get(i)?),
                })
            })
            .collect()
    }

    fn get<'r>(&self, row: &'r [Val], column: &str) -> &'r Val {
        let i = self
            .columns
            .iter()
            .position(|(c, _)| *c == column)
            .expect("a column of this table");
        &row[i]
    }

    fn key(&self, row: &[Val]) -> Vec<Val> {
        self.table
            .key
            .iter()
            .map(|c| self.get(row, c).clone())
            .collect()
    }

    fn label(&self, row: &[Val]) -> String {
        self.table
            .label
            .iter()
            .map(|c| format!("{c}={}", self.get(row, c)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Up to `n` rows after `after` (keyset order on the primary key).
    fn page_sql(&self, after: bool, n: i64) -> String {
        let key = self.table.key.join(", ");
        let condition = if after {
            let params: Vec<String> = (1..=self.table.key.len())
                .map(|i| format!("${i}"))
                .collect();
            format!("WHERE ({key}) > ({})", params.join(", "))
        } else {
            String::new()
        };
        format!(
            "SELECT {} FROM {} {condition} ORDER BY {key} LIMIT {n}",
            self.select(),
            self.table.name
        )
    }

    /// The rows whose keys are among `keys` (at most [`LOOKUP_CHUNK`]).
    fn lookup_sql(&self, keys: usize) -> String {
        let key = self.table.key.join(", ");
        let list = values_list(keys, self.table.key.len());
        let condition = if self.table.key.len() == 1 {
            // `(v1), (v2)` is a plain IN list for one column.
            format!("{key} IN ({list})")
        } else {
            format!("({key}) IN (VALUES {list})")
        };
        format!(
            "SELECT {} FROM {} WHERE {condition}",
            self.select(),
            self.table.name
        )
    }
}

/// Reads one keyset page through `executor`.
async fn page<'c, E>(
    rows: &Rows<'_>,
    after: Option<&[Val]>,
    n: i64,
    executor: E,
) -> Result<Vec<Vec<Val>>>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let sql = rows.page_sql(after.is_some(), n);
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for v in after.unwrap_or_default() {
        q = bind(q, v);
    }
    q.fetch_all(executor)
        .await?
        .iter()
        .map(|r| rows.read(r))
        .collect()
}

/// The rows among `keys`, by key, through `executor`.
async fn lookup<'c, E>(
    rows: &Rows<'_>,
    keys: &[Vec<Val>],
    executor: E,
) -> Result<HashMap<Vec<Val>, Vec<Val>>>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    debug_assert!(!keys.is_empty() && keys.len() <= LOOKUP_CHUNK);
    let mut q = sqlx::query(AssertSqlSafe(rows.lookup_sql(keys.len())));
    for k in keys {
        for v in k {
            q = bind(q, v);
        }
    }
    let mut out = HashMap::new();
    for r in q.fetch_all(executor).await? {
        let row = rows.read(&r)?;
        out.insert(rows.key(&row), row);
    }
    Ok(out)
}

/// Whether a target row is the source's: equal compared columns. The
/// `library` project, seeded by the schema migration on both sides, is the
/// same project whenever the ids and names match.
fn same_row(rows: &Rows<'_>, target: &[Val], source: &[Val]) -> bool {
    let library = Val::Text(Some("library".into()));
    let seeded = rows.table.name == "projects"
        && rows.get(target, "name") == &library
        && rows.get(source, "name") == &library;
    rows.table
        .same
        .iter()
        .filter(|c| !(seeded && **c == "created_at"))
        .all(|c| rows.get(target, c) == rows.get(source, c))
}

impl ExportSource {
    /// For every identity table, in copy order: its rows in the source and
    /// how many of them the target already has; and the target's rows that
    /// are *not* the source's (a node started on the target made its own
    /// admin, signing key or audit events), one text per table naming it
    /// and a few rows. A migration must refuse to write anything when that
    /// list is not empty. Without a target (a dry run on a database with no
    /// schema yet) only the `library` project counts as present: the
    /// schema migration will seed it.
    pub async fn identity_survey(
        &mut self,
        target: Option<&ImportTarget>,
    ) -> Result<(Vec<(&'static str, u64, u64)>, Vec<String>)> {
        let mut figures = Vec::new();
        let mut conflicts = Vec::new();
        for t in &TABLES {
            let sql = format!("SELECT CAST(COUNT(*) AS BIGINT) FROM {}", t.name);
            let total: i64 = sqlx::query(AssertSqlSafe(sql))
                .fetch_one(&mut *self.tx)
                .await?
                .try_get(0)?;
            let total = total.max(0) as u64;
            let present = match target {
                Some(target) => {
                    let (present, bad, examples) = self.compare(t, target).await?;
                    if bad > 0 {
                        conflicts.push(format!(
                            "{}: {bad} row(s) of the target are not the source's, e.g. {}",
                            t.name,
                            examples.join("; ")
                        ));
                    }
                    present
                }
                None if t.name == "projects" => {
                    let row = sqlx::query(
                        "SELECT CAST(COUNT(*) AS BIGINT) FROM projects WHERE name = 'library'",
                    )
                    .fetch_one(&mut *self.tx)
                    .await?;
                    row.try_get::<i64, _>(0)?.max(0) as u64
                }
                None => 0,
            };
            figures.push((t.name, total, present));
        }
        Ok((figures, conflicts))
    }

    /// Pages through the target's rows of `t` and looks each up in the
    /// source: (rows that are the source's, rows that are not, examples).
    async fn compare(
        &mut self,
        t: &'static Table,
        target: &ImportTarget,
    ) -> Result<(u64, u64, Vec<String>)> {
        let rows = Rows::compared(t);
        let (mut same, mut other, mut examples) = (0u64, 0u64, Vec::new());
        let mut after: Option<Vec<Val>> = None;
        loop {
            let got = page(&rows, after.as_deref(), CHECK_PAGE, &target.pool).await?;
            let Some(last) = got.last() else { break };
            after = Some(rows.key(last));
            let keys: Vec<Vec<Val>> = got.iter().map(|r| rows.key(r)).collect();
            let source = lookup(&rows, &keys, &mut *self.tx).await?;
            for row in &got {
                let why = match source.get(&rows.key(row)) {
                    Some(s) if same_row(&rows, row, s) => {
                        same += 1;
                        continue;
                    }
                    Some(s) => format!(
                        "{} created {} (the source's row with this key is another one: {} \
                         created {})",
                        rows.label(row),
                        created(&rows, row),
                        rows.label(s),
                        created(&rows, s)
                    ),
                    None => format!("{} (not in the source)", rows.label(row)),
                };
                other += 1;
                if examples.len() < EXAMPLES {
                    examples.push(why);
                }
            }
        }
        Ok((same, other, examples))
    }

    /// Copies the identity table `table` (one of those
    /// [`ExportSource::identity_survey`] lists) to the target in keyset
    /// pages of `page_rows`, each page one transaction, keeping ids and
    /// skipping the rows already there; calls `on_page` with each page's
    /// row count. Afterwards, on PostgreSQL, moves the table's id sequence
    /// past the largest id so later inserts do not collide; for `projects`
    /// the seeded `library` gets the source's settings. Returns (rows read,
    /// rows written). Run [`ExportSource::identity_survey`] first: this
    /// trusts that the target holds no rows of its own.
    pub async fn copy_identity_table(
        &mut self,
        target: &ImportTarget,
        table_name: &str,
        page_rows: i64,
        mut on_page: impl FnMut(u64),
    ) -> Result<(u64, u64)> {
        let t = table(table_name)?;
        let rows = Rows::all(t);
        let key_rows = Rows {
            columns: t
                .columns
                .iter()
                .filter(|(c, _)| t.key.contains(c))
                .copied()
                .collect(),
            table: t,
        };
        let (mut seen, mut written) = (0u64, 0u64);
        let mut after: Option<Vec<Val>> = None;
        loop {
            let got = page(&rows, after.as_deref(), page_rows, &mut *self.tx).await?;
            let Some(last) = got.last() else { break };
            after = Some(rows.key(last));
            let mut present = HashSet::new();
            let keys: Vec<Vec<Val>> = got.iter().map(|r| rows.key(r)).collect();
            for chunk in keys.chunks(LOOKUP_CHUNK) {
                present.extend(lookup(&key_rows, chunk, &target.pool).await?.into_keys());
            }
            let missing: Vec<&Vec<Val>> = got
                .iter()
                .filter(|r| !present.contains(&rows.key(r)))
                .collect();
            let mut tx = target.pool.begin().await?;
            let per_insert = (INSERT_PARAMS / t.columns.len()).max(1);
            let mut inserted = 0;
            for chunk in missing.chunks(per_insert) {
                let names: Vec<&str> = t.columns.iter().map(|(c, _)| *c).collect();
                let sql = format!(
                    "INSERT INTO {} ({}) VALUES {} ON CONFLICT DO NOTHING",
                    t.name,
                    names.join(", "),
                    values_list(chunk.len(), t.columns.len())
                );
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for row in chunk {
                    for v in row.iter() {
                        q = bind(q, v);
                    }
                }
                inserted += q.execute(&mut *tx).await?.rows_affected();
            }
            if inserted != missing.len() as u64 {
                // A row of the source collided with one of the target on a
                // unique name although their keys differ: something else
                // writes the target. Nothing of this page is kept.
                return Err(Error::Url(format!(
                    "{}: {} of the source's rows collide with rows the target gained meanwhile \
                     (is a node running on the target?); nothing of them was written",
                    t.name,
                    missing.len() as u64 - inserted
                )));
            }
            tx.commit().await?;
            seen += got.len() as u64;
            written += inserted;
            on_page(got.len() as u64);
        }
        if t.name == "projects" {
            self.library_settings(target).await?;
        }
        if t.serial && matches!(target.engine, Engine::Postgres(_)) {
            // `GENERATED BY DEFAULT AS IDENTITY`: explicit ids leave the
            // sequence behind; the next generated id is past the largest.
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence('{0}', 'id'), COALESCE(MAX(id), 0) + 1, false) \
                 FROM {0}",
                t.name
            );
            sqlx::query(AssertSqlSafe(sql))
                .fetch_one(&target.pool)
                .await?;
        }
        Ok((seen, written))
    }

    /// The source's `library` settings on the target's seeded `library`.
    async fn library_settings(&mut self, target: &ImportTarget) -> Result<()> {
        let row = sqlx::query(
            "SELECT id, is_public, created_at, updated_at FROM projects WHERE name = 'library'",
        )
        .fetch_optional(&mut *self.tx)
        .await?;
        let Some(row) = row else { return Ok(()) };
        sqlx::query(
            "UPDATE projects SET is_public = $2, created_at = $3, updated_at = $4 \
             WHERE id = $1 AND name = 'library'",
        )
        .bind(row.try_get::<i64, _>(0)?)
        .bind(row.try_get::<i64, _>(1)?)
        .bind(row.try_get::<i64, _>(2)?)
        .bind(row.try_get::<i64, _>(3)?)
        .execute(&target.pool)
        .await?;
        Ok(())
    }
}

/// When a row was created, for messages (milliseconds since the epoch).
fn created(rows: &Rows<'_>, row: &[Val]) -> String {
    let column = if rows.table.name == "audit_log" {
        "occurred_at"
    } else {
        "created_at"
    };
    if rows.columns.iter().any(|(c, _)| *c == column) {
        format!("at {} ms", rows.get(row, column))
    } else {
        "elsewhere".into()
    }
}
