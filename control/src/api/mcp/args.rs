//! The MCP tools' arguments: each a JSON schema an LLM reads, turned into
//! the API's own request bodies so that both are validated by one code path.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `create_sandbox`.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct CreateSandbox {
    /// Ports the app will listen on; each gets a preview URL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// The command that starts the app (run under `sh -c`), e.g. `npm run dev`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// A local Docker image; the host's default image when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Environment variables of the sandbox.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Memory limit, e.g. `1g`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// `false`: previews need a token (`preview_url` mints one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public: Option<bool>,
}

/// Tools that act on one sandbox.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct Sandbox {
    /// The sandbox's id (from `create_sandbox` or `list_sandboxes`).
    pub sandbox_id: String,
}

/// `exec`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct Exec {
    pub sandbox_id: String,
    /// A shell command line (run with `sh -c`).
    pub command: String,
    /// Working directory, relative to the workspace (`/home/user/workspace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Seconds before the command is killed (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u64>,
}

/// `write_file`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct WriteFile {
    pub sandbox_id: String,
    /// Relative to the workspace; parent folders are created.
    pub path: String,
    pub content: String,
    /// `utf8` (default) or `base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
}

/// `read_file` and `list_files`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct FilePath {
    pub sandbox_id: String,
    /// Relative to the workspace; `.` or empty for the workspace itself.
    #[serde(default)]
    pub path: String,
}

/// `run_task`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct RunTask {
    pub sandbox_id: String,
    /// What the coding agent is asked to do.
    pub prompt: String,
    /// `claude` or `opencode`; the image's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// A command run after the agent (e.g. `npm test`); its failure fails the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// Seconds before the agent is stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u64>,
}

/// `task_status`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct Task {
    pub sandbox_id: String,
    pub task_id: String,
}

/// `preview_url`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct Preview {
    pub sandbox_id: String,
    /// One port only; every port when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}
