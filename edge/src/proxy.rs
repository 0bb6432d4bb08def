//! The `ProxyHttp` implementation: decide where a request goes (a sandbox's
//! port, waking it first, or a Traefik router's service), then let Pingora
//! proxy it. The decisions live in `routes`, `wake` and `preview_auth`;
//! this file only strings them together.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType};

use crate::activity::{Activity, Open};
use crate::config::Settings;
use crate::control::{Control, ControlError};
use crate::host;
use crate::metrics::Metrics;
use crate::pages::{self, Page};
use crate::preview_auth::{self, PreviewAuth};
use crate::relay::{Field, Outcome, Relay};
use crate::routes::Routes;
use crate::routes::rule::Request;
use crate::wake::{self, Waker};

/// How long control's "no such sandbox" is believed, so that random hosts
/// do not each cost a call to control.
const NEGATIVE_TTL: Duration = Duration::from_secs(2);
/// Unknown ids remembered at most.
const NEGATIVE_KEPT: usize = 10_000;

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
    /// Look-ups of sandboxes the route table does not know: a scan of
    /// random hosts may not turn into a stream of calls to control.
    pub lookups: Mutex<RateLimit>,
}

/// A token bucket: `burst` calls at once, refilled at `per_second`.
pub struct RateLimit {
    tokens: f64,
    at: Instant,
    per_second: f64,
    burst: f64,
}

impl RateLimit {
    pub fn new(per_second: f64, burst: f64) -> Self {
        Self {
            tokens: burst,
            at: Instant::now(),
            per_second,
            burst,
        }
    }

    /// Takes one call if there is one left.
    pub fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What a look-up of a sandbox found.
enum Described {
    Found(Vec<u16>, bool),
    Unknown,
    /// Too many look-ups of unknown ids lately: not asked.
    Limited,
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
    /// Connecting failed: check with Docker whether the sandbox stopped
    /// meanwhile (the route table lags Docker by its event's latency) and
    /// wake it, once.
    recheck: bool,
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

    fn recently_unknown(&self, id: &str) -> bool {
        let mut unknown = self.unknown.lock().unwrap_or_else(PoisonError::into_inner);
        unknown.retain(|_, at| at.elapsed() < NEGATIVE_TTL);
        unknown.contains_key(id)
    }

    /// Ports and visibility of a sandbox: from the route table, or from
    /// control when Docker knows no container for it (never created, or
    /// removed behind berth's back: control recreates it on wake).
    async fn describe(&self, id: &str) -> std::result::Result<Described, ControlError> {
        if let Some(entry) = self.routes.load().sandbox(id) {
            return Ok(Described::Found(entry.ports.clone(), entry.public));
        }
        if self.recently_unknown(id) {
            self.metrics.lookup("cached");
            return Ok(Described::Unknown);
        }
        if !self
            .lookups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            self.metrics.lookup("limited");
            return Ok(Described::Limited);
        }
        let asked = self.control.sandbox(id).await;
        self.metrics.lookup(match &asked {
            Ok(Some(_)) => "found",
            Ok(None) => "unknown",
            Err(_) => "error",
        });
        match asked? {
            Some(remote) => Ok(Described::Found(remote.ports, remote.public)),
            None => {
                let mut unknown = self.unknown.lock().unwrap_or_else(PoisonError::into_inner);
                if unknown.len() < NEGATIVE_KEPT {
                    unknown.insert(id.to_string(), Instant::now());
                }
                Ok(Described::Unknown)
            }
        }
    }

