//! A plain TCP client connection moved to the thread that serves it.
//!
//! Pingora accepts every connection on the thread that runs the listener's
//! accept loop, so the socket is registered with that thread's reactor, and
//! then hands the connection to a thread picked at random. For each
//! connection the pick lands elsewhere, every readiness event of the
//! client's socket woke the accepting thread, which then woke the serving
//! one through its eventfd: two wake-ups and a system call more per request
//! (measured: about 3 µs of CPU per request; with one thread the edge
//! used as much CPU per request as nginx). `Local` registers a duplicate of
//! the socket with the serving thread's reactor and closes the original;
//! it is a Pingora `IO` like the original, so a request handed to Pingora
//! reads and writes it the same way, with the same 16 KiB write buffer.
//!
//! A TLS connection keeps its thread: its state lives in the stream.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter, ReadBuf};
use tokio::net::TcpStream;

#[derive(Debug)]
pub struct Local {
    io: BufWriter<TcpStream>,
    socket: Arc<SocketDigest>,
    timing: Vec<Option<TimingDigest>>,
}

impl Local {
    /// The same connection on this thread's reactor; the stream as it was
    /// when it is not a plain TCP connection of Pingora's (TLS) or the
    /// socket cannot be duplicated.
    pub fn adopt(stream: Stream, write_buffer: usize) -> Stream {
        if stream.get_ssl_digest().is_some() || !stream.as_any().is::<L4Stream>() {
            return stream;
        }
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().cloned());
        let timing = stream.get_timing_digest();
        let Ok(tcp) = duplicate(stream.id()).and_then(|fd| {
            let std = std::net::TcpStream::from(fd);
            std.set_nonblocking(true)?;
            TcpStream::from_std(std)
        }) else {
            return stream;
        };
        // Closes the original: its registration with the accepting
        // thread's reactor goes with it.
        drop(stream);
        let socket = SocketDigest::from_raw_fd(tcp.as_raw_fd());
        if let Some(peer) = peer {
            let _ = socket.peer_addr.set(Some(peer));
        }
        Box::new(Local {
            io: BufWriter::with_capacity(write_buffer, tcp),
            socket: Arc::new(socket),
            timing,
        })
    }
}

/// A duplicate of a socket the caller's stream holds open.
#[allow(unsafe_code)]
fn duplicate(fd: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: `fd` is the descriptor of the stream `adopt` holds (its
    // `UniqueID`), open for the whole of this call; it is only borrowed to
    // be duplicated (`fcntl(F_DUPFD_CLOEXEC)`).
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    borrowed.try_clone_to_owned()
}

impl AsyncRead for Local {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Local {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for Local {
    async fn shutdown(&mut self) {
        let _ = AsyncWriteExt::shutdown(&mut self.io).await;
    }
}

impl UniqueID for Local {
    fn id(&self) -> UniqueIDType {
        self.io.get_ref().as_raw_fd()
    }
}

impl Ssl for Local {}

impl GetTimingDigest for Local {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.timing.clone()
    }
}

impl GetProxyDigest for Local {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        None
    }
}

impl GetSocketDigest for Local {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        Some(self.socket.clone())
    }
}

#[async_trait]
impl Peek for Local {}
