//! Preview tokens for private sandboxes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST …/preview-token`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct TokenRequest {
    /// Seconds the token is valid: 1 to 2592000 (30 days); default 3600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<i64>,
}

/// A minted preview token. No `Debug`: it opens the sandbox's previews.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct PreviewToken {
    pub token: String,
    /// RFC 3339.
    pub expires_at: String,
    /// The query parameter the token goes in (`berth_token`).
    pub query_parameter: String,
    /// Port → a preview URL that carries the token.
    pub urls: BTreeMap<String, String>,
}

/// `POST …/preview-token/revoke`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Revoked {
    pub revoked: bool,
}
