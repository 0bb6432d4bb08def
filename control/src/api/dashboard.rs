//! The web dashboard: one page and its script and style, embedded in the
//! binary (plain HTML, CSS and an ES module; no build step, nothing from
//! the network). It signs in with an API token kept in `sessionStorage`
//! and calls the API like any client, with the token in a header, so no
//! cookie can be ridden by another site.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::{ApiError, AppState};

const INDEX: &str = include_str!("../../ui/index.html");
const SCRIPT: &str = include_str!("../../ui/app.js");
const STYLE: &str = include_str!("../../ui/style.css");

/// Scripts and styles only from here; previews framed from the preview
/// domain only; nothing may frame the dashboard.
fn policy(state: &AppState) -> String {
    let domain = &state.sandboxes.settings().preview_domain;
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; frame-src http://*.{domain}:* https://*.{domain}:*; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

fn asset(state: &AppState, content_type: &'static str, body: &'static str) -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&policy(state)) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}

#[utoipa::path(
    get,
    path = "/",
    operation_id = "root",
    tag = "dashboard",
    summary = "Sends browsers to the dashboard",
    responses((status = 308, description = "To `/ui/`"), super::openapi::NoErrors),
    security(())
)]
pub async fn root() -> Redirect {
    Redirect::permanent("/ui/")
}

#[utoipa::path(
    get,
    path = "/ui/",
    operation_id = "dashboard",
    tag = "dashboard",
    summary = "The dashboard (signs in with an API token)",
    responses((status = 200, content_type = "text/html", body = String), super::openapi::NoErrors),
    security(())
)]
pub async fn page(State(state): State<AppState>) -> Response {
    asset(&state, "text/html; charset=utf-8", INDEX)
}

/// An asset's name in `/ui/{asset}`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct AssetPath {
    /// `app.js` or `style.css`.
    asset: String,
}

#[utoipa::path(
    get,
    path = "/ui/{asset}",
    operation_id = "dashboard_asset",
    tag = "dashboard",
    summary = "The dashboard's script and style",
    params(AssetPath),
    responses(
        (status = 200, description = "The file", content((String = "text/javascript"), (String = "text/css"))),
        super::openapi::AssetErrors
    ),
    security(())
)]
pub async fn file(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    match name.as_str() {
        "app.js" => Ok(asset(&state, "text/javascript; charset=utf-8", SCRIPT)),
        "style.css" => Ok(asset(&state, "text/css; charset=utf-8", STYLE)),
        _ => Err(ApiError::not_found("no such dashboard file")),
    }
}
