//! `/v1/sandboxes/{id}/tasks`: hand a sandbox a prompt, follow the agent.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::extract::{JsonBody, QueryParams};
use super::time::rfc3339;
use super::{ApiError, AppState};
use crate::store::{TaskRecord, TaskStatus};
use crate::tasks::CreateTask;

/// A task as clients see it.
#[derive(Debug, Serialize)]
pub struct TaskView {
    pub id: String,
    pub sandbox_id: String,
    pub status: TaskStatus,
    pub agent: String,
    pub model: Option<String>,
    pub prompt: String,
    pub check: Option<String>,
    pub timeout_s: i64,
    /// Continues the agent's previous session in this sandbox.
    #[serde(rename = "continue")]
    pub resume: bool,
    /// The agent's session (what `"continue": true` resumes), the model it
    /// really used and its CLI's version, as it reported them.
    pub session_id: Option<String>,
    pub agent_model: Option<String>,
    pub agent_version: Option<String>,
    pub result: Option<Value>,
    pub exit_code: Option<i64>,
    pub usage: Option<Value>,
    pub cost_usd: Option<Value>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub events_url: String,
}

fn view(task: TaskRecord) -> TaskView {
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

pub async fn create(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<CreateTask>,
) -> Result<impl IntoResponse, ApiError> {
    let task = state.tasks.create(&id, req).await?;
    Ok((StatusCode::ACCEPTED, Json(view(task))))
}

pub async fn list(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tasks: Vec<TaskView> = state.tasks.list(&id).await?.into_iter().map(view).collect();
    Ok(Json(serde_json::json!({ "tasks": tasks })))
}

pub async fn get(
    State(state): State<AppState>,
    Path((id, task)): Path<(String, String)>,
) -> Result<Json<TaskView>, ApiError> {
    Ok(Json(view(state.tasks.get(&id, &task).await?)))
}

pub async fn cancel(
    State(state): State<AppState>,
    Path((id, task)): Path<(String, String)>,
) -> Result<Json<TaskView>, ApiError> {
    Ok(Json(view(state.tasks.cancel(&id, &task).await?)))
}

pub async fn revert(
    State(state): State<AppState>,
    Path((id, task)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.tasks.revert(&id, &task).await?))
}

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    last_event_id: Option<i64>,
    /// The `sandboxed` spelling.
    since: Option<i64>,
}

/// Server-Sent Events: `id:` is the task's sequence number, `event:` the
/// type, `data:` JSON. `Last-Event-ID` (header or query) replays only later
/// events; the stream ends after `done`.
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
