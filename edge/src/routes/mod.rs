//! The route table: berth sandboxes and Traefik-labelled containers, built
//! from Docker's view of the host and swapped atomically on every change.
//! Containers of another berth install on the same host (another
//! `berth.instance`) are not routed at all, nor are berth's containers before
//! this edge knows its own instance.

pub mod rule;
pub mod traefik;
pub mod watcher;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use berth_wire::labels;

use rule::Request;
pub use traefik::Router;

/// What the edge needs to know about a container.
#[derive(Debug, Clone)]
pub struct ContainerInfo {
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    /// Keys lower-cased (Traefik's keys are case-insensitive).
    pub labels: HashMap<String, String>,
    /// Running and not frozen: its apps can answer.
    pub running: bool,
    /// Address by network name.
    pub ips: BTreeMap<String, IpAddr>,
    pub exposed_ports: Vec<u16>,
}

/// A berth sandbox, from its container's `berth.*` labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxEntry {
    pub id: String,
    pub container_id: String,
    pub ports: Vec<u16>,
    pub public: bool,
    /// Made for berth's warm pool: its labels carry no ports nor
    /// visibility, control has them.
    pub pooled: bool,
    /// Set while the container runs and has an address.
    pub ip: Option<IpAddr>,
}

impl SandboxEntry {
    fn from_container(c: &ContainerInfo) -> Option<Self> {
        if !berth_managed(c) {
            return None;
        }
        let id = c.labels.get(labels::SANDBOX)?.to_ascii_lowercase();
        let ports = c
            .labels
            .get(labels::PORTS)
            .map(|p| p.split(',').filter_map(|p| p.trim().parse().ok()).collect())
            .unwrap_or_default();
        let ip = c
            .labels
            .get(labels::NETWORK)
            .and_then(|n| c.ips.get(n))
            .or_else(|| c.ips.values().next())
            .copied();
        Some(SandboxEntry {
            id,
            container_id: c.id.clone(),
            ports,
            public: c.labels.get(labels::PUBLIC).map(String::as_str) != Some("false"),
            pooled: c.labels.get(labels::POOL).map(String::as_str) == Some("true"),
            ip: if c.running { ip } else { None },
        })
    }
}

fn berth_managed(c: &ContainerInfo) -> bool {
    c.labels.get(labels::MANAGED).map(String::as_str) == Some("true")
}

#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    /// This edge's berth install; `None` until control has said.
    instance: Option<String>,
    containers: HashMap<String, ContainerInfo>,
    sandboxes: HashMap<String, SandboxEntry>,
    /// Highest priority first.
    routers: Vec<Router>,
    exposed_by_default: bool,
}

impl RouteTable {
    pub fn new(exposed_by_default: bool) -> Self {
        Self {
            exposed_by_default,
            ..Self::default()
        }
    }

    /// This table, routing the containers of berth install `instance`.
    pub fn with_instance(&self, instance: &str) -> Self {
        let mut next = self.clone();
        next.instance = Some(instance.to_string());
        next.rebuild();
        next
    }

    /// Whether a container may be routed: not berth's, or berth's of this
    /// edge's own install.
    fn routable(&self, c: &ContainerInfo) -> bool {
        !berth_managed(c)
            || self.instance.is_some() && c.labels.get(labels::INSTANCE) == self.instance.as_ref()
    }

    /// A table of exactly these containers.
    pub fn with_containers(&self, containers: Vec<ContainerInfo>) -> Self {
        let mut next = Self::new(self.exposed_by_default);
        next.instance = self.instance.clone();
        next.containers = containers.into_iter().map(|c| (c.id.clone(), c)).collect();
        next.rebuild();
        next
    }

    /// This table with one container added or replaced.
    pub fn with_container(&self, c: ContainerInfo) -> Self {
        let mut next = self.clone();
        next.containers.insert(c.id.clone(), c);
        next.rebuild();
        next
    }

    pub fn without_container(&self, id: &str) -> Self {
        let mut next = self.clone();
        next.containers.remove(id);
        next.rebuild();
        next
    }

    fn rebuild(&mut self) {
        self.sandboxes = self
            .containers
            .values()
            .filter(|c| self.routable(c))
            .filter_map(SandboxEntry::from_container)
            .map(|s| (s.id.clone(), s))
            .collect();
        let mut routers = Vec::new();
        for c in self.containers.values().filter(|c| self.routable(c)) {
            let (mut found, problems) = traefik::routers_of(c, self.exposed_by_default);
            for problem in problems {
                tracing::warn!(container = %c.name, "{problem}");
            }
            routers.append(&mut found);
        }
        // Highest priority first; ties by name, for a stable order.
        routers.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then_with(|| a.name.cmp(&b.name))
        });
        self.routers = routers;
    }

    pub fn sandbox(&self, id: &str) -> Option<&SandboxEntry> {
        self.sandboxes.get(id)
    }

    /// The Traefik router for a request on the edge's own entrypoints:
    /// `websecure` over TLS, `web` otherwise.
    pub fn router_for(&self, req: &Request<'_>, tls: bool) -> Option<&Router> {
        let entrypoint = if tls { "websecure" } else { "web" };
        self.router(req, entrypoint, tls)
    }

    /// The Traefik router for a request arriving on `entrypoint`.
    pub fn router(&self, req: &Request<'_>, entrypoint: &str, tls: bool) -> Option<&Router> {
        self.routers.iter().find(|r| {
            r.tls == tls
                && r.entrypoints
                    .as_ref()
                    .is_none_or(|eps| eps.iter().any(|e| e == entrypoint))
                && r.rule.matches(req)
        })
    }

    pub fn router_count(&self) -> usize {
        self.routers.len()
    }

    pub fn instance(&self) -> Option<&str> {
        self.instance.as_deref()
    }

    pub fn sandbox_count(&self) -> usize {
        self.sandboxes.len()
    }
}

