//! The relay: the edge's own path for the common request, a plain HTTP/1.1
//! GET or HEAD, to an app over a kept-alive connection.
//!
//! Pingora's proxy loop runs every request as two halves joined by
//! channels, and returns each upstream connection to a pool that spawns a
//! task to watch it, then wakes that task to get it back on the next
//! request. For the small keep-alive requests that make up a page load that
//! bookkeeping costs more than the proxying. The relay writes the request,
//! reads the answer and writes it to the client through the same Pingora
//! session, with idle connections kept in `pool` and no task per request.
//!
//! Everything else (bodies, upgrades, HTTP/2 and HTTP/1.0 clients) and any
//! request whose connection cannot be made goes through Pingora's proxy as
//! before, with its retry, wake and error pages. Once the request was
//! written, the relay answers errors itself through the same pages.

pub mod chunked;
pub mod head;
pub mod pool;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Buf, Bytes, BytesMut};
use http::{Method, Version};
use pingora::http::HeaderNameVariant;
use pingora::proxy::Session;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
// Pingora's timer wheel: registering a timeout costs less than Tokio's.
use pingora::prelude::fast_timeout::fast_timeout;
use pingora::{Error, ErrorType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::metrics::Metrics;
use head::{Framing, Head, HeadError};
use pool::Pool;

/// Bytes read from an app at a time while a body streams.
const READ_CHUNK: usize = 64 * 1024;
/// Room for the first read of an answer (its head, and all of a small
/// one). Not `READ_CHUNK`: a 64 KiB block is a page of its own to the
/// allocator, fetched from its arena on every request.
const HEAD_CHUNK: usize = 16 * 1024;
/// How often idle connections are checked.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// The largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Request fields that describe the client's connection, not the request.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("connecting to {0} failed: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("connecting to {0} timed out")]
    ConnectTimeout(SocketAddr),
    #[error("sending the request failed: {0}")]
    Write(std::io::Error),
    #[error("the app closed the connection without answering")]
    Closed,
    #[error("the app reset the connection: {0}")]
    Reset(std::io::Error),
    #[error("reading the response failed: {0}")]
    Read(std::io::Error),
    #[error("the app did not answer in time")]
    Timeout,
    #[error("the app closed the connection in the middle of its response")]
    Truncated,
    #[error(transparent)]
    Head(#[from] HeadError),
    #[error(transparent)]
    Chunked(#[from] chunked::ChunkError),
    #[error("the response head is larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("the client: {0}")]
    Downstream(Box<Error>),
}

impl RelayError {
    /// A kept-alive connection the app closed meanwhile fails like this
    /// before any byte of an answer: the request is sent again on a fresh
    /// connection (it is a GET or HEAD).
    fn stale(&self) -> bool {
        matches!(self, Self::Write(_) | Self::Closed | Self::Reset(_))
    }

    /// The one mapping to Pingora's error types, which choose the page
    /// (`Edge::fail_to_proxy`).
    pub fn into_pingora(self) -> Box<Error> {
        let etype = match &self {
            Self::Downstream(_) => None,
            Self::Connect(..) => Some(ErrorType::ConnectError),
            Self::ConnectTimeout(_) => Some(ErrorType::ConnectTimedout),
            Self::Write(_) => Some(ErrorType::WriteError),
            Self::Timeout => Some(ErrorType::ReadTimedout),
            Self::Closed | Self::Reset(_) | Self::Truncated => Some(ErrorType::ConnectionClosed),
            Self::Read(_) => Some(ErrorType::ReadError),
            Self::Head(_) | Self::HeadTooLarge | Self::Chunked(_) => {
                Some(ErrorType::InvalidHTTPHeader)
            }
        };
        match (self, etype) {
            (Self::Downstream(e), _) => e.into_down(),
            (other, etype) => {
                Error::explain(etype.unwrap_or(ErrorType::InternalError), other.to_string())
                    .into_up()
            }
        }
    }
}

/// A field the edge sets on a request for an app, replacing the client's;
/// `None` removes it.
pub type Field = (&'static str, Option<String>);

pub enum Outcome {
    /// The app's answer was relayed to the client.
    Answered,
    /// No connection could be made and nothing was sent: Pingora's proxy
    /// takes the request (and decides about refusals and wakes).
    NotConnected,
}

pub struct Relay {
    pool: Pool,
    connect_timeout: Duration,
    read_timeout: Duration,
    metrics: Metrics,
}

impl Relay {
    pub fn new(connect_timeout: Duration, read_timeout: Duration, metrics: Metrics) -> Self {
        Self {
            pool: Pool::new(64, Duration::from_secs(60)),
            connect_timeout,
            read_timeout,
            metrics,
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Whether the relay can take the request: an HTTP/1.1 GET or HEAD with
    /// no body and no upgrade.
    pub fn takes(session: &Session) -> bool {
        let req = session.req_header();
        req.version == Version::HTTP_11
            && (req.method == Method::GET || req.method == Method::HEAD)
            && !session.is_http2()
            && !session.is_upgrade_req()
            && req
                .headers
                .get("content-length")
                .is_none_or(|v| v.as_bytes() == b"0")
            && !req.headers.contains_key("transfer-encoding")
            && !req.headers.contains_key("expect")
    }

    /// The request as the app gets it (for one the relay `takes`). The
    /// client's fields are written as they came (their case kept), less the
    /// hop-by-hop ones and those in `fields`, which the edge sets. `None`
    /// for a request target with bytes no target may hold (RFC 9112 §3.2).
    pub fn request(session: &Session, fields: &[Field]) -> Option<BytesMut> {
        let req = session.req_header();
        let path = req.raw_path();
        if path.iter().any(|b| matches!(b, 0 | b'\r' | b'\n' | b' ')) {
            return None;
        }
        // Fields the client's Connection names are hop-by-hop too.
        let nominated: Vec<&str> = req
            .headers
            .get_all("connection")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        let mut out = BytesMut::with_capacity(1024);
        out.extend_from_slice(req.method.as_str().as_bytes());
        out.extend_from_slice(b" ");
        out.extend_from_slice(path);
        out.extend_from_slice(b" HTTP/1.1\r\n");
        let mut line = |name: &[u8], value: &[u8]| {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        };
        req.map(|name, value| {
            let name = match name {
                HeaderNameVariant::Case(name) => name.as_slice(),
                HeaderNameVariant::Titled(name) => name.as_bytes(),
            };
            let is = |other: &str| name.eq_ignore_ascii_case(other.as_bytes());
            let dropped = HOP_BY_HOP.iter().any(|h| is(h))
                || nominated.iter().any(|n| is(n))
                || fields.iter().any(|(f, _)| is(f));
            if !dropped {
                line(name, value.as_bytes());
            }
            Ok(())
        })
        .ok()?;
        for (name, value) in fields {
            if let Some(value) = value {
                line(name.as_bytes(), value.as_bytes());
            }
        }
        out.extend_from_slice(b"\r\n");
        Some(out)
    }

    /// Sends `request` to `addr` and relays the answer to the client.
    pub async fn forward(
        &self,
        session: &mut Session,
        addr: SocketAddr,
        request: &[u8],
    ) -> Result<Outcome, RelayError> {
        let head_request = session.req_header().method == Method::HEAD;
        let started = Instant::now();
        let mut pooled = self.pool.take(addr);
        loop {
            let reused = pooled.is_some();
            let mut stream = match pooled.take() {
                Some(stream) => stream,
                None => match self.connect(addr).await {
                    Ok(stream) => stream,
                    Err(RelayError::Connect(..)) => return Ok(Outcome::NotConnected),
                    Err(e) => return Err(e),
                },
            };
            self.metrics.upstream_connection(reused);
            let mut buf = BytesMut::with_capacity(HEAD_CHUNK);
            let head = match self
                .exchange(&mut stream, request, &mut buf, head_request)
                .await
            {
                Ok(head) => head,
                // The app closed the kept connection meanwhile: a fresh one.
                Err(e) if reused && e.stale() => {
                    tracing::debug!(%addr, error = %e, "a kept connection was closed under a request: resending it on a fresh one");
                    continue;
                }
                Err(e) => return Err(e),
            };
            self.metrics.upstream_answered(started.elapsed());
            if self.relay_body(session, &mut stream, buf, head).await? {
                self.pool.put(addr, stream);
            }
            return Ok(Outcome::Answered);
        }
    }

    async fn connect(&self, addr: SocketAddr) -> Result<TcpStream, RelayError> {
        let stream = fast_timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| RelayError::ConnectTimeout(addr))?
            .map_err(|e| RelayError::Connect(addr, e))?;
        stream
            .set_nodelay(true)
            .map_err(|e| RelayError::Connect(addr, e))?;
        Ok(stream)
    }

    /// Writes the request and reads the response head (informational
    /// heads are skipped). What follows the head stays in `buf`.
    async fn exchange(
        &self,
        stream: &mut TcpStream,
        request: &[u8],
        buf: &mut BytesMut,
        head_request: bool,
    ) -> Result<Head, RelayError> {
        fast_timeout(self.read_timeout, stream.write_all(request))
            .await
            .map_err(|_| RelayError::Timeout)?
            .map_err(RelayError::Write)?;
        loop {
            if !buf.is_empty() {
                if let Some(head) = head::parse(buf, head_request)? {
                    buf.advance(head.len);
                    if head.header.status.is_informational() {
                        continue;
                    }
                    return Ok(head);
                }
                if buf.len() >= MAX_HEAD {
                    return Err(RelayError::HeadTooLarge);
                }
            }
            let first = buf.is_empty();
            match self.read(stream, buf, HEAD_CHUNK).await {
                Ok(0) if first => return Err(RelayError::Closed),
                Ok(0) => return Err(RelayError::Truncated),
                Ok(_) => {}
                Err(RelayError::Read(e)) if first => return Err(RelayError::Reset(e)),
                Err(e) => return Err(e),
            }
        }
    }

    async fn read(
        &self,
        stream: &mut TcpStream,
        buf: &mut BytesMut,
        room: usize,
    ) -> Result<usize, RelayError> {
        buf.reserve(room);
        fast_timeout(self.read_timeout, stream.read_buf(buf))
            .await
            .map_err(|_| RelayError::Timeout)?
            .map_err(RelayError::Read)
    }

    /// Writes the head and body to the client as they arrive. A body read
    /// together with the head leaves in the same write. `Ok(true)` when the
    /// connection can serve another request.
    async fn relay_body(
        &self,
        session: &mut Session,
        stream: &mut TcpStream,
        mut buf: BytesMut,
        head: Head,
    ) -> Result<bool, RelayError> {
        let Head {
            header,
            framing,
            keep_alive,
            ..
        } = head;
        let empty = framing == Framing::Empty;
        session
            .write_response_header(Box::new(header), empty)
            .await
            .map_err(RelayError::Downstream)?;
        match framing {
            Framing::Empty => {
                send(session, None, true).await?;
            }
            Framing::Length(mut left) => loop {
                if !buf.is_empty() {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    left -= take as u64;
                    send(session, Some(buf.split_to(take).freeze()), left == 0).await?;
                }
                if left == 0 {
                    break;
                }
                if self.read(stream, &mut buf, READ_CHUNK).await? == 0 {
                    return Err(RelayError::Truncated);
                }
            },
            Framing::Chunked => {
                let mut decoder = chunked::Decoder::default();
                let mut out = Vec::new();
                loop {
                    decoder.decode(&mut buf, &mut out)?;
                    let data = match out.len() {
                        0 => None,
                        1 => out.pop(),
                        _ => Some(
                            out.drain(..)
                                .fold(BytesMut::new(), |mut all, piece| {
                                    all.extend_from_slice(&piece);
                                    all
                                })
                                .freeze(),
                        ),
                    };
                    send(session, data, decoder.done()).await?;
                    if decoder.done() {
                        break;
                    }
                    if self.read(stream, &mut buf, READ_CHUNK).await? == 0 {
                        return Err(RelayError::Truncated);
                    }
                }
            }
            Framing::UntilClose => loop {
                if !buf.is_empty() {
                    send(session, Some(buf.split().freeze()), false).await?;
                }
                if self.read(stream, &mut buf, READ_CHUNK).await? == 0 {
                    send(session, None, true).await?;
                    return Ok(false);
                }
            },
        }
        // Bytes after the response: the app is confused; do not reuse.
        Ok(keep_alive && buf.is_empty())
    }
}

/// Closes idle connections that expired or that their app closed, every
/// few seconds, so that stopped sandboxes do not hold sockets open here.
pub struct Sweeper {
    pub relay: Arc<Relay>,
}

#[async_trait]
impl BackgroundService for Sweeper {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.relay.pool.sweep(),
                _ = shutdown.changed() => return,
            }
        }
    }
}

async fn send(session: &mut Session, data: Option<Bytes>, end: bool) -> Result<(), RelayError> {
    session
        .write_response_body(data, end)
        .await
        .map_err(RelayError::Downstream)
}
