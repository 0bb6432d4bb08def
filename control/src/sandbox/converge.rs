//! The state machine: make Docker match one sandbox's record.
//!
//! `converge` is the only code that creates, starts, stops or removes a
//! sandbox container. It is idempotent, so the API, the reaper and the
//! reconciler all call it and a crash at any point is repaired by calling it
//! again.

use sha2::{Digest, Sha256};

use super::{SandboxError, Sandboxes};
use crate::docker::spec::{
    HostSide, WORKSPACE, container_name, container_spec, exec_environment, start_command,
};
use crate::docker::{ContainerStatus, DockerError};

/// Lines of a crashed container's output shown in its `status_detail`.
const CRASH_LOG_LINES: usize = 20;
use crate::store::{DesiredState, SandboxRecord, Status, now_ms};

/// Label holding a digest of the container's spec and image: a stopped
/// container whose digest is stale is recreated on wake, so upgrades of berth
/// or of the image apply without touching the sandbox's files.
use berth_wire::labels::{SPEC as LABEL_SPEC, UID as LABEL_UID};

/// Who asks for convergence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A client (or the edge) wants the desired state now.
    Api,
    /// The background reconciler: it puts sandboxes that went idle while
    /// control was down to sleep instead of starting them.
    Reconciler,
}

impl Sandboxes {
    /// Brings Docker to `rec.desired_state`. The caller holds the sandbox's lock.
    pub async fn converge(&self, rec: &SandboxRecord, origin: Origin) -> Result<(), SandboxError> {
        let result = match rec.desired_state {
            DesiredState::Running => self.converge_running(rec, origin).await,
            DesiredState::Asleep => self.converge_asleep(rec).await,
            DesiredState::Stopped => self.converge_stopped(rec).await,
            DesiredState::Deleted | DesiredState::Purged => self.converge_gone(rec).await,
        };
        if let Err(e) = &result {
            let keeps_status =
                matches!(e, SandboxError::Capacity { .. } | SandboxError::NotFound(_));
            if !keeps_status
                && !matches!(
                    rec.desired_state,
                    DesiredState::Deleted | DesiredState::Purged
                )
            {
                let _ = self
                    .inner
                    .store
                    .set_status(&rec.id, Status::Error, Some(&e.to_string()))
                    .await;
            }
        }
        result
    }

    async fn converge_running(
        &self,
        rec: &SandboxRecord,
        origin: Origin,
    ) -> Result<(), SandboxError> {
        let container = self.ensure_container(rec).await?;
        if container.paused {
            // Light sleep ends: the processes go on where they were.
            let began = std::time::Instant::now();
            self.inner.docker.unpause(&container.id).await?;
            self.inner.metrics.container_thawed(began.elapsed());
            tracing::info!(sandbox = %rec.id, ms = began.elapsed().as_secs_f64() * 1e3, "container thawed");
        }
        if container.running && origin == Origin::Reconciler {
            // Up for a whole pass: a crash loop's backoff starts over.
            self.inner.crashes.forget(&rec.id);
        }
        if !container.running {
            if origin == Origin::Reconciler && self.idle_expired(rec, now_ms()) {
                return self.settle_stopped(rec, "idle while berth was down").await;
            }
            if origin == Origin::Reconciler && container.ever_started {
                // It ran and stopped without being asked: it exited by itself.
                if !self.may_restart_crashed(rec, &container).await? {
                    return Ok(());
                }
            } else if origin == Origin::Api {
                self.inner.crashes.forget(&rec.id);
            }
            self.admit(Some(&rec.id)).await?;
            let began = std::time::Instant::now();
            let started = self.start_container(rec, &container.id).await;
            self.inner
                .metrics
                .container_started(started.is_ok(), began.elapsed());
            started?;
        }
        if rec.status != Status::Running || rec.status_detail.is_some() {
            self.inner
                .store
                .set_status(&rec.id, Status::Running, None)
                .await?;
        }
        Ok(())
    }

