//! The reconciler: converges Docker to the database on boot and then
//! periodically.
//!
//! For every record it runs the same state machine as the API
//! ([`Sandboxes::converge`]): a container missing behind berth's back is
//! recreated on the kept home directory, a crash mid-create finishes the
//! create, a crash mid-delete finishes the delete. Containers carrying this
//! instance's label but no record are removed.

use std::collections::HashSet;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::sandbox::{Origin, SandboxError, Sandboxes};

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub converged: usize,
    pub failed: usize,
    pub orphans_removed: usize,
}

/// One pass over every record and every container of this instance.
pub async fn reconcile_once(sandboxes: &Sandboxes) -> Result<Report, SandboxError> {
    let mut report = Report::default();
    // The networks and their egress rules first: rules another tool
    // flushed come back within a pass.
    if let Err(e) = sandboxes.prepare_networks(true).await {
        tracing::warn!(error = %e, "reconcile: could not prepare the sandbox networks");
    }
    let records = sandboxes.store().sandboxes().await?;
    for listed in &records {
        let _guard = sandboxes.locks().lock(&listed.id).await;
        // Re-read under the lock: an API call may have changed it meanwhile.
        let Some(rec) = sandboxes.store().find_sandbox(&listed.id).await? else {
            continue;
        };
        match sandboxes.converge(&rec, Origin::Reconciler).await {
            Ok(()) => report.converged += 1,
            Err(e) => {
                report.failed += 1;
                tracing::warn!(sandbox = %rec.id, error = %e, "reconcile: could not converge");
            }
        }
    }

    let known: HashSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
    let containers = sandboxes
        .docker()
        .managed_containers(sandboxes.instance_id())
        .await?;
    for container in containers {
        if known.contains(container.sandbox_id.as_str()) {
            continue;
        }
        // A create may have inserted the record after the listing above: the
        // lock orders us after it, and the record decides.
        let _guard = sandboxes.locks().lock(&container.sandbox_id).await;
        if sandboxes
            .store()
            .find_sandbox(&container.sandbox_id)
            .await?
            .is_some()
        {
            continue;
        }
        sandboxes.docker().remove(&container.id).await?;
        report.orphans_removed += 1;
        tracing::info!(sandbox = %container.sandbox_id, container = %container.id, "reconcile: removed a container with no record");
    }
    Ok(report)
}

/// Reconciles now, then every `every`, until shutdown.
pub async fn run(sandboxes: Sandboxes, every: Duration, shutdown: CancellationToken) {
    crate::ticker::every(every, &shutdown, || async {
        match reconcile_once(&sandboxes).await {
            Ok(report) if report != Report::default() => {
                tracing::debug!(?report, "reconcile pass");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reconcile pass failed; retrying next tick"),
        }
    })
    .await;
}
