//! Wiring: open the database, reach Docker, start the background loops and
//! serve the API until shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::activity::{self, Activity};
use crate::api::{self, AppState};
use crate::config::Settings;
use crate::docker::Docker;
use crate::metrics::{Metrics, MetricsError};
use crate::sandbox::Sandboxes;
use crate::store::{Store, StoreError};
use crate::tasks::Tasks;
use crate::{reaper, reconciler};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("serving HTTP: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
}

/// Runs berth's control plane until `shutdown` fires.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), AppError> {
    let data_dir_error = |source| AppError::DataDir {
        path: settings.data_dir.display().to_string(),
        source,
    };
    // The database holds sandbox environments (API keys) and the preview
    // key: the data directory and what is in it are owner-only.
    for path in crate::datadir::make_private(&settings.data_dir).map_err(data_dir_error)? {
        tracing::warn!(path = %path.display(), "made owner-only (it was readable by other users)");
    }

    let store = Store::open(&settings.data_dir.join("berth.db")).await?;
    let instance_id = store.instance_id().await?;
    // For uninstall.sh, which must find this instance's containers without the API.
    std::fs::write(settings.data_dir.join("instance-id"), &instance_id).map_err(data_dir_error)?;
    let docker = Docker::new();
    match docker.describe().await {
        Ok(version) => {
            tracing::info!(docker = %version, "connected to Docker");
            check_default_image(&docker, &settings.image).await;
        }
        Err(e) => {
            tracing::warn!(error = %e, "Docker is not answering yet; sandboxes will wait for it")
        }
    }

    let listener = TcpListener::bind(settings.api_bind)
        .await
        .map_err(|source| AppError::Bind {
            addr: settings.api_bind.to_string(),
            source,
        })?;
    let tokens = settings.tokens.clone();
    let settings = Arc::new(settings);
    let activity = Activity::default();
    let metrics = Metrics::new()?;
    let sandboxes = Sandboxes::new(
        store.clone(),
        docker.clone(),
        settings.clone(),
        instance_id.clone(),
        activity.clone(),
        metrics,
    );

    let loops = CancellationToken::new();
    let tasks = Tasks::new(
        sandboxes.clone(),
        store.clone(),
        docker.clone(),
        settings.task_timeout,
        settings.task_timeout_max,
        loops.clone(),
    );
    if let Err(e) = tasks.recover().await {
        tracing::error!(error = %e, "could not recover tasks after the restart");
    }
    sandboxes.kill_abandoned_execs().await;
    let health = crate::supervise::Health::default();
    let background = [
        crate::supervise::spawn("reconciler", health.clone(), loops.clone(), {
            let (sandboxes, every, stop) = (
                sandboxes.clone(),
                settings.reconcile_interval,
                loops.clone(),
            );
            move || reconciler::run(sandboxes.clone(), every, stop.clone())
        }),
        crate::supervise::spawn("reaper", health.clone(), loops.clone(), {
            let (sandboxes, every, stop) =
                (sandboxes.clone(), settings.reap_interval, loops.clone());
            move || reaper::run(sandboxes.clone(), every, stop.clone())
        }),
        crate::supervise::spawn("warm pool", health.clone(), loops.clone(), {
            let (sandboxes, every, stop) =
                (sandboxes.clone(), settings.reap_interval, loops.clone());
            move || crate::sandbox::pool::run(sandboxes.clone(), every, stop.clone())
        }),
        crate::supervise::spawn("activity", health.clone(), loops.clone(), {
            let (activity, store, stop) = (activity.clone(), store.clone(), loops.clone());
            move || {
                activity::flush_loop(
                    activity.clone(),
                    store.clone(),
                    Duration::from_secs(5),
                    stop.clone(),
                )
            }
        }),
    ];

    let state = AppState {
        sandboxes,
        tasks: tasks.clone(),
        store: store.clone(),
        docker,
        started: Instant::now(),
        health,
        fleet: api::FleetGauge::default(),
    };
    let app = api::router(state, tokens.clone());
    // The bound address (the setting may say port 0).
    let bound = listener
        .local_addr()
        .map_or_else(|_| settings.api_bind.to_string(), |a| a.to_string());
    tracing::info!(
        addr = %bound,
        auth = if tokens.is_empty() { "off (loopback only)" } else { "bearer tokens" },
        data_dir = %settings.data_dir.display(),
        instance = %instance_id,
        "berth-control listening"
    );
    // Background loops, running tasks and open event streams stop with the
    // server, so that graceful shutdown does not wait on them.
    let stopping = loops.clone();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.cancelled().await;
            stopping.cancel();
        })
        .await;

    loops.cancel();
    tasks.shutdown().await;
    for task in background {
        let _ = task.await;
    }
    store.close().await;
    tracing::info!("berth-control stopped");
    served.map_err(AppError::Serve)
}

/// Says early, in the log, what a first create would otherwise discover:
/// the default image is missing, or is not berth's sandbox image.
async fn check_default_image(docker: &Docker, image: &str) {
    match docker.image(image).await {
        Ok(Some(facts)) if facts.is_berth_sandbox() => {
            tracing::info!(image, "default sandbox image is berth's")
        }
        Ok(Some(_)) => tracing::warn!(
            image,
            "the default sandbox image has no `berth.image=sandbox` label: it is not built from \
             agent-image/, so berth-init and the agent CLIs may be missing"
        ),
        Ok(None) => tracing::warn!(
            image,
            "the default sandbox image is not on this host: creates will fail until it is built \
             (`docker build -t berth-sandbox:latest agent-image/`, which ./install.sh does)"
        ),
        Err(e) => tracing::warn!(image, error = %e, "could not inspect the default sandbox image"),
    }
}
