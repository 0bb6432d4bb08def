//! Supervised background loops: a loop that panics is logged and started
//! again (after a short, growing pause), and `/readyz` reports it as down
//! until it runs again.

use std::any::Any;
use std::collections::BTreeSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Which supervised loops are down now (between a panic and their restart).
#[derive(Debug, Clone, Default)]
pub struct Health {
    down: Arc<Mutex<BTreeSet<&'static str>>>,
}

impl Health {
    /// Names of the loops that are down, sorted.
    pub fn down(&self) -> Vec<&'static str> {
        self.down
            .lock()
            .map(|d| d.iter().copied().collect())
            .unwrap_or_default()
    }

    fn set(&self, name: &'static str, down: bool) {
        if let Ok(mut set) = self.down.lock() {
            if down {
                set.insert(name);
            } else {
                set.remove(name);
            }
        }
    }
}

/// The text of a panic's payload.
pub fn panic_message(payload: &Box<dyn Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Runs `make()` until shutdown; when the loop panics it is logged, marked
/// down in `health`, and started again after a pause (1 s, doubling to 60 s).
/// A loop that returns on its own (it saw the shutdown) is not restarted.
pub fn spawn<F, Fut>(
    name: &'static str,
    health: Health,
    shutdown: CancellationToken,
    mut make: F,
) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut pause = Duration::from_secs(1);
        loop {
            let ran = AssertUnwindSafe(make()).catch_unwind().await;
            match ran {
                Ok(()) => return,
                Err(panic) => {
                    health.set(name, true);
                    tracing::error!(
                        task = name,
                        panic = %panic_message(&panic),
                        restart_in = ?pause,
                        "a background loop panicked; restarting it"
                    );
                }
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = shutdown.cancelled() => return,
            }
            pause = (pause * 2).min(Duration::from_secs(60));
            health.set(name, false);
            tracing::info!(task = name, "background loop restarted");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_panicking_loop_is_restarted_and_reported_down_meanwhile() {
        let health = Health::default();
        let shutdown = CancellationToken::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let stop = shutdown.clone();
        let handle = spawn("flaky", health.clone(), shutdown.clone(), move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            let stop = stop.clone();
            async move {
                if n == 0 {
                    panic!("first run fails");
                }
                stop.cancelled().await;
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(health.down(), vec!["flaky"]);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert!(health.down().is_empty());
        shutdown.cancel();
        handle.await.unwrap();
    }
}
