//! Sandboxes: the operations the API offers, on top of the state machine in
//! [`converge`].
//!
//! Every operation that changes a sandbox first records the user's intent
//! (`desired_state`) in SQLite, then makes Docker follow, holding the
//! sandbox's lock. A crash between the two is repaired by the reconciler,
//! which runs the same [`Sandboxes::converge`].

mod converge;
mod crashes;
mod exec;
mod exec_stream;
mod locks;
pub mod pool;
pub mod pty;
pub mod request;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::activity::Activity;
use crate::config::Settings;
use crate::docker::spec::{HostSide, SpecContext, container_name};
use crate::docker::{ContainerStatus, Docker, DockerError};
use crate::firewall::{Firewall, FirewallStatus};
use crate::memory::MemoryGauge;
use crate::metrics::{Metrics, StopReason};
use crate::store::{DesiredState, SandboxRecord, Status, Store, StoreError, now_ms};
use crate::workspace::{Entry, FilesError, Workspaces};

pub use converge::Origin;
pub use exec_stream::ExecEvent;
pub use locks::Locks;
pub use pool::{Placement, PoolStatus};
pub use request::{CreateRequest, ExecBody};

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{0}")]
    Invalid(String),
    #[error("image `{0}` is not a valid image reference: {1}")]
    InvalidImage(String, &'static str),
    #[error("no sandbox with id `{0}`")]
    NotFound(String),
    #[error("a sandbox with id `{0}` already exists")]
    Exists(String),
    #[error(
        "image `{0}` is not present on this Docker host: build it (the default berth-sandbox image: \
         `docker build -t berth-sandbox:latest agent-image/`, which ./install.sh does), load it, \
         or pass another \"image\""
    )]
    ImageMissing(String),
    #[error(
        "the host is short of memory ({available_mb} MiB available, {headroom_mb} MiB kept free) \
         and no idle sandbox could be stopped to make room; retry later"
    )]
    Capacity { available_mb: u64, headroom_mb: u64 },
    #[error(
        "runtime `{0}` is not registered with this Docker host (it offers: {1}); for gVisor run \
         `./install.sh --runtime gvisor`, which installs runsc and registers it in /etc/docker/daemon.json"
    )]
    RuntimeMissing(String, String),
    #[error(
        "the sandbox firewall could not be installed, so sandboxes could reach the host and private \
         networks; no sandbox is created or started until it is ({0}). Set BERTH_FIREWALL=false only where another \
         tool guards sandbox egress"
    )]
    Firewall(String),
    #[error("sandbox `{0}` is stopped: only a running sandbox goes to light sleep")]
    NotRunning(String),
    #[error("sandbox `{0}` is busy (a command, task or open connection): it cannot sleep under it")]
    Busy(String),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Files(#[from] FilesError),
}

impl From<StoreError> for SandboxError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => SandboxError::NotFound(id),
            StoreError::Exists(id) => SandboxError::Exists(id),
            other => SandboxError::Store(other),
        }
    }
}

pub(crate) struct Inner {
    pub store: Store,
    pub docker: Docker,
    pub firewall: Firewall,
    /// uids and gids of host accounts in the sandbox range: never handed out.
    pub host_ids: BTreeSet<i64>,
    pub workspaces: Workspaces,
    pub settings: Arc<Settings>,
    pub spec: SpecContext,
    pub locks: Locks,
    pub activity: Activity,
    pub memory: MemoryGauge,
    pub metrics: Metrics,
    /// Backoff of sandboxes whose container keeps exiting by itself.
    pub crashes: crashes::CrashLoops,
    /// Wakes the warm pool's refill after a claim.
    pub refill: pool::Refill,
    /// ARP on the sandbox bridges.
    pub neighbours: crate::neighbours::Neighbours,
    /// Open interactive terminals.
    pub terminals: pty::Terminals,
}

/// The sandbox service; cheap to clone.
#[derive(Clone)]
pub struct Sandboxes {
    inner: Arc<Inner>,
}

