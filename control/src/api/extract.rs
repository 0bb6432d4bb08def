//! Extractors that answer in berth's error shape.
//!
//! The JSON body extractor does not insist on `Content-Type: application/json` (the curl
//! one-liners users paste send form types), and an empty body or `null`
//! reads as `{}` so that optional bodies can be left out.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::ApiError;

pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    berth_api::ErrorCode::TooLarge,
                    "the request body is too large",
                )
            } else {
                ApiError::invalid(format!("could not read the request body: {e}"))
            }
        })?;
        let trimmed = bytes.trim_ascii();
        let text: &[u8] = if trimmed.is_empty() || trimmed == b"null" {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(text)
            .map(JsonBody)
            .map_err(|e| ApiError::invalid(format!("malformed JSON body: {e}")))
    }
}

/// Query parameters; a malformed query is a JSON 400 like any other.
pub struct QueryParams<T>(pub T);

impl<T, S> FromRequestParts<S> for QueryParams<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| QueryParams(q.0))
            .map_err(|e| ApiError::invalid(format!("malformed query: {}", e.body_text())))
    }
}
