//! Running a command in a sandbox.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST …/exec` and `POST …/exec/stream`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExecBody {
    pub cmd: Command,
    /// Relative to the workspace, or absolute inside the sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Killed (with everything it started) after this; default `BERTH_EXEC_TIMEOUT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u64>,
    /// Written to the command's standard input, which is then closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
}

/// An argv, or one string run by `sh -lc`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Command {
    Argv(Vec<String>),
    Shell(String),
}

/// The answer of `POST …/exec`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExecResponse {
    /// `null` when the command was killed at its timeout.
    pub exit_code: Option<i64>,
    pub stdout: String,
    pub stderr: String,
    pub duration_ms: u64,
    pub timed_out: bool,
    /// Output beyond `BERTH_EXEC_OUTPUT_LIMIT` was dropped.
    pub truncated: bool,
}
