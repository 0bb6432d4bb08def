//! `/mcp`: the MCP endpoint (Streamable HTTP), behind the API's token check;
//! the protocol itself is [`super::mcp`].

use axum::Extension;
use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_api::ErrorCode;
use tower::ServiceExt;

use super::ApiError;
use super::mcp::Service;

/// The most of a transport refusal's text that is kept.
const REFUSAL_LIMIT: usize = 64 * 1024;

/// Hands the request to the MCP service. Its transport-level refusals
/// (plain text: a missing `Accept`, an unknown session) are put in the
/// API's JSON error shape; JSON-RPC answers, errors included, pass as the
/// SDK wrote them.
async fn forward(service: Service, req: Request) -> Response {
    let response = match service.oneshot(req).await {
        Ok(response) => response.map(Body::new),
        Err(never) => match never {},
    };
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json") || t.starts_with("text/event-stream"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return response;
    }
    let code = match status {
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::TooLarge,
        s if s.is_client_error() => ErrorCode::InvalidRequest,
        _ => ErrorCode::Internal,
    };
    let text = to_bytes(response.into_body(), REFUSAL_LIMIT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        format!("MCP transport: {status}")
    } else {
        format!("MCP transport: {text}")
    };
    ApiError::new(code, message).into_response()
}

#[utoipa::path(
    post,
    path = "/mcp",
    operation_id = "mcp_post",
    tag = "mcp",
    summary = "Model Context Protocol: a JSON-RPC message (Streamable HTTP)",
    request_body(content = Object, content_type = "application/json", description = "A JSON-RPC request, notification or response of MCP"),
    responses((status = 200, description = "A JSON-RPC answer (JSON), or a stream of them (`text/event-stream`)"), (status = 202, description = "A notification or response, accepted"), super::openapi::McpErrors)
)]
pub async fn post(Extension(service): Extension<Service>, req: Request) -> impl IntoResponse {
    forward(service, req).await
}

#[utoipa::path(
    get,
    path = "/mcp",
    operation_id = "mcp_get",
    tag = "mcp",
    summary = "Model Context Protocol: the session's stream of server messages",
    responses((status = 200, content_type = "text/event-stream", body = String, description = "Server-initiated MCP messages of the session named by `Mcp-Session-Id`"), super::openapi::McpErrors)
)]
pub async fn get(Extension(service): Extension<Service>, req: Request) -> impl IntoResponse {
    forward(service, req).await
}

#[utoipa::path(
    delete,
    path = "/mcp",
    operation_id = "mcp_delete",
    tag = "mcp",
    summary = "Model Context Protocol: end the session named by `Mcp-Session-Id`",
    responses((status = 200, description = "Ended"), super::openapi::McpErrors)
)]
pub async fn delete(Extension(service): Extension<Service>, req: Request) -> impl IntoResponse {
    forward(service, req).await
}
