//! Docker, read-only: the edge lists and inspects containers and follows
//! their events. It never starts or stops anything (control does).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bollard::models::EventMessage;
use bollard::query_parameters::{EventsOptions, InspectContainerOptions, ListContainersOptions};
use futures_util::Stream;
use tokio::sync::OnceCell;

use crate::routes::ContainerInfo;

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("Docker: {0}")]
    Api(#[from] bollard::errors::Error),
}

#[derive(Clone, Default)]
pub struct Docker {
    client: Arc<OnceCell<bollard::Docker>>,
}

impl Docker {
    /// Connected and version-negotiated on first success (the engine may be
    /// as old as 20.10 / API 1.41).
    async fn client(&self) -> Result<&bollard::Docker, DockerError> {
        self.client
            .get_or_try_init(|| async {
                let docker = bollard::Docker::connect_with_local_defaults()?;
                Ok(docker.negotiate_version().await?)
            })
            .await
    }

    /// A container as the route table sees it; `None` when it is gone.
    pub async fn inspect(&self, id: &str) -> Result<Option<ContainerInfo>, DockerError> {
        let found = match self
            .client()
            .await?
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(found) => found,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let config = found.config.unwrap_or_default();
        let labels: HashMap<String, String> = config
            .labels
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        let ips: BTreeMap<String, std::net::IpAddr> = found
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, net)| Some((name, net.ip_address?.parse().ok()?)))
            .collect();
        let mut exposed_ports: Vec<u16> = config
            .exposed_ports
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p.split('/').next()?.parse().ok())
            .collect();
        exposed_ports.sort_unstable();
        Ok(Some(ContainerInfo {
            id: found.id.unwrap_or_default(),
            name: found
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            labels,
            // A frozen container (berth's light sleep) accepts connections
            // in its kernel but never answers: not routable until thawed.
            running: found
                .state
                .is_some_and(|s| s.running.unwrap_or(false) && !s.paused.unwrap_or(false)),
            ips,
            exposed_ports,
        }))
    }

    /// Every container on the host, inspected.
    pub async fn all(&self) -> Result<Vec<ContainerInfo>, DockerError> {
        let listed = self
            .client()
            .await?
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await?;
        let mut out = Vec::with_capacity(listed.len());
        for c in listed {
            if let Some(id) = c.id {
                if let Some(info) = self.inspect(&id).await? {
                    out.push(info);
                }
            }
        }
        Ok(out)
    }

    /// Container events as they happen.
    pub async fn container_events(
        &self,
    ) -> Result<impl Stream<Item = Result<EventMessage, bollard::errors::Error>> + use<>, DockerError>
    {
        let filters = HashMap::from([("type".to_string(), vec!["container".to_string()])]);
        Ok(self.client().await?.events(Some(EventsOptions {
            filters: Some(filters),
            ..Default::default()
        })))
    }
}
