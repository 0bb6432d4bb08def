//! `/v1/sandboxes/{id}/tasks`: hand a sandbox a prompt, follow the agent.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use serde_json::Value;

use super::extract::{JsonBody, QueryParams};
use super::openapi::{SandboxPath, TaskPath};
use super::time::rfc3339;
use super::{ApiError, AppState};
use crate::store::TaskRecord;
use crate::tasks::CreateTask;

pub use berth_api::TaskView;

pub(super) fn view(task: TaskRecord) -> TaskView {
    let result = task.result.map(|r| r.0);
    let usage = result.as_ref().and_then(|r| r.get("usage")).cloned();
    let cost_usd = usage.as_ref().and_then(|u| u.get("cost_usd")).cloned();
    TaskView {
        events_url: format!("/v1/sandboxes/{}/tasks/{}/events", task.sandbox_id, task.id),
        status: task.status,
        agent: task.agent,
        model: task.model,
        prompt: task.prompt,
        check: task.check_cmd,
        timeout_s: task.timeout_s,
        resume: task.resume,
        session_id: task.session_id,
        agent_model: task.agent_model,
        agent_version: task.agent_version,
        result,
        exit_code: task.exit_code,
        usage,
        cost_usd,
        created_at: rfc3339(task.created_at),
        started_at: task.started_at.map(rfc3339),
        finished_at: task.finished_at.map(rfc3339),
        sandbox_id: task.sandbox_id,
        id: task.id,
    }
}

#[utoipa::path(
    post,
    path = "/tasks",
    operation_id = "create_task",
    tag = "tasks",
    summary = "Hand the sandbox's coding agent a prompt",
    params(SandboxPath),
    request_body(content = berth_api::CreateTask, content_type = "application/json"),
    responses((status = 202, body = TaskView, description = "Accepted: running or queued"), super::openapi::TaskCreateErrors)
)]
pub async fn create(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<CreateTask>,
) -> Result<impl IntoResponse, ApiError> {
    let task = state.tasks.create(&id, req).await?;
    Ok((StatusCode::ACCEPTED, Json(view(task))))
}

#[utoipa::path(
    get,
    path = "/tasks",
    operation_id = "list_tasks",
    tag = "tasks",
    summary = "The sandbox's tasks, newest first",
    params(SandboxPath),
    responses((status = 200, body = berth_api::TaskList), super::openapi::ReadErrors)
)]
pub async fn list(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<berth_api::TaskList>, ApiError> {
    let tasks: Vec<TaskView> = state.tasks.list(&id).await?.into_iter().map(view).collect();
    Ok(Json(berth_api::TaskList { tasks }))
}

#[utoipa::path(
    get,
    path = "/tasks/{task}",
    operation_id = "get_task",
    tag = "tasks",
    summary = "One task",
    params(TaskPath),
    responses((status = 200, body = TaskView), super::openapi::ReadErrors)
)]
pub async fn get(
    State(state): State<AppState>,
    Path((id, task)): Path<(String, String)>,
) -> Result<Json<TaskView>, ApiError> {
    Ok(Json(view(state.tasks.get(&id, &task).await?)))
}

#[utoipa::path(
    post,
    path = "/tasks/{task}/cancel",
    operation_id = "cancel_task",
    tag = "tasks",
    summary = "Cancel a queued or running task",
    params(TaskPath),
    responses((status = 200, body = TaskView), super::openapi::TaskChangeErrors)
)]
pub async fn cancel(
    State(state): State<AppState>,
    Path((id, task)): Path<(String, String)>,
) -> Result<Json<TaskView>, ApiError> {
    Ok(Json(view(state.tasks.cancel(&id, &task).await?)))
}

#[utoipa::path(
    post,
    path = "/tasks/{task}/revert",
    operation_id = "revert_task",
    tag = "tasks",
    summary = "Put the app directory back as it was before the task",
    params(TaskPath),
    responses((status = 200, body = berth_api::tasks::Reverted), super::openapi::TaskChangeErrors)
)]
pub async fn revert(
    State(state): State<AppState>,
    Path((id, task)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.tasks.revert(&id, &task).await?))
}

#[utoipa::path(
    get,
    path = "/tasks/{task}/diff",
    operation_id = "task_diff",
    tag = "tasks",
    summary = "What the task changed: a unified diff per file",
    params(TaskPath, berth_api::tasks::DiffQuery),
    responses((status = 200, body = berth_api::tasks::TaskDiff), super::openapi::TaskChangeErrors)
)]
pub async fn diff(
    State(state): State<AppState>,
    Path((id, task)): Path<(String, String)>,
    QueryParams(q): QueryParams<berth_api::tasks::DiffQuery>,
) -> Result<Json<berth_api::tasks::TaskDiff>, ApiError> {
    Ok(Json(
        state
            .tasks
            .diff(&id, &task, q.path.as_deref().filter(|p| !p.is_empty()))
            .await?,
    ))
}

pub use berth_api::tasks::EventsQuery;

/// Server-Sent Events: `id:` is the task's sequence number, `event:` the
/// type, `data:` JSON. `Last-Event-ID` (header or query) replays only later
/// events; the stream ends after `done`.
#[utoipa::path(
    get,
    path = "/tasks/{task}/events",
    operation_id = "task_events",
    tag = "tasks",
    summary = "The task's events as Server-Sent Events, history first",
    params(
        TaskPath,
        berth_api::tasks::EventsQuery,
        ("Last-Event-ID" = Option<i64>, Header, description = "Replay only events after this sequence number")
    ),
    responses((status = 200, content_type = "text/event-stream", body = String, description = "`id:` is the sequence number, `event:` one of `status` (StatusEvent), `message` (MessageEvent), `tool_call` (ToolCallEvent), `tool_result` (ToolResultEvent), `log` (LogEvent), `error` (ErrorEvent), `done` (DoneEvent, the last; the stream ends after it). `Last-Event-ID` (header) or the query replays only later events."), super::openapi::ReadErrors),
)]
pub async fn events(
    State(state): State<AppState>,
    Path((id, task)): Path<(String, String)>,
    headers: HeaderMap,
    QueryParams(q): QueryParams<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let task = state.tasks.get(&id, &task).await?;
    let header = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let after = header.or(q.last_event_id).or(q.since).unwrap_or(0).max(0);
    let stream = state.tasks.event_stream(task.id, after).map(|e| {
        Ok(Event::default()
            .id(e.seq.to_string())
            .event(e.kind.as_str())
            .data(e.data.0.to_string()))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