    /// Private sandboxes: `Ok(true)` when the request was answered here
    /// (refused, or redirected to drop the token from the URL).
    async fn authorize(&self, session: &mut Session, ctx: &mut Ctx, id: &str) -> Result<bool> {
        let req = session.req_header();
        let query = req.uri.query().unwrap_or("").to_string();
        let (query_token, rest) = preview_auth::take_query_token(&query);
        if let Some(token) = query_token {
            let Some(exp) = self.auth.check(&token, id).await else {
                return self
                    .respond(
                        session,
                        Page::new(
                            401,
                            "unauthorized",
                            "Private preview",
                            "This preview link is not valid or has expired.",
                        ),
                    )
                    .await;
            };
            let path = session.req_header().uri.path().to_string();
            let location = if rest.is_empty() {
                path
            } else {
                format!("{path}?{rest}")
            };
            let secure = if ctx.tls { "; Secure" } else { "" };
            let cookie = format!(
                "{}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
                preview_auth::COOKIE,
                PreviewAuth::seconds_left(exp)
            );
            let mut header = ResponseHeader::build(302, Some(4))?;
            header.insert_header("location", location)?;
            header.insert_header("set-cookie", cookie)?;
            header.insert_header("cache-control", "no-store")?;
            header.insert_header("content-length", "0")?;
            session
                .write_response_header(Box::new(header), true)
                .await?;
            return Ok(true);
        }
        let cookies = preview_auth::cookie_values(
            req.headers
                .get_all("cookie")
                .iter()
                .filter_map(|v| v.to_str().ok()),
            preview_auth::COOKIE,
        );
        match self.auth.check_any(cookies, id).await {
            Some(_) => Ok(false),
            None => {
                self.respond(
                    session,
                    Page::new(401, "unauthorized", "Private preview", "This sandbox's preview is private: open it with a link that carries a preview token."),
                )
                .await
            }
        }
    }

    /// Routes a preview host: `Ok(true)` when the request was answered here.
    async fn preview(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        id: String,
        port: u16,
    ) -> Result<bool> {
        let (ports, public) = match self.describe(&id).await {
            Ok(Described::Found(ports, public)) => (ports, public),
            Ok(Described::Unknown) => {
                return self
                    .respond(
                        session,
                        Page::not_found(format!("There is no sandbox `{id}` here.")),
                    )
                    .await;
            }
            Ok(Described::Limited) => {
                let mut page = Page::new(
                    503,
                    "lookup_limited",
                    "Too many requests for unknown sandboxes",
                    format!("Sandbox `{id}` could not be looked up right now. Try again."),
                );
                page.retry_after = Some(1);
                return self.respond(session, page).await;
            }
            Err(e) => {
                return self
                    .respond(
                        session,
                        Page::new(
                            502,
                            "control_unreachable",
                            "berth is not answering",
                            format!("The control plane could not be asked about this sandbox: {e}"),
                        ),
                    )
                    .await;
            }
        };
        if !ports.contains(&port) {
            return self
                .respond(
                    session,
                    Page::not_found(format!("Sandbox `{id}` does not serve port {port}.")),
                )
                .await;
        }
        if !public && self.authorize(session, ctx, &id).await? {
            return Ok(true);
        }
        // berth's credentials never reach an app, public or private.
        ctx.strip_cookie = true;
        Self::strip_query_token(session)?;
        ctx._open = Some(self.activity.open(&id));
        ctx.sandbox = Some(id.clone());
        ctx.port = port;
        ctx.html = session.req_header().method == http::Method::GET
            && pages::wants_html(
                session
                    .req_header()
                    .headers
                    .get("accept")
                    .and_then(|v| v.to_str().ok()),
            );
        match self.reach(&id, port, ctx.html).await {
            Ok(addr) => {
                ctx.upstream = Some(addr);
                self.relay_or_proxy(session, ctx).await
            }
            Err(page) => self.respond(session, page).await,
        }
    }

