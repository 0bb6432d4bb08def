//! Keeps the route table in step with Docker: a full listing, then one
//! update per container event (a labelled container is routed as soon as
//! Docker reports it started). On a broken event stream it resynchronises.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{FutureExt, StreamExt};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::Routes;
use crate::activity::Activity;
use crate::control::{Control, ControlError};
use crate::docker::{Docker, DockerError};
use crate::metrics::Metrics;

/// Events that change nothing the router cares about.
fn ignored(action: &str) -> bool {
    action.starts_with("exec_")
        || matches!(
            action,
            "attach"
                | "resize"
                | "top"
                | "commit"
                | "copy"
                | "export"
                | "archive-path"
                | "extract-to-dir"
        )
        || action.starts_with("health_status")
}

pub struct Watcher {
    pub docker: Docker,
    pub routes: Routes,
    pub metrics: Metrics,
    /// Asked once for the instance whose sandboxes this edge routes, and
    /// to thaw a sandbox frozen under an open connection.
    pub control: Control,
    pub activity: Activity,
}

#[derive(Debug, thiserror::Error)]
enum WatchError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("control: {0}")]
    Control(#[from] ControlError),
}

impl Watcher {
    /// Re-reads one container into the table.
    pub async fn refresh(&self, id: &str) -> Result<(), DockerError> {
        refresh(&self.docker, &self.routes, id).await
    }

    async fn follow(&self) -> Result<(), WatchError> {
        if self.routes.load().instance().is_none() {
            let boot = self.control.bootstrap().await?;
            tracing::info!(instance = %boot.instance_id, "routing this berth instance's sandboxes");
            self.routes.update(|t| t.with_instance(&boot.instance_id));
        }
        // Subscribe before listing, so that nothing happens unseen between.
        let mut events = Box::pin(self.docker.container_events().await?);
        let all = self.docker.all().await?;
        self.routes.update(|t| t.with_containers(all.clone()));
        self.metrics.routes_changed(&self.routes.load());
        tracing::info!(
            containers = all.len(),
            sandboxes = self.routes.load().sandbox_count(),
            routers = self.routes.load().router_count(),
            "route table synchronised with Docker"
        );
        while let Some(event) = events.next().await {
            let event = event.map_err(DockerError::from)?;
            let action = event.action.unwrap_or_default();
            if ignored(&action) {
                continue;
            }
            let Some(actor) = event.actor else { continue };
            if let Some(id) = &actor.id {
                self.refresh(id).await?;
                self.metrics.routes_changed(&self.routes.load());
            }
            if action == "pause" {
                let sandbox = actor
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(berth_wire::labels::SANDBOX));
                if let Some(sandbox) = sandbox {
                    self.thaw_if_in_use(sandbox);
                }
            }
        }
        Ok(())
    }
}

impl Watcher {
    /// A sandbox frozen (light sleep) while a request or WebSocket to it is
    /// open: the route table dropped it, but what was already sent to it
    /// would wait forever for a frozen app. An open connection keeps a
    /// sandbox awake, so it is woken at once.
    fn thaw_if_in_use(&self, sandbox: &str) {
        if !self.activity.is_open(sandbox) {
            return;
        }
        tracing::info!(sandbox, "frozen under an open connection: waking it");
        let control = self.control.clone();
        let sandbox = sandbox.to_string();
        tokio::spawn(async move {
            if let Err(e) = control.start(&sandbox).await {
                tracing::warn!(sandbox, error = %e, "could not wake a sandbox frozen under an open connection");
            }
        });
    }
}

/// Re-reads one container into the table (or drops it when it is gone).
pub async fn refresh(docker: &Docker, routes: &Routes, id: &str) -> Result<(), DockerError> {
    match docker.inspect(id).await? {
        Some(c) => routes.update(|t| t.with_container(c.clone())),
        None => routes.update(|t| t.without_container(id)),
    }
    Ok(())
}

#[async_trait]
impl BackgroundService for Watcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut backoff = Duration::from_millis(200);
        loop {
            tokio::select! {
                // A panic while following is a failure like any other: the
                // watch resynchronises instead of ending for good.
                result = AssertUnwindSafe(self.follow()).catch_unwind() => {
                    match result {
                        Ok(Ok(())) => tracing::warn!("Docker closed the event stream; resynchronising"),
                        Ok(Err(e)) => tracing::warn!(error = %e, "Docker watch failed; resynchronising"),
                        Err(_) => tracing::error!("the Docker watch panicked; resynchronising"),
                    }
                }
                _ = shutdown.changed() => return,
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn exec_noise_is_ignored() {
        assert!(super::ignored("exec_start: sh -c ls"));
        assert!(super::ignored("health_status: healthy"));
        assert!(!super::ignored("start"));
        assert!(!super::ignored("die"));
    }
}
