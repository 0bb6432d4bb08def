//! The relay: the edge's own path for the common request, a plain HTTP/1.1
//! GET or HEAD, to an app over a kept-alive connection, answered straight
//! to the client's connection.
//!
//! Pingora's proxy loop runs every request as two halves joined by
//! channels, builds and serializes a header map each way, and returns each
//! upstream connection to a pool that spawns a task to watch it. For the
//! small keep-alive requests that make up a page load that bookkeeping
//! costs more than the proxying. The front door (`crate::front`) reads
//! such a request itself and hands it here: `request` builds what the app
//! gets, the relay sends it on a kept connection from `pool`, parses the
//! answer's head (`head`) and writes head and body to the client
//! (`client`), with no task and no header map per request.
//!
//! Everything else (bodies, upgrades, HTTP/2 and HTTP/1.0 clients, private
//! previews without a valid cookie, sandboxes that sleep) and any request
//! whose connection cannot be made goes through Pingora's proxy, with its
//! retry, wake and error pages. Once the request was written, the relay's
//! errors map to the same pages (`RelayError::page`).

pub mod chunked;
pub mod client;
pub mod head;
pub mod pool;
pub mod request;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Buf, BytesMut};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
// Timeouts on Tokio's timer: with a runtime per thread its wheel is the
// thread's own. Pingora's `fast_timeout` shares its buckets (an `RwLock`, a
// `Notify` per 10 ms) among all threads, and its locks showed at 7 % of the
// proxy's CPU with two timeouts per request.
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::metrics::Metrics;
use crate::pages::Page;
use client::Client;
use head::{Framing, Head, HeadError};
use pool::Pool;

pub use request::Field;

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
    Downstream(std::io::Error),
}

impl RelayError {
    /// A kept-alive connection the app closed meanwhile fails like this
    /// before any byte of an answer: the request is sent again on a fresh
    /// connection (it is a GET or HEAD).
    fn stale(&self) -> bool {
        matches!(self, Self::Write(_) | Self::Closed | Self::Reset(_))
    }

    /// The page the client gets (the one mapping of these errors): the
    /// same codes Pingora's path answers with (`Edge::fail_to_proxy`).
    /// `None` when the client itself failed: nothing can be said to it.
    pub fn page(&self, target: &str, upstream_timeout: Duration) -> Option<Page> {
        Some(match self {
            Self::Downstream(_) => return None,
            Self::ConnectTimeout(_) => Page::new(
                504,
                "connect_timeout",
                "The app is not answering",
                format!("Connecting to {target} timed out."),
            ),
            Self::Timeout => Page::new(
                504,
                "upstream_timeout",
                "The app is not answering",
                format!(
                    "{target} did not answer within {} s.",
                    upstream_timeout.as_secs()
                ),
            ),
            other => Page::new(
                502,
                "bad_gateway",
                "The app failed",
                format!("Proxying to {target} failed: {other}"),
            ),
        })
    }
}

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
            pool: Pool::new(64, Duration::from_secs(60), SWEEP_EVERY),
            connect_timeout,
            read_timeout,
            metrics,
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    /// Sends `request` to `addr` and relays the answer to `client`.
    pub async fn forward<W: AsyncWrite + Unpin + Send>(
        &self,
        client: &mut Client<'_, W>,
        addr: SocketAddr,
        request: &[u8],
        head_request: bool,
    ) -> Result<Outcome, RelayError> {
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
            if self.relay_body(client, &mut stream, buf, head).await? {
                self.pool.put(addr, stream);
            }
            return Ok(Outcome::Answered);
        }
    }

    async fn connect(&self, addr: SocketAddr) -> Result<TcpStream, RelayError> {
        let stream = timeout(self.connect_timeout, TcpStream::connect(addr))
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
        // A request fits the socket's send buffer at once, as a rule: then
        // no timer is armed for the write.
        let sent = match stream.try_write(request) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(RelayError::Write(e)),
        };
        if sent < request.len() {
            timeout(self.read_timeout, stream.write_all(&request[sent..]))
                .await
                .map_err(|_| RelayError::Timeout)?
                .map_err(RelayError::Write)?;
        }
        loop {
            if !buf.is_empty() {
                if let Some(head) = head::parse(buf, head_request)? {
                    buf.advance(head.len);
                    if (100..200).contains(&head.status) {
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
        timeout(self.read_timeout, stream.read_buf(buf))
            .await
            .map_err(|_| RelayError::Timeout)?
            .map_err(RelayError::Read)
    }

    /// Writes the head and body to the client as they arrive. A body read
    /// together with the head leaves in the same write. `Ok(true)` when the
    /// app's connection can serve another request.
    async fn relay_body<W: AsyncWrite + Unpin + Send>(
        &self,
        client: &mut Client<'_, W>,
        stream: &mut TcpStream,
        mut buf: BytesMut,
        head: Head,
    ) -> Result<bool, RelayError> {
        let (framing, keep_alive) = (head.framing, head.keep_alive);
        client.head(head);
        match framing {
            Framing::Empty => {
                send(client, &[], true).await?;
            }
            Framing::Length(mut left) => loop {
                if !buf.is_empty() {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    left -= take as u64;
                    send(client, &buf[..take], left == 0).await?;
                    buf.advance(take);
                }
                if left == 0 {
                    break;
                }
                buf.clear();
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
                        0 | 1 => out.pop().unwrap_or_default(),
                        _ => out
                            .drain(..)
                            .fold(BytesMut::new(), |mut all, piece| {
                                all.extend_from_slice(&piece);
                                all
                            })
                            .freeze(),
                    };
                    send(client, &data, decoder.done()).await?;
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
                    send(client, &buf, false).await?;
                    buf.clear();
                }
                if self.read(stream, &mut buf, READ_CHUNK).await? == 0 {
                    send(client, &[], true).await?;
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

async fn send<W: AsyncWrite + Unpin + Send>(
    client: &mut Client<'_, W>,
    data: &[u8],
    end: bool,
) -> Result<(), RelayError> {
    client.body(data, end).await.map_err(RelayError::Downstream)
}
