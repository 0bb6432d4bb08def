//! MCP resources: workspace files (`berth://sandboxes/{id}/files/{path}`)
//! and task event logs (`berth://sandboxes/{id}/tasks/{task}/events`),
//! read-only.

use base64::Engine;
use rmcp::ErrorData;
use rmcp::model::{
    ListResourceTemplatesResult, ListResourcesResult, ReadResourceResult, Resource,
    ResourceContents, ResourceTemplate,
};
use serde_json::json;

use super::super::{ApiError, AppState};
use crate::workspace::Entry;

const FILES: &str = "berth://sandboxes/{id}/files/{path}";
const EVENTS: &str = "berth://sandboxes/{id}/tasks/{task}/events";
/// The most of a task's log one read returns (its newest events).
const EVENTS_LIMIT: usize = 8 << 20;
/// The newest tasks listed per sandbox.
const TASKS_LISTED: usize = 10;

pub fn templates() -> ListResourceTemplatesResult {
    ListResourceTemplatesResult::with_all_items(vec![
        ResourceTemplate::new(FILES, "workspace-file")
            .with_title("A workspace file")
            .with_description("A file (or a folder's listing, as JSON) of a sandbox's workspace, /home/user/workspace; the path is percent-encoded."),
        ResourceTemplate::new(EVENTS, "task-events")
            .with_title("A task's event log")
            .with_description("The events a task emitted so far (its newest 8 MiB), one JSON object per line: {seq, event, data}.")
            .with_mime_type("application/x-ndjson"),
    ])
}

/// The newest tasks' logs of every sandbox. Files are reached through
/// their template: listing them here would read every workspace, and a
/// read counts as use (it would keep every sandbox from its idle stop).
pub async fn list(state: &AppState) -> Result<ListResourcesResult, ErrorData> {
    let mut out = Vec::new();
    for rec in state.sandboxes.list().await.map_err(internal)? {
        let mut tasks = state.store.tasks_of(&rec.id).await.map_err(internal)?;
        tasks.sort_by_key(|t| std::cmp::Reverse(t.created_at));
        for t in tasks.into_iter().take(TASKS_LISTED) {
            out.push(
                Resource::new(
                    format!("berth://sandboxes/{}/tasks/{}/events", rec.id, t.id),
                    format!("task {} events", t.id),
                )
                .with_mime_type("application/x-ndjson"),
            );
        }
    }
    Ok(ListResourcesResult::with_all_items(out))
}

pub async fn read(state: &AppState, uri: &str) -> Result<ReadResourceResult, ErrorData> {
    let not_found =
        || ErrorData::resource_not_found(format!("no resource `{uri}`"), Some(json!({"uri": uri})));
    let rest = uri
        .strip_prefix("berth://sandboxes/")
        .ok_or_else(not_found)?;
    let (id, rest) = rest.split_once('/').ok_or_else(not_found)?;
    if let Some(path) =
        rest.strip_prefix("files/")
            .or(if rest == "files" { Some("") } else { None })
    {
        let path = decode(path).ok_or_else(not_found)?;
        let entry = state
            .sandboxes
            .read_file(id, &path)
            .await
            .map_err(|e| tool_like(ApiError::from(e), uri))?;
        let contents = match entry {
            Entry::Dir(entries) => ResourceContents::text(
                serde_json::to_string(&json!({"path": path, "entries": entries}))
                    .unwrap_or_default(),
                uri,
            )
            .with_mime_type("application/json"),
            Entry::File(bytes) => match String::from_utf8(bytes) {
                Ok(text) => ResourceContents::text(text, uri),
                Err(e) => ResourceContents::blob(
                    base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
                    uri,
                )
                .with_mime_type("application/octet-stream"),
            },
        };
        return Ok(ReadResourceResult::new(vec![contents]));
    }
    let task_id = rest
        .strip_prefix("tasks/")
        .and_then(|t| t.strip_suffix("/events"))
        .ok_or_else(not_found)?;
    let task = state
        .tasks
        .get(id, task_id)
        .await
        .map_err(|e| tool_like(ApiError::from(e), uri))?;
    let events = state
        .store
        .task_events_after(&task.id, 0)
        .await
        .map_err(internal)?;
    // The newest events that fit: a long task's log is cut at its start.
    let mut lines: Vec<String> = Vec::new();
    let mut size = 0;
    for e in events.iter().rev() {
        let line = json!({"seq": e.seq, "event": e.kind, "data": e.data.0}).to_string();
        size += line.len() + 1;
        if size > EVENTS_LIMIT {
            break;
        }
        lines.push(line);
    }
    lines.reverse();
    let mut text = lines.join("\n");
    text.push('\n');
    Ok(ReadResourceResult::new(vec![
        ResourceContents::text(text, uri).with_mime_type("application/x-ndjson"),
    ]))
}

/// A berth error reading a resource: not found stays "resource not found";
/// anything else carries berth's code in the error's data.
fn tool_like(e: ApiError, uri: &str) -> ErrorData {
    let data = Some(json!({"uri": uri, "error": {"code": e.code, "message": e.message}}));
    if e.code == berth_api::ErrorCode::NotFound {
        ErrorData::resource_not_found(e.message, data)
    } else {
        ErrorData::invalid_params(e.message, data)
    }
}

fn internal(e: impl std::fmt::Display) -> ErrorData {
    ErrorData::internal_error(e.to_string(), None)
}

/// Percent-encodes a path for a URI, keeping `/` (what a client does).
#[cfg(test)]
fn encode(path: &str) -> String {
    let mut out = String::new();
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX`; `None` for a broken escape or bytes that are not UTF-8.
fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip_through_uris() {
        for path in ["app/index.html", "a b/<c>.txt", "ünï/çødé", ""] {
            assert_eq!(decode(&encode(path)).as_deref(), Some(path));
        }
        assert_eq!(encode("a b/c"), "a%20b/c");
        assert_eq!(decode("bad%2"), None);
        assert_eq!(decode("%FF"), None);
    }
}
