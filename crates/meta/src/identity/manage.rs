//! The identity reads and writes the management API needs beyond logins:
//! lookups by id, group listings and local group membership, the projects
//! a user can see, robot descriptions and the last-admin count.

use sqlx::{AssertSqlSafe, Row};

use super::{
    GroupRow, IdentityTx, PROJECT_COLUMNS, ProjectRow, ROBOT_COLUMNS, RobotRow, group_row,
    placeholders, project_row, robot_row,
};
use crate::{MetaStore, Result, now_millis};

impl MetaStore {
    pub async fn robot_by_id(&self, id: i64) -> Result<Option<RobotRow>> {
        let (_, read) = self.pools();
        let sql = format!("SELECT {ROBOT_COLUMNS} FROM robots WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(read)
            .await?;
        row.as_ref().map(robot_row).transpose()
    }

    pub async fn project_by_id(&self, id: i64) -> Result<Option<ProjectRow>> {
        let (_, read) = self.pools();
        let sql = format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(read)
            .await?;
        row.as_ref().map(project_row).transpose()
    }

    pub async fn group_by_id(&self, id: i64) -> Result<Option<GroupRow>> {
        let (_, read) = self.pools();
        let row = sqlx::query("SELECT id, name, source, external_id FROM groups WHERE id = $1")
            .bind(id)
            .fetch_optional(read)
            .await?;
        row.as_ref().map(group_row).transpose()
    }

    /// Up to `limit` groups of every source, by id, after `after`.
    pub async fn groups(&self, after: Option<i64>, limit: i64) -> Result<Vec<GroupRow>> {
        let (_, read) = self.pools();
        let rows = sqlx::query(
            "SELECT id, name, source, external_id FROM groups WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after.unwrap_or(0))
        .bind(limit)
        .fetch_all(read)
        .await?;
        rows.iter().map(group_row).collect()
    }

    /// The names of the users recorded in a group, sorted.
    pub async fn group_member_names(&self, group_id: i64) -> Result<Vec<String>> {
        let (_, read) = self.pools();
        let rows = sqlx::query(
            "SELECT u.name FROM user_groups ug JOIN users u ON u.id = ug.user_id \
             WHERE ug.group_id = $1 ORDER BY u.name",
        )
        .bind(group_id)
        .fetch_all(read)
        .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Up to `limit` projects after `after` (by name) that are public or
    /// have `user_id`, or one of `group_ids`, as a member.
    pub async fn projects_visible_to(
        &self,
        user_id: Option<i64>,
        group_ids: &[i64],
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ProjectRow>> {
        let (_, read) = self.pools();
        let mut member = String::from("m.user_id = $3");
        if !group_ids.is_empty() {
            member.push_str(&format!(
                " OR m.group_id IN ({})",
                placeholders(4, group_ids.len())
            ));
        }
        let sql = format!(
            "SELECT {PROJECT_COLUMNS} FROM projects p WHERE p.name > $1 AND (p.is_public = 1 \
             OR EXISTS (SELECT 1 FROM project_members m WHERE m.project_id = p.id AND ({member}))) \
             ORDER BY p.name LIMIT $2"
        );
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .bind(after.unwrap_or(""))
            .bind(limit)
            .bind(user_id.unwrap_or(-1));
        for id in group_ids {
            query = query.bind(*id);
        }
        let rows = query.fetch_all(read).await?;
        rows.iter().map(project_row).collect()
    }
}

impl MetaStore {
    /// A repository of project `project` that holds a manifest or a blob
    /// link (an abandoned upload alone does not count), if any.
    pub async fn project_content(&self, project: &str) -> Result<Option<String>> {
        let (_, read) = self.pools();
        // Repository names sort as bytes; `0` follows `/`.
        let row = sqlx::query(
            "SELECT r.name FROM repositories r WHERE r.name > $1 AND r.name < $2 \
             AND (EXISTS (SELECT 1 FROM manifests m WHERE m.repo = r.name) \
             OR EXISTS (SELECT 1 FROM repo_blobs b WHERE b.repo = r.name)) \
             ORDER BY r.name LIMIT 1",
        )
        .bind(format!("{project}/"))
        .bind(format!("{project}0"))
        .fetch_optional(read)
        .await?;
        row.map(|r| Ok(r.try_get(0)?)).transpose()
    }
}

impl IdentityTx {
    /// Records a user in a group; false when already there.
    pub async fn add_user_to_group(&mut self, user_id: i64, group_id: i64) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO user_groups (user_id, group_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(user_id)
        .bind(group_id)
        .execute(&mut *self.0)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// False when the user was not in the group.
    pub async fn remove_user_from_group(&mut self, user_id: i64, group_id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM user_groups WHERE user_id = $1 AND group_id = $2")
            .bind(user_id)
            .bind(group_id)
            .execute(&mut *self.0)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn set_robot_description(
        &mut self,
        robot_id: i64,
        description: &str,
    ) -> Result<bool> {
        let done = sqlx::query("UPDATE robots SET description = $2, updated_at = $3 WHERE id = $1")
            .bind(robot_id)
            .bind(description)
            .bind(now_millis())
            .execute(&mut *self.0)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// How many enabled system admins there are besides `user_id`, read in
    /// this transaction (the last-admin guard).
    pub async fn enabled_admins_except(&mut self, user_id: i64) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM users WHERE system_admin = 1 AND disabled = 0 AND id <> $1",
        )
        .bind(user_id)
        .fetch_one(&mut *self.0)
        .await?;
        Ok(row.try_get(0)?)
    }
}
