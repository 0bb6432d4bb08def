//! The edge shutting down, as idle client connections wait for it.
//!
//! Every request of a kept-alive connection waits for the next one with
//! this signal armed, so arming it must cost next to nothing: a connection
//! registers once (`watch`), and each wait only stores the task's waker in
//! the connection's own slot (one atomic operation, no lock; a `Notify`
//! would take its lock two or three times per request, and one shared by
//! all threads would bounce between cores). Closing sets a flag and wakes
//! every registered connection.

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;

use futures_util::task::AtomicWaker;

#[derive(Default)]
pub struct Closing {
    closed: AtomicBool,
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, Arc<AtomicWaker>>>,
}

/// One connection's registration; dropping it unregisters.
pub struct Watch<'a> {
    closing: &'a Closing,
    key: u64,
    waker: Arc<AtomicWaker>,
}

impl Closing {
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn watch(&self) -> Watch<'_> {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let waker = Arc::new(AtomicWaker::new());
        self.lock().insert(key, waker.clone());
        Watch {
            closing: self,
            key,
            waker,
        }
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for waker in self.lock().values() {
            waker.wake();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<AtomicWaker>>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Watch<'_> {
    /// Resolves once the edge closes (at once if it has).
    pub async fn closed(&self) {
        poll_fn(|cx| {
            // Stored before the flag is read: a close in between is seen
            // either way.
            self.waker.register(cx.waker());
            if self.closing.is_closed() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        self.closing.lock().remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_waiting_connection_wakes_and_late_ones_return_at_once() {
        let closing = Arc::new(Closing::default());
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let closing = closing.clone();
                tokio::spawn(async move {
                    let watch = closing.watch();
                    // Armed again and again, as for request after request.
                    for _ in 0..3 {
                        let _ =
                            tokio::time::timeout(Duration::from_millis(5), watch.closed()).await;
                    }
                    watch.closed().await;
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!closing.is_closed());
        closing.close();
        for waiter in waiters {
            tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("woken")
                .unwrap();
        }
        assert!(closing.lock().is_empty(), "every connection unregistered");
        tokio::time::timeout(Duration::from_secs(1), closing.watch().closed())
            .await
            .expect("closed already");
    }
}
