//! berth's HTTP API contract: every body a client sends or receives, the
//! payloads of the Server-Sent Event streams, and the error shape. The
//! server (`berth-control`) answers with these types, the `berth` CLI reads
//! them, and the OpenAPI document (`GET /v1/openapi.json`) is generated from
//! them, so the three cannot drift apart.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod error;
pub mod events;
pub mod exec;
pub mod files;
pub mod preview;
pub mod sandbox;
pub mod tasks;

pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use exec::{Command, ExecBody, ExecResponse};
pub use sandbox::{
    CreateRequest, DesiredState, Egress, IdlePolicy, KeepaliveBody, LiveView, SandboxList,
    SandboxView, Status,
};
pub use tasks::{CreateTask, FileChange, TaskList, TaskStatus, TaskView};
