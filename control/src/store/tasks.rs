//! Task rows and their event log.

use std::collections::BTreeMap;

use sqlx::types::Json;

use super::{Store, StoreError, now_ms};

pub use berth_api::TaskStatus;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TaskRecord {
    pub id: String,
    pub sandbox_id: String,
    pub agent: String,
    pub prompt: String,
    pub model: Option<String>,
    pub env: Json<BTreeMap<String, String>>,
    pub check_cmd: Option<String>,
    pub timeout_s: i64,
    pub status: TaskStatus,
    pub exec_id: Option<String>,
    pub exit_code: Option<i64>,
    pub result: Option<Json<serde_json::Value>>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The agent's session, model and CLI version, as it reported them.
    pub session_id: Option<String>,
    pub agent_model: Option<String>,
    pub agent_version: Option<String>,
    /// Continues the sandbox's previous session of this agent.
    pub resume: bool,
}

#[derive(Debug, Clone)]
pub struct NewTask {
    pub id: String,
    pub sandbox_id: String,
    pub agent: String,
    pub prompt: String,
    pub model: Option<String>,
    pub env: BTreeMap<String, String>,
    pub check_cmd: Option<String>,
    pub timeout_s: i64,
    pub resume: bool,
}

/// One stored event of a task.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TaskEvent {
    pub seq: i64,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub data: Json<serde_json::Value>,
    pub created_at: i64,
}