impl Sandboxes {
    pub fn new(
        store: Store,
        docker: Docker,
        settings: Arc<Settings>,
        instance_id: String,
        activity: Activity,
        metrics: Metrics,
    ) -> Self {
        let firewall = Firewall::new(
            &instance_id,
            settings.egress_deny.clone(),
            settings.firewall,
        );
        let host_ids = crate::uids::host_ids(&settings.host_etc, settings.sandbox_uid_base);
        let spec = SpecContext {
            instance_id,
            network: settings.network.clone(),
            network_internal: format!("{}-internal", settings.network),
            preview_domain: settings.preview_domain.clone(),
            tmp_size: settings.tmp_size,
            pids_limit: settings.pids_limit,
            execd: settings
                .exec_agent
                .then(|| match crate::execd::install(&settings.data_dir) {
                    Ok(path) => Some(path),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not install the exec agent: commands go through Docker's exec");
                        None
                    }
                })
                .flatten(),
        };
        let memory = MemoryGauge::new(settings.meminfo_path.clone(), settings.memory_headroom);
        Self {
            inner: Arc::new(Inner {
                store,
                docker,
                firewall,
                host_ids,
                workspaces: Workspaces::new(&settings.data_dir),
                settings,
                spec,
                locks: Locks::default(),
                activity,
                memory,
                metrics,
                crashes: crashes::CrashLoops::default(),
                refill: pool::Refill::default(),
                neighbours: crate::neighbours::Neighbours::default(),
                terminals: pty::Terminals::default(),
            }),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The settings, shared (for what outlives a request: the API reference).
    pub fn shared_settings(&self) -> Arc<Settings> {
        self.inner.settings.clone()
    }

    pub fn firewall(&self) -> FirewallStatus {
        self.inner.firewall.status()
    }

    /// Makes sure both sandbox networks exist and the egress rules guard
    /// their bridges. `reapply`: install the rules even if nothing changed
    /// (the reconciler does, so rules another tool flushed come back).
    pub async fn prepare_networks(&self, reapply: bool) -> Result<(), SandboxError> {
        let labels = std::collections::HashMap::from([
            (crate::docker::LABEL_MANAGED.to_string(), "true".to_string()),
            (
                crate::docker::LABEL_INSTANCE.to_string(),
                self.inner.spec.instance_id.clone(),
            ),
        ]);
        let open = self
            .inner
            .docker
            .ensure_network(
                &self.inner.spec.network,
                self.inner.settings.network_bridge.as_deref(),
                false,
                labels.clone(),
            )
            .await?;
        let internal = self
            .inner
            .docker
            .ensure_network(&self.inner.spec.network_internal, None, true, labels)
            .await?;
        let bridges = vec![open, internal];
        self.inner.neighbours.tune(&bridges).await;
        let status = self.inner.firewall.status();
        if !status.enabled {
            return Ok(());
        }
        if !reapply && status.installed && status.bridges == bridges {
            // Installed once is not enough: another tool may have removed
            // them since. One read of the table tells.
            match self.inner.firewall.verify(&bridges).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(error = %e, "sandbox egress rules were removed: installing them again")
                }
            }
        }
        if let Err(e) = self.inner.firewall.apply(&bridges).await {
            tracing::error!(error = %e, "could not install the sandbox firewall");
            return Err(SandboxError::Firewall(e.to_string()));
        }
        if !status.installed || status.bridges != bridges {
            tracing::info!(?bridges, chains = ?status.chains, "sandbox egress rules installed");
        }
        Ok(())
    }

    /// The host uid sandbox `id` runs as (allocated on first use).
    pub(crate) async fn uid_of(&self, id: &str) -> Result<u32, SandboxError> {
        let base = i64::from(self.inner.settings.sandbox_uid_base);
        let uid = self
            .inner
            .store
            .sandbox_uid(id, base, &self.inner.host_ids)
            .await?;
        u32::try_from(uid).map_err(|_| {
            SandboxError::Invalid(format!("uid {uid} of sandbox `{id}` is out of range"))
        })
    }

    /// Where sandbox `id` lives on the host, running as `uid`.
    pub(crate) fn host_side(&self, id: &str, uid: u32) -> HostSide {
        HostSide {
            home: self.inner.workspaces.home(id),
            identity: crate::uids::identity_dir(&self.inner.settings.data_dir, id),
            uid,
        }
    }

    pub fn activity(&self) -> &Activity {
        &self.inner.activity
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn docker(&self) -> &Docker {
        &self.inner.docker
    }

    pub(crate) fn locks(&self) -> &Locks {
        &self.inner.locks
    }

    pub fn instance_id(&self) -> &str {
        &self.inner.spec.instance_id
    }

    /// The record of a sandbox that exists (one being deleted does not).
    pub async fn get(&self, id: &str) -> Result<SandboxRecord, SandboxError> {
        let id = request::normalize_id(id).map_err(|_| SandboxError::NotFound(id.to_string()))?;
        match self.inner.store.find_sandbox(&id).await? {
            Some(rec) if !is_going(&rec) && !rec.pooled => Ok(rec),
            _ => Err(SandboxError::NotFound(id)),
        }
    }

    pub async fn list(&self) -> Result<Vec<SandboxRecord>, SandboxError> {
        let mut all = self.inner.store.sandboxes().await?;
        all.retain(|r| !is_going(r) && !r.pooled);
        Ok(all)
    }

    /// The container's live state, when it exists.
    pub async fn live(&self, id: &str) -> Result<Option<ContainerStatus>, SandboxError> {
        Ok(self.inner.docker.inspect(&container_name(id)).await?)
    }

    /// The latest activity of a sandbox, from memory or the database.
    pub fn last_active(&self, rec: &SandboxRecord) -> i64 {
        self.inner
            .activity
            .latest(&rec.id)
            .map_or(rec.last_active_at, |m| m.max(rec.last_active_at))
    }

    /// Creates a sandbox and starts it: claimed from the warm pool when it
    /// fits, else made (how is the second value). On failure nothing is left
    /// behind but a home directory that existed before.
    pub async fn create(
        &self,
        req: CreateRequest,
    ) -> Result<(SandboxRecord, Placement), SandboxError> {
        let client_chose_id = req.id.is_some();
        let new = request::new_sandbox(req, &self.inner.settings)?;
        let mut placement = self.pool_fit(&new, client_chose_id);
        if placement == Placement::Warm {
            if let Some(rec) = self.claim(&new).await {
                return Ok((rec, Placement::Warm));
            }
            placement = Placement::Cold("the warm pool is empty");
            self.inner.metrics.pool_claimed(false);
        }
        self.create_cold(new).await.map(|rec| (rec, placement))
    }

    async fn create_cold(
        &self,
        new: crate::store::NewSandbox,
    ) -> Result<SandboxRecord, SandboxError> {
        if let Some(runtime) = &new.runtime {
            let offered = self.inner.docker.runtimes().await?;
            if !offered.contains(runtime) {
                return Err(SandboxError::RuntimeMissing(
                    runtime.clone(),
                    offered.join(", "),
                ));
            }
        }
        match self.inner.docker.image(&new.image).await? {
            None => return Err(SandboxError::ImageMissing(new.image)),
            Some(facts) if !facts.is_berth_sandbox() => tracing::info!(
                sandbox = %new.id,
                image = %new.image,
                "not a berth sandbox image: its own command is PID 1, and tasks need the agent CLIs in it"
            ),
            Some(_) => {}
        }
        let _guard = self.inner.locks.lock(&new.id).await;
        if self.inner.store.find_sandbox(&new.id).await?.is_some() {
            return Err(SandboxError::Exists(new.id));
        }
        self.admit(Some(&new.id)).await?;
        let home_existed = self.inner.workspaces.exists(&new.id);
        let rec = self.inner.store.insert_sandbox(&new).await?;
        self.inner.activity.touch(&rec.id);
        match self.converge(&rec, Origin::Api).await {
            Ok(()) => Ok(self.inner.store.sandbox(&rec.id).await?),
            Err(e) => {
                tracing::warn!(sandbox = %rec.id, error = %e, "create failed; rolling back");
                self.roll_back_create(&rec.id, home_existed).await;
                Err(e)
            }
        }
    }

    /// After a restart: kills the execs the previous control process left
    /// running in this instance's sandboxes (their clients and timeouts
    /// died with it), with everything they started.
    pub async fn kill_abandoned_execs(&self) {
        let containers = match self
            .inner
            .docker
            .managed_containers(&self.inner.spec.instance_id)
            .await
        {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "could not look for execs abandoned by a restart");
                return;
            }
        };
        // A frozen container's execs cannot be killed until it thaws; its
        // sandbox was idle (no exec in flight) when it was frozen.
        for container in containers.iter().filter(|c| c.running && !c.paused) {
            if let Err(e) = self.inner.docker.kill_abandoned_execs(&container.id).await {
                tracing::warn!(sandbox = %container.sandbox_id, error = %e, "could not kill execs abandoned by a restart");
            }
        }
    }

    /// Forgets a sandbox whose home is gone: frees its uid and identity
    /// files and removes its tasks (rows, events, and the `env` they hold).
    pub(crate) async fn forget_identity(&self, id: &str) {
        match self.inner.store.delete_tasks_of(id).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(sandbox = id, removed, "tasks removed"),
            Err(e) => {
                tracing::warn!(sandbox = id, error = %e, "could not remove the sandbox's tasks")
            }
        }
        let dir = crate::uids::identity_dir(&self.inner.settings.data_dir, id);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(sandbox = id, error = %e, "could not remove the identity files");
            }
        }
        if let Err(e) = self.inner.store.free_sandbox_uid(id).await {
            tracing::warn!(sandbox = id, error = %e, "could not free the sandbox's uid");
        }
    }

    async fn roll_back_create(&self, id: &str, home_existed: bool) {
        // Only a container this instance made: a container of the same name
        // that belongs to another instance (or to no berth) is left alone.
        if let Err(e) = self.remove_container_if_ours(id).await {
            tracing::warn!(sandbox = id, error = %e, "rollback: could not remove the container; the reconciler will");
        }
        if let Err(e) = self.inner.store.delete_sandbox(id).await {
            tracing::warn!(sandbox = id, error = %e, "rollback: could not delete the record");
        }
        if !home_existed {
            if let Err(e) = self.inner.workspaces.remove(id) {
                tracing::warn!(sandbox = id, error = %e, "rollback: could not remove the home directory");
            }
            self.forget_identity(id).await;
        }
    }

    /// Starts (wakes) a sandbox; running already is success.
    pub async fn start(&self, id: &str) -> Result<SandboxRecord, SandboxError> {
        let rec = self.get(id).await?;
        let _guard = self.inner.locks.lock(&rec.id).await;
        let rec = self.get(&rec.id).await?;
        self.inner.activity.touch(&rec.id);
        self.wake_locked(rec).await
    }

    /// Under the sandbox's lock: make it run.
    async fn wake_locked(&self, rec: SandboxRecord) -> Result<SandboxRecord, SandboxError> {
        if rec.desired_state != DesiredState::Running {
            self.inner
                .store
                .set_desired(&rec.id, DesiredState::Running, rec.status)
                .await?;
        }
        let rec = self.inner.store.sandbox(&rec.id).await?;
        self.converge(&rec, Origin::Api).await?;
        Ok(self.inner.store.sandbox(&rec.id).await?)
    }

    /// Stops a sandbox; its home directory and record stay.
    pub async fn stop(&self, id: &str) -> Result<SandboxRecord, SandboxError> {
        let rec = self.get(id).await?;
        let _guard = self.inner.locks.lock(&rec.id).await;
        let rec = self.get(&rec.id).await?;
        let was_running = rec.desired_state == DesiredState::Running;
        self.stop_locked(&rec, None).await?;
        if was_running {
            self.inner.metrics.sandbox_stopped(StopReason::Api);
        }
        Ok(self.inner.store.sandbox(&rec.id).await?)
    }

    /// Puts a running sandbox to light sleep at once: its container is
    /// frozen (no CPU, memory kept) and any wake thaws it in milliseconds.
    /// Asleep already is success; a stopped sandbox stays stopped.
    pub async fn sleep(&self, id: &str) -> Result<SandboxRecord, SandboxError> {
        let rec = self.get(id).await?;
        let _guard = self.inner.locks.lock(&rec.id).await;
        let rec = self.get(&rec.id).await?;
        match rec.desired_state {
            DesiredState::Running => {
                if self.inner.activity.is_busy(&rec.id) {
                    return Err(SandboxError::Busy(rec.id));
                }
                self.sleep_locked(&rec).await?;
                self.inner.metrics.sandbox_slept(StopReason::Api);
            }
            DesiredState::Asleep => {}
            _ => return Err(SandboxError::NotRunning(rec.id)),
        }
        Ok(self.inner.store.sandbox(&rec.id).await?)
    }

    async fn sleep_locked(&self, rec: &SandboxRecord) -> Result<(), SandboxError> {
        self.inner
            .store
            .set_desired(&rec.id, DesiredState::Asleep, rec.status)
            .await?;
        let rec = self.inner.store.sandbox(&rec.id).await?;
        self.converge(&rec, Origin::Api).await
    }

    async fn stop_locked(
        &self,
        rec: &SandboxRecord,
        why: Option<&str>,
    ) -> Result<(), SandboxError> {
        self.inner
            .store
            .set_desired(&rec.id, DesiredState::Stopped, Status::Stopping)
            .await?;
        let rec = self.inner.store.sandbox(&rec.id).await?;
        self.converge(&rec, Origin::Api).await?;
        if let Some(why) = why {
            self.inner
                .store
                .set_status(&rec.id, Status::Stopped, Some(why))
                .await?;
        }
        Ok(())
    }

    /// Removes the container and the record; the home directory stays, and a
    /// sandbox created later with the same id gets it back.
    pub async fn delete(&self, id: &str) -> Result<(), SandboxError> {
        let rec = self.get(id).await?;
        let _guard = self.inner.locks.lock(&rec.id).await;
        let rec = self.get(&rec.id).await?;
        self.inner
            .store
            .set_desired(&rec.id, DesiredState::Deleted, Status::Stopping)
            .await?;
        let rec = self.inner.store.sandbox(&rec.id).await?;
        self.converge(&rec, Origin::Api).await
    }

    /// Removes the container, the home directory and the record. Also works
    /// on what a deleted sandbox left behind.
    pub async fn purge(&self, id: &str) -> Result<(), SandboxError> {
        let id = request::normalize_id(id).map_err(|_| SandboxError::NotFound(id.to_string()))?;
        let _guard = self.inner.locks.lock(&id).await;
        match self.inner.store.find_sandbox(&id).await? {
            Some(_) => {
                self.inner
                    .store
                    .set_desired(&id, DesiredState::Purged, Status::Stopping)
                    .await?;
                let rec = self.inner.store.sandbox(&id).await?;
                self.converge(&rec, Origin::Api).await
            }
            None if self.inner.workspaces.exists(&id) => {
                self.remove_container_if_ours(&id).await?;
                self.inner.workspaces.remove(&id)?;
                self.forget_identity(&id).await;
                Ok(())
            }
            None => Err(SandboxError::NotFound(id)),
        }
    }

    /// Postpones the idle reaper until `until_ms` (capped), or by the
    /// sandbox's idle timeout from now.
    pub async fn keepalive(
        &self,
        id: &str,
        until_s: Option<i64>,
    ) -> Result<SandboxRecord, SandboxError> {
        let rec = self.get(id).await?;
        let now = now_ms();
        let cap = now.saturating_add(
            i64::try_from(self.inner.settings.keepalive_max.as_millis()).unwrap_or(i64::MAX),
        );
        let until = match until_s {
            Some(s) if s.saturating_mul(1000) <= now => {
                return Err(SandboxError::Invalid(format!(
                    "until {s} is not in the future (unix seconds; omit it for the sandbox's idle timeout from now)"
                )));
            }
            Some(s) => s.saturating_mul(1000).min(cap),
            None => now
                .saturating_add(rec.idle_timeout_s.saturating_mul(1000))
                .min(cap),
        };
        self.inner.activity.touch(&rec.id);
        self.inner.store.set_keepalive(&rec.id, until).await?;
        Ok(self.inner.store.sandbox(&rec.id).await?)
    }

    pub async fn read_file(&self, id: &str, path: &str) -> Result<Entry, SandboxError> {
        let rec = self.get(id).await?;
        self.inner.activity.touch(&rec.id);
        let max = self.inner.settings.max_file_size as u64;
        let ws = self.inner.workspaces.clone();
        let (sid, path) = (rec.id.clone(), path.to_string());
        Ok(blocking(move || ws.read(&sid, &path, max)).await?)
    }

    pub async fn write_file(
        &self,
        id: &str,
        path: &str,
        content: Vec<u8>,
        append: bool,
    ) -> Result<u64, SandboxError> {
        let rec = self.get(id).await?;
        self.inner.activity.touch(&rec.id);
        let max = self.inner.settings.max_file_size;
        if content.len() > max {
            return Err(FilesError::TooLarge {
                path: path.to_string(),
                size: content.len() as u64,
                max: max as u64,
            }
            .into());
        }
        let ws = self.inner.workspaces.clone();
        let (sid, path) = (rec.id.clone(), path.to_string());
        Ok(blocking(move || ws.write(&sid, &path, &content, append)).await?)
    }

    pub async fn delete_file(&self, id: &str, path: &str) -> Result<(), SandboxError> {
        let rec = self.get(id).await?;
        self.inner.activity.touch(&rec.id);
        let ws = self.inner.workspaces.clone();
        let (sid, path) = (rec.id.clone(), path.to_string());
        Ok(blocking(move || ws.delete(&sid, &path)).await?)
    }

    /// Makes sure the host has memory for one more running sandbox, stopping
    /// idle ones (oldest activity first) if it is short.
    async fn admit(&self, except: Option<&str>) -> Result<(), SandboxError> {
        let Some(pressure) = self.inner.memory.read() else {
            return Ok(());
        };
        if !pressure.is_under() {
            return Ok(());
        }
        self.relieve_pressure(except).await;
        match self.inner.memory.read() {
            Some(p) if p.is_under() => Err(SandboxError::Capacity {
                available_mb: p.available >> 20,
                headroom_mb: p.headroom >> 20,
            }),
            _ => Ok(()),
        }
    }

    /// Stops idle sandboxes, least recently used first, until the host is
    /// above its memory headroom or no candidate is left. Returns how many
    /// were stopped.
    pub async fn relieve_pressure(&self, except: Option<&str>) -> usize {
        let mut stopped = 0;
        // The warm pool first: it is cheap to make again.
        // Boxed: removing converges, and converging may relieve pressure.
        while self.inner.memory.read().is_some_and(|p| p.is_under())
            && Box::pin(self.shed_pooled()).await
        {}
        let now = now_ms();
        let Ok(all) = self.inner.store.sandboxes().await else {
            return 0;
        };
        let mut candidates: Vec<(i64, SandboxRecord)> = all
            .into_iter()
            .filter(|r| Some(r.id.as_str()) != except && !r.pooled)
            .filter(|r| {
                (r.desired_state == DesiredState::Running && r.status == Status::Running)
                    || r.desired_state == DesiredState::Asleep
            })
            .filter(|r| r.idle_policy == crate::store::IdlePolicy::Sleep)
            .filter(|r| r.keepalive_until.is_none_or(|k| k <= now))
            .filter(|r| !self.inner.activity.is_busy(&r.id))
            .map(|r| (self.last_active(&r), r))
            .collect();
        // Light sleepers first (they hold memory nobody is using), each
        // tier least recently used first.
        candidates.sort_by_key(|(last, r)| (r.desired_state != DesiredState::Asleep, *last));
        for (_, rec) in candidates {
            match self.inner.memory.read() {
                Some(p) if p.is_under() => {}
                _ => break,
            }
            // Wait a little for a lock held by a short operation (the
            // reconciler's pass), but never long: the caller may hold another
            // sandbox's lock, and two such callers must not wait on each other.
            let Ok(_guard) =
                tokio::time::timeout(Duration::from_secs(2), self.inner.locks.lock(&rec.id)).await
            else {
                continue;
            };
            if self.inner.activity.is_busy(&rec.id) {
                continue;
            }
            let why = "stopped to relieve host memory pressure";
            // Boxed: stopping converges, and converging may relieve pressure.
            match Box::pin(self.stop_locked(&rec, Some(why))).await {
                Ok(()) => {
                    tracing::info!(sandbox = %rec.id, "{why}");
                    self.inner
                        .metrics
                        .sandbox_stopped(StopReason::MemoryPressure);
                    stopped += 1;
                }
                Err(e) => {
                    tracing::warn!(sandbox = %rec.id, error = %e, "could not stop under memory pressure")
                }
            }
        }
        stopped
    }

    /// Puts sandboxes idle past their timeout and keepalive to sleep: light
    /// sleep first, stopped once light sleep has lasted
    /// `BERTH_DEEP_SLEEP_AFTER` (at once when that is zero).
    pub async fn reap_idle(&self) -> Result<Reaped, SandboxError> {
        let mut reaped = Reaped::default();
        for listed in self.inner.store.sandboxes().await? {
            if listed.pooled || self.sleep_due(&listed, now_ms()).is_none() {
                continue;
            }
            let Some(_guard) = self.inner.locks.try_lock(&listed.id) else {
                continue;
            };
            // Re-read under the lock: it may have been used meanwhile.
            let Some(rec) = self.inner.store.find_sandbox(&listed.id).await? else {
                continue;
            };
            let result = match self.sleep_due(&rec, now_ms()) {
                None => continue,
                Some(Tier::Light) => self.sleep_locked(&rec).await.map(|()| {
                    tracing::info!(sandbox = %rec.id, idle_timeout_s = rec.idle_timeout_s, "idle sandbox in light sleep");
                    self.inner.metrics.sandbox_slept(StopReason::Idle);
                    reaped.slept += 1;
                }),
                Some(Tier::Deep) => {
                    let why = if rec.desired_state == DesiredState::Asleep {
                        "stopped after its light sleep"
                    } else {
                        "stopped after its idle timeout"
                    };
                    self.stop_locked(&rec, Some(why)).await.map(|()| {
                        tracing::info!(sandbox = %rec.id, idle_timeout_s = rec.idle_timeout_s, "{why}");
                        self.inner.metrics.sandbox_stopped(StopReason::Idle);
                        reaped.stopped += 1;
                    })
                }
            };
            if let Err(e) = result {
                tracing::warn!(sandbox = %rec.id, error = %e, "could not put an idle sandbox to sleep");
            }
        }
        Ok(reaped)
    }

    /// Which sleep an idle sandbox is due for now, if any.
    fn sleep_due(&self, rec: &SandboxRecord, now: i64) -> Option<Tier> {
        let deep_after =
            i64::try_from(self.inner.settings.deep_sleep_after.as_millis()).unwrap_or(i64::MAX);
        match rec.desired_state {
            DesiredState::Running if self.idle_expired(rec, now) => Some(if deep_after == 0 {
                Tier::Deep
            } else {
                Tier::Light
            }),
            DesiredState::Asleep
                if rec.idle_policy == crate::store::IdlePolicy::Sleep
                    && !self.inner.activity.is_busy(&rec.id)
                    && now >= self.idle_deadline(rec).saturating_add(deep_after) =>
            {
                Some(Tier::Deep)
            }
            _ => None,
        }
    }

    /// Whether a sandbox that sleeps when idle has been idle past its
    /// timeout and keepalive, with nothing using it.
    fn idle_expired(&self, rec: &SandboxRecord, now: i64) -> bool {
        if rec.idle_policy != crate::store::IdlePolicy::Sleep
            || self.inner.activity.is_busy(&rec.id)
        {
            return false;
        }
        now >= self.idle_deadline(rec)
    }

    /// When a sandbox's idle timeout (or keepalive) runs out.
    fn idle_deadline(&self, rec: &SandboxRecord) -> i64 {
        self.last_active(rec)
            .saturating_add(rec.idle_timeout_s.saturating_mul(1000))
            .max(rec.keepalive_until.unwrap_or(0))
    }

    /// Removes the container named for `id` if this instance made it.
    async fn remove_container_if_ours(&self, id: &str) -> Result<(), SandboxError> {
        if let Some(c) = self.inner.docker.inspect(&container_name(id)).await? {
            if self.is_ours(&c, id) {
                self.inner.docker.remove(&c.id).await?;
            }
        }
        Ok(())
    }

    fn is_ours(&self, c: &ContainerStatus, id: &str) -> bool {
        c.labels
            .get(crate::docker::LABEL_INSTANCE)
            .map(String::as_str)
            == Some(self.inner.spec.instance_id.as_str())
            && c.labels
                .get(crate::docker::LABEL_SANDBOX)
                .map(String::as_str)
                == Some(id)
    }
}

/// What one idle pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reaped {
    /// Put to light sleep.
    pub slept: usize,
    /// Stopped.
    pub stopped: usize,
}

/// The two sleeps of an idle sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tier {
    /// Frozen: no CPU, memory kept.
    Light,
    /// Stopped: nothing kept but its files.
    Deep,
}

/// A sandbox on its way out is no longer visible to clients.
fn is_going(rec: &SandboxRecord) -> bool {
    matches!(
        rec.desired_state,
        DesiredState::Deleted | DesiredState::Purged
    )
}

/// Runs blocking filesystem work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, FilesError> + Send + 'static,
) -> Result<T, FilesError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(FilesError::Io(std::io::Error::other(e))))
}
