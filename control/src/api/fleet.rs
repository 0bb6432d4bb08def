//! `GET /v1/fleet/events`: every sandbox, sent again whenever one changes,
//! and what each uses (memory, tasks), so that a dashboard stays current
//! without polling the API itself.
//!
//! Each watcher reads the store once a second (one indexed query for the
//! sandboxes, two for the tasks) and sends only what changed. Memory comes
//! from Docker's stats, sampled at most every [`SAMPLE_EVERY`] for all
//! watchers together ([`Gauge`]), so that ten open dashboards cost Docker
//! what one does.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use berth_api::TaskStatus;
use berth_api::sandbox::{FleetUsage, SandboxUsage, Status};
use futures_util::{Stream, StreamExt, stream};
use tokio::sync::Mutex;

use super::AppState;
use super::sandboxes::{SandboxList, view};
use crate::store::SandboxRecord;

/// How often a watcher reads the store for changes.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// How old a memory sample may be before it is taken again.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Docker stats calls in flight at once while sampling.
const SAMPLES_AT_ONCE: usize = 8;

/// Memory in use by container id (`None`: Docker had no figure), and when
/// it was read.
type Sample = (Instant, HashMap<String, Option<u64>>);

/// How long one container's stats may take before it counts as unknown.
const STATS_TIMEOUT: Duration = Duration::from_secs(2);

/// Memory samples of running containers, shared by every watcher.
#[derive(Clone, Default)]
pub struct Gauge {
    last: Arc<Mutex<Option<Sample>>>,
}

impl Gauge {
    /// Memory in use by container id, sampled again when older than
    /// [`SAMPLE_EVERY`] (one watcher samples; the others wait and share).
    async fn memory(&self, state: &AppState, running: &[&str]) -> HashMap<String, Option<u64>> {
        let mut last = self.last.lock().await;
        if let Some((at, sample)) = last.as_ref() {
            if at.elapsed() < SAMPLE_EVERY && running.iter().all(|c| sample.contains_key(*c)) {
                return sample.clone();
            }
        }
        let ids: Vec<String> = running.iter().map(|c| c.to_string()).collect();
        let mut sample = HashMap::new();
        let mut samples = stream::iter(ids)
            .map(|container| {
                let docker = state.docker.clone();
                async move {
                    let used = tokio::time::timeout(STATS_TIMEOUT, docker.memory_used(&container))
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .flatten();
                    (container, used)
                }
            })
            .buffer_unordered(SAMPLES_AT_ONCE);
        // Misses are kept too: a container Docker has no figure for is
        // asked again with the others, not on every look.
        while let Some((container, used)) = samples.next().await {
            sample.insert(container, used);
        }
        *last = Some((Instant::now(), sample.clone()));
        sample
    }
}

/// What a watcher last sent.
#[derive(Default)]
struct Sent {
    list: Option<String>,
    usage: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/fleet/events",
    operation_id = "fleet_events",
    tag = "sandboxes",
    summary = "Every sandbox, and what each uses, sent again whenever it changes (Server-Sent Events)",
    responses((status = 200, content_type = "text/event-stream", body = String, description = "`sandboxes` (SandboxList) at once and after each change; `usage` (FleetUsage: memory in use, tasks running and queued, by sandbox id) at once and when it changes, memory sampled every 5 s. The stream does not end by itself."), super::openapi::ListErrors)
)]
pub async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let ticks = stream::unfold(
        (state, Sent::default(), true),
        |(state, mut sent, first)| async move {
            if !first {
                tokio::time::sleep(LOOK_EVERY).await;
            }
            let events = look(&state, &mut sent).await;
            Some((stream::iter(events), (state, sent, false)))
        },
    );
    Sse::new(ticks.flatten().map(Ok)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// The events this look finds: the list and the usage, each when changed.
async fn look(state: &AppState, sent: &mut Sent) -> Vec<Event> {
    let Ok(records) = state.sandboxes.list().await else {
        return Vec::new();
    };
    let mut events = Vec::new();
    let usage = usage(state, &records).await;
    let list = SandboxList {
        sandboxes: records
            .into_iter()
            .map(|rec| view(&state.sandboxes, rec, None))
            .collect(),
    };
    for (name, text, last) in [
        ("sandboxes", serde_json::to_string(&list), &mut sent.list),
        ("usage", serde_json::to_string(&usage), &mut sent.usage),
    ] {
        let Ok(text) = text else { continue };
        if last.as_deref() != Some(text.as_str()) {
            events.push(Event::default().event(name).data(&text));
            *last = Some(text);
        }
    }
    events
}

async fn usage(state: &AppState, records: &[SandboxRecord]) -> FleetUsage {
    let mut tasks: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for (status, running) in [(TaskStatus::Running, true), (TaskStatus::Queued, false)] {
        for task in state
            .store
            .tasks_with_status(status)
            .await
            .unwrap_or_default()
        {
            if let Some(rec) = records.iter().find(|r| r.id == task.sandbox_id) {
                let count = tasks.entry(rec.id.as_str()).or_default();
                if running {
                    count.0 += 1;
                } else {
                    count.1 += 1;
                }
            }
        }
    }
    // A light sleeper holds its memory too: it is counted.
    let holds_memory =
        |r: &crate::store::SandboxRecord| matches!(r.status, Status::Running | Status::Asleep);
    let running: Vec<&str> = records
        .iter()
        .filter(|r| holds_memory(r))
        .filter_map(|r| r.container_id.as_deref())
        .collect();
    let memory = state.fleet.memory(state, &running).await;
    FleetUsage {
        sandboxes: records
            .iter()
            .map(|r| {
                let (tasks_running, tasks_queued) =
                    tasks.get(r.id.as_str()).copied().unwrap_or_default();
                let memory_used_bytes = holds_memory(r)
                    .then(|| r.container_id.as_ref().and_then(|c| memory.get(c)))
                    .flatten()
                    .copied()
                    .flatten();
                (
                    r.id.clone(),
                    SandboxUsage {
                        memory_used_bytes,
                        tasks_running,
                        tasks_queued,
                    },
                )
            })
            .collect(),
    }
}
