//! The `ProxyHttp` implementation: decide where a request goes (a sandbox's
//! port, waking it first, or a Traefik router's service), then let Pingora
//! proxy it. The decisions live in `routes`, `wake` and `preview_auth`;
//! this module strings them together, by concern: `preview` (a preview
//! host, start to finish), `lookup` (sandboxes the route table does not
//! know), `credentials` (private previews, and berth's credentials kept from
//! apps), `upstream` (forwarded fields, waking, waiting for a port),
//! `direct` (the same decisions for a request the front door serves
//! itself). This file holds the shared state and Pingora's callbacks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType};

use crate::activity::{Activity, Open};
use crate::config::Settings;
use crate::control::Control;
use crate::host;
use crate::metrics::Metrics;
use crate::pages::{self, Page};
use crate::preview_auth::PreviewAuth;
use crate::relay::Relay;
use crate::routes::Routes;
use crate::routes::rule::Request;
use crate::wake::Waker;

mod credentials;
mod direct;
mod lookup;
mod preview;
mod upstream;

pub use direct::{Asked, Direct};
pub use lookup::RateLimit;

pub struct Edge {
    pub settings: Arc<Settings>,
    pub routes: Routes,
    pub waker: Arc<Waker>,
    pub control: Control,
    pub activity: Activity,
    pub auth: Arc<PreviewAuth>,
    pub metrics: Metrics,
    pub relay: Arc<Relay>,
    pub unknown: Mutex<HashMap<String, Instant>>,
    /// Ports and visibility of claimed warm-pool containers (their labels
    /// have none), by container id: control's answer holds for the
    /// container's life.
    pub claimed: Mutex<HashMap<String, (Vec<u16>, bool)>>,
    /// Look-ups of sandboxes the route table does not know: a scan of
    /// random hosts may not turn into a stream of calls to control.
    pub lookups: Mutex<RateLimit>,
}

/// The edge as Pingora's proxy sees it: shared with the front door
/// (`crate::front`), which serves the common request itself.
pub struct Proxy(pub Arc<Edge>);

impl std::ops::Deref for Proxy {
    type Target = Edge;

    fn deref(&self) -> &Edge {
        &self.0
    }
}

#[derive(Default)]
pub struct Ctx {
    started: Option<Instant>,
    upstream: Option<SocketAddr>,
    upstream_started: Option<Instant>,
    host: String,
    sandbox: Option<String>,
    upgrade: bool,
    tls: bool,
    strip_cookie: bool,
    /// The sandbox port asked for, and whether a browser is navigating.
    port: u16,
    html: bool,
    /// Connecting failed (refused, no route, timed out: a stopped
    /// container's address may do any of these): check with Docker whether
    /// the sandbox stopped meanwhile (the route table lags Docker by its
    /// event's latency) and wake it, once. Holds how connecting failed.
    recheck: Option<ErrorType>,
    rechecked: bool,
    /// A page decided while choosing the upstream, for `fail_to_proxy`.
    page: Option<Page>,
    /// Held for the request's life: an open connection is activity.
    _open: Option<Open>,
}

impl Edge {
    async fn respond(&self, session: &mut Session, page: Page) -> Result<bool> {
        let accept = session
            .req_header()
            .headers
            .get("accept")
            .and_then(|v| v.to_str().ok());
        let (header, body) = pages::render(&page, pages::wants_html(accept))?;
        session
            .write_response_header(Box::new(header), false)
            .await?;
        session.write_response_body(Some(body), true).await?;
        Ok(true)
    }

