//! The front door: the edge's own connection loop in front of Pingora's.
//!
//! Every connection the proxy listeners accept lands here. A plain HTTP/1.1
//! GET or HEAD for an app that runs (`request::read` says which, the
//! proxy's `Edge::direct` says where) is served here: the relay sends it
//! on a kept connection and writes the answer straight to the client, with
//! no per-request session, header map or task. Every other request
//! (bodies, upgrades, HTTP/1.0, pipelined ones, private previews without
//! a valid cookie, wakes, pages, redirects), and every request whose app
//! refused the connection, is handed to Pingora's proxy whole (its bytes
//! as already read), which answers it exactly as before; the connection
//! then comes back here for its next request. HTTP/2 (ALPN or cleartext
//! prior knowledge) goes to Pingora for the connection's life.
//!
//! Idle connections wait at most `KEEPALIVE` for their next request and
//! close when the edge shuts down; a request in flight is finished first.

pub mod closing;
pub mod local;
pub mod request;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::BytesMut;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{ALPN, Stream};
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use tokio::io::AsyncReadExt;

use crate::activity::Open;
use crate::pages;
use crate::proxy::{Asked, Edge, Proxy};
use crate::relay::client::Client;
use crate::relay::request::{self as upstream_request, Origin};
use crate::relay::{Outcome, RelayError};
use closing::Closing;
use local::Local;
use request::{MAX_HEAD, Plain, Verdict};

/// Pingora buffers writes to a client in 1460 bytes (one MSS) by default, so
/// a response header and a small body that do not fit in that together leave
/// in two writes: two TCP segments, two wake-ups of the client. With 16 KiB
/// (one TLS record) they leave in one. Latency does not suffer: Pingora
/// flushes at the end of every response, after every chunk of a chunked or
/// close-delimited one and on every WebSocket frame; the relay's writer
/// flushes after every piece.
pub const CLIENT_WRITE_BUFFER: usize = 16 * 1024;
/// How long an idle client connection waits for its next request, at
/// least; at most twice that. One timer per connection checks every
/// `KEEPALIVE` whether a request was served meanwhile: no timer is armed,
/// and no clock read, per request.
const KEEPALIVE: Duration = Duration::from_secs(30);
/// Room for a request head (most fit in one read).
const HEAD_ROOM: usize = 4 * 1024;
/// The first bytes of a cleartext HTTP/2 connection (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub struct FrontDoor {
    edge: Arc<Edge>,
    proxy: Arc<HttpProxy<Proxy>>,
    closing: Closing,
}

/// How the front door's attempt at a request ended.
enum Served {
    /// Answered; the connection serves another request if `true`.
    Answered(bool),
    /// Pingora's proxy takes it.
    Declined,
}

impl FrontDoor {
    pub fn new(edge: Arc<Edge>, proxy: HttpProxy<Proxy>) -> Self {
        Self {
            edge,
            proxy: Arc::new(proxy),
            closing: Closing::default(),
        }
    }

    /// HTTP/1 requests on one connection, until it closes; `buf` holds
    /// the bytes already read from it.
    async fn serve(&self, mut stream: Stream, mut buf: BytesMut, shutdown: &ShutdownWatch) {
        let tls = stream.get_ssl_digest().is_some();
        let client = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let watch = self.closing.watch();
        let idle = tokio::time::sleep(KEEPALIVE);
        tokio::pin!(idle);
        let mut served = false;
        loop {
            if buf.is_empty() && self.closing.is_closed() {
                return;
            }
            // The next request's head.
            let outcome = loop {
                if !buf.is_empty() {
                    let mut fields = request::fields();
                    match request::read(&buf, &mut fields) {
                        Verdict::Partial if buf.len() < MAX_HEAD => {}
                        Verdict::Plain(req) => {
                            let closing = self.closing.is_closed();
                            break self.direct(&mut stream, &req, tls, client, closing).await;
                        }
                        Verdict::Partial | Verdict::Pingora => break Served::Declined,
                    }
                }
                let waiting = buf.is_empty();
                buf.reserve(HEAD_ROOM);
                let read = tokio::select! {
                    biased;
                    read = stream.read_buf(&mut buf) => read,
                    // Idle when the edge shuts down: close. A request
                    // begun is read and answered.
                    _ = watch.closed(), if waiting => return,
                    _ = &mut idle => {
                        if !served {
                            // No request for a whole period, or a head
                            // that did not arrive in one: close.
                            return;
                        }
                        served = false;
                        idle.as_mut().reset(tokio::time::Instant::now() + KEEPALIVE);
                        continue;
                    }
                };
                match read {
                    Ok(n) if n > 0 => {}
                    // Closed by the client, or failed.
                    _ => return,
                }
            };
            served = true;
            match outcome {
                Served::Answered(true) => buf.clear(),
                Served::Answered(false) => return,
                Served::Declined => {
                    let prefix = std::mem::replace(&mut buf, BytesMut::with_capacity(HEAD_ROOM));
                    match self.to_pingora(stream, prefix, shutdown).await {
                        Some(kept) => stream = kept,
                        None => return,
                    }
                }
            }
        }
    }

