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
use berth_api::files::{FileRead, PathQuery, WriteBody, Written};

use super::extract::{JsonBody, QueryParams};
use super::openapi::SandboxPath;
use super::{ApiError, AppState};
use crate::workspace::Entry;

#[utoipa::path(
    get,
    path = "/files",
    operation_id = "read_file",
    tag = "files",
    summary = "Read a file or list a directory of the workspace",
    params(SandboxPath, berth_api::files::PathQuery),
    responses((status = 200, description = "A file's content (JSON, or its bytes with `raw=true`) or a directory's entries", content((berth_api::files::FileRead = "application/json"), (Vec<u8> = "application/octet-stream"))), super::openapi::FileReadErrors)
)]
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
        Entry::Dir(entries) => Json(FileRead::Dir {
            path: shown.to_string(),
            entries,
        })
        .into_response(),
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
            Json(FileRead::File {
                path: shown.to_string(),
                size: size as u64,
                encoding: encoding.to_string(),
                content,
            })
            .into_response()
        }
    })
}

#[utoipa::path(
    put,
    path = "/files",
    operation_id = "write_file",
    tag = "files",
    summary = "Write (or append to) a workspace file; parents are created",
    params(SandboxPath),
    request_body(content = berth_api::files::WriteBody, content_type = "application/json"),
    responses((status = 200, body = berth_api::files::Written), super::openapi::FileWriteErrors)
)]
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
        Json(Written {
            path: body.path,
            size,
        }),
    ))
}

#[utoipa::path(
    delete,
    path = "/files",
    operation_id = "delete_file",
    tag = "files",
    summary = "Delete a workspace file or directory",
    params(SandboxPath, berth_api::files::PathQuery),
    responses((status = 204, description = "Deleted"), super::openapi::FileWriteErrors)
)]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<PathQuery>,
) -> Result<StatusCode, ApiError> {
    state.sandboxes.delete_file(&id, &q.path).await?;
    Ok(StatusCode::NO_CONTENT)
}
