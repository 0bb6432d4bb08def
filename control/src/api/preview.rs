//! `POST /v1/sandboxes/{id}/preview-token`: a signed token that opens a
//! private sandbox's preview URLs; `…/preview-token/revoke` voids every
//! token (and cookie) minted before.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::JsonBody;
use super::sandboxes::preview_url;
use super::time::rfc3339;
use super::{ApiError, AppState};
use crate::store::now_ms;
use berth_wire::token;

/// Longest a preview token may live.
const MAX_TTL_S: i64 = 30 * 86_400;

#[derive(Debug, Default, Deserialize)]
pub struct TokenRequest {
    /// Seconds the token is valid (default 3600).
    ttl_s: Option<i64>,
}

pub async fn mint(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<TokenRequest>,
) -> Result<Json<Value>, ApiError> {
    let rec = state.sandboxes.get(&id).await?;
    let ttl = req.ttl_s.unwrap_or(3600);
    if !(1..=MAX_TTL_S).contains(&ttl) {
        return Err(ApiError::invalid(format!(
            "ttl_s must be 1 to {MAX_TTL_S} seconds"
        )));
    }
    let key = state
        .store
        .preview_key()
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let exp = now_ms() / 1000 + ttl;
    let token = token::mint(&key, &rec.id, &rec.preview_generation, exp);
    let settings = state.sandboxes.settings();
    let urls: BTreeMap<String, String> = rec
        .ports
        .0
        .iter()
        .map(|p| {
            (
                p.to_string(),
                format!(
                    "{}/?{}={token}",
                    preview_url(settings, &rec.id, *p),
                    token::QUERY_PARAM
                ),
            )
        })
        .collect();
    Ok(Json(json!({
        "token": token,
        "expires_at": rfc3339(exp * 1000),
        "query_parameter": token::QUERY_PARAM,
        "urls": urls,
    })))
}

/// Voids every preview token of the sandbox (a new generation); the edge
/// refuses them within a few seconds.
pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let rec = state.sandboxes.get(&id).await?;
    state
        .store
        .rotate_preview_generation(&rec.id)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok(Json(json!({ "revoked": true })))
}
