//! The Docker daemon, through bollard.
//!
//! Every call is idempotent where Docker allows it: starting a running
//! container, stopping a stopped one or removing a missing one succeed, so
//! the reconciler and the API can repeat an operation after a crash without
//! special cases. The API version is negotiated with the engine on first use
//! (the engine may be as old as 20.10 / API 1.41).

mod exec;
pub mod spec;

use std::collections::HashMap;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, NetworkCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptions, DownloadFromContainerOptions, InspectContainerOptions,
    InspectNetworkOptions, ListContainersOptions, ListNetworksOptions, LogsOptions,
    RemoveContainerOptions, StartContainerOptions, StatsOptionsBuilder, StopContainerOptions,
};
use futures_util::StreamExt;
use tokio::sync::OnceCell;

pub(crate) use exec::feed_stdin;
pub use exec::{Attached, ExecOutput, ExecRequest, Process, Target};

pub use berth_wire::labels::{
    INSTANCE as LABEL_INSTANCE, MANAGED as LABEL_MANAGED, SANDBOX as LABEL_SANDBOX,
};

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("the Docker daemon is not answering: {0}")]
    Unavailable(String),
    #[error("image `{0}` is not present on this Docker host")]
    ImageMissing(String),
    #[error("a container named `{0}` already exists and is not this sandbox's")]
    NameTaken(String),
    #[error(
        "network `{0}` exists but is not the isolated network berth needs (containers may talk to each other, or its `internal` flag differs); remove it or choose another BERTH_NETWORK"
    )]
    NetworkNotIsolated(String),
    #[error("Docker refused ({status}): {message}")]
    Api { status: u16, message: String },
    #[error("Docker: {0}")]
    Other(String),
}

impl From<BollardError> for DockerError {
    fn from(e: BollardError) -> Self {
        match e {
            BollardError::DockerResponseServerError {
                status_code,
                message,
            } => DockerError::Api {
                status: status_code,
                message,
            },
            BollardError::IOError { .. }
            | BollardError::HyperLegacyError { .. }
            | BollardError::SocketNotFoundError(_)
            | BollardError::RequestTimeoutError => DockerError::Unavailable(e.to_string()),
            other => DockerError::Other(other.to_string()),
        }
    }
}

/// Usage less the inactive page cache (cgroup v1 `total_inactive_file`,
/// v2 `inactive_file`), as the Docker CLI shows it.
fn memory_in_use(m: &bollard::models::ContainerMemoryStats) -> Option<u64> {
    let usage = m.usage?;
    let cache = m.stats.as_ref().and_then(|s| {
        s.get("total_inactive_file")
            .or_else(|| s.get("inactive_file"))
            .copied()
    });
    Some(usage.saturating_sub(cache.unwrap_or(0)))
}

