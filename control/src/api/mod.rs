//! The HTTP API: one file per resource; errors become responses in
//! [`error`] only.

mod dashboard;
mod edge;
mod error;
mod exec;
mod extract;
mod files;
mod fleet;
mod health;
mod mcp;
mod mcp_route;
mod metrics;
pub mod openapi;
mod preview;
mod pty;
mod reference;
mod sandboxes;
mod tasks;
mod time;

use std::time::Instant;

use axum::extract::DefaultBodyLimit;
use axum::http::Request;
use axum::{Router, middleware};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::ApiError;
pub use fleet::Gauge as FleetGauge;

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
    /// Memory samples the fleet streams share.
    pub fleet: FleetGauge,
}

/// Routes anyone may call: liveness, readiness, and this API's own
/// description.
fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::Head::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(reference::openapi_json))
        .routes(routes!(reference::docs))
        .routes(routes!(dashboard::root))
        .routes(routes!(dashboard::page))
        .routes(routes!(dashboard::file))
}

/// Routes that need a token. Routes of the `sandboxed` API are kept as
/// they are; every operation is also under `/v1/sandboxes`.
fn authenticated_routes() -> OpenApiRouter<AppState> {
    let sandbox_routes = || {
        OpenApiRouter::new()
            .routes(routes!(sandboxes::get, sandboxes::delete))
            .routes(routes!(exec::exec))
            .routes(routes!(exec::stream))
            .routes(routes!(pty::pty))
            .routes(routes!(sandboxes::keepalive))
            .routes(routes!(sandboxes::purge))
            .routes(routes!(sandboxes::stop))
            .routes(routes!(sandboxes::sleep))
            .routes(routes!(sandboxes::start))
            .routes(routes!(files::read, files::write, files::delete))
            .routes(routes!(tasks::list, tasks::create))
            .routes(routes!(tasks::get))
            .routes(routes!(tasks::events))
            .routes(routes!(tasks::cancel))
            .routes(routes!(tasks::revert))
            .routes(routes!(tasks::diff))
            .routes(routes!(preview::mint))
            .routes(routes!(preview::revoke))
    };
    let activity = || OpenApiRouter::new().routes(routes!(edge::activity));
    OpenApiRouter::new()
        .nest(
            "/v1/sandboxes",
            OpenApiRouter::new().routes(routes!(sandboxes::list, sandboxes::create)),
        )
        .nest(
            "/sandbox",
            OpenApiRouter::new().routes(routes!(sandboxes::create)),
        )
        .nest(
            "/sandboxes",
            OpenApiRouter::new().routes(routes!(sandboxes::list)),
        )
        .nest("/sandbox/{id}", sandbox_routes())
        .nest("/v1/sandboxes/{id}", sandbox_routes())
        .routes(routes!(fleet::events))
        .routes(routes!(mcp_route::post, mcp_route::get, mcp_route::delete))
        .routes(routes!(health::info))
        .routes(routes!(metrics::scrape))
        .routes(routes!(edge::bootstrap))
        .routes(routes!(edge::sandbox))
        .routes(routes!(edge::wake))
        .nest("/v1/edge/activity", activity())
        .nest("/v1/activity", activity())
}

/// Every route with its OpenAPI description: what the document is made of.
pub fn routes() -> OpenApiRouter<AppState> {
    public_routes().merge(authenticated_routes())
}

/// The whole API. Every route is registered through `routes!`, which
/// documents it in the same step: nothing is served that the OpenAPI
/// document does not describe.
pub fn router(state: AppState, tokens: Tokens) -> Router {
    let body_limit = state.sandboxes.settings().max_file_size.saturating_mul(2) + (1 << 20);
    let (api, _) = authenticated_routes()
        .route_layer(middleware::from_fn_with_state(tokens, require_token))
        .split_for_parts();
    let (public, _) = public_routes().split_for_parts();
    let mcp = mcp::service(state.clone());
    public
        .merge(api)
        .layer(axum::Extension(mcp))
        .layer(axum::Extension(reference::Reference::new(
            state.sandboxes.shared_settings(),
        )))
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
        berth_api::ErrorCode::MethodNotAllowed,
        "this route does not take that method",
    )
}
