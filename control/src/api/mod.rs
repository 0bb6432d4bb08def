//! The HTTP API: one file per resource; errors become responses in
//! [`error`] only.

mod edge;
mod error;
mod exec;
mod extract;
mod files;
mod health;
mod metrics;
mod preview;
mod sandboxes;
mod tasks;
mod time;

use std::time::Instant;

use axum::extract::DefaultBodyLimit;
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use axum::{Router, middleware};
use tower_http::trace::TraceLayer;

pub use error::ApiError;

use crate::auth::{Tokens, require_token};
use crate::docker::Docker;
use crate::sandbox::Sandboxes;
use crate::store::Store;
use crate::tasks::Tasks;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub sandboxes: Sandboxes,
    pub tasks: Tasks,
    pub store: Store,
    pub docker: Docker,
    pub started: Instant,
    /// Which background loops are down (restarting after a panic).
    pub health: crate::supervise::Health,
}

/// The whole API. Routes of the `sandboxed` API are kept as they are; every
/// operation is also under `/v1/sandboxes`.
pub fn router(state: AppState, tokens: Tokens) -> Router {
    let body_limit = state.sandboxes.settings().max_file_size.saturating_mul(2) + (1 << 20);
    let sandbox_routes = Router::new()
        .route("/", get(sandboxes::get).delete(sandboxes::delete))
        .route("/exec", post(exec::exec))
        .route("/exec/stream", post(exec::stream))
        .route("/keepalive", post(sandboxes::keepalive))
        .route("/purge", post(sandboxes::purge))
        .route("/stop", post(sandboxes::stop))
        .route("/start", post(sandboxes::start))
        .route(
            "/files",
            get(files::read).put(files::write).delete(files::delete),
        )
        .route("/tasks", get(tasks::list).post(tasks::create))
        .route("/tasks/{task}", get(tasks::get))
        .route("/tasks/{task}/events", get(tasks::events))
        .route("/tasks/{task}/cancel", post(tasks::cancel))
        .route("/tasks/{task}/revert", post(tasks::revert))
        .route("/preview-token", post(preview::mint))
        .route("/preview-token/revoke", post(preview::revoke));
    let api = Router::new()
        .route("/sandbox", post(sandboxes::create))
        .route("/sandboxes", get(sandboxes::list))
        .route(
            "/v1/sandboxes",
            get(sandboxes::list).post(sandboxes::create),
        )
        .nest("/sandbox/{id}", sandbox_routes.clone())
        .nest("/v1/sandboxes/{id}", sandbox_routes)
        .route("/v1/info", get(health::info))
        .route("/metrics", get(metrics::scrape))
        .route("/v1/edge/bootstrap", get(edge::bootstrap))
        .route("/v1/edge/sandboxes/{id}", get(edge::sandbox))
        .route("/v1/edge/sandboxes/{id}/wake", post(edge::wake))
        .route("/v1/edge/activity", post(edge::activity))
        .route("/v1/activity", post(edge::activity))
        .route_layer(middleware::from_fn_with_state(tokens, require_token));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.sandboxes.metrics().clone(),
            metrics::count_answers,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                tracing::info_span!(
                    "http",
                    method = %req.method(),
                    path = %req.uri().path(),
                    caller = tracing::field::Empty,
                )
            }),
        )
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}