fn status_of(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// A container berth made, as listed by Docker.
#[derive(Debug, Clone)]
pub struct ManagedContainer {
    pub id: String,
    pub sandbox_id: String,
    pub running: bool,
    /// Frozen (`docker pause`): Docker counts it running, but nothing in it runs.
    pub paused: bool,
}

/// The live state of one container.
#[derive(Debug, Clone)]
pub struct ContainerStatus {
    pub id: String,
    /// Docker's `Running`, which a frozen container also is.
    pub running: bool,
    /// Frozen by `docker pause` (berth's light sleep).
    pub paused: bool,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    /// Whether it has ever run (a container just created has not).
    pub ever_started: bool,
    pub ip: Option<String>,
    pub labels: HashMap<String, String>,
}

/// The label agent-image/ and deploy/ put on berth's own images; its value
/// says which (`sandbox`, `base`, `control`, `edge`).
pub const IMAGE_KIND_LABEL: &str = "berth.image";

/// An image as berth sees it.
#[derive(Debug, Clone)]
pub struct ImageFacts {
    pub id: String,
    /// The `berth.image` label: `Some("sandbox")` for berth's sandbox image
    /// (berth-init, the agent CLIs), `None` for a bring-your-own image.
    pub berth_kind: Option<String>,
}

impl ImageFacts {
    pub fn is_berth_sandbox(&self) -> bool {
        self.berth_kind.as_deref() == Some("sandbox")
    }
}

/// A handle on the Docker daemon; cheap to clone.
#[derive(Clone, Default)]
pub struct Docker {
    client: std::sync::Arc<OnceCell<bollard::Docker>>,
    network_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl Docker {
    pub fn new() -> Self {
        Self::default()
    }

    /// The client, connected and version-negotiated on first success.
    async fn client(&self) -> Result<&bollard::Docker, DockerError> {
        self.client
            .get_or_try_init(|| async {
                let docker = bollard::Docker::connect_with_local_defaults()
                    .map_err(|e| DockerError::Unavailable(e.to_string()))?;
                docker
                    .negotiate_version()
                    .await
                    .map_err(|e| DockerError::Unavailable(e.to_string()))
            })
            .await
    }

    pub async fn ping(&self) -> Result<(), DockerError> {
        self.client().await?.ping().await?;
        Ok(())
    }

    /// `<engine version> (API <version>)`.
    pub async fn describe(&self) -> Result<String, DockerError> {
        let v = self.client().await?.version().await?;
        Ok(format!(
            "{} (API {})",
            v.version.unwrap_or_default(),
            v.api_version.unwrap_or_default()
        ))
    }

    /// The OCI runtimes Docker offers (`runc`, and `runsc` where gVisor is
    /// registered).
    pub async fn runtimes(&self) -> Result<Vec<String>, DockerError> {
        let info = self.client().await?.info().await?;
        Ok(info.runtimes.unwrap_or_default().into_keys().collect())
    }

    /// Makes sure the sandbox network exists as a bridge on which containers
    /// cannot reach each other (`internal`: nor anything beyond the host),
    /// and returns the name of its Linux bridge.
    ///
    /// API 1.41 creates a second network of the same name when two creates
    /// race, so creation is serialised here and duplicates left by earlier
    /// races (or by another process) are removed.
    pub async fn ensure_network(
        &self,
        name: &str,
        bridge: Option<&str>,
        internal: bool,
        labels: HashMap<String, String>,
    ) -> Result<String, DockerError> {
        let _serial = self.network_lock.lock().await;
        let client = self.client().await?;
        let mut found = self.networks_named(name).await?;
        if found.len() > 1 {
            self.remove_duplicate_networks(&mut found).await;
        }
        if let Some(network) = found.first() {
            let icc = network
                .options
                .as_ref()
                .and_then(|o| o.get("com.docker.network.bridge.enable_icc"))
                .map(String::as_str);
            if icc != Some("false") || network.internal.unwrap_or(false) != internal {
                return Err(DockerError::NetworkNotIsolated(name.to_string()));
            }
            return Ok(bridge_name(network));
        }
        let mut options = HashMap::from([(
            "com.docker.network.bridge.enable_icc".to_string(),
            "false".to_string(),
        )]);
        if let Some(bridge) = bridge {
            options.insert(
                "com.docker.network.bridge.name".to_string(),
                bridge.to_string(),
            );
        }
        client
            .create_network(NetworkCreateRequest {
                name: name.to_string(),
                driver: Some("bridge".into()),
                internal: Some(internal),
                options: Some(options),
                labels: Some(labels),
                ..Default::default()
            })
            .await?;
        tracing::info!(
            network = name,
            internal,
            "created a sandbox network (inter-container traffic off)"
        );
        let mut found = self.networks_named(name).await?;
        if found.len() > 1 {
            self.remove_duplicate_networks(&mut found).await;
        }
        found.first().map(bridge_name).ok_or_else(|| {
            DockerError::Unavailable(format!("network {name} vanished after its creation"))
        })
    }

    /// Networks whose name is exactly `name`, oldest first.
    async fn networks_named(
        &self,
        name: &str,
    ) -> Result<Vec<bollard::models::Network>, DockerError> {
        let filters = HashMap::from([("name".to_string(), vec![name.to_string()])]);
        let options = ListNetworksOptions {
            filters: Some(filters),
        };
        let mut found: Vec<_> = self
            .client()
            .await?
            .list_networks(Some(options))
            .await?
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(name))
            .collect();
        found.sort_by(|a, b| a.created.cmp(&b.created));
        Ok(found)
    }

    /// Keeps the oldest of same-named networks; removes the others if empty.
    async fn remove_duplicate_networks(&self, found: &mut Vec<bollard::models::Network>) {
        let Ok(client) = self.client().await else {
            return;
        };
        let extra: Vec<_> = found.drain(1..).collect();
        for network in extra {
            let Some(id) = network.id else { continue };
            let detail = client
                .inspect_network(&id, None::<InspectNetworkOptions>)
                .await;
            let empty = detail.is_ok_and(|d| d.containers.is_none_or(|c| c.is_empty()));
            if empty && client.remove_network(&id).await.is_ok() {
                tracing::warn!(network = %id, "removed a duplicate sandbox network");
            }
        }
    }

    /// What berth needs to know of an image, or `None` when it is not on
    /// this host.
    pub async fn image(&self, image: &str) -> Result<Option<ImageFacts>, DockerError> {
        match self.client().await?.inspect_image(image).await {
            Ok(found) => Ok(Some(ImageFacts {
                id: found.id.unwrap_or_default(),
                berth_kind: found
                    .config
                    .and_then(|c| c.labels)
                    .and_then(|mut l| l.remove(IMAGE_KIND_LABEL)),
            })),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// One file of an image, read without running anything: a container is
    /// created (never started), the file copied out of it, the container
    /// removed. `None` when the image or the file does not exist.
    pub async fn read_image_file(
        &self,
        image: &str,
        path: &str,
    ) -> Result<Option<Vec<u8>>, DockerError> {
        let client = self.client().await?;
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            // Never run; some images have no command at all.
            cmd: Some(vec!["/berth-never-run".to_string()]),
            network_disabled: Some(true),
            ..Default::default()
        };
        let created = match client
            .create_container(None::<CreateContainerOptions>, body)
            .await
        {
            Ok(created) => created.id,
            Err(e) if status_of(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let options = DownloadFromContainerOptions {
            path: path.to_string(),
        };
        let mut archive = Vec::new();
        let mut stream = client.download_from_container(&created, Some(options));
        let mut read = Ok(());
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) if archive.len() + bytes.len() <= 1 << 20 => {
                    archive.extend_from_slice(&bytes)
                }
                Ok(_) => break,
                Err(e) => {
                    read = Err(e);
                    break;
                }
            }
        }
        drop(stream);
        self.remove(&created).await?;
        match read {
            Ok(()) => Ok(first_tar_file(&archive)),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The image's id, or `None` when it is not on this host.
    pub async fn image_id(&self, image: &str) -> Result<Option<String>, DockerError> {
        Ok(self.image(image).await?.map(|f| f.id))
    }

    /// Creates a container; returns its id.
    pub async fn create_container(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<String, DockerError> {
        let image = body.image.clone().unwrap_or_default();
        let options = CreateContainerOptions {
            name: Some(name.to_string()),
            ..Default::default()
        };
        match self
            .client()
            .await?
            .create_container(Some(options), body)
            .await
        {
            Ok(created) => Ok(created.id),
            Err(e) if status_of(&e) == Some(404) => Err(DockerError::ImageMissing(image)),
            Err(e) if status_of(&e) == Some(409) => Err(DockerError::NameTaken(name.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// Starts a container; already running is success.
    pub async fn start(&self, id: &str) -> Result<(), DockerError> {
        match self
            .client()
            .await?
            .start_container(id, None::<StartContainerOptions>)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(304) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Changes a container's memory limit (swap none beyond it) and CPUs
    /// while it exists, running or not.
    pub async fn update_limits(
        &self,
        id: &str,
        memory_bytes: i64,
        nano_cpus: i64,
    ) -> Result<(), DockerError> {
        let body = bollard::models::ContainerUpdateBody {
            memory: Some(memory_bytes),
            memory_swap: Some(memory_bytes),
            nano_cpus: Some(nano_cpus),
            ..Default::default()
        };
        Ok(self.client().await?.update_container(id, body).await?)
    }

    /// Freezes a running container (the cgroup freezer: no CPU, memory
    /// kept); frozen already is success.
    pub async fn pause(&self, id: &str) -> Result<(), DockerError> {
        match self.client().await?.pause_container(id).await {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(409) && self.is_paused(id).await? => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Thaws a frozen container; not frozen is success.
    pub async fn unpause(&self, id: &str) -> Result<(), DockerError> {
        match self.client().await?.unpause_container(id).await {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(409) && !self.is_paused(id).await? => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn is_paused(&self, id: &str) -> Result<bool, DockerError> {
        Ok(self.inspect(id).await?.is_some_and(|c| c.paused))
    }

    /// Stops a container, killing it after `grace`; stopped or missing is success.
    pub async fn stop(&self, id: &str, grace: Duration) -> Result<(), DockerError> {
        let options = StopContainerOptions {
            t: Some(i32::try_from(grace.as_secs()).unwrap_or(i32::MAX)),
            signal: None,
        };
        match self.client().await?.stop_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if matches!(status_of(&e), Some(304 | 404)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes a container and its anonymous volumes; missing is success.
    pub async fn remove(&self, id: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match self
            .client()
            .await?
            .remove_container(id, Some(options))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            // "removal already in progress": someone else is doing our job.
            Err(e) if status_of(&e) == Some(409) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The container's state, or `None` when it does not exist.
    pub async fn inspect(&self, id_or_name: &str) -> Result<Option<ContainerStatus>, DockerError> {
        let found = match self
            .client()
            .await?
            .inspect_container(id_or_name, None::<InspectContainerOptions>)
            .await
        {
            Ok(found) => found,
            Err(e) if status_of(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let state = found.state.unwrap_or_default();
        let ip = found
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|nets| {
                nets.into_values()
                    .filter_map(|n| n.ip_address)
                    .find(|ip| !ip.is_empty())
            });
        Ok(Some(ContainerStatus {
            id: found.id.unwrap_or_default(),
            running: state.running.unwrap_or(false),
            paused: state.paused.unwrap_or(false),
            exit_code: state.exit_code,
            oom_killed: state.oom_killed.unwrap_or(false),
            // Docker's zero time for a container that never ran.
            ever_started: state
                .started_at
                .as_deref()
                .is_some_and(|t| !t.is_empty() && !t.starts_with("0001-")),
            ip,
            labels: found.config.and_then(|c| c.labels).unwrap_or_default(),
        }))
    }

    /// The memory a running container uses, as `docker stats` counts it:
    /// page cache the kernel can drop is left out. `None` when it is not
    /// running (or gone).
    pub async fn memory_used(&self, id: &str) -> Result<Option<u64>, DockerError> {
        let options = StatsOptionsBuilder::new()
            .stream(false)
            .one_shot(true)
            .build();
        let client = self.client().await?;
        let mut stats = client.stats(id, Some(options));
        match stats.next().await {
            Some(Ok(s)) => Ok(s.memory_stats.as_ref().and_then(memory_in_use)),
            Some(Err(e)) if matches!(status_of(&e), Some(404 | 409)) => Ok(None),
            Some(Err(e)) => Err(e.into()),
            None => Ok(None),
        }
    }

    /// The last `lines` lines of a container's output (stdout and stderr),
    /// as text.
    pub async fn log_tail(&self, id: &str, lines: usize) -> Result<String, DockerError> {
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            tail: lines.to_string(),
            ..Default::default()
        };
        let mut stream = self.client().await?.logs(id, Some(options));
        let mut text = Vec::new();
        while let Some(chunk) = stream.next().await {
            text.extend_from_slice(&chunk?.into_bytes());
            if text.len() > 64 * 1024 {
                break;
            }
        }
        Ok(String::from_utf8_lossy(&text).trim_end().to_string())
    }

    /// Every container this berth instance made, running or not.
    pub async fn managed_containers(
        &self,
        instance: &str,
    ) -> Result<Vec<ManagedContainer>, DockerError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_INSTANCE}={instance}")],
        )]);
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let listed = self.client().await?.list_containers(Some(options)).await?;
        Ok(listed
            .into_iter()
            .filter_map(|c| {
                let sandbox_id = c.labels.as_ref()?.get(LABEL_SANDBOX)?.clone();
                Some(ManagedContainer {
                    id: c.id?,
                    sandbox_id,
                    running: matches!(
                        c.state,
                        Some(
                            bollard::models::ContainerSummaryStateEnum::RUNNING
                                | bollard::models::ContainerSummaryStateEnum::PAUSED
                        )
                    ),
                    paused: matches!(
                        c.state,
                        Some(bollard::models::ContainerSummaryStateEnum::PAUSED)
                    ),
                })
            })
            .collect())
    }
}

/// The contents of the first entry of a tar archive (Docker's copy API
/// answers one), when it is a regular file.
fn first_tar_file(archive: &[u8]) -> Option<Vec<u8>> {
    let header = archive.get(..512)?;
    let kind = header[156];
    if kind != b'0' && kind != 0 {
        return None;
    }
    let size_field = std::str::from_utf8(&header[124..136]).ok()?;
    let size =
        usize::from_str_radix(size_field.trim_matches(|c: char| c == '\0' || c == ' '), 8).ok()?;
    archive.get(512..512 + size).map(<[u8]>::to_vec)
}

/// The Linux bridge of a bridge network: named in its options, else Docker's
/// `br-<first 12 characters of its id>`.
fn bridge_name(network: &bollard::models::Network) -> String {
    network
        .options
        .as_ref()
        .and_then(|o| o.get("com.docker.network.bridge.name"))
        .cloned()
        .unwrap_or_else(|| {
            let id = network.id.as_deref().unwrap_or_default();
            format!("br-{}", id.get(..12).unwrap_or(id))
        })
}

#[cfg(test)]
mod tests {
    use super::first_tar_file;

    #[test]
    fn the_first_file_of_a_tar_archive_is_read() {
        let mut header = [0u8; 512];
        header[..5].copy_from_slice(b"file\0");
        header[124..136].copy_from_slice(b"00000000005\0");
        header[156] = b'0';
        let mut archive = header.to_vec();
        archive.extend_from_slice(b"hello");
        archive.resize(2048, 0);
        assert_eq!(first_tar_file(&archive).as_deref(), Some(&b"hello"[..]));
        header[156] = b'5'; // a directory
        assert_eq!(first_tar_file(&header), None);
        assert_eq!(first_tar_file(b"short"), None);
    }
}