    /// Removes `?berth_token=` from the request an app will see.
    fn strip_query_token(session: &mut Session) -> Result<()> {
        let uri = &session.req_header().uri;
        let Some(query) = uri.query() else {
            return Ok(());
        };
        let (token, rest) = preview_auth::take_query_token(query);
        if token.is_none() {
            return Ok(());
        }
        let path = uri.path();
        let path_and_query = if rest.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{rest}")
        };
        // Scheme and authority (h2, absolute-form) stay as they were.
        let mut parts = uri.clone().into_parts();
        parts.path_and_query = Some(
            http::uri::PathAndQuery::try_from(path_and_query)
                .map_err(|e| Error::explain(ErrorType::InvalidHTTPHeader, e.to_string()))?,
        );
        let stripped = http::Uri::from_parts(parts)
            .map_err(|e| Error::explain(ErrorType::InvalidHTTPHeader, e.to_string()))?;
        session.req_header_mut().set_uri(stripped);
        Ok(())
    }

    /// The upstream is chosen: the relay answers a plain GET or HEAD on
    /// the edge's own keep-alive path; anything else, or a request whose
    /// connection could not be made, goes to Pingora's proxy (`Ok(false)`).
    async fn relay_or_proxy(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let Some(addr) = ctx.upstream else {
            return Ok(false);
        };
        if !self.settings.relay || !Relay::takes(session) {
            return Ok(false);
        }
        let Some(request) = Relay::request(session, &Self::forwarded(session, ctx)) else {
            return Ok(false);
        };
        match self.relay.forward(session, addr, &request).await {
            Ok(Outcome::Answered) => Ok(true),
            Ok(Outcome::NotConnected) => Ok(false),
            Err(e) => Err(e.into_pingora()),
        }
    }

    /// The fields the edge sets on a request for an app, each replacing
    /// the client's (`None` removes it): X-Forwarded-*, X-Real-IP, and the
    /// cookie without the preview cookie.
    fn forwarded(session: &Session, ctx: &Ctx) -> Vec<Field> {
        let req = session.req_header();
        let mut fields = Vec::with_capacity(5);
        if let Some(client) = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_string())
        {
            let chain = match req
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
            {
                Some(prior) => format!("{prior}, {client}"),
                None => client.clone(),
            };
            fields.push(("x-forwarded-for", Some(chain)));
            fields.push(("x-real-ip", Some(client)));
        }
        let proto = if ctx.tls { "https" } else { "http" };
        fields.push(("x-forwarded-proto", Some(proto.to_string())));
        if !ctx.host.is_empty() {
            fields.push(("x-forwarded-host", Some(ctx.host.clone())));
        }
        if ctx.strip_cookie {
            // The preview cookie is berth's, not the app's.
            let kept: Vec<String> = req
                .headers
                .get_all("cookie")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .filter_map(|h| preview_auth::without_cookie(h, preview_auth::COOKIE))
                .collect();
            fields.push(("cookie", (!kept.is_empty()).then(|| kept.join("; "))));
        }
        fields
    }

    /// The address of a sandbox's port once it accepts connections: at once
    /// when the sandbox runs, else after waking it (holding the request). A
    /// browser that would wait long gets a page that reloads itself.
    async fn reach(
        &self,
        id: &str,
        port: u16,
        html: bool,
    ) -> std::result::Result<SocketAddr, Page> {
        let budget = if html {
            self.settings
                .starting_page_after
                .min(self.settings.wake_timeout)
        } else {
            self.settings.wake_timeout
        };
        let deadline = Instant::now() + budget;
        if let Some(addr) = self.routes.sandbox_upstream(id, port) {
            if self.waker.is_warming(id, port) {
                return self.wait_for_app(id, addr, deadline, html, budget).await;
            }
            return Ok(addr);
        }

        // Stopped: wake it, holding the request.
        match tokio::time::timeout(budget, self.waker.wake(id)).await {
            Ok(Ok(())) => {}
            Ok(Err(ControlError::NotFound)) => {
                return Err(Page::not_found(format!("There is no sandbox `{id}` here.")));
            }
            Ok(Err(ControlError::Refused {
                status: 503,
                message,
                ..
            })) => {
                let mut page = Page::new(
                    503,
                    "sandbox_capacity",
                    "Not enough room right now",
                    message,
                );
                page.retry_after = Some(30);
                return Err(page);
            }
            Ok(Err(e)) => {
                return Err(Page::new(
                    502,
                    "wake_failed",
                    "The sandbox could not start",
                    e.to_string(),
                ));
            }
            Err(_) if html => return Err(Page::starting(id)),
            Err(_) => return Err(Self::wake_timeout_page(id, budget)),
        }
        let Some(addr) = self.routes.sandbox_upstream(id, port) else {
            return Err(Page::new(
                502,
                "no_address",
                "The sandbox has no address",
                "It started, but Docker reports no address for it yet. Try again.",
            ));
        };
        self.wait_for_app(id, addr, deadline, html, budget).await
    }

    /// Holds a request until a freshly woken app accepts connections.
    async fn wait_for_app(
        &self,
        id: &str,
        addr: SocketAddr,
        deadline: Instant,
        html: bool,
        budget: Duration,
    ) -> std::result::Result<SocketAddr, Page> {
        let waiting = Instant::now();
        if !wake::wait_for_port(addr, deadline).await {
            if html {
                return Err(Page::starting(id));
            }
            let message = format!(
                "Sandbox `{id}` woke up, but nothing accepted connections on port {} within {} s.",
                addr.port(),
                budget.as_secs()
            );
            return Err(Page::new(
                504,
                "app_not_listening",
                "The app is not answering",
                message,
            ));
        }
        tracing::debug!(sandbox = %id, port = addr.port(), ms = waiting.elapsed().as_millis() as u64, "the app accepts connections");
        self.waker.port_ready(id, addr.port());
        Ok(addr)
    }

    /// After a refused connection: is the sandbox still running? Docker is
    /// asked (not the route table, which may lag), and a sandbox that
    /// stopped is woken. `Err` carries what to answer.
    async fn reach_again(&self, ctx: &mut Ctx) -> Result<SocketAddr> {
        let (Some(id), Some(failed)) = (ctx.sandbox.clone(), ctx.upstream) else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "no sandbox to recheck",
            ));
        };
        let container = self
            .routes
            .load()
            .sandbox(&id)
            .map(|e| e.container_id.clone());
        if let Some(container) = container {
            if let Err(e) = self.waker.refresh(&container).await {
                tracing::warn!(sandbox = %id, error = %e, "could not recheck a sandbox with Docker");
            }
        }
        if self.routes.sandbox_upstream(&id, ctx.port) == Some(failed) {
            // It runs where we knocked: the app itself refuses.
            return Err(Error::explain(
                ErrorType::ConnectRefused,
                "the app refused the connection",
            ));
        }
        tracing::info!(sandbox = %id, "the sandbox stopped or moved under a request: waking it");
        match self.reach(&id, ctx.port, ctx.html).await {
            Ok(addr) => Ok(addr),
            Err(page) => {
                ctx.page = Some(page);
                Err(Error::explain(
                    ErrorType::Custom("answered"),
                    "a page was chosen",
                ))
            }
        }
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

    fn wake_timeout_page(id: &str, budget: Duration) -> Page {
        Page::new(
            504,
            "wake_timeout",
            "The sandbox is taking too long",
            format!(
                "Sandbox `{id}` did not start within {} s.",
                budget.as_secs()
            ),
        )
    }
}

#[async_trait]
impl ProxyHttp for Edge {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        ctx.started = Some(Instant::now());
        ctx.host = Self::request_host(session);
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
            let entrypoint = if ctx.tls { "websecure" } else { "web" };
            if let Some(router) = table.router(&request, entrypoint, ctx.tls) {
                if let Some(addr) = router.upstream {
                    ctx.upstream = Some(addr);
                    return self.relay_or_proxy(session, ctx).await;
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
        if std::mem::take(&mut ctx.recheck) {
            ctx.rechecked = true;
            ctx.upstream = Some(self.reach_again(ctx).await?);
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
        for (name, value) in Self::forwarded(session, ctx) {
            upstream.remove_header(name);
            if let Some(value) = value {
                upstream.insert_header(name, value)?;
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
        let refused = matches!(
            e.etype(),
            ErrorType::ConnectRefused | ErrorType::ConnectNoRoute
        );
        if refused && ctx.sandbox.is_some() && !ctx.rechecked {
            ctx.recheck = true;
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
                ErrorType::ConnectRefused => Page::new(
                    502,
                    "connection_refused",
                    "The app is not running",
                    format!("Nothing accepts connections on {target}: connection refused."),
                ),
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
