//! The warm pool: `BERTH_WARM_POOL` sandboxes of the default image made
//! ahead of time and frozen (light sleep), so that a create claims one and
//! thaws it instead of waiting for Docker to make and start a container.
//!
//! Pooled sandboxes are ordinary rows with `pooled = 1`, hidden from
//! clients; the reconciler converges them like any other. A claim is one
//! SQLite statement that turns the oldest ready row into the client's
//! sandbox, so no pooled sandbox is ever handed out twice. What Docker fixes
//! at container creation is handed over live: the memory limit and CPUs by
//! `docker update`, the environment with every exec berth runs, the ports
//! and visibility through control (the container's labels say it was
//! pooled); a request that needs another image, runtime or network is a
//! cold create, and the answer says which it was.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::request::new_id;
use super::{Origin, SandboxError, Sandboxes};
use crate::docker::spec::container_name;
use crate::store::{DesiredState, IdlePolicy, NewSandbox, SandboxRecord, Status};

/// How a create was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// A pooled sandbox was claimed.
    Warm,
    /// A container was made for it; why not from the pool.
    Cold(&'static str),
}

impl Placement {
    /// The `Berth-Placement` answer header: `warm`, or `cold; <why>`.
    pub fn header(self) -> String {
        match self {
            Placement::Warm => "warm".to_string(),
            Placement::Cold(why) => format!("cold; {why}"),
        }
    }
}

/// The pool's size and how many are ready now.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct PoolStatus {
    pub target: usize,
    pub ready: usize,
}

/// Wakes the refill loop after a claim.
#[derive(Default)]
pub struct Refill(Notify);

impl Sandboxes {
    /// Whether a create can be served from the pool, else why not.
    pub(super) fn pool_fit(&self, new: &NewSandbox, client_chose_id: bool) -> Placement {
        let s = &self.inner.settings;
        if s.warm_pool == 0 {
            Placement::Cold("no warm pool")
        } else if client_chose_id {
            Placement::Cold("the client chose the id")
        } else if new.image != s.image {
            Placement::Cold("not the default image")
        } else if new.runtime != s.runtime {
            Placement::Cold("not the default runtime")
        } else if new.egress != s.egress {
            Placement::Cold("not the default egress")
        } else {
            Placement::Warm
        }
    }

