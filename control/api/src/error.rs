//! `{"error":{"code","message","retryable"}}`: how every route fails.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every error code the API answers with. A closed set: the OpenAPI
/// document lists, per route and status, which of these it can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    InvalidPath,
    InvalidImage,
    ImageNotFound,
    RuntimeUnavailable,
    AgentMissing,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    TaskInProgress,
    TooLarge,
    Internal,
    DockerError,
    ExecFailed,
    DockerUnavailable,
    SandboxCapacity,
    FirewallUnavailable,
    NotReady,
    InsufficientStorage,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 21] = [
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidPath,
        ErrorCode::InvalidImage,
        ErrorCode::ImageNotFound,
        ErrorCode::RuntimeUnavailable,
        ErrorCode::AgentMissing,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::TaskInProgress,
        ErrorCode::TooLarge,
        ErrorCode::Internal,
        ErrorCode::DockerError,
        ErrorCode::ExecFailed,
        ErrorCode::DockerUnavailable,
        ErrorCode::SandboxCapacity,
        ErrorCode::FirewallUnavailable,
        ErrorCode::NotReady,
        ErrorCode::InsufficientStorage,
    ];

    /// What the code means, for people and for the OpenAPI document.
    pub fn describe(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => {
                "The body, query or path is not valid; the message says which field."
            }
            ErrorCode::InvalidPath => {
                "A workspace path escapes the workspace, is not a file or directory, or is malformed."
            }
            ErrorCode::InvalidImage => "The image reference is not a valid Docker reference.",
            ErrorCode::ImageNotFound => "The image is not on this host (berth never pulls).",
            ErrorCode::RuntimeUnavailable => {
                "The OCI runtime asked for is not registered with Docker."
            }
            ErrorCode::AgentMissing => {
                "The agent asked for is not installed in the sandbox's image."
            }
            ErrorCode::Unauthorized => "No valid bearer token.",
            ErrorCode::Forbidden => "The token is valid but its role does not open this route.",
            ErrorCode::NotFound => "No such sandbox, task, file or route.",
            ErrorCode::MethodNotAllowed => "The route exists but not with this method.",
            ErrorCode::Conflict => {
                "The id is taken, or the object is not in a state that allows this."
            }
            ErrorCode::TaskInProgress => "A task is running in the sandbox.",
            ErrorCode::TooLarge => "The body or file is larger than the limit.",
            ErrorCode::Internal => "berth's own failure; the message names a log entry.",
            ErrorCode::DockerError => "Docker refused the operation.",
            ErrorCode::ExecFailed => "A command berth runs in the sandbox failed.",
            ErrorCode::DockerUnavailable => "Docker does not answer; retry.",
            ErrorCode::SandboxCapacity => {
                "No memory headroom for another running sandbox; retry later."
            }
            ErrorCode::FirewallUnavailable => {
                "The egress firewall could not be verified; nothing was started."
            }
            ErrorCode::NotReady => "The database, Docker or a background loop is not ready.",
            ErrorCode::InsufficientStorage => "The disk holding berth's data is full.",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidPath => "invalid_path",
            ErrorCode::InvalidImage => "invalid_image",
            ErrorCode::ImageNotFound => "image_not_found",
            ErrorCode::RuntimeUnavailable => "runtime_unavailable",
            ErrorCode::AgentMissing => "agent_missing",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::TaskInProgress => "task_in_progress",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Internal => "internal",
            ErrorCode::DockerError => "docker_error",
            ErrorCode::ExecFailed => "exec_failed",
            ErrorCode::DockerUnavailable => "docker_unavailable",
            ErrorCode::SandboxCapacity => "sandbox_capacity",
            ErrorCode::FirewallUnavailable => "firewall_unavailable",
            ErrorCode::NotReady => "not_ready",
            ErrorCode::InsufficientStorage => "insufficient_storage",
        }
    }

    /// The one HTTP status each code is answered with.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest
            | ErrorCode::InvalidPath
            | ErrorCode::InvalidImage
            | ErrorCode::ImageNotFound
            | ErrorCode::RuntimeUnavailable
            | ErrorCode::AgentMissing => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict | ErrorCode::TaskInProgress => 409,
            ErrorCode::TooLarge => 413,
            ErrorCode::Internal => 500,
            ErrorCode::DockerError | ErrorCode::ExecFailed => 502,
            ErrorCode::DockerUnavailable
            | ErrorCode::SandboxCapacity
            | ErrorCode::FirewallUnavailable
            | ErrorCode::NotReady => 503,
            ErrorCode::InsufficientStorage => 507,
        }
    }

    /// Worth retrying unchanged, later.
    pub fn retryable(self) -> bool {
        matches!(self.status(), 503 | 507)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// For a person: what went wrong and what to do.
    pub message: String,
    /// The same request may succeed later (503, 507).
    pub retryable: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_spells_as_serde_does_and_is_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code), "{code} listed twice");
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, code.as_str());
            assert!((400..600).contains(&code.status()));
        }
    }
}
