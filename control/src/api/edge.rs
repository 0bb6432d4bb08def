//! Routes berth-edge uses: its bootstrap (the preview key) and batched
//! activity reports. Guarded by the API tokens like every route.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::JsonBody;
use super::{ApiError, AppState};
use crate::store::now_ms;

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

#[derive(Debug, Deserialize)]
pub struct ActivityReport {
    /// Sandbox id → last activity, unix milliseconds.
    #[serde(default)]
    sandboxes: HashMap<String, i64>,
}

/// Preview traffic seen by the edge: it keeps sandboxes from being reaped.
/// Unknown ids are ignored; times in the future count as now.
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
