//! Routes berth-edge uses, all under `/v1/edge/` (the only ones its scoped
//! token opens): its bootstrap (instance id and preview key), a sandbox's
//! routing facts, wakes, and batched activity reports.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::JsonBody;
use super::openapi::SandboxPath;
use super::{ApiError, AppState};
use crate::store::now_ms;

#[utoipa::path(
    get,
    path = "/v1/edge/bootstrap",
    operation_id = "edge_bootstrap",
    tag = "edge",
    summary = "The instance id and preview key",
    responses((status = 200, body = serde_json::Value), super::openapi::ListErrors)
)]
pub async fn bootstrap(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let key = state
        .store
        .preview_key()
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok(Json(json!({
        "instance_id": state.sandboxes.instance_id(),
        "preview_domain": state.sandboxes.settings().preview_domain,
        "preview_key": base64::engine::general_purpose::STANDARD.encode(key),
    })))
}

/// What the edge needs to route a sandbox: its ports, whether previews need
/// a token, and the preview generation tokens must name.
#[utoipa::path(
    get,
    path = "/v1/edge/sandboxes/{id}",
    operation_id = "edge_sandbox",
    tag = "edge",
    summary = "A sandbox's routing facts",
    params(SandboxPath),
    responses((status = 200, body = serde_json::Value), super::openapi::ReadErrors)
)]
pub async fn sandbox(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let rec = state.sandboxes.get(&id).await?;
    Ok(Json(json!({
        "id": rec.id,
        "ports": rec.ports.0,
        "public": rec.public,
        "preview_generation": rec.preview_generation,
    })))
}

/// Wakes a sandbox for a preview request. The edge gets the routing facts,
/// never the record (env names, metadata).
#[utoipa::path(
    post,
    path = "/v1/edge/sandboxes/{id}/wake",
    operation_id = "edge_wake",
    tag = "edge",
    summary = "Wake a sandbox for a preview request",
    params(SandboxPath),
    responses((status = 200, body = serde_json::Value), super::openapi::StartErrors)
)]
pub async fn wake(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let rec = state.sandboxes.start(&id).await?;
    Ok(Json(json!({
        "id": rec.id,
        "status": rec.status,
        "ports": rec.ports.0,
        "public": rec.public,
        "preview_generation": rec.preview_generation,
    })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ActivityReport {
    /// Sandbox id → last activity, unix milliseconds.
    #[serde(default)]
    sandboxes: HashMap<String, i64>,
}

/// Preview traffic seen by the edge: it keeps sandboxes from being reaped.
/// Unknown ids are ignored; times in the future count as now.
#[utoipa::path(
    post,
    path = "",
    operation_id = "edge_activity",
    tag = "edge",
    summary = "Preview traffic the edge saw: keeps sandboxes from being reaped",
    request_body(content = Option<ActivityReport>, content_type = "application/json", description = "Sandbox id to the last time (unix ms) the edge saw traffic for it"),
    responses((status = 204, description = "Recorded"), super::openapi::ActivityErrors)
)]
pub async fn activity(
    State(state): State<AppState>,
    JsonBody(report): JsonBody<ActivityReport>,
) -> Result<StatusCode, ApiError> {
    if report.sandboxes.len() > 100_000 {
        return Err(ApiError::invalid("at most 100000 sandboxes per report"));
    }
    let now = now_ms();
    for (id, at) in report.sandboxes {
        state
            .sandboxes
            .activity()
            .touch_at(&id.to_ascii_lowercase(), at.min(now));
    }
    Ok(StatusCode::NO_CONTENT)
}
