//! The reaper: puts sandboxes idle past their timeout to sleep (light sleep,
//! then stopped), and stops idle sandboxes (light sleepers first, least
//! recently used first) when the host runs short of memory.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::sandbox::Sandboxes;

pub async fn run(sandboxes: Sandboxes, every: Duration, shutdown: CancellationToken) {
    crate::ticker::every(every, &shutdown, || async {
        if let Err(e) = sandboxes.reap_idle().await {
            tracing::warn!(error = %e, "idle reaper pass failed");
        }
        let stopped = sandboxes.relieve_pressure(None).await;
        if stopped > 0 {
            tracing::info!(stopped, "stopped idle sandboxes to relieve memory pressure");
        }
    })
    .await;
}