    /// A container that exited by itself: the sandbox shows `error` with its
    /// exit code and last output, and is restarted only as its backoff
    /// allows. Returns whether to restart it now.
    async fn may_restart_crashed(
        &self,
        rec: &SandboxRecord,
        container: &ContainerStatus,
    ) -> Result<bool, SandboxError> {
        let now = std::time::Instant::now();
        let base = self.inner.settings.reconcile_interval;
        let crashes = &self.inner.crashes;
        let restart = crashes.may_restart(&rec.id, base, now);
        if !restart && rec.status == Status::Error {
            // Already told while it waits: no log read, no write per pass.
            return Ok(false);
        }
        let last_output = self
            .inner
            .docker
            .log_tail(&container.id, CRASH_LOG_LINES)
            .await
            .unwrap_or_else(|e| format!("(its output could not be read: {e})"));
        let code = container
            .exit_code
            .map_or_else(|| "unknown".to_string(), |c| c.to_string());
        let oom = if container.oom_killed {
            ", killed for using all its memory"
        } else {
            ""
        };
        let next = if restart {
            "restarting it now".to_string()
        } else {
            let left = crashes.wait_left(&rec.id, base, now).unwrap_or_default();
            format!(
                "next restart in {} s, or at once on `start`",
                left.as_secs().max(1)
            )
        };
        let detail = format!(
            "the container exited by itself (exit code {code}{oom}); {next}; last output:\n{last_output}"
        );
        self.inner
            .store
            .set_status(&rec.id, Status::Error, Some(&detail))
            .await?;
        if restart {
            tracing::warn!(sandbox = %rec.id, exit_code = ?container.exit_code, "the container exited by itself; restarting it");
            crashes.restarted(&rec.id, now);
        }
        Ok(restart)
    }

    /// Starts the container, then the sandbox's own start command.
    async fn start_container(
        &self,
        rec: &SandboxRecord,
        container: &str,
    ) -> Result<(), SandboxError> {
        // Never a sandbox running without its egress rules: when they are
        // not installed (a failed reinstall), try once more, else refuse.
        let firewall = self.inner.firewall.status();
        if firewall.enabled && !firewall.installed {
            self.prepare_networks(false).await?;
        }
        self.inner.docker.start(container).await?;
        tracing::info!(sandbox = %rec.id, "container started");
        // An exec still being set up when its container is frozen leaves
        // runc stuck, and Docker with it. The warm pool freezes what it just
        // started: it waits for the agent. Any other start launches it in
        // the background (a wake does not wait for it) under the sandbox's
        // lock, which every freeze takes: once the wake lets go of the lock,
        // the agent starts if the sandbox still runs, before anything else
        // may freeze it.
        if rec.pooled {
            let ((), start) = tokio::join!(
                self.start_exec_agent(rec, container),
                self.run_start_command(rec, container)
            );
            return start;
        }
        let (this, id, container_) = (self.clone(), rec.id.clone(), container.to_string());
        tokio::spawn(async move {
            let _guard = this.inner.locks.lock(&id).await;
            match this.inner.store.sandbox(&id).await {
                Ok(rec)
                    if rec.desired_state == DesiredState::Running
                        && rec.status == Status::Running =>
                {
                    this.start_exec_agent(&rec, &container_).await;
                }
                _ => {
                    tracing::debug!(sandbox = %id, "no longer running: the exec agent is not started")
                }
            }
        });
        self.run_start_command(rec, container).await
    }

    /// Starts the exec agent in a container just started (as its user,
    /// detached); until it listens, commands go through Docker's exec.
    async fn start_exec_agent(&self, rec: &SandboxRecord, container: &str) {
        if self.inner.spec.execd.is_none() || rec.runtime.as_deref() == Some("runsc") {
            // gVisor's sandbox has no way to the host's unix sockets.
            return;
        }
        let serve = crate::execd::serve_command();
        if let Err(e) = self
            .inner
            .docker
            .exec_detached(container, serve, "/", Vec::new())
            .await
        {
            // A container made before the agent existed has no such file:
            // it keeps Docker's exec until it is made anew.
            tracing::debug!(sandbox = %rec.id, error = %e, "the exec agent did not start");
        }
    }

