//! `POST /v1/sandboxes/{id}/preview-token`: a signed token that opens a
//! private sandbox's preview URLs; `…/preview-token/revoke` voids every
//! token (and cookie) minted before.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use berth_api::preview::{PreviewToken, Revoked, TokenRequest};

use super::extract::JsonBody;
use super::openapi::SandboxPath;
use super::sandboxes::preview_url;
use super::time::rfc3339;
use super::{ApiError, AppState};
use crate::store::now_ms;
use berth_wire::token;

/// Longest a preview token may live.
const MAX_TTL_S: i64 = 30 * 86_400;

#[utoipa::path(
    post,
    path = "/preview-token",
    operation_id = "mint_preview_token",
    tag = "preview",
    summary = "Mint a token that opens a private sandbox's previews",
    params(SandboxPath),
    request_body(content = Option<berth_api::preview::TokenRequest>, content_type = "application/json", description = "Optional"),
    responses((status = 200, body = berth_api::preview::PreviewToken), super::openapi::TokenErrors)
)]
pub async fn mint(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<TokenRequest>,
) -> Result<Json<PreviewToken>, ApiError> {
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
    Ok(Json(PreviewToken {
        token,
        expires_at: rfc3339(exp * 1000),
        query_parameter: token::QUERY_PARAM.to_string(),
        urls,
    }))
}

/// Voids every preview token of the sandbox (a new generation); the edge
/// refuses them within a few seconds.
#[utoipa::path(
    post,
    path = "/preview-token/revoke",
    operation_id = "revoke_preview_tokens",
    tag = "preview",
    summary = "Void every preview token and cookie minted before",
    params(SandboxPath),
    responses((status = 200, body = berth_api::preview::Revoked), super::openapi::TokenErrors)
)]
pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Revoked>, ApiError> {
    let rec = state.sandboxes.get(&id).await?;
    state
        .store
        .rotate_preview_generation(&rec.id)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok(Json(Revoked { revoked: true }))
}
