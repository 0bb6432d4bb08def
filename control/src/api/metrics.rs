//! `GET /metrics`: Prometheus text, behind the API's tokens when they are
//! set; and the middleware that counts every answer by status.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::metrics::Metrics;
use crate::store::Status;

#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "system",
    summary = "Prometheus metrics",
    responses((status = 200, content_type = "text/plain", body = String), super::openapi::ListErrors)
)]
pub async fn scrape(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let mut sandboxes: Vec<(&'static str, i64)> = Vec::new();
    let records = state
        .store
        .sandboxes()
        .await
        .map_err(|e| ApiError::internal(&e))?;
    for rec in records.iter().filter(|r| !r.pooled) {
        let status = rec.status.as_str();
        match sandboxes.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => sandboxes.push((status, 1)),
        }
    }
    // Every status is a series, zero or not.
    for status in [
        Status::Creating,
        Status::Running,
        Status::Asleep,
        Status::Stopping,
        Status::Stopped,
        Status::Error,
    ] {
        if !sandboxes.iter().any(|(s, _)| *s == status.as_str()) {
            sandboxes.push((status.as_str(), 0));
        }
    }
    let tasks = state
        .store
        .task_counts()
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let text = state
        .sandboxes
        .metrics()
        .render(&sandboxes, &tasks, state.started.elapsed())
        .map_err(|e| ApiError::internal(&e))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    ))
}

pub async fn count_answers(
    State(metrics): State<Metrics>,
    req: Request<Body>,
    next: Next,
) -> Response {
    let response = next.run(req).await;
    metrics.http_answered(response.status().as_u16());
    response
}