    /// Light sleep: the container frozen, its memory kept. A container that
    /// is not running (a Docker restart ends frozen containers) leaves the
    /// sandbox in deep sleep instead: stopped, woken by a fresh start.
    async fn converge_asleep(&self, rec: &SandboxRecord) -> Result<(), SandboxError> {
        let container = self.ensure_container(rec).await?;
        if !container.running {
            return self
                .settle_stopped(
                    rec,
                    "its container stopped during light sleep; the next wake starts it afresh",
                )
                .await;
        }
        if !container.paused {
            self.inner.docker.pause(&container.id).await?;
            tracing::info!(sandbox = %rec.id, "container frozen (light sleep)");
        }
        if rec.status != Status::Asleep || rec.status_detail.is_some() {
            self.inner
                .store
                .set_status(&rec.id, Status::Asleep, None)
                .await?;
        }
        Ok(())
    }

    /// A sandbox whose container is not running and should not be started
    /// now: recorded as stopped (desired and seen), and why.
    async fn settle_stopped(&self, rec: &SandboxRecord, why: &str) -> Result<(), SandboxError> {
        self.inner
            .store
            .set_desired(&rec.id, DesiredState::Stopped, Status::Stopped)
            .await?;
        self.inner
            .store
            .set_status(&rec.id, Status::Stopped, Some(why))
            .await?;
        Ok(())
    }

    /// Launches the sandbox's `start` command, detached, with its env.
    pub(super) async fn run_start_command(
        &self,
        rec: &SandboxRecord,
        container: &str,
    ) -> Result<(), SandboxError> {
        if let Some(start) = &rec.start_cmd {
            self.inner
                .docker
                .exec_detached(
                    container,
                    start_command(start),
                    WORKSPACE,
                    exec_environment(rec),
                )
                .await?;
        }
        Ok(())
    }

    async fn converge_stopped(&self, rec: &SandboxRecord) -> Result<(), SandboxError> {
        let container = self.ensure_container(rec).await?;
        if container.paused {
            // A frozen process cannot act on SIGTERM: thaw it, so that it
            // gets its grace period like any other.
            self.inner.docker.unpause(&container.id).await?;
        }
        if container.running {
            if rec.status != Status::Stopping {
                self.inner
                    .store
                    .set_status(&rec.id, Status::Stopping, None)
                    .await?;
            }
            self.inner
                .docker
                .stop(&container.id, self.inner.settings.stop_timeout)
                .await?;
            tracing::info!(sandbox = %rec.id, "container stopped");
        }
        if rec.status != Status::Stopped {
            self.inner
                .store
                .set_status(&rec.id, Status::Stopped, None)
                .await?;
        }
        Ok(())
    }

    async fn converge_gone(&self, rec: &SandboxRecord) -> Result<(), SandboxError> {
        self.remove_container_if_ours(&rec.id).await?;
        if let Some(id) = &rec.container_id {
            self.inner.docker.remove(id).await?;
        }
        if rec.desired_state == DesiredState::Purged {
            let ws = self.inner.workspaces.clone();
            let id = rec.id.clone();
            super::blocking(move || ws.remove(&id)).await?;
            self.forget_identity(&rec.id).await;
        }
        self.inner.store.delete_sandbox(&rec.id).await?;
        self.inner.activity.forget(&rec.id);
        tracing::info!(sandbox = %rec.id, purged = rec.desired_state == DesiredState::Purged, "sandbox removed");
        Ok(())
    }

