//! `/v1/sandboxes/{id}/files`: read, list, write and delete workspace files.
//!
//! Paths are relative to the workspace (`/home/user/workspace`); text comes
//! back as UTF-8, anything else as base64 (`"encoding"` says which), and
//! `?raw=true` returns a file's bytes as they are.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use super::extract::{JsonBody, QueryParams};
use super::{ApiError, AppState};
use crate::workspace::Entry;

#[derive(Debug, Deserialize)]
pub struct PathQuery {
    #[serde(default)]
    path: String,
    #[serde(default)]
    raw: bool,
}

pub async fn read(
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<PathQuery>,
) -> Result<Response, ApiError> {
    let entry = state.sandboxes.read_file(&id, &q.path).await?;
    let shown = if q.path.is_empty() {
        "."
    } else {
        q.path.as_str()
    };
    Ok(match entry {
        Entry::Dir(entries) => {
            Json(json!({"path": shown, "type": "dir", "entries": entries})).into_response()
        }
        Entry::File(bytes) if q.raw => {
            ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
        }
        Entry::File(bytes) => {
            let size = bytes.len();
            let (content, encoding) = match String::from_utf8(bytes) {
                Ok(text) => (text, "utf8"),
                Err(e) => (
                    base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
                    "base64",
                ),
            };
            Json(json!({
                "path": shown, "type": "file", "size": size,
                "encoding": encoding, "content": content,
            }))
            .into_response()
        }
    })
}

#[derive(Debug, Deserialize)]
pub struct WriteBody {
    path: String,
    content: String,
    #[serde(default)]
    append: bool,
    /// `utf8` (default) or `base64`.
    #[serde(default)]
    encoding: Option<String>,
}

pub async fn write(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<WriteBody>,
) -> Result<impl IntoResponse, ApiError> {
    let content = match body.encoding.as_deref() {
        None | Some("utf8" | "utf-8") => body.content.into_bytes(),
        Some("base64") => base64::engine::general_purpose::STANDARD
            .decode(body.content.as_bytes())
            .map_err(|e| ApiError::invalid(format!("content is not valid base64: {e}")))?,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "encoding `{other}` is not known: use utf8 or base64"
            )));
        }
    };
    let size = state
        .sandboxes
        .write_file(&id, &body.path, content, body.append)
        .await?;
    Ok((
        StatusCode::OK,
        Json(json!({"path": body.path, "size": size})),
    ))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<PathQuery>,
) -> Result<StatusCode, ApiError> {
    state.sandboxes.delete_file(&id, &q.path).await?;
    Ok(StatusCode::NO_CONTENT)
}
