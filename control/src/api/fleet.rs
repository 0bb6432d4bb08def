//! `GET /v1/fleet/events`: every sandbox, sent again whenever one changes,
//! so that a dashboard stays current without polling the API itself.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;

use super::AppState;
use super::sandboxes::{SandboxList, view};

/// How often the store is read for changes (one query per watching client).
const LOOK_EVERY: Duration = Duration::from_secs(1);

#[utoipa::path(
    get,
    path = "/v1/fleet/events",
    operation_id = "fleet_events",
    tag = "sandboxes",
    summary = "Every sandbox, sent again whenever one changes (Server-Sent Events)",
    responses((status = 200, content_type = "text/event-stream", body = String, description = "`sandboxes` (SandboxList) at once, then again after each change. The stream does not end by itself."), super::openapi::ListErrors)
)]
pub async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = futures_util::stream::unfold((state, None), |(state, last)| async move {
        let mut last: Option<String> = last;
        loop {
            if let Ok(records) = state.sandboxes.list().await {
                let list = SandboxList {
                    sandboxes: records
                        .into_iter()
                        .map(|rec| view(&state.sandboxes, rec, None))
                        .collect(),
                };
                let text = serde_json::to_string(&list).unwrap_or_default();
                if last.as_deref() != Some(text.as_str()) {
                    let event = Event::default().event("sandboxes").data(&text);
                    last = Some(text);
                    return Some((Ok(event), (state, last)));
                }
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
