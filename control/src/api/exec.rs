//! `POST /sandbox/{id}/exec`: run a command, get its output.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;

use super::extract::JsonBody;
use super::{ApiError, AppState};
use crate::sandbox::ExecBody;

#[derive(Debug, Serialize)]
pub struct ExecResponse {
    /// `null` when the command was killed at its timeout.
    pub exit_code: Option<i64>,
    pub stdout: String,
    pub stderr: String,
    pub duration_ms: u128,
    pub timed_out: bool,
    /// Output beyond BERTH_EXEC_OUTPUT_LIMIT was dropped.
    pub truncated: bool,
}

pub async fn exec(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ExecBody>,
) -> Result<Json<ExecResponse>, ApiError> {
    let out = state.sandboxes.exec(&id, body).await?;
    Ok(Json(ExecResponse {
        exit_code: out.exit_code,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        duration_ms: out.duration.as_millis(),
        timed_out: out.timed_out,
        truncated: out.truncated,
    }))
}