    /// The sandbox's container, created if missing, or recreated if it is
    /// stopped and was made from an older spec or image.
    async fn ensure_container(&self, rec: &SandboxRecord) -> Result<ContainerStatus, SandboxError> {
        let name = container_name(&rec.id);
        let existing = self.inner.docker.inspect(&name).await?;
        let uid = self.uid_of(&rec.id).await?;
        let host = self.host_side(&rec.id, uid);
        // Read only where it decides something: a running container is kept
        // whatever its spec, so wakes from light sleep and reconcile passes
        // over running sandboxes never ask Docker about the image.
        let mut image_id = None;
        if let Some(c) = existing {
            if !self.is_ours(&c, &rec.id) {
                return Err(DockerError::NameTaken(name).into());
            }
            // Made before sandboxes had uids of their own (or for another
            // uid): it shares a uid with other sandboxes, so it is replaced
            // even while it runs (its home is handed over below).
            let foreign_uid = c.labels.get(LABEL_UID) != Some(&uid.to_string());
            if foreign_uid && c.running {
                tracing::info!(sandbox = %rec.id, uid, "replacing a container that runs under a shared uid");
                if c.paused {
                    self.inner.docker.unpause(&c.id).await?;
                }
                self.inner
                    .docker
                    .stop(&c.id, self.inner.settings.stop_timeout)
                    .await?;
            }
            if !foreign_uid && c.running {
                return self.adopt(rec, c).await;
            }
            let image = self.inner.docker.image_id(&rec.image).await?;
            let stale = image.as_deref().is_some_and(|img| {
                c.labels.get(LABEL_SPEC) != Some(&self.spec_digest(rec, &host, img))
            });
            if !foreign_uid && !stale {
                return self.adopt(rec, c).await;
            }
            image_id = Some(image);
            tracing::info!(sandbox = %rec.id, "recreating a stopped container from a newer spec or image");
            self.inner.docker.remove(&c.id).await?;
        }
        let image_id = match image_id {
            Some(known) => known,
            None => self.inner.docker.image_id(&rec.image).await?,
        };
        let Some(image_id) = image_id else {
            return Err(SandboxError::ImageMissing(rec.image.clone()));
        };
        let ws = self.inner.workspaces.clone();
        let id = rec.id.clone();
        let identity = host.identity.clone();
        super::blocking(move || {
            ws.ensure(&id, (uid, uid))?;
            crate::uids::write_identity(&identity, uid)
                .and_then(|()| crate::execd::prepare_run_dir(&identity, uid))
                .map_err(crate::workspace::FilesError::Io)
        })
        .await?;
        self.prepare_networks(false).await?;
        let mut spec = container_spec(rec, &self.inner.spec, &host);
        if let Some(labels) = spec.labels.as_mut() {
            labels.insert(LABEL_SPEC.into(), self.spec_digest(rec, &host, &image_id));
        }
        let container_id = self.inner.docker.create_container(&name, spec).await?;
        self.inner
            .store
            .set_container_id(&rec.id, Some(&container_id))
            .await?;
        tracing::info!(sandbox = %rec.id, container = %container_id, "container created");
        Ok(ContainerStatus {
            id: container_id,
            running: false,
            paused: false,
            exit_code: None,
            oom_killed: false,
            ever_started: false,
            ip: None,
            labels: Default::default(),
        })
    }

    /// Keeps an existing container. A crash between Docker's create and the
    /// record's update leaves the record without the id: it is written now.
    async fn adopt(
        &self,
        rec: &SandboxRecord,
        c: ContainerStatus,
    ) -> Result<ContainerStatus, SandboxError> {
        if rec.container_id.as_deref() != Some(c.id.as_str()) {
            self.inner
                .store
                .set_container_id(&rec.id, Some(&c.id))
                .await?;
        }
        Ok(c)
    }

    /// A digest of everything the container is made from.
    fn spec_digest(&self, rec: &SandboxRecord, host: &HostSide, image_id: &str) -> String {
        let spec = container_spec(rec, &self.inner.spec, host);
        // Through serde_json::Value, maps are ordered: the digest is stable.
        let canonical = serde_json::to_value(&spec)
            .map(|v| v.to_string())
            .unwrap_or_default();
        let mut hasher = Sha256::new();
        hasher.update(canonical.as_bytes());
        hasher.update(image_id.as_bytes());
        let digest = hasher.finalize();
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}