impl Store {
    /// Inserts a queued task together with its first event.
    pub async fn insert_task(&self, new: &NewTask) -> Result<(TaskRecord, TaskEvent), StoreError> {
        let now = now_ms();
        // IMMEDIATE: the write lock is taken up front, so a transaction that
        // reads before it writes never fails with "database is locked" when
        // another one commits meanwhile (the busy timeout then applies).
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO tasks (id, sandbox_id, agent, prompt, model, env, check_cmd, timeout_s, status, created_at, resume)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?)",
        )
        .bind(&new.id)
        .bind(&new.sandbox_id)
        .bind(&new.agent)
        .bind(&new.prompt)
        .bind(&new.model)
        .bind(Json(&new.env))
        .bind(&new.check_cmd)
        .bind(new.timeout_s)
        .bind(now)
        .bind(new.resume)
        .execute(&mut *tx)
        .await?;
        let data = serde_json::json!({"status": "queued"});
        sqlx::query("INSERT INTO task_events (task_id, seq, type, data, created_at) VALUES (?, 1, 'status', ?, ?)")
            .bind(&new.id)
            .bind(Json(&data))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let event = TaskEvent {
            seq: 1,
            kind: "status".into(),
            data: Json(data),
            created_at: now,
        };
        Ok((self.task(&new.id).await?, event))
    }

    pub async fn find_task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM tasks WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn task(&self, id: &str) -> Result<TaskRecord, StoreError> {
        self.find_task(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    /// A sandbox's tasks, newest first.
    pub async fn tasks_of(&self, sandbox_id: &str) -> Result<Vec<TaskRecord>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM tasks WHERE sandbox_id = ? ORDER BY created_at DESC, id DESC",
        )
        .bind(sandbox_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The oldest queued task of a sandbox.
    pub async fn next_queued_task(
        &self,
        sandbox_id: &str,
    ) -> Result<Option<TaskRecord>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM tasks WHERE sandbox_id = ? AND status = 'queued' ORDER BY created_at, id LIMIT 1",
        )
        .bind(sandbox_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn count_queued_tasks(&self, sandbox_id: &str) -> Result<i64, StoreError> {
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM tasks WHERE sandbox_id = ? AND status = 'queued'")
                .bind(sandbox_id)
                .fetch_one(&self.pool)
                .await?;
        Ok(n)
    }

    /// How many tasks there are in each status (for /metrics).
    pub async fn task_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT status, COUNT(*) FROM tasks GROUP BY status ORDER BY status")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub async fn tasks_with_status(
        &self,
        status: TaskStatus,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        Ok(
            sqlx::query_as("SELECT * FROM tasks WHERE status = ? ORDER BY created_at, id")
                .bind(status)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub async fn set_task_running(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE tasks SET status = 'running', started_at = ? WHERE id = ?")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records what the agent said about its session.
    pub async fn set_task_session(
        &self,
        id: &str,
        session_id: Option<&str>,
        model: Option<&str>,
        version: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE tasks SET session_id = ?, agent_model = ?, agent_version = ? WHERE id = ?",
        )
        .bind(session_id)
        .bind(model)
        .bind(version)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether the sandbox has a task of `agent` created before now.
    pub async fn has_task_of_agent(
        &self,
        sandbox_id: &str,
        agent: &str,
    ) -> Result<bool, StoreError> {
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM tasks WHERE sandbox_id = ? AND agent = ?")
                .bind(sandbox_id)
                .bind(agent)
                .fetch_one(&self.pool)
                .await?;
        Ok(n > 0)
    }

    /// The session of the latest task of the same sandbox and agent before
    /// `task` that recorded one.
    pub async fn previous_session(&self, task: &TaskRecord) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT session_id FROM tasks
             WHERE sandbox_id = ? AND agent = ? AND session_id IS NOT NULL AND id != ?
               AND (created_at < ? OR (created_at = ? AND id < ?))
             ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(&task.sandbox_id)
        .bind(&task.agent)
        .bind(&task.id)
        .bind(task.created_at)
        .bind(task.created_at)
        .bind(&task.id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.0))
    }

    pub async fn set_task_exec(&self, id: &str, exec_id: Option<&str>) -> Result<(), StoreError> {
        sqlx::query("UPDATE tasks SET exec_id = ? WHERE id = ?")
            .bind(exec_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a task's end. Its environment is dropped: it may hold
    /// provider keys and is not needed any more.
    pub async fn finish_task(
        &self,
        id: &str,
        status: TaskStatus,
        exit_code: Option<i64>,
        result: &serde_json::Value,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE tasks SET status = ?, exit_code = ?, result = ?, finished_at = ?, exec_id = NULL, env = '{}'
             WHERE id = ?",
        )
        .bind(status)
        .bind(exit_code)
        .bind(Json(result))
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Appends an event with the next sequence number of its task.
    pub async fn append_task_event(
        &self,
        task_id: &str,
        kind: &str,
        data: &serde_json::Value,
    ) -> Result<TaskEvent, StoreError> {
        let now = now_ms();
        let (seq,): (i64,) = sqlx::query_as(
            "INSERT INTO task_events (task_id, seq, type, data, created_at)
             VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM task_events WHERE task_id = ?1), ?2, ?3, ?4)
             RETURNING seq",
        )
        .bind(task_id)
        .bind(kind)
        .bind(Json(data))
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(TaskEvent {
            seq,
            kind: kind.to_string(),
            data: Json(data.clone()),
            created_at: now,
        })
    }

    /// Events of a task after `seq`, in order.
    pub async fn task_events_after(
        &self,
        task_id: &str,
        seq: i64,
    ) -> Result<Vec<TaskEvent>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT seq, type, data, created_at FROM task_events WHERE task_id = ? AND seq > ? ORDER BY seq",
        )
        .bind(task_id)
        .bind(seq)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Removes a sandbox's tasks and their events (a purge), then moves
    /// the WAL into the database file and empties it, so their `env` is not
    /// left in old WAL frames.
    pub async fn delete_tasks_of(&self, sandbox_id: &str) -> Result<u64, StoreError> {
        let removed = sqlx::query("DELETE FROM tasks WHERE sandbox_id = ?")
            .bind(sandbox_id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await
        {
            tracing::warn!(error = %e, "could not checkpoint the WAL after a purge");
        }
        Ok(removed)
    }
}