    fn request_host(session: &Session) -> String {
        let req = session.req_header();
        let raw = req
            .headers
            .get("host")
            .and_then(|v| v.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()))
            .unwrap_or("");
        host::normalize(raw)
    }

    /// With TLS on, plain HTTP only redirects to HTTPS.
    async fn redirect_to_https(&self, session: &mut Session, host: &str) -> Result<bool> {
        let port = match self.settings.https_port {
            443 => String::new(),
            p => format!(":{p}"),
        };
        let path = session
            .req_header()
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let mut header = ResponseHeader::build(308, Some(3))?;
        header.insert_header("location", format!("https://{host}{port}{path}"))?;
        header.insert_header("content-length", "0")?;
        session
            .write_response_header(Box::new(header), true)
            .await?;
        Ok(true)
    }
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::default()
    }

    /// No downstream modules. Pingora's default adds its response
    /// compression module, switched off, which still built a context and
    /// ran its filters on every request; the edge never compresses (an app
    /// compresses its own answers).
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        ctx.started = Some(Instant::now());
        ctx.host = Edge::request_host(session);
        ctx.tls = session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .is_some();
        if session.is_upgrade_req() {
            // Upgraded connections (hot-reload WebSockets) idle for long.
            ctx.upgrade = true;
            session.set_read_timeout(None);
        }
        if self.settings.tls.is_some() && !ctx.tls {
            return self.redirect_to_https(session, &ctx.host).await;
        }
        if let Some((id, port)) =
            berth_wire::preview::parse(&ctx.host, &self.settings.preview_domain)
        {
            return self.preview(session, ctx, id, port).await;
        }
        if self.settings.traefik {
            let table = self.routes.load();
            let req = session.req_header();
            let request = Request {
                host: &ctx.host,
                path: req.uri.path(),
                method: req.method.as_str(),
            };
            if let Some(router) = table.router_for(&request, ctx.tls) {
                if let Some(addr) = router.upstream {
                    ctx.upstream = Some(addr);
                    return Ok(false);
                }
                let message = format!(
                    "Router `{}` matches, but its container is not running.",
                    router.name
                );
                return self
                    .respond(
                        session,
                        Page::new(502, "not_running", "The service is down", message),
                    )
                    .await;
            }
        }
        let host = ctx.host.clone();
        self.respond(
            session,
            Page::not_found(format!("No route for host `{host}`.")),
        )
        .await
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        if let Some(failure) = ctx.recheck.take() {
            ctx.rechecked = true;
            ctx.upstream = Some(self.reach_again(ctx, failure).await?);
        }
        let addr = ctx
            .upstream
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no upstream chosen"))?;
        ctx.upstream_started = Some(Instant::now());
        let mut peer = HttpPeer::new(addr, false, String::new());
        peer.options.connection_timeout = Some(self.settings.connect_timeout);
        peer.options.read_timeout = (!ctx.upgrade).then_some(self.settings.upstream_timeout);
        peer.options.idle_timeout = Some(Duration::from_secs(90));
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        for (name, value) in Edge::forwarded(session, ctx) {
            upstream.remove_header(name);
            if let Some(value) = value {
                upstream.insert_header(name, value.into_owned())?;
            }
        }
        Ok(())
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        _fd: std::os::unix::io::RawFd,
        _digest: Option<&pingora::protocols::Digest>,
        _ctx: &mut Ctx,
    ) -> Result<()> {
        self.metrics.upstream_connection(reused);
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(started) = ctx.upstream_started {
            self.metrics.upstream_answered(started.elapsed());
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let unreachable = matches!(
            e.etype(),
            ErrorType::ConnectRefused | ErrorType::ConnectNoRoute | ErrorType::ConnectTimedout
        );
        if unreachable && ctx.sandbox.is_some() && !ctx.rechecked {
            ctx.recheck = Some(e.etype().clone());
            e.set_retry(true);
        }
        e
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let target = match (&ctx.sandbox, ctx.upstream) {
            (Some(id), Some(addr)) => format!("sandbox `{id}` (port {})", addr.port()),
            (None, Some(addr)) => format!("{addr}"),
            _ => "the app".to_string(),
        };
        // A page decided while choosing the upstream (a wake after a refusal).
        let decided = ctx.page.take();
        let page = if let Some(page) = decided {
            page
        } else {
            match e.etype() {
                ErrorType::ConnectRefused => Page::refused(&target),
                ErrorType::ConnectTimedout => Page::new(
                    504,
                    "connect_timeout",
                    "The app is not answering",
                    format!("Connecting to {target} timed out."),
                ),
                ErrorType::ReadTimedout => Page::new(
                    504,
                    "upstream_timeout",
                    "The app is not answering",
                    format!(
                        "{target} did not answer within {} s.",
                        self.settings.upstream_timeout.as_secs()
                    ),
                ),
                ErrorType::ConnectNoRoute => Page::new(
                    502,
                    "no_route",
                    "The app is unreachable",
                    format!("There is no route to {target}."),
                ),
                _ if *e.esource() == pingora::ErrorSource::Downstream => {
                    return FailToProxy {
                        error_code: 0,
                        can_reuse_downstream: false,
                    };
                }
                _ => Page::new(
                    502,
                    "bad_gateway",
                    "The app failed",
                    format!("Proxying to {target} failed: {}", e.etype().as_str()),
                ),
            }
        };
        let code = page.status;
        // Once the app's response has started, nothing more can be said.
        if session.response_written().is_none() {
            let accept = session
                .req_header()
                .headers
                .get("accept")
                .and_then(|v| v.to_str().ok());
            if let Ok((header, body)) = pages::render(&page, pages::wants_html(accept)) {
                // Pingora closes the connection after a failed proxy: say so
                // (`Connection: close`), or a client sends its next request
                // into the close.
                session.set_keepalive(None);
                if session
                    .write_response_header(Box::new(header), false)
                    .await
                    .is_ok()
                {
                    let _ = session.write_response_body(Some(body), true).await;
                }
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        self.metrics.request_done(status);
        if let Some(started) = ctx.started {
            tracing::debug!(
                host = %ctx.host,
                path = %session.req_header().uri.path(),
                status,
                ms = started.elapsed().as_millis() as u64,
                "request"
            );
        }
    }
}