    /// One request through Pingora's proxy, its bytes read so far in
    /// `prefix`: the connection, if it can serve another request.
    async fn to_pingora(
        &self,
        stream: Stream,
        prefix: BytesMut,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let mut session = ServerSession::new_http1(stream);
        session.set_keepalive((!*shutdown.borrow()).then_some(KEEPALIVE.as_secs()));
        session.set_pipelined_prefix(prefix);
        let reused = self.proxy.process_new_http(session, shutdown).await?;
        // Pipelining is off in Pingora's sessions: a reusable connection
        // holds no bytes of a next request.
        let (stream, _settings) = reused.consume();
        Some(stream)
    }

    /// Serves a plain request, or declines it (nothing was written).
    async fn direct(
        &self,
        stream: &mut Stream,
        req: &Plain<'_, '_>,
        tls: bool,
        client: Option<IpAddr>,
        closing: bool,
    ) -> Served {
        let edge = &self.edge;
        let started = tracing::enabled!(tracing::Level::DEBUG).then(Instant::now);
        let cookies: Vec<&str> = req.values("cookie").collect();
        let asked = Asked {
            host: &req.host,
            path: req.path,
            query: req.query,
            method: req.method,
            tls,
            cookies: &cookies,
        };
        let Some(direct) = edge.direct(&asked).await else {
            return Served::Declined;
        };
        // An open request is activity; berth's credentials never reach an
        // app (a preview host's cookie loses `berth_preview`).
        let addr = direct.addr;
        let open = direct.sandbox.map(|id| edge.activity.open(id));
        let sandbox = open.as_ref().map(Open::id);
        let set = upstream_request::forwarded(&Origin {
            client,
            forwarded_for: req.values("x-forwarded-for").next(),
            tls,
            host: &req.host,
            cookies: sandbox.is_some().then_some(cookies.as_slice()),
        });
        let request = upstream_request::build(req.method, req.target, req.fields, &set);
        let close = req.close || closing;
        let mut answer = Client::new(stream, close);
        let result = edge
            .relay
            .forward(&mut answer, addr, &request, req.head_request)
            .await;
        let keep = match result {
            Ok(Outcome::Answered) => !close,
            Ok(Outcome::NotConnected) => return Served::Declined,
            Err(e) => {
                let target = match sandbox {
                    Some(id) => format!("sandbox `{id}` (port {})", addr.port()),
                    None => addr.to_string(),
                };
                match &e {
                    RelayError::Downstream(_) => {
                        tracing::debug!(host = %req.host, error = %e, "the client went away")
                    }
                    _ => {
                        tracing::warn!(host = %req.host, error = %e, "proxying to {target} failed")
                    }
                }
                // Once the app's answer began, nothing more can be said.
                if answer.status().is_none() {
                    if let Some(page) = e.page(&target, edge.relay.read_timeout()) {
                        let html = pages::wants_html(req.values("accept").next());
                        if let Ok((header, body)) = pages::render(&page, html) {
                            let _ = answer.page(&header, &body).await;
                        }
                    }
                }
                false
            }
        };
        let status = answer.status().unwrap_or(0);
        edge.metrics.request_done(status);
        tracing::debug!(
            host = %req.host,
            path = %req.path,
            status,
            ms = started.map_or(0, |s| s.elapsed().as_millis() as u64),
            "request"
        );
        Served::Answered(keep)
    }
}

#[async_trait]
impl ServerApp for FrontDoor {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let h1 = matches!(stream.selected_alpn_proto(), None | Some(ALPN::H1));
        if !self.edge.settings.relay || !h1 {
            return ServerApp::process_new(&self.proxy, stream, shutdown).await;
        }
        let mut first = BytesMut::with_capacity(HEAD_ROOM);
        if self.edge.settings.h2c && stream.get_ssl_digest().is_none() {
            // Cleartext HTTP/2 starts with its preface: read until the
            // first bytes tell, and give them back to Pingora if they are.
            loop {
                match tokio::time::timeout(KEEPALIVE, stream.read_buf(&mut first)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return None,
                }
                let seen = first.len().min(H2_PREFACE.len());
                if first[..seen] != H2_PREFACE[..seen] {
                    break;
                }
                if seen == H2_PREFACE.len() {
                    if !stream.as_any().is::<L4Stream>() {
                        return None;
                    }
                    let Ok(mut l4) = stream.into_any().downcast::<L4Stream>() else {
                        return None;
                    };
                    l4.rewind(&first);
                    return ServerApp::process_new(&self.proxy, l4, shutdown).await;
                }
            }
        }
        self.serve(Local::adopt(stream, CLIENT_WRITE_BUFFER), first, shutdown)
            .await;
        None
    }

    /// The listeners stopped: idle connections close, Pingora's too.
    async fn cleanup(&self) {
        self.closing.close();
        self.proxy.http_cleanup().await;
    }
}
