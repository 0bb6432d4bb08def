//! The `data:` of the Server-Sent Event streams, by `event:` name.
//!
//! Task events (`GET …/tasks/{task}/events`): `status`, `message`,
//! `tool_call`, `tool_result`, `log`, `error`, then `done`. Exec events
//! (`POST …/exec/stream`): `stdout`, `stderr`, then `exit` or `error`.
//! Every field a client may not know is kept: payloads are open objects.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// The task stream's event names, each with the schema of its `data:`.
pub const TASK_EVENTS: &[(&str, &str)] = &[
    ("status", "StatusEvent"),
    ("message", "MessageEvent"),
    ("tool_call", "ToolCallEvent"),
    ("tool_result", "ToolResultEvent"),
    ("log", "LogEvent"),
    ("error", "ErrorEvent"),
    ("done", "DoneEvent"),
];

/// The fleet stream's (`GET /v1/fleet/events`) event names.
pub const FLEET_EVENTS: &[(&str, &str)] = &[("sandboxes", "SandboxList"), ("usage", "FleetUsage")];

/// The streamed exec's event names, each with the schema of its `data:`.
pub const EXEC_EVENTS: &[(&str, &str)] = &[
    ("stdout", "ExecOutputEvent"),
    ("stderr", "ExecOutputEvent"),
    ("exit", "ExecExitEvent"),
    ("error", "ExecErrorEvent"),
];

/// `event: status`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatusEvent {
    /// `queued`, `running` or a terminal status.
    pub status: String,
    /// `checkpoint`, `agent` or `check`, while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

/// `event: message`: the agent's text.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageEvent {
    pub text: String,
    /// The `tool_call` that started the sub-agent saying this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
}

/// `event: tool_call`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ToolCallEvent {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub input: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
}

/// `event: tool_result` (output cut at 64 KiB).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ToolResultEvent {
    pub id: String,
    #[serde(default)]
    pub output: Value,
    #[serde(default)]
    pub is_error: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
}

/// `event: log`: lines the adapter could not parse, the agent's stderr,
/// berth's notes (`stream`: `stdout`, `stderr`, `berth`), or the agent about
/// its own workings (`stream: agent` with a `subtype`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogEvent {
    pub stream: String,
    #[serde(default)]
    pub line: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtype: Option<String>,
}

/// `event: error`: reported once per failure.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorEvent {
    pub message: String,
    /// The agent's own name for it (`authentication_failed`, `error_max_turns`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// `event: done`: the last event; the stream ends after it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DoneEvent {
    pub status: String,
    #[serde(default)]
    pub exit_code: Option<i64>,
    /// As `result` of the task object.
    #[serde(default)]
    pub result: Option<Value>,
}

/// `event: stdout` and `event: stderr` of a streamed exec: the text as written.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExecOutputEvent {
    pub text: String,
}

/// `event: exit` of a streamed exec: the last event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExecExitEvent {
    /// `null` when the command was killed at its timeout.
    pub exit_code: Option<i64>,
    pub timed_out: bool,
    pub duration_ms: u64,
}

/// `event: error` of a streamed exec: the last event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExecErrorEvent {
    pub message: String,
}
