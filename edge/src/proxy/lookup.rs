//! Which sandbox a preview host names, when the route table does not know
//! it: asked at control, within a rate limit, with a bounded negative cache.

use std::sync::PoisonError;
use std::time::{Duration, Instant};

use super::Edge;
use crate::control::ControlError;

/// How long control's "no such sandbox" is believed, so that random hosts
/// do not each cost a call to control.
const NEGATIVE_TTL: Duration = Duration::from_secs(2);
/// Unknown ids remembered at most.
const NEGATIVE_KEPT: usize = 10_000;

/// A token bucket: `burst` calls at once, refilled at `per_second`.
pub struct RateLimit {
    tokens: f64,
    at: Instant,
    per_second: f64,
    burst: f64,
}

impl RateLimit {
    pub fn new(per_second: f64, burst: f64) -> Self {
        Self {
            tokens: burst,
            at: Instant::now(),
            per_second,
            burst,
        }
    }

    /// Takes one call if there is one left.
    pub fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What a look-up of a sandbox found.
pub(super) enum Described {
    Found(Vec<u16>, bool),
    Unknown,
    /// Too many look-ups of unknown ids lately: not asked.
    Limited,
}

impl Edge {
    /// A container made for the warm pool: control has its ports once a
    /// client claimed it (before that it is nobody's: unknown).
    async fn describe_claimed(
        &self,
        id: &str,
        container: &str,
    ) -> std::result::Result<Described, ControlError> {
        if let Some((ports, public)) = self
            .claimed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(container)
        {
            return Ok(Described::Found(ports.clone(), *public));
        }
        let Some(remote) = self.control.sandbox(id).await? else {
            return Ok(Described::Unknown);
        };
        let mut claimed = self.claimed.lock().unwrap_or_else(PoisonError::into_inner);
        if claimed.len() >= NEGATIVE_KEPT {
            claimed.clear();
        }
        claimed.insert(container.to_string(), (remote.ports.clone(), remote.public));
        Ok(Described::Found(remote.ports, remote.public))
    }

    pub(super) fn recently_unknown(&self, id: &str) -> bool {
        let mut unknown = self.unknown.lock().unwrap_or_else(PoisonError::into_inner);
        unknown.retain(|_, at| at.elapsed() < NEGATIVE_TTL);
        unknown.contains_key(id)
    }

    /// Ports and visibility of a sandbox: from the route table, or from
    /// control when Docker knows no container for it (never created, or
    /// removed behind berth's back: control recreates it on wake).
    pub(super) async fn describe(&self, id: &str) -> std::result::Result<Described, ControlError> {
        let pooled = match self.routes.load().sandbox(id) {
            Some(entry) if !entry.pooled => {
                return Ok(Described::Found(entry.ports.clone(), entry.public));
            }
            Some(entry) => Some(entry.container_id.clone()),
            None => None,
        };
        if let Some(container) = pooled {
            return self.describe_claimed(id, &container).await;
        }
        if self.recently_unknown(id) {
            self.metrics.lookup("cached");
            return Ok(Described::Unknown);
        }
        if !self
            .lookups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            self.metrics.lookup("limited");
            return Ok(Described::Limited);
        }
        let asked = self.control.sandbox(id).await;
        self.metrics.lookup(match &asked {
            Ok(Some(_)) => "found",
            Ok(None) => "unknown",
            Err(_) => "error",
        });
        match asked? {
            Some(remote) => Ok(Described::Found(remote.ports, remote.public)),
            None => {
                let mut unknown = self.unknown.lock().unwrap_or_else(PoisonError::into_inner);
                if unknown.len() < NEGATIVE_KEPT {
                    unknown.insert(id.to_string(), Instant::now());
                }
                Ok(Described::Unknown)
            }
        }
    }
}
