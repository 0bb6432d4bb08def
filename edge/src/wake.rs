//! Waking a stopped sandbox on its first request: one call to control per
//! sandbox however many requests arrive at once, and then a wait until the
//! app's port accepts connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::control::{Control, ControlError};
use crate::docker::Docker;
use crate::metrics::Metrics;
use crate::routes::{Routes, watcher};

type Outcome = Option<Result<(), ControlError>>;

pub struct Waker {
    control: Control,
    docker: Docker,
    routes: Routes,
    metrics: Metrics,
    inflight: Mutex<HashMap<String, watch::Receiver<Outcome>>>,
    /// Sandboxes woken lately whose ports have not all answered yet: their
    /// apps may still be starting, so requests wait for the port instead of
    /// meeting "connection refused".
    warming: Mutex<HashMap<String, (Instant, Vec<u16>)>>,
    warm_for: Duration,
}

impl Waker {
    pub fn new(
        control: Control,
        docker: Docker,
        routes: Routes,
        metrics: Metrics,
        warm_for: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            control,
            docker,
            routes,
            metrics,
            inflight: Mutex::new(HashMap::new()),
            warming: Mutex::new(HashMap::new()),
            warm_for,
        })
    }

    /// Whether `port` of a recently woken sandbox has not answered yet.
    pub fn is_warming(&self, id: &str, port: u16) -> bool {
        let mut warming = self.warming.lock().unwrap_or_else(PoisonError::into_inner);
        warming.retain(|_, (at, _)| at.elapsed() < self.warm_for);
        warming
            .get(id)
            .is_some_and(|(_, ready)| !ready.contains(&port))
    }

    /// Records that `port` of a woken sandbox accepts connections.
    pub fn port_ready(&self, id: &str, port: u16) {
        if let Some((_, ready)) = self
            .warming
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(id)
        {
            ready.push(port);
        }
    }

    /// Re-reads one container from Docker into the route table.
    pub async fn refresh(&self, container: &str) -> Result<(), crate::docker::DockerError> {
        watcher::refresh(&self.docker, &self.routes, container).await
    }

    /// Whether Docker says sandbox `id`'s container runs (the route table
    /// is refreshed from it on the way).
    async fn runs_in_docker(&self, id: &str) -> bool {
        if let Err(e) =
            watcher::refresh(&self.docker, &self.routes, &berth_wire::container_name(id)).await
        {
            tracing::debug!(sandbox = %id, error = %e, "could not ask Docker before a wake");
            return false;
        }
        self.routes
            .load()
            .sandbox(id)
            .is_some_and(|e| e.ip.is_some())
    }

    /// Wakes sandbox `id`, joining a wake already under way. The wake goes
    /// on even if the caller stops waiting.
    pub async fn wake(self: &Arc<Self>, id: &str) -> Result<(), ControlError> {
        let mut rx = {
            let mut inflight = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
            match inflight.get(id) {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    inflight.insert(id.to_string(), rx.clone());
                    tokio::spawn(Arc::clone(self).run(id.to_string(), tx));
                    rx
                }
            }
        };
        loop {
            if let Some(outcome) = rx.borrow_and_update().clone() {
                return outcome;
            }
            if rx.changed().await.is_err() {
                return Err(ControlError::Unreachable("the wake was abandoned".into()));
            }
        }
    }

    async fn run(self: Arc<Self>, id: String, tx: watch::Sender<Outcome>) {
        let began = Instant::now();
        // The route table follows Docker's events and can lag them (a
        // sandbox created or started a moment ago): ask Docker first. A
        // sandbox that already runs needs no wake, and its ports must not
        // be taken for warming (a port nothing listens on would hold
        // requests for the whole wake timeout instead of answering 502).
        if self.runs_in_docker(&id).await {
            let _ = tx.send(Some(Ok(())));
            self.inflight
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
            return;
        }
        // Warming from now: the container may run (and be seen by the
        // watcher) well before its app listens.
        self.warming
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone(), (Instant::now(), Vec::new()));
        let mut outcome = self.control.start(&id).await;
        if outcome.is_ok() {
            // Docker's start event updates the table too, but maybe not yet:
            // read the container's new address now.
            if let Err(e) =
                watcher::refresh(&self.docker, &self.routes, &berth_wire::container_name(&id)).await
            {
                outcome = Err(ControlError::Unreachable(format!("Docker: {e}")));
            }
        }
        self.metrics.wake_finished(outcome.is_ok(), began.elapsed());
        if outcome.is_err() {
            self.warming
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
        }
        match &outcome {
            Ok(()) => {
                tracing::info!(sandbox = %id, ms = began.elapsed().as_millis() as u64, "woke sandbox")
            }
            Err(e) => tracing::warn!(sandbox = %id, error = %e, "wake failed"),
        }
        let _ = tx.send(Some(outcome));
        self.inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }
}

/// How long one attempt to connect to a waking app may take: on a local
/// bridge an answer (accept or refusal) takes well under a millisecond.
const CONNECT_ATTEMPT: Duration = Duration::from_millis(150);

/// Polls `addr` until it accepts a TCP connection or `deadline` passes.
pub async fn wait_for_port(addr: SocketAddr, deadline: Instant) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        // A SYN sent while the container's network is still coming up is
        // lost, and the kernel would resend it only after a second: retry
        // soon instead, as a refusal would.
        let attempt = left.min(CONNECT_ATTEMPT);
        if let Ok(Ok(_)) = tokio::time::timeout(attempt, TcpStream::connect(addr)).await {
            return true;
        }
        tokio::time::sleep(
            Duration::from_millis(25).min(deadline.saturating_duration_since(Instant::now())),
        )
        .await;
    }
}
