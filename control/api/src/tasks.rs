//! Coding-agent tasks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(
    feature = "sqlx",
    derive(sqlx::Type),
    sqlx(type_name = "TEXT", rename_all = "snake_case")
)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
}

impl TaskStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(self, TaskStatus::Queued | TaskStatus::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::TimedOut => "timed_out",
        }
    }
}

/// `POST /v1/sandboxes/{id}/tasks`. No `Debug`: `env` holds provider keys.
#[derive(Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct CreateTask {
    /// What the agent is asked to do.
    #[serde(default)]
    pub prompt: String,
    /// `claude` or `opencode`; default: OpenCode where the image has it, else Claude Code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u64>,
    /// Added to the sandbox's environment for this task (e.g. `ANTHROPIC_API_KEY`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// A command run after the agent (e.g. `pnpm build`); its failure fails the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// Continue the agent's previous session in this sandbox.
    #[serde(rename = "continue", default)]
    pub resume: bool,
}

/// A task as clients see it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskView {
    pub id: String,
    pub sandbox_id: String,
    pub status: TaskStatus,
    pub agent: String,
    pub model: Option<String>,
    pub prompt: String,
    pub check: Option<String>,
    pub timeout_s: i64,
    /// Continues the agent's previous session in this sandbox.
    #[serde(rename = "continue")]
    pub resume: bool,
    /// The agent's session (what `"continue": true` resumes), the model it
    /// really used and its CLI's version, as it reported them.
    pub session_id: Option<String>,
    pub agent_model: Option<String>,
    pub agent_version: Option<String>,
    /// Once finished: `message`, `files_changed`, `usage`, `checkpoint`, `failure_reason`, ….
    pub result: Option<Value>,
    pub exit_code: Option<i64>,
    pub usage: Option<Value>,
    pub cost_usd: Option<Value>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Where the task's Server-Sent Events are.
    pub events_url: String,
}

/// `GET /v1/sandboxes/{id}/tasks`, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskList {
    pub tasks: Vec<TaskView>,
}

/// One file a task changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileChange {
    pub path: String,
    /// `added`, `modified` or `deleted`.
    pub change: String,
}

/// `POST …/tasks/{task}/revert`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Reverted {
    pub task_id: String,
    /// The git commit the workspace went back to.
    pub checkpoint: String,
    pub reverted: bool,
}

/// `GET …/tasks/{task}/diff`: what the task changed, file by file.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskDiff {
    pub task_id: String,
    /// The git commit taken before the agent ran.
    pub checkpoint: String,
    /// The git tree the app directory ended with; `null` for tasks that
    /// recorded none (then the diff runs to the directory as it is now).
    pub after: Option<String>,
    pub files: Vec<FileDiff>,
}

/// One file's unified diff.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FileDiff {
    pub path: String,
    /// `added`, `modified` or `deleted`.
    pub change: String,
    /// `git diff` output for this file, header included.
    pub patch: String,
    /// Git shows no text diff for this file.
    pub binary: bool,
    /// The patch was cut (at 256 KiB per file).
    pub truncated: bool,
}

/// `?path=` of the diff: one file only.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DiffQuery {
    /// Only this file (relative to the app directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// `?last_event_id=N` (or the `sandboxed` spelling `since`) of the events stream.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Replay only events after this sequence number (as the `Last-Event-ID` header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_id: Option<i64>,
    /// The `sandboxed` spelling of `last_event_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
}
