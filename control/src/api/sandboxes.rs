//! `/sandbox`, `/sandboxes` and `/v1/sandboxes/{id}`: the sandbox lifecycle.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use super::extract::JsonBody;
use super::time::rfc3339;
use super::{ApiError, AppState};
use crate::config::Settings;
use crate::docker::ContainerStatus;
use crate::docker::spec::preview_host;
use crate::sandbox::{CreateRequest, Sandboxes};
use crate::store::{DesiredState, Egress, IdlePolicy, SandboxRecord, Status};
use crate::units::ByteSize;

/// A sandbox as clients see it.
#[derive(Debug, Serialize)]
pub struct SandboxView {
    pub id: String,
    pub status: Status,
    pub desired_state: DesiredState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_detail: Option<String>,
    pub image: String,
    pub ports: Vec<u16>,
    pub preview_urls: BTreeMap<String, String>,
    /// Names only: values often hold API keys.
    pub env_keys: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    pub memory: String,
    pub memory_bytes: i64,
    pub cpus: f64,
    pub start: Option<String>,
    pub idle_timeout_s: i64,
    pub idle_policy: IdlePolicy,
    pub public: bool,
    pub egress: Egress,
    /// The OCI runtime; absent for Docker's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// The host uid (and gid) the sandbox runs as; `user` inside.
    pub uid: Option<i64>,
    pub container_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub last_active_at: String,
    pub keepalive_until: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<LiveView>,
}

/// The container's live state, on single-sandbox reads.
#[derive(Debug, Serialize)]
pub struct LiveView {
    pub running: bool,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    pub ip: Option<String>,
}

pub fn preview_url(settings: &Settings, id: &str, port: u16) -> String {
    let host = preview_host(id, port, &settings.preview_domain);
    match settings.preview_port {
        Some(p) => format!("{}://{host}:{p}", settings.preview_scheme),
        None => format!("{}://{host}", settings.preview_scheme),
    }
}

pub fn view(
    sandboxes: &Sandboxes,
    rec: SandboxRecord,
    live: Option<ContainerStatus>,
) -> SandboxView {
    let settings = sandboxes.settings();
    let last_active = sandboxes.last_active(&rec);
    let preview_urls = rec
        .ports
        .0
        .iter()
        .map(|p| (p.to_string(), preview_url(settings, &rec.id, *p)))
        .collect();
    SandboxView {
        preview_urls,
        status: rec.status,
        desired_state: rec.desired_state,
        status_detail: rec.status_detail,
        image: rec.image,
        ports: rec.ports.0,
        env_keys: rec.env.0.into_keys().collect(),
        metadata: rec.metadata.0,
        memory: ByteSize(u64::try_from(rec.memory_bytes).unwrap_or(0)).to_string(),
        memory_bytes: rec.memory_bytes,
        cpus: rec.nano_cpus as f64 / 1e9,
        start: rec.start_cmd,
        idle_timeout_s: rec.idle_timeout_s,
        idle_policy: rec.idle_policy,
        public: rec.public,
        egress: rec.egress,
        runtime: rec.runtime,
        uid: rec.uid,
        container_id: rec.container_id,
        created_at: rfc3339(rec.created_at),
        updated_at: rfc3339(rec.updated_at),
        last_active_at: rfc3339(last_active),
        keepalive_until: rec.keepalive_until.map(rfc3339),
        container: live.map(|c| LiveView {
            running: c.running,
            exit_code: c.exit_code,
            oom_killed: c.oom_killed,
            ip: c.ip,
        }),
        id: rec.id,
    }
}

pub async fn create(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<CreateRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let rec = state.sandboxes.create(req).await?;
    let location = format!("/v1/sandboxes/{}", rec.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(view(&state.sandboxes, rec, None)),
    ))
}

pub async fn list(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let all: Vec<SandboxView> = state
        .sandboxes
        .list()
        .await?
        .into_iter()
        .map(|rec| view(&state.sandboxes, rec, None))
        .collect();
    Ok(Json(serde_json::json!({ "sandboxes": all })))
}

pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SandboxView>, ApiError> {
    let rec = state.sandboxes.get(&id).await?;
    // The live state is a bonus: a Docker hiccup must not hide the record.
    let live = state.sandboxes.live(&rec.id).await.unwrap_or(None);
    Ok(Json(view(&state.sandboxes, rec, live)))
}

pub async fn start(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SandboxView>, ApiError> {
    let rec = state.sandboxes.start(&id).await?;
    Ok(Json(view(&state.sandboxes, rec, None)))
}

pub async fn stop(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SandboxView>, ApiError> {
    let rec = state.sandboxes.get(&id).await?;
    if state.tasks.is_running_on(&rec.id).await {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "task_in_progress",
            "a task is running in this sandbox: cancel it first",
        ));
    }
    let rec = state.sandboxes.stop(&rec.id).await?;
    Ok(Json(view(&state.sandboxes, rec, None)))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    // 404 for an unknown id before anything is cancelled.
    state.sandboxes.get(&id).await?;
    state.tasks.cancel_all(&id).await?;
    state.sandboxes.delete(&id).await?;
    // A task queued between the two is cancelled too.
    state.tasks.cancel_all(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn purge(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.tasks.cancel_all(&id).await?;
    state.sandboxes.purge(&id).await?;
    state.tasks.cancel_all(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize)]
pub struct KeepaliveBody {
    /// Unix seconds; capped by BERTH_KEEPALIVE_MAX.
    until: Option<i64>,
}

pub async fn keepalive(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<KeepaliveBody>,
) -> Result<Json<SandboxView>, ApiError> {
    let rec = state.sandboxes.keepalive(&id, body.until).await?;
    Ok(Json(view(&state.sandboxes, rec, None)))
}
