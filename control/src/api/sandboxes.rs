//! `/sandbox`, `/sandboxes` and `/v1/sandboxes/{id}`: the sandbox lifecycle.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use super::extract::JsonBody;
use super::openapi::SandboxPath;
use super::time::rfc3339;
use super::{ApiError, AppState};
use crate::config::Settings;
use crate::docker::ContainerStatus;
use crate::docker::spec::preview_host;
use crate::sandbox::{CreateRequest, Sandboxes};
use crate::store::SandboxRecord;
use crate::units::ByteSize;

pub use berth_api::{KeepaliveBody, LiveView, SandboxList, SandboxView};

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

#[utoipa::path(
    post,
    path = "",
    operation_id = "create_sandbox",
    tag = "sandboxes",
    summary = "Create a sandbox (and start it)",
    request_body(content = Option<berth_api::CreateRequest>, content_type = "application/json", description = "Optional: every field has a default"),
    responses((status = 201, body = SandboxView, description = "Created and starting; `Location` names it", headers(("Location" = String, description = "The sandbox's URL"), ("Berth-Placement" = String, description = "`warm` when a ready sandbox was claimed from the warm pool, else `cold; <why>`"))), super::openapi::CreateErrors)
)]
pub async fn create(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<CreateRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let (rec, placement) = state.sandboxes.create(req).await?;
    let location = format!("/v1/sandboxes/{}", rec.id);
    Ok((
        StatusCode::CREATED,
        [
            (header::LOCATION, location),
            (
                header::HeaderName::from_static("berth-placement"),
                placement.header(),
            ),
        ],
        Json(view(&state.sandboxes, rec, None)),
    ))
}

#[utoipa::path(
    get,
    path = "",
    operation_id = "list_sandboxes",
    tag = "sandboxes",
    summary = "List sandboxes",
    responses((status = 200, body = SandboxList), super::openapi::ListErrors)
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<SandboxList>, ApiError> {
    let all: Vec<SandboxView> = state
        .sandboxes
        .list()
        .await?
        .into_iter()
        .map(|rec| view(&state.sandboxes, rec, None))
        .collect();
    Ok(Json(SandboxList { sandboxes: all }))
}

#[utoipa::path(
    get,
    path = "",
    operation_id = "get_sandbox",
    tag = "sandboxes",
    summary = "One sandbox, with its live container state",
    params(SandboxPath),
    responses((status = 200, body = SandboxView), super::openapi::ReadErrors)
)]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SandboxView>, ApiError> {
    let rec = state.sandboxes.get(&id).await?;
    // The live state is a bonus: a Docker hiccup must not hide the record.
    let live = state.sandboxes.live(&rec.id).await.unwrap_or(None);
    Ok(Json(view(&state.sandboxes, rec, live)))
}

#[utoipa::path(
    post,
    path = "/start",
    operation_id = "start_sandbox",
    tag = "sandboxes",
    summary = "Start or wake a sandbox",
    params(SandboxPath),
    responses((status = 200, body = SandboxView), super::openapi::StartErrors)
)]
pub async fn start(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SandboxView>, ApiError> {
    let rec = state.sandboxes.start(&id).await?;
    Ok(Json(view(&state.sandboxes, rec, None)))
}

#[utoipa::path(
    post,
    path = "/stop",
    operation_id = "stop_sandbox",
    tag = "sandboxes",
    summary = "Stop a sandbox now (its workspace stays)",
    params(SandboxPath),
    responses((status = 200, body = SandboxView), super::openapi::StopErrors)
)]
pub async fn stop(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SandboxView>, ApiError> {
    let rec = without_task(&state, &id, "cancel it first").await?;
    let rec = state.sandboxes.stop(&rec.id).await?;
    Ok(Json(view(&state.sandboxes, rec, None)))
}

#[utoipa::path(
    post,
    path = "/sleep",
    operation_id = "sleep_sandbox",
    tag = "sandboxes",
    summary = "Put a sandbox to light sleep now: frozen, memory kept, woken in milliseconds by any use",
    params(SandboxPath),
    responses((status = 200, body = SandboxView), super::openapi::StopErrors)
)]
pub async fn sleep(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SandboxView>, ApiError> {
    let rec = without_task(&state, &id, "it sleeps once the task ends and it is idle").await?;
    let rec = state.sandboxes.sleep(&rec.id).await?;
    Ok(Json(view(&state.sandboxes, rec, None)))
}

/// The sandbox, unless a task runs in it (`409 task_in_progress`, with
/// what to do instead).
async fn without_task(
    state: &AppState,
    id: &str,
    instead: &str,
) -> Result<crate::store::SandboxRecord, ApiError> {
    let rec = state.sandboxes.get(id).await?;
    if state.tasks.is_running_on(&rec.id).await {
        return Err(ApiError::new(
            berth_api::ErrorCode::TaskInProgress,
            format!("a task is running in this sandbox: {instead}"),
        ));
    }
    Ok(rec)
}

#[utoipa::path(
    delete,
    path = "",
    operation_id = "delete_sandbox",
    tag = "sandboxes",
    summary = "Remove the container and cancel its tasks; the workspace stays",
    params(SandboxPath),
    responses((status = 204, description = "Deleted"), super::openapi::RemoveErrors)
)]
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

#[utoipa::path(
    post,
    path = "/purge",
    operation_id = "purge_sandbox",
    tag = "sandboxes",
    summary = "Remove everything: container, workspace, record, tasks",
    params(SandboxPath),
    responses((status = 204, description = "Purged"), super::openapi::RemoveErrors)
)]
pub async fn purge(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.tasks.cancel_all(&id).await?;
    state.sandboxes.purge(&id).await?;
    state.tasks.cancel_all(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/keepalive",
    operation_id = "keepalive_sandbox",
    tag = "sandboxes",
    summary = "Postpone the idle reaper",
    params(SandboxPath),
    request_body(content = Option<berth_api::KeepaliveBody>, content_type = "application/json", description = "Optional"),
    responses((status = 200, body = SandboxView), super::openapi::KeepaliveErrors)
)]
pub async fn keepalive(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<KeepaliveBody>,
) -> Result<Json<SandboxView>, ApiError> {
    let rec = state.sandboxes.keepalive(&id, body.until).await?;
    Ok(Json(view(&state.sandboxes, rec, None)))
}
