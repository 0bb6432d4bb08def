//! `GET /v1/sandboxes/{id}/pty`: an interactive terminal over a WebSocket.
//!
//! Binary frames are the terminal's bytes both ways (keystrokes in, screen
//! out). Text frames are JSON: from the client `{"type":"resize","cols",
//! "rows"}` or `{"type":"input","data"}`; from berth `{"type":"session",
//! "id"}` first (reconnect with `?session=<id>` within `BERTH_PTY_GRACE`),
//! `{"type":"exit","code"}` when the shell ends, `{"type":"error",
//! "message"}` for a frame it could not take.

use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::extract::QueryParams;
use super::openapi::SandboxPath;
use super::{ApiError, AppState};
use crate::sandbox::Sandboxes;
use crate::sandbox::pty::Terminal;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PtyQuery {
    /// A session to reattach to (from its `session` frame); omitted: a new
    /// terminal.
    session: Option<String>,
    /// Columns of a new terminal (default 80).
    cols: Option<u16>,
    /// Rows of a new terminal (default 24).
    rows: Option<u16>,
}

/// What a client sends in a text frame.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientFrame {
    Resize { cols: u16, rows: u16 },
    Input { data: String },
}

#[utoipa::path(
    get,
    path = "/pty",
    operation_id = "pty",
    tag = "exec",
    summary = "An interactive terminal (WebSocket): a login shell on a pseudo-terminal",
    params(SandboxPath, PtyQuery),
    responses(
        (status = 101, description = "Switching to the terminal's WebSocket"),
        super::openapi::ExecErrors
    )
)]
pub async fn pty(
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<PtyQuery>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let rec = state.sandboxes.get(&id).await?;
    let ws = ws.map_err(|e| {
        ApiError::invalid(format!(
            "this route is a WebSocket: connect with `Upgrade: websocket` ({e})"
        ))
    })?;
    let size = |v: Option<u16>, default: u16| v.unwrap_or(default).clamp(1, 1000);
    let terminal = match q.session.as_deref() {
        Some(session) => state.sandboxes.terminal(&rec.id, session).ok_or_else(|| {
            ApiError::not_found(format!(
                "no terminal `{session}` in sandbox `{}`: it ended, or was left longer than its grace period",
                rec.id
            ))
        })?,
        None => {
            state
                .sandboxes
                .open_terminal(&rec.id, size(q.cols, 80), size(q.rows, 24))
                .await?
        }
    };
    let sandboxes = state.sandboxes.clone();
    Ok(ws.on_upgrade(move |socket| serve(sandboxes, terminal, socket)))
}

/// One attachment, until the client leaves, another takes over, or the
/// shell ends.
async fn serve(sandboxes: Sandboxes, t: Arc<Terminal>, mut socket: WebSocket) {
    let mut attachment = t.attach();
    let generation = attachment.generation;
    let mut exited = t.exited();
    let mut attachments = t.attachments();
    let hello = json!({"type": "session", "id": t.id}).to_string();
    let mut ok = socket.send(Message::Text(hello.into())).await.is_ok();
    if ok && !attachment.backlog.is_empty() {
        let backlog = std::mem::take(&mut attachment.backlog);
        ok = socket.send(Message::Binary(backlog.into())).await.is_ok();
    }
    while ok {
        tokio::select! {
            frame = socket.recv() => ok = match frame {
                Some(Ok(Message::Binary(bytes))) => t.write(&bytes).await.is_ok(),
                Some(Ok(Message::Text(text))) => match serde_json::from_str::<ClientFrame>(text.as_str()) {
                    Ok(ClientFrame::Input { data }) => t.write(data.as_bytes()).await.is_ok(),
                    Ok(ClientFrame::Resize { cols, rows }) => {
                        sandboxes.resize_terminal(&t, cols.clamp(1, 1000), rows.clamp(1, 1000)).await;
                        true
                    }
                    Err(e) => {
                        let error = json!({"type": "error", "message": format!("not a terminal frame: {e}")});
                        socket.send(Message::Text(error.to_string().into())).await.is_ok()
                    }
                },
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => true,
                Some(Ok(Message::Close(_)) | Err(_)) | None => false,
            },
            out = attachment.output.recv() => ok = match out {
                Ok(bytes) => socket.send(Message::Binary(bytes)).await.is_ok(),
                // A slow client: what it missed is gone, the screen goes on.
                Err(RecvError::Lagged(_)) => true,
                Err(RecvError::Closed) => false,
            },
            _ = async { exited.wait_for(Option::is_some).await.map(|_| ()) } => {
                // What it wrote last, then its exit code.
                while let Ok(bytes) = attachment.output.try_recv() {
                    if socket.send(Message::Binary(bytes)).await.is_err() {
                        break;
                    }
                }
                let code = (*exited.borrow()).flatten();
                let bye = json!({"type": "exit", "code": code}).to_string();
                let _ = socket.send(Message::Text(bye.into())).await;
                let _ = socket.send(Message::Close(None)).await;
                return;
            },
            _ = async { attachments.wait_for(|&(g, _)| g != generation).await.map(|_| ()) } => {
                // Another client took the terminal over.
                let _ = socket.send(Message::Close(None)).await;
                return;
            },
        }
    }
    sandboxes.detach_terminal(&t, generation);
}