    /// Claims a ready pooled sandbox for `new` and hands it over. `None`:
    /// the pool is empty, or the claimed one could not be handed over (it is
    /// removed; the caller makes a cold one).
    pub(super) async fn claim(&self, new: &NewSandbox) -> Option<SandboxRecord> {
        let id = match self.inner.store.claim_pooled(new).await {
            Ok(Some(id)) => id,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim from the warm pool");
                return None;
            }
        };
        self.inner.refill.0.notify_one();
        let _guard = self.inner.locks.lock(&id).await;
        self.inner.activity.touch(&id);
        match self.hand_over(&id).await {
            Ok(rec) => {
                tracing::info!(sandbox = %rec.id, "claimed from the warm pool");
                self.inner.metrics.pool_claimed(true);
                Some(rec)
            }
            Err(e) => {
                tracing::warn!(sandbox = %id, error = %e, "a claimed pool sandbox could not be handed over; removing it");
                self.remove_locked(&id).await;
                None
            }
        }
    }

    /// Under the claimed sandbox's lock: its limits, then thaw it and run
    /// its start command.
    async fn hand_over(&self, id: &str) -> Result<SandboxRecord, SandboxError> {
        let rec = self.inner.store.sandbox(id).await?;
        let container = rec
            .container_id
            .clone()
            .unwrap_or_else(|| container_name(&rec.id));
        let (memory, cpus) = pool_limits(&self.inner.settings);
        if rec.memory_bytes != memory || rec.nano_cpus != cpus {
            self.inner
                .docker
                .update_limits(&container, rec.memory_bytes, rec.nano_cpus)
                .await?;
        }
        let rec = self.wake_locked(rec).await?;
        self.run_start_command(&rec, &container).await?;
        Ok(rec)
    }

    /// Removes a sandbox (container, home, row) under its held lock.
    async fn remove_locked(&self, id: &str) {
        let purged = async {
            self.inner
                .store
                .set_desired(id, DesiredState::Purged, Status::Stopping)
                .await?;
            let rec = self.inner.store.sandbox(id).await?;
            self.converge(&rec, Origin::Api).await
        };
        if let Err(e) = purged.await {
            tracing::warn!(sandbox = id, error = %e, "could not remove a pool sandbox; the next refill retries");
        }
    }

    /// The pool's target and its ready sandboxes.
    pub async fn pool_status(&self) -> PoolStatus {
        let ready = self
            .inner
            .store
            .sandboxes()
            .await
            .map(|all| all.iter().filter(|r| is_ready(r)).count())
            .unwrap_or_default();
        PoolStatus {
            target: self.inner.settings.warm_pool,
            ready,
        }
    }

    /// One refill pass: removes pooled sandboxes that are broken or beyond
    /// the target, then makes new ones up to the target while the host is
    /// above its memory headroom. Returns how many are ready.
    pub async fn fill_pool(&self) -> Result<usize, SandboxError> {
        let target = self.inner.settings.warm_pool;
        let mut pooled: Vec<SandboxRecord> = self
            .inner
            .store
            .sandboxes()
            .await?
            .into_iter()
            .filter(|r| r.pooled)
            .collect();
        // Only this loop makes pooled sandboxes, one at a time: one that is
        // not ready now was cut short (a crash) or broke. Beyond the target
        // (the setting was lowered), the newest go.
        pooled.sort_by_key(|r| (!is_ready(r), r.created_at));
        let mut ready = 0;
        for rec in pooled {
            if is_ready(&rec) && ready < target {
                ready += 1;
                continue;
            }
            let Some(_guard) = self.inner.locks.try_lock(&rec.id) else {
                continue;
            };
            match self.inner.store.find_sandbox(&rec.id).await? {
                Some(now) if now.pooled => self.remove_locked(&rec.id).await,
                _ => {}
            }
        }
        self.inner.metrics.pool_ready(ready);
        while ready < target {
            if self.inner.memory.read().is_some_and(|p| p.is_under()) {
                tracing::debug!("the host is at its memory headroom: the warm pool waits");
                break;
            }
            self.make_pooled().await?;
            ready += 1;
            self.inner.metrics.pool_ready(ready);
        }
        Ok(ready)
    }

    /// Makes one pooled sandbox: created, started, frozen.
    async fn make_pooled(&self) -> Result<(), SandboxError> {
        let s = &self.inner.settings;
        let (memory_bytes, nano_cpus) = pool_limits(s);
        let new = NewSandbox {
            id: new_id(),
            image: s.image.clone(),
            ports: Vec::new(),
            env: BTreeMap::new(),
            metadata: BTreeMap::new(),
            memory_bytes,
            nano_cpus,
            start_cmd: None,
            idle_timeout_s: i64::try_from(s.idle_timeout.as_secs()).unwrap_or(i64::MAX),
            // The reaper leaves pooled sandboxes alone; a claim sets the
            // client's policy.
            idle_policy: IdlePolicy::AlwaysOn,
            public: true,
            egress: s.egress,
            runtime: s.runtime.clone(),
            pooled: true,
        };
        let _guard = self.inner.locks.lock(&new.id).await;
        let rec = self.inner.store.insert_sandbox(&new).await?;
        let made = async {
            self.converge(&rec, Origin::Api).await?;
            self.sleep_locked(&rec).await
        };
        if let Err(e) = made.await {
            self.roll_back_create(&rec.id, false).await;
            return Err(e);
        }
        tracing::debug!(sandbox = %rec.id, "warm pool sandbox ready");
        Ok(())
    }

    /// Under memory pressure the pool goes first: a pooled sandbox is
    /// removed (it is cheap to make again). Returns whether one was.
    pub(super) async fn shed_pooled(&self) -> bool {
        let Ok(all) = self.inner.store.sandboxes().await else {
            return false;
        };
        for rec in all.into_iter().filter(|r| r.pooled) {
            let Some(_guard) = self.inner.locks.try_lock(&rec.id) else {
                continue;
            };
            if !self
                .inner
                .store
                .find_sandbox(&rec.id)
                .await
                .ok()
                .flatten()
                .is_some_and(|r| r.pooled)
            {
                continue;
            }
            self.remove_locked(&rec.id).await;
            tracing::info!(sandbox = %rec.id, "removed a warm pool sandbox to relieve memory pressure");
            return true;
        }
        false
    }
}

/// A pooled sandbox ready to be claimed.
fn is_ready(rec: &SandboxRecord) -> bool {
    rec.pooled && rec.desired_state == DesiredState::Asleep && rec.status == Status::Asleep
}

/// The memory and CPUs pooled sandboxes are made with: the defaults.
fn pool_limits(s: &crate::config::Settings) -> (i64, i64) {
    (
        i64::try_from(s.default_memory).unwrap_or(i64::MAX),
        (s.default_cpus * 1e9).round() as i64,
    )
}

/// Keeps the pool full: a pass now, then after every claim or `every`;
/// after a failure (Docker away, say) it waits 1 s, doubling up to a minute.
pub async fn run(sandboxes: Sandboxes, every: Duration, shutdown: CancellationToken) {
    if sandboxes.settings().warm_pool == 0 {
        // Nothing to keep, but pooled sandboxes left by an earlier setting go.
        if let Err(e) = sandboxes.fill_pool().await {
            tracing::warn!(error = %e, "could not empty the warm pool");
        }
        return;
    }
    let mut backoff = Duration::from_secs(1);
    loop {
        let wait = match sandboxes.fill_pool().await {
            Ok(_) => {
                backoff = Duration::from_secs(1);
                every
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_s = backoff.as_secs(), "could not refill the warm pool");
                let wait = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(60));
                wait
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = sandboxes.inner.refill.0.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}
