//! Sandboxes: what a client asks for and what it is shown.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What the user wants the sandbox to be. The reconciler converges Docker to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(
    feature = "sqlx",
    derive(sqlx::Type),
    sqlx(type_name = "TEXT", rename_all = "snake_case")
)]
#[serde(rename_all = "snake_case")]
pub enum DesiredState {
    Running,
    /// Light sleep: the container is frozen (no CPU, memory kept) and thaws
    /// in milliseconds on any wake.
    Asleep,
    Stopped,
    /// Container to be removed, then the row; the home directory stays.
    Deleted,
    /// Container, home directory and row to be removed.
    Purged,
}

/// What berth last saw or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(
    feature = "sqlx",
    derive(sqlx::Type),
    sqlx(type_name = "TEXT", rename_all = "snake_case")
)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Creating,
    Running,
    /// Frozen in light sleep: no CPU, memory kept, woken in milliseconds.
    Asleep,
    Stopping,
    Stopped,
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Running => "running",
            Status::Asleep => "asleep",
            Status::Stopping => "stopping",
            Status::Stopped => "stopped",
            Status::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[cfg_attr(
    feature = "sqlx",
    derive(sqlx::Type),
    sqlx(type_name = "TEXT", rename_all = "snake_case")
)]
#[serde(rename_all = "snake_case")]
pub enum IdlePolicy {
    /// Stopped after its idle timeout, woken on demand.
    #[default]
    Sleep,
    /// Never stopped by the reaper.
    AlwaysOn,
}

/// Where a sandbox's traffic may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[cfg_attr(
    feature = "sqlx",
    derive(sqlx::Type),
    sqlx(type_name = "TEXT", rename_all = "snake_case")
)]
#[serde(rename_all = "snake_case")]
pub enum Egress {
    /// The internet, but not the host, link-local/metadata addresses or the
    /// denied (private) ranges.
    #[default]
    Open,
    /// Nowhere: the sandbox answers the edge and nothing else.
    None,
}

impl Egress {
    pub fn as_str(self) -> &'static str {
        match self {
            Egress::Open => "open",
            Egress::None => "none",
        }
    }
}

/// `POST /v1/sandboxes` (and `POST /sandbox`). Every field is optional. No
/// `Debug`: `env` holds provider keys.
#[derive(Default, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateRequest {
    /// 1 to 40 lower-case letters, digits and inner dashes; a ULID when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Ports the app listens on; each gets a preview URL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<i64>,
    /// Environment of the start command, execs and tasks.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// A local image (berth never pulls); default `BERTH_IMAGE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Bytes, or a size such as `"1g"` or `"512m"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<SizeOrNumber>,
    /// CPUs, e.g. `1.5` or `"0.5"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<NumberOrString>,
    /// A shell command started in the workspace (the dev server), restarted with the sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_s: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_policy: Option<IdlePolicy>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// `false`: preview requests need a token from `POST …/preview-token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public: Option<bool>,
    /// The `sandboxed` spelling: `public` or `private`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<String>,
    /// `open` or `none` (default `BERTH_EGRESS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Egress>,
    /// OCI runtime, e.g. `runsc` for gVisor (default `BERTH_RUNTIME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum SizeOrNumber {
    Bytes(u64),
    Text(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum NumberOrString {
    Number(f64),
    Text(String),
}

/// A sandbox as clients see it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SandboxView {
    pub id: String,
    pub status: Status,
    pub desired_state: DesiredState,
    /// Why the status is `error` (exit code, last log lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_detail: Option<String>,
    pub image: String,
    pub ports: Vec<u16>,
    /// Port → preview URL.
    pub preview_urls: BTreeMap<String, String>,
    /// Names only: values often hold API keys.
    pub env_keys: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    /// The memory limit, e.g. `1g`.
    pub memory: String,
    pub memory_bytes: i64,
    pub cpus: f64,
    pub start: Option<String>,
    pub idle_timeout_s: i64,
    pub idle_policy: IdlePolicy,
    pub public: bool,
    pub egress: Egress,
    /// The OCI runtime; absent for Docker's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// The host uid (and gid) the sandbox runs as; `user` inside.
    pub uid: Option<i64>,
    pub container_id: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    pub updated_at: String,
    pub last_active_at: String,
    pub keepalive_until: Option<String>,
    /// The container's live state, on single-sandbox reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<LiveView>,
}

/// The container's live state, on single-sandbox reads.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LiveView {
    pub running: bool,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    pub ip: Option<String>,
}

/// `GET /v1/sandboxes`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SandboxList {
    pub sandboxes: Vec<SandboxView>,
}

/// `POST …/keepalive`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct KeepaliveBody {
    /// Unix seconds; capped by `BERTH_KEEPALIVE_MAX`. Absent: now plus the idle timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
}

/// The fleet stream's `usage` event: what each sandbox uses now, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FleetUsage {
    pub sandboxes: BTreeMap<String, SandboxUsage>,
}

/// One sandbox's live use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SandboxUsage {
    /// Memory in use, as `docker stats` counts it (page cache that can be
    /// dropped left out); `null` when not running or not yet sampled.
    pub memory_used_bytes: Option<u64>,
    pub tasks_running: u32,
    pub tasks_queued: u32,
}
