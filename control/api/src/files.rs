//! Workspace files.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `?path=…&raw=…` of the files routes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PathQuery {
    /// Relative to the workspace; empty for the workspace itself.
    #[serde(default)]
    pub path: String,
    /// Answer a file's bytes as they are (`application/octet-stream`).
    #[serde(default)]
    pub raw: bool,
}

/// `PUT …/files`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WriteBody {
    pub path: String,
    pub content: String,
    /// Append to the file rather than replace it.
    #[serde(default)]
    pub append: bool,
    /// `utf8` (default) or `base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
}

/// The answer of a write.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Written {
    pub path: String,
    /// The file's size after the write.
    pub size: u64,
}

/// The answer of a read: a directory's entries or a file's content.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FileRead {
    Dir {
        path: String,
        entries: Vec<DirEntry>,
    },
    File {
        path: String,
        size: u64,
        /// `utf8`, or `base64` for content that is not UTF-8.
        encoding: String,
        content: String,
    },
}

/// One entry of a directory listing.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DirEntry {
    pub name: String,
    /// `file`, `dir`, `symlink` or `other`.
    #[serde(rename = "type")]
    pub kind: String,
    pub size: u64,
}