/// The shared, atomically swapped table.
#[derive(Clone)]
pub struct Routes {
    table: Arc<ArcSwap<RouteTable>>,
}

impl Routes {
    pub fn new(exposed_by_default: bool) -> Self {
        Self {
            table: Arc::new(ArcSwap::from_pointee(RouteTable::new(exposed_by_default))),
        }
    }

    pub fn load(&self) -> arc_swap::Guard<Arc<RouteTable>> {
        self.table.load()
    }

    pub fn update(&self, f: impl Fn(&RouteTable) -> RouteTable) {
        self.table.rcu(|t| Arc::new(f(t)));
    }

    /// The address of a sandbox's port, when its container runs.
    pub fn sandbox_upstream(&self, id: &str, port: u16) -> Option<SocketAddr> {
        self.load()
            .sandbox(id)?
            .ip
            .map(|ip| SocketAddr::new(ip, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox_container(id: &str, running: bool) -> ContainerInfo {
        ContainerInfo {
            id: format!("c-{id}"),
            name: berth_wire::container_name(id),
            labels: HashMap::from([
                ("berth.managed".into(), "true".into()),
                ("berth.instance".into(), "mine".into()),
                ("berth.sandbox.id".into(), id.into()),
                ("berth.ports".into(), "3000,8080".into()),
                ("berth.public".into(), "false".into()),
                ("traefik.docker.network".into(), "berth".into()),
            ]),
            running,
            ips: BTreeMap::from([("berth".into(), "10.0.0.2".parse().unwrap())]),
            exposed_ports: vec![],
        }
    }

    #[test]
    fn sandboxes_come_from_berth_labels() {
        let t = RouteTable::new(false)
            .with_instance("mine")
            .with_container(sandbox_container("abc", true));
        let s = t.sandbox("abc").unwrap();
        assert_eq!(s.ports, vec![3000, 8080]);
        assert!(!s.public);
        assert_eq!(s.ip, Some("10.0.0.2".parse().unwrap()));
        let stopped = t.with_container(sandbox_container("abc", false));
        assert_eq!(
            stopped.sandbox("abc").unwrap().ip,
            None,
            "kept, without address"
        );
        assert!(stopped.without_container("c-abc").sandbox("abc").is_none());
    }

    #[test]
    fn another_installs_sandboxes_are_not_routed() {
        let mut theirs = sandbox_container("theirs", true);
        theirs.id = "c-theirs".into();
        theirs
            .labels
            .insert("berth.instance".into(), "other".into());
        theirs.labels.insert(
            "traefik.http.routers.t.rule".into(),
            "Host(`s-theirs-3000.preview.localhost`)".into(),
        );
        theirs.labels.insert("traefik.enable".into(), "true".into());
        let containers = vec![sandbox_container("abc", true), theirs];
        let unknown = RouteTable::new(true).with_containers(containers.clone());
        assert_eq!(unknown.sandbox_count(), 0, "no instance known yet");
        let t = unknown.with_instance("mine");
        assert!(t.sandbox("abc").is_some());
        assert!(t.sandbox("theirs").is_none());
        let req = Request {
            host: "s-theirs-3000.preview.localhost",
            path: "/",
            method: "GET",
        };
        assert!(
            t.router(&req, "web", false).is_none(),
            "nor its Traefik labels"
        );
        assert_eq!(t.with_containers(containers).sandbox_count(), 1);
    }

    #[test]
    fn routers_are_tried_by_priority_and_entrypoint() {
        let mut low = sandbox_container("x", true);
        low.id = "low".into();
        low.labels = HashMap::from([
            ("traefik.enable".into(), "true".into()),
            (
                "traefik.http.routers.low.rule".into(),
                "Host(`a.com`)".into(),
            ),
            (
                "traefik.http.services.low.loadbalancer.server.port".into(),
                "1".into(),
            ),
        ]);
        let mut high = low.clone();
        high.id = "high".into();
        high.labels = HashMap::from([
            ("traefik.enable".into(), "true".into()),
            (
                "traefik.http.routers.high.rule".into(),
                "Host(`a.com`) && PathPrefix(`/api`)".into(),
            ),
            ("traefik.http.routers.high.entrypoints".into(), "web".into()),
            (
                "traefik.http.services.high.loadbalancer.server.port".into(),
                "2".into(),
            ),
        ]);
        let t = RouteTable::new(false).with_containers(vec![low, high]);
        let req = Request {
            host: "a.com",
            path: "/api/x",
            method: "GET",
        };
        assert_eq!(
            t.router(&req, "web", false)
                .unwrap()
                .upstream
                .unwrap()
                .port(),
            2
        );
        assert_eq!(
            t.router(&req, "other", false)
                .unwrap()
                .upstream
                .unwrap()
                .port(),
            1
        );
        assert!(t.router(&req, "web", true).is_none(), "no TLS routers");
    }
}
