//! `POST /sandbox/{id}/exec`: run a command, get its output; and
//! `POST …/exec/stream`: the same command, its output as Server-Sent Events
//! while it runs.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;

use super::extract::JsonBody;
use super::openapi::SandboxPath;
use super::{ApiError, AppState};
use crate::sandbox::{ExecBody, ExecEvent};
use berth_api::events::{ExecErrorEvent, ExecExitEvent, ExecOutputEvent};

pub use berth_api::ExecResponse;

#[utoipa::path(
    post,
    path = "/exec",
    operation_id = "exec",
    tag = "exec",
    summary = "Run a command; answer its output when it ends",
    params(SandboxPath),
    request_body(content = berth_api::ExecBody, content_type = "application/json"),
    responses((status = 200, body = ExecResponse), super::openapi::ExecErrors)
)]
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
        duration_ms: u64::try_from(out.duration.as_millis()).unwrap_or(u64::MAX),
        timed_out: out.timed_out,
        truncated: out.truncated,
    }))
}

/// Events `stdout` and `stderr` (`{"text"}`, as written, not split into
/// lines), then `exit` (`{"exit_code","timed_out","duration_ms"}`) or
/// `error` (`{"message"}`), after which the stream ends. Closing the stream
/// kills the command. Nothing is kept: there is no replay.
#[utoipa::path(
    post,
    path = "/exec/stream",
    operation_id = "exec_stream",
    tag = "exec",
    summary = "Run a command; stream its output as Server-Sent Events",
    params(SandboxPath),
    request_body(content = berth_api::ExecBody, content_type = "application/json"),
    responses((status = 200, content_type = "text/event-stream", body = String, description = "Events `stdout` and `stderr` (data: ExecOutputEvent), then `exit` (ExecExitEvent) or `error` (ExecErrorEvent), after which the stream ends. Closing the stream kills the command."), super::openapi::ExecErrors)
)]
pub async fn stream(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ExecBody>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let rx = state.sandboxes.exec_stream(&id, body).await?;
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        let (name, data) = match rx.recv().await? {
            ExecEvent::Stdout(text) => ("stdout", to_json(&ExecOutputEvent { text })),
            ExecEvent::Stderr(text) => ("stderr", to_json(&ExecOutputEvent { text })),
            ExecEvent::Exit {
                exit_code,
                timed_out,
                duration,
            } => (
                "exit",
                to_json(&ExecExitEvent {
                    exit_code,
                    timed_out,
                    duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
                }),
            ),
            ExecEvent::Error(message) => ("error", to_json(&ExecErrorEvent { message })),
        };
        let event = Event::default().event(name).data(data);
        Some((Ok(event), rx))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// An event's `data:` (these types always serialise).
fn to_json<T: serde::Serialize>(data: &T) -> String {
    serde_json::to_string(data).unwrap_or_default()
}
