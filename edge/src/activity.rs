//! Preview traffic as sandbox activity, reported to control in batches: the
//! sandboxes that served requests since the last report, and those with a
//! connection still open (a WebSocket for hot reload keeps a sandbox awake
//! for as long as it stays open).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::control::Control;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// No clock is read per request: a sandbox that served requests since the
/// last report, or holds a connection open, is reported active at the time
/// of the report (later than the request by at most one interval, which
/// only keeps it awake that much longer).
#[derive(Default)]
struct State {
    /// Sandboxes that opened or closed a connection since the last report.
    touched: HashSet<String>,
    open: HashMap<String, usize>,
    /// A report that failed, to send again.
    unsent: HashMap<String, i64>,
}

impl State {
    /// Adds `id`, allocating its key only when it is not there yet: every
    /// proxied request passes here twice.
    fn touch(&mut self, id: &str) {
        if !self.touched.contains(id) {
            self.touched.insert(id.to_string());
        }
    }
}

#[derive(Clone, Default)]
pub struct Activity {
    state: Arc<Mutex<State>>,
}

/// An open connection to a sandbox; dropping it closes it.
pub struct Open {
    activity: Activity,
    id: String,
}

impl Open {
    /// The sandbox.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        let mut state = self.activity.lock();
        state.touch(&self.id);
        if let Some(n) = state.open.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                state.open.remove(&self.id);
            }
        }
    }
}

impl Activity {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a connection to sandbox `id` as open until the guard is
    /// dropped.
    pub fn open(&self, id: String) -> Open {
        {
            let mut state = self.lock();
            state.touch(&id);
            match state.open.get_mut(&id) {
                Some(n) => *n += 1,
                None => {
                    state.open.insert(id.clone(), 1);
                }
            }
        }
        Open {
            activity: self.clone(),
            id,
        }
    }

    /// Whether a request or WebSocket to sandbox `id` is open now.
    pub fn is_open(&self, id: &str) -> bool {
        self.lock().open.contains_key(id)
    }

    /// What to report now: sandboxes touched since the last report and
    /// those with a connection open, active now.
    fn take_batch(&self) -> HashMap<String, i64> {
        let now = now_ms();
        let mut state = self.lock();
        let mut batch = std::mem::take(&mut state.unsent);
        for id in std::mem::take(&mut state.touched) {
            batch.insert(id, now);
        }
        for id in state.open.keys() {
            batch.insert(id.clone(), now);
        }
        batch
    }

    fn put_back(&self, batch: HashMap<String, i64>) {
        let mut state = self.lock();
        for (id, at) in batch {
            let slot = state.unsent.entry(id).or_insert(at);
            *slot = (*slot).max(at);
        }
    }
}

pub struct Reporter {
    pub activity: Activity,
    pub control: Control,
    pub every: Duration,
}

impl Reporter {
    async fn report(&self) {
        let batch = self.activity.take_batch();
        if batch.is_empty() {
            return;
        }
        if let Err(e) = self.control.report_activity(&batch).await {
            tracing::warn!(error = %e, sandboxes = batch.len(), "could not report activity; will retry");
            self.activity.put_back(batch);
        }
    }
}

#[async_trait]
impl BackgroundService for Reporter {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.report().await,
                _ = shutdown.changed() => {
                    self.report().await;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_connections_are_reported_until_closed() {
        let a = Activity::default();
        let guard = a.open("x".to_string());
        assert!(a.take_batch().contains_key("x"));
        assert!(a.take_batch().contains_key("x"), "still open");
        assert!(a.is_open("x") && !a.is_open("y"));
        drop(guard);
        assert!(!a.is_open("x"));
        assert!(a.take_batch().contains_key("x"), "the close is activity");
        assert!(a.take_batch().is_empty());

        // A report that failed is sent again, with its times.
        drop(a.open("y".to_string()));
        let batch = a.take_batch();
        let at = batch["y"];
        a.put_back(batch);
        assert_eq!(a.take_batch().get("y"), Some(&at));
        assert!(a.take_batch().is_empty());
    }
}
