//! Routers from Traefik's Docker labels, read the way Traefik v3 reads them.
//!
//! Supported: `traefik.enable`, `traefik.http.routers.<r>.rule|priority|
//! service|entrypoints|tls`, `traefik.http.services.<s>.loadbalancer.server.
//! port|scheme` and `traefik.docker.network`. Label keys are
//! case-insensitive. docs/EDGE.md lists what is not supported.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::ContainerInfo;
use super::rule::Rule;

/// One routable rule of one container.
#[derive(Debug, Clone)]
pub struct Router {
    /// `<router name>@<container name>`.
    pub name: String,
    pub rule: Rule,
    pub priority: i64,
    /// `None`: every entrypoint.
    pub entrypoints: Option<Vec<String>>,
    /// Serve on TLS entrypoints only.
    pub tls: bool,
    pub container_id: String,
    /// `None` while the container has no address (stopped).
    pub upstream: Option<SocketAddr>,
}

#[derive(Default)]
struct RouterLabels {
    rule: Option<String>,
    priority: Option<String>,
    service: Option<String>,
    entrypoints: Option<String>,
    tls: bool,
}

fn truthy(v: &str) -> bool {
    matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes")
}

/// The routers a container asks for, and the problems found on the way
/// (logged by the caller; a broken router is skipped, not fatal).
pub fn routers_of(c: &ContainerInfo, exposed_by_default: bool) -> (Vec<Router>, Vec<String>) {
    let mut problems = Vec::new();
    let enabled = c.labels.get("traefik.enable").map(|v| truthy(v));
    if !(enabled.unwrap_or(exposed_by_default)) {
        return (Vec::new(), problems);
    }
    let mut routers: BTreeMap<String, RouterLabels> = BTreeMap::new();
    let mut services: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
    for (key, value) in &c.labels {
        if let Some(rest) = key.strip_prefix("traefik.http.routers.") {
            let Some((name, prop)) = rest.split_once('.') else {
                continue;
            };
            let r = routers.entry(name.to_string()).or_default();
            match prop {
                "rule" => r.rule = Some(value.clone()),
                "priority" => r.priority = Some(value.clone()),
                "service" => r.service = Some(value.to_ascii_lowercase()),
                "entrypoints" => r.entrypoints = Some(value.clone()),
                "tls" => r.tls = truthy(value),
                p if p.starts_with("tls.") => r.tls = true,
                _ => {}
            }
        } else if let Some(rest) = key.strip_prefix("traefik.http.services.") {
            let Some((name, prop)) = rest.split_once('.') else {
                continue;
            };
            let s = services.entry(name.to_string()).or_default();
            match prop {
                "loadbalancer.server.port" => s.0 = Some(value.clone()),
                "loadbalancer.server.scheme" => s.1 = Some(value.clone()),
                _ => {}
            }
        }
    }
    let network_ip = c
        .labels
        .get("traefik.docker.network")
        .and_then(|n| c.ips.get(n))
        .or_else(|| c.ips.values().next())
        .copied();
    let lowest_exposed = c.exposed_ports.iter().min().copied();

    let mut out = Vec::new();
    for (name, labels) in routers {
        let where_ = format!("router `{name}` of container `{}`", c.name);
        let Some(rule_text) = labels.rule else {
            problems.push(format!("{where_} has no rule"));
            continue;
        };
        let rule = match Rule::parse(&rule_text) {
            Ok(rule) => rule,
            Err(e) => {
                problems.push(format!("{where_}: {e}"));
                continue;
            }
        };
        let service = match (&labels.service, services.len()) {
            (Some(s), _) if services.contains_key(s) => Some(s.clone()),
            (Some(s), _) => {
                problems.push(format!(
                    "{where_} names service `{s}`, which its labels do not define"
                ));
                continue;
            }
            (None, 1) => services.keys().next().cloned(),
            (None, 0) => None,
            (None, _) => {
                problems.push(format!(
                    "{where_} has no service and the container defines several"
                ));
                continue;
            }
        };
        let (port, scheme) = service
            .and_then(|s| services.get(&s).cloned())
            .unwrap_or((None, None));
        if scheme.as_deref().is_some_and(|s| s != "http") {
            problems.push(format!("{where_}: only the http scheme is supported"));
            continue;
        }
        let port = match port.map(|p| p.trim().parse::<u16>()) {
            Some(Ok(p)) => p,
            Some(Err(_)) => {
                problems.push(format!("{where_}: the service port is not a port number"));
                continue;
            }
            None => match lowest_exposed {
                Some(p) => p,
                None => {
                    problems.push(format!(
                        "{where_}: no service port and the container exposes none"
                    ));
                    continue;
                }
            },
        };
        let priority = match labels.priority.as_deref().map(str::parse::<i64>) {
            Some(Ok(p)) => p,
            Some(Err(_)) => {
                problems.push(format!("{where_}: priority is not a number"));
                continue;
            }
            None => rule_text.len() as i64,
        };
        out.push(Router {
            name: format!("{name}@{}", c.name),
            rule,
            priority,
            entrypoints: labels.entrypoints.map(|e| {
                e.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            }),
            tls: labels.tls,
            container_id: c.id.clone(),
            upstream: c
                .running
                .then_some(network_ip)
                .flatten()
                .map(|ip| SocketAddr::new(ip, port)),
        });
    }
    (out, problems)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::routes::rule::Request;

    fn container(labels: &[(&str, &str)]) -> ContainerInfo {
        ContainerInfo {
            id: "c1".into(),
            name: "web".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_string()))
                .collect::<HashMap<_, _>>(),
            running: true,
            ips: BTreeMap::from([
                ("bridge".to_string(), "172.17.0.2".parse().unwrap()),
                ("front".to_string(), "172.20.0.5".parse().unwrap()),
            ]),
            exposed_ports: vec![8080, 80],
        }
    }

    #[test]
    fn a_typical_label_set_becomes_a_router() {
        let c = container(&[
            ("traefik.enable", "true"),
            ("traefik.http.routers.web.rule", "Host(`app.example.com`)"),
            ("traefik.http.routers.web.entrypoints", "web, websecure"),
            ("traefik.http.services.web.loadbalancer.server.port", "3000"),
            ("traefik.docker.network", "front"),
        ]);
        let (routers, problems) = routers_of(&c, false);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(routers.len(), 1);
        let r = &routers[0];
        assert_eq!(r.name, "web@web");
        assert_eq!(r.upstream, Some("172.20.0.5:3000".parse().unwrap()));
        assert_eq!(
            r.entrypoints.as_deref(),
            Some(&["web".to_string(), "websecure".to_string()][..])
        );
        assert_eq!(r.priority, "Host(`app.example.com`)".len() as i64);
        assert!(r.rule.matches(&Request {
            host: "app.example.com",
            path: "/",
            method: "GET"
        }));
    }

    #[test]
    fn keys_are_case_insensitive_and_the_lowest_exposed_port_is_the_default() {
        let c = container(&[
            ("Traefik.Enable", "TRUE"),
            ("traefik.HTTP.routers.Web.Rule", "Host(`a.com`)"),
        ]);
        let (routers, _) = routers_of(&c, false);
        assert_eq!(routers[0].upstream.unwrap().port(), 80);
    }

    #[test]
    fn exposure_follows_traefik_enable() {
        let labels = [("traefik.http.routers.r.rule", "Host(`a.com`)")];
        assert!(routers_of(&container(&labels), false).0.is_empty());
        assert_eq!(routers_of(&container(&labels), true).0.len(), 1);
        let off = [
            ("traefik.enable", "false"),
            ("traefik.http.routers.r.rule", "Host(`a.com`)"),
        ];
        assert!(routers_of(&container(&off), true).0.is_empty());
    }

    #[test]
    fn stopped_containers_have_routers_without_upstream() {
        let mut c = container(&[
            ("traefik.enable", "true"),
            ("traefik.http.routers.r.rule", "Host(`a.com`)"),
        ]);
        c.running = false;
        assert_eq!(routers_of(&c, false).0[0].upstream, None);
    }

    #[test]
    fn broken_routers_are_reported_and_skipped() {
        let c = container(&[
            ("traefik.enable", "true"),
            ("traefik.http.routers.good.rule", "Host(`a.com`)"),
            ("traefik.http.routers.good.priority", "7"),
            ("traefik.http.routers.norule.service", "x"),
            ("traefik.http.routers.bad.rule", "Host(`a.com`"),
            ("traefik.http.routers.ghost.rule", "Host(`b.com`)"),
            ("traefik.http.routers.ghost.service", "elsewhere"),
        ]);
        let (routers, problems) = routers_of(&c, false);
        assert_eq!(routers.len(), 1);
        assert_eq!(routers[0].priority, 7);
        assert_eq!(problems.len(), 3, "{problems:?}");
    }
}
