//! Sandbox activity: the latest time each sandbox was used, and how many
//! operations are using it right now.
//!
//! Activity is recorded in memory on the hot path and written to SQLite in
//! batches by [`flush_loop`]; losing the last few seconds of it in a crash
//! only makes a sandbox look idle a little earlier.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::{Store, now_ms};

#[derive(Debug, Default)]
struct State {
    /// Activity not yet written to the database.
    pending: HashMap<String, i64>,
    /// Latest activity seen since boot.
    latest: HashMap<String, i64>,
    in_flight: HashMap<String, usize>,
}

#[derive(Debug, Clone, Default)]
pub struct Activity {
    state: Arc<Mutex<State>>,
}

/// Marks a sandbox busy while alive; the reaper never stops a busy sandbox.
#[derive(Debug)]
pub struct Busy {
    activity: Activity,
    id: String,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.activity.touch(&self.id);
        let mut state = self.activity.lock();
        if let Some(n) = state.in_flight.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                state.in_flight.remove(&self.id);
            }
        }
    }
}

impl Activity {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that the sandbox was used now.
    pub fn touch(&self, id: &str) {
        self.touch_at(id, now_ms());
    }

    pub fn touch_at(&self, id: &str, at: i64) {
        let mut state = self.lock();
        let State {
            pending, latest, ..
        } = &mut *state;
        for map in [pending, latest] {
            let slot = map.entry(id.to_string()).or_insert(at);
            *slot = (*slot).max(at);
        }
    }

    /// Marks the sandbox busy until the returned guard is dropped.
    pub fn busy(&self, id: &str) -> Busy {
        self.touch(id);
        *self.lock().in_flight.entry(id.to_string()).or_insert(0) += 1;
        Busy {
            activity: self.clone(),
            id: id.to_string(),
        }
    }

    pub fn is_busy(&self, id: &str) -> bool {
        self.lock().in_flight.contains_key(id)
    }

    /// The latest activity recorded in memory, if any since boot.
    pub fn latest(&self, id: &str) -> Option<i64> {
        self.lock().latest.get(id).copied()
    }

    pub fn forget(&self, id: &str) {
        let mut state = self.lock();
        state.pending.remove(id);
        state.latest.remove(id);
    }

    fn drain(&self) -> Vec<(String, i64)> {
        self.lock().pending.drain().collect()
    }

    /// Writes pending activity to the database.
    pub async fn flush(&self, store: &Store) {
        let batch = self.drain();
        if batch.is_empty() {
            return;
        }
        if let Err(e) = store.record_activity(&batch).await {
            tracing::warn!(error = %e, "could not record sandbox activity; will retry");
            for (id, at) in batch {
                let mut state = self.lock();
                let slot = state.pending.entry(id).or_insert(at);
                *slot = (*slot).max(at);
            }
        }
    }
}

/// Flushes activity every `every` until shutdown, then once more.
pub async fn flush_loop(
    activity: Activity,
    store: Store,
    every: Duration,
    shutdown: CancellationToken,
) {
    crate::ticker::every(every, &shutdown, || activity.flush(&store)).await;
    activity.flush(&store).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_guards_count_and_release() {
        let a = Activity::default();
        let g1 = a.busy("x");
        let g2 = a.busy("x");
        assert!(a.is_busy("x"));
        drop(g1);
        assert!(a.is_busy("x"));
        drop(g2);
        assert!(!a.is_busy("x"));
    }

    #[test]
    fn touch_keeps_the_latest_time() {
        let a = Activity::default();
        a.touch_at("x", 10);
        a.touch_at("x", 5);
        assert_eq!(a.latest("x"), Some(10));
        assert_eq!(a.drain(), vec![("x".to_string(), 10)]);
        assert!(a.drain().is_empty());
        assert_eq!(a.latest("x"), Some(10));
    }
}
