//! Sandboxes whose container exits by itself (an image whose command ends,
//! a crashing PID 1): the reconciler restarts them with exponential backoff
//! instead of every pass, and the sandbox shows `error` with why meanwhile.
//! An explicit start forgets the backoff and retries at once.
//!
//! Kept in memory: after a restart of control the first retry is at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest wait between two restarts of a crashing sandbox.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone, Copy)]
struct Crashes {
    /// Restarts since the container last stayed up for a whole pass.
    restarts: u32,
    last_restart: Instant,
}

#[derive(Debug, Default)]
pub struct CrashLoops {
    by_sandbox: Mutex<HashMap<String, Crashes>>,
}

impl CrashLoops {
    /// Whether the reconciler may restart the sandbox now; `base` is the
    /// first wait (the reconcile interval), doubled after each restart.
    /// The first restart after a crash is at once.
    pub fn may_restart(&self, id: &str, base: Duration, now: Instant) -> bool {
        self.wait_left(id, base, now)
            .is_none_or(|left| left.is_zero())
    }

    /// The reconciler restarted the sandbox.
    pub fn restarted(&self, id: &str, now: Instant) {
        if let Ok(mut map) = self.by_sandbox.lock() {
            let entry = map.entry(id.to_string()).or_insert(Crashes {
                restarts: 0,
                last_restart: now,
            });
            entry.restarts = entry.restarts.saturating_add(1);
            entry.last_restart = now;
        }
    }

    /// The sandbox runs (seen running by a pass, or started on request):
    /// its backoff starts over.
    pub fn forget(&self, id: &str) {
        if let Ok(mut map) = self.by_sandbox.lock() {
            map.remove(id);
        }
    }

    /// How long until the next restart may happen, if one is waited for.
    pub fn wait_left(&self, id: &str, base: Duration, now: Instant) -> Option<Duration> {
        let map = self.by_sandbox.lock().ok()?;
        let c = map.get(id)?;
        Some((c.last_restart + backoff(base, c.restarts)).saturating_duration_since(now))
    }
}

/// The wait after `restarts` restarts: none before the first, then `base`,
/// doubling, at most [`MAX_BACKOFF`].
fn backoff(base: Duration, restarts: u32) -> Duration {
    if restarts == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32 << (restarts - 1).min(20);
    base.saturating_mul(factor).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_start_over_once_forgotten() {
        let base = Duration::from_secs(30);
        assert_eq!(backoff(base, 0), Duration::ZERO);
        assert_eq!(backoff(base, 1), base);
        assert_eq!(backoff(base, 3), base * 4);
        assert_eq!(backoff(base, 40), MAX_BACKOFF);

        let loops = CrashLoops::default();
        let t0 = Instant::now();
        assert!(loops.may_restart("a", base, t0));
        loops.restarted("a", t0);
        assert!(!loops.may_restart("a", base, t0 + Duration::from_secs(29)));
        assert!(loops.may_restart("a", base, t0 + base));
        loops.restarted("a", t0 + base);
        assert!(!loops.may_restart("a", base, t0 + base * 2));
        assert!(loops.may_restart("a", base, t0 + base * 3));
        loops.forget("a");
        assert!(loops.may_restart("a", base, t0));
    }
}
