//! Idle keep-alive connections to apps, kept by address and by the thread
//! that used them last: with `BERTH_EDGE_WORK_STEALING=false` each thread
//! runs its own runtime, and a connection is best read on the runtime that
//! registered it (no wake-up crosses threads).
//!
//! No task watches an idle connection: taking one checks, without a system
//! call, whether the reactor has seen it become readable (the app closed it
//! or sent bytes nobody asked for), and drops it then. A connection that
//! died unseen is caught by the relay, which retries on a fresh one. Expired
//! connections are swept by `sweep`, which the edge runs every few seconds.
//! Idle time is counted in sweeps, not read off the clock: taking and
//! keeping a connection reads no clock (an idle timeout of 60 s closes a
//! connection after 55–60 s with sweeps every 5).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread::{self, ThreadId};
use std::time::Duration;

use tokio::net::TcpStream;

struct Idle {
    stream: TcpStream,
    /// The sweep during which it was kept.
    since: u64,
}

type Key = (SocketAddr, ThreadId);

pub struct Pool {
    idle: Mutex<HashMap<Key, Vec<Idle>>>,
    per_upstream: usize,
    /// Sweeps a connection may stay idle through.
    idle_sweeps: u64,
    /// Sweeps so far.
    sweeps: AtomicU64,
}

impl Pool {
    /// `sweep_every`: how often `sweep` is called.
    pub fn new(per_upstream: usize, idle_timeout: Duration, sweep_every: Duration) -> Self {
        let idle_sweeps = idle_timeout.as_millis() / sweep_every.as_millis().max(1);
        Self {
            idle: Mutex::new(HashMap::new()),
            per_upstream,
            idle_sweeps: u64::try_from(idle_sweeps).unwrap_or(u64::MAX).max(1),
            sweeps: AtomicU64::new(0),
        }
    }

    fn fresh(&self, idle: &Idle, now: u64) -> bool {
        now.saturating_sub(idle.since) < self.idle_sweeps
    }

    /// The most recently used live connection to `addr` kept by this
    /// thread, if any.
    pub fn take(&self, addr: SocketAddr) -> Option<TcpStream> {
        let key = (addr, thread::current().id());
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.get_mut(&key)?;
        let now = self.sweeps.load(Ordering::Relaxed);
        while let Some(conn) = list.pop() {
            if self.fresh(&conn, now) && quiet(&conn.stream) {
                return Some(conn.stream);
            }
        }
        idle.remove(&key);
        None
    }

    /// Keeps a connection whose last response ended cleanly.
    pub fn put(&self, addr: SocketAddr, stream: TcpStream) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.entry((addr, thread::current().id())).or_default();
        if list.len() < self.per_upstream {
            list.push(Idle {
                stream,
                since: self.sweeps.load(Ordering::Relaxed),
            });
        }
    }

    /// Closes connections idle for longer than the timeout, or closed by
    /// their app.
    pub fn sweep(&self) {
        let now = self.sweeps.fetch_add(1, Ordering::Relaxed) + 1;
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|_, list| {
            list.retain(|c| self.fresh(c, now) && quiet(&c.stream));
            !list.is_empty()
        });
    }

    /// Idle connections kept, over all apps.
    pub fn len(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// True when nothing happened on an idle connection: the reactor has no
/// readable event for it. An idle HTTP/1 connection that turns readable was
/// closed by the app (or it sent bytes unasked), so it cannot be reused.
fn quiet(stream: &TcpStream) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    match stream.poll_read_ready(&mut cx) {
        Poll::Pending => true,
        // Readiness can be stale (it is cleared only by a read that would
        // block); one non-blocking peek settles it.
        Poll::Ready(Ok(())) => {
            let mut byte = [0u8; 1];
            matches!(stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        }
        Poll::Ready(Err(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.unwrap(), server.unwrap().0)
    }

    #[tokio::test]
    async fn a_connection_closed_by_its_app_is_not_handed_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pool = Pool::new(8, Duration::from_secs(60), Duration::from_secs(5));

        let (alive, _alive_server) = pair(&listener).await;
        let (closed, closed_server) = pair(&listener).await;
        pool.put(addr, alive);
        pool.put(addr, closed);
        drop(closed_server);
        tokio::time::sleep(Duration::from_millis(50)).await;

        // The most recent one was closed by the far end: skipped.
        let taken = pool.take(addr).expect("the live connection");
        assert!(pool.take(addr).is_none());
        drop(taken);

        // A connection the far end wrote to unasked is not reusable either.
        let (chatty, mut chatty_server) = pair(&listener).await;
        pool.put(addr, chatty);
        chatty_server
            .write_all(b"HTTP/1.1 200 OK\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(pool.take(addr).is_none());
    }

    #[tokio::test]
    async fn expired_connections_are_swept_and_the_pool_is_bounded() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pool = Pool::new(2, Duration::from_secs(10), Duration::from_secs(5));
        let mut servers = Vec::new();
        for _ in 0..3 {
            let (c, s) = pair(&listener).await;
            servers.push(s);
            pool.put(addr, c);
        }
        assert_eq!(pool.len(), 2, "a third idle connection is closed, not kept");
        pool.sweep();
        assert_eq!(pool.len(), 2, "idle through one sweep of two");
        pool.sweep();
        assert!(pool.is_empty(), "idle through two sweeps: 10 s");
    }
}
