//! The one place errors become HTTP responses:
//! `{"error":{"code":"…","message":"…","retryable":bool}}` with the right status.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_api::{ErrorBody, ErrorCode, ErrorDetail};

use crate::auth::AuthError;
use crate::docker::DockerError;
use crate::sandbox::SandboxError;
use crate::store::StoreError;
use crate::tasks::TaskError;
use crate::workspace::FilesError;

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// A failure that is berth's, not the client's: the cause goes to the
    /// log under an id the client is given.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        let id = ulid::Ulid::generate().to_string().to_ascii_lowercase();
        tracing::error!(error_id = %id, error = %cause, "internal error");
        Self::new(
            ErrorCode::Internal,
            format!("internal error {id}; the control plane's log has the details"),
        )
    }

    /// The data directory's disk is full: nothing was stored, and the call
    /// works again once there is room.
    pub fn insufficient_storage(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "the data directory's disk is full");
        Self::new(
            ErrorCode::InsufficientStorage,
            "the disk holding berth's data is full; nothing was changed. Free space and retry",
        )
    }

    /// A database error: 507 when its disk is full, else an internal error.
    fn store(e: &StoreError) -> Self {
        if e.is_disk_full() {
            Self::insufficient_storage(e)
        } else {
            Self::internal(e)
        }
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl ApiError {
    /// The `{"error": {code, message, retryable}}` every answer carries.
    pub fn body(self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code,
                retryable: self.code.retryable(),
                message: self.message,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = self.retry_after;
        let body = self.body();
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Forbidden { .. } | AuthError::CrossSite => {
                Self::new(ErrorCode::Forbidden, e.to_string())
            }
            AuthError::Missing | AuthError::Invalid => {
                Self::new(ErrorCode::Unauthorized, e.to_string())
            }
        }
    }
}

impl From<FilesError> for ApiError {
    fn from(e: FilesError) -> Self {
        match e {
            FilesError::InvalidPath { .. } | FilesError::IsDirectory(_) => {
                Self::new(ErrorCode::InvalidPath, e.to_string())
            }
            FilesError::NotFound(_) => Self::not_found(e.to_string()),
            FilesError::TooLarge { .. } => Self::new(ErrorCode::TooLarge, e.to_string()),
            FilesError::Io(io) if crate::workspace::is_disk_full(&io) => {
                Self::insufficient_storage(&io)
            }
            FilesError::Io(_) => Self::internal(&e),
        }
    }
}

impl From<DockerError> for ApiError {
    fn from(e: DockerError) -> Self {
        match e {
            DockerError::Unavailable(_) => {
                let mut err = Self::new(ErrorCode::DockerUnavailable, e.to_string());
                err.retry_after = Some(5);
                err
            }
            DockerError::ImageMissing(_) => Self::new(ErrorCode::ImageNotFound, e.to_string()),
            DockerError::NameTaken(_) => Self::new(ErrorCode::Conflict, e.to_string()),
            DockerError::Api { .. } | DockerError::Other(_) => {
                tracing::warn!(error = %e, "Docker refused an operation");
                Self::new(ErrorCode::DockerError, e.to_string())
            }
            DockerError::NetworkNotIsolated(_) => Self::internal(&e),
        }
    }
}

impl From<SandboxError> for ApiError {
    fn from(e: SandboxError) -> Self {
        match e {
            SandboxError::Invalid(m) => Self::invalid(m),
            SandboxError::InvalidImage(..) => Self::new(ErrorCode::InvalidImage, e.to_string()),
            SandboxError::NotFound(_) => Self::not_found(e.to_string()),
            SandboxError::Exists(_) | SandboxError::NotRunning(_) | SandboxError::Busy(_) => {
                Self::new(ErrorCode::Conflict, e.to_string())
            }
            SandboxError::ImageMissing(_) => Self::new(ErrorCode::ImageNotFound, e.to_string()),
            SandboxError::Capacity { .. } => {
                let mut err = Self::new(ErrorCode::SandboxCapacity, e.to_string());
                err.retry_after = Some(30);
                err
            }
            SandboxError::RuntimeMissing(..) => {
                Self::new(ErrorCode::RuntimeUnavailable, e.to_string())
            }
            SandboxError::Firewall(_) => Self::new(ErrorCode::FirewallUnavailable, e.to_string()),
            SandboxError::Docker(d) => d.into(),
            SandboxError::Files(f) => f.into(),
            SandboxError::Store(s) => Self::store(&s),
        }
    }
}

impl From<TaskError> for ApiError {
    fn from(e: TaskError) -> Self {
        match e {
            TaskError::Invalid(m) => Self::invalid(m),
            TaskError::NotFound(_) => Self::not_found(e.to_string()),
            TaskError::Unchanged(m) => Self::not_found(m),
            TaskError::Conflict(m) => Self::new(ErrorCode::Conflict, m),
            TaskError::AgentMissing(m) => Self::new(ErrorCode::AgentMissing, m),
            TaskError::Failed(m) => Self::new(ErrorCode::ExecFailed, m),
            TaskError::Sandbox(s) => s.into(),
            TaskError::Docker(d) => d.into(),
            TaskError::Store(s) => Self::store(&s),
        }
    }
}
