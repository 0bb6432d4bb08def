//! Where a request the front door serves itself goes: the same decisions
//! as Pingora's path (`request_filter`, `preview`), taken only when they
//! need no answer of the edge's own. Anything that would (a redirect to
//! HTTPS, a 404, a 401, a token exchange, a wake, a warming port, a
//! look-up of a sandbox the route table does not know) is `None`:
//! Pingora's path takes the request. A private preview's cookie is checked
//! by `PreviewAuth::check_any`, as Pingora's path checks it.

use std::net::SocketAddr;
use std::sync::PoisonError;

use super::Edge;
use crate::preview_auth;
use crate::routes::rule::Request;

/// The upstream of a request the front door serves.
pub struct Direct {
    pub addr: SocketAddr,
    /// The sandbox, for a preview host (its activity, berth's credentials
    /// kept from it).
    pub sandbox: Option<String>,
}

/// What the front door knows of a request, for choosing its upstream.
pub struct Asked<'a> {
    /// Normalised: lower case, no port.
    pub host: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub method: &'a str,
    pub tls: bool,
    pub cookies: &'a [&'a str],
}

impl Edge {
    pub async fn direct(&self, asked: &Asked<'_>) -> Option<Direct> {
        if self.settings.tls.is_some() && !asked.tls {
            return None;
        }
        if let Some((id, port)) =
            berth_wire::preview::parse(asked.host, &self.settings.preview_domain)
        {
            return self.direct_preview(asked, id, port).await;
        }
        if !self.settings.traefik {
            return None;
        }
        let table = self.routes.load();
        let request = Request {
            host: asked.host,
            path: asked.path,
            method: asked.method,
        };
        let addr = table.router_for(&request, asked.tls)?.upstream?;
        Some(Direct {
            addr,
            sandbox: None,
        })
    }

    async fn direct_preview(&self, asked: &Asked<'_>, id: String, port: u16) -> Option<Direct> {
        let (ip, public) = {
            let table = self.routes.load();
            let entry = table.sandbox(&id)?;
            let public = if entry.pooled {
                let claimed = self.claimed.lock().unwrap_or_else(PoisonError::into_inner);
                let (ports, public) = claimed.get(&entry.container_id)?;
                if !ports.contains(&port) {
                    return None;
                }
                *public
            } else {
                if !entry.ports.contains(&port) {
                    return None;
                }
                entry.public
            };
            (entry.ip?, public)
        };
        if self.waker.is_warming(&id, port) {
            return None;
        }
        let token_in_query = asked.query.is_some_and(|q| {
            q.split('&').any(|pair| {
                pair.split_once('=')
                    .is_some_and(|(k, _)| k == preview_auth::QUERY_PARAM)
            })
        });
        if token_in_query {
            return None;
        }
        if !public {
            let cookies =
                preview_auth::cookie_values(asked.cookies.iter().copied(), preview_auth::COOKIE);
            self.auth.check_any(cookies, &id).await?;
        }
        Some(Direct {
            addr: SocketAddr::new(ip, port),
            sandbox: Some(id),
        })
    }
}
