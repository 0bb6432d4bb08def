use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use berth_control::{app, config::Config};

/// mimalloc rather than glibc's allocator, told to give freed memory back to
/// the system at once (see [`return_freed_memory`]). Built with `no_thp`, as
/// in the edge: a 2 MiB huge page counts whole.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay`: its place in mimalloc's `mi_option_e` (the same
/// in mimalloc 2 and 3; `libmimalloc-sys` names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Control idles most of its life between bursts (a create, a task's event
/// stream, the OpenAPI document rendered on first request). glibc kept the
/// peak of such a burst resident for good (its heap shrinks only from the
/// top), and so did mimalloc with its default purge delay, since a purge
/// only runs on later allocator activity that an idle process never has:
/// measured 9.1 MiB anonymous at idle, 16 MiB after one `/v1/openapi.json`.
/// With freed pages purged at once: 4.1 and 5.6 MiB. Control's hot paths
/// are system calls to Docker and SQLite, so the purges cost nothing
/// measurable there. An operator's own `MIMALLOC_PURGE_DELAY` wins.
#[allow(unsafe_code)]
fn return_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: `mi_option_set` stores an integer in mimalloc's option table;
    // it is called before the runtime starts any other thread, and purging
    // at once (0) is one of the option's documented values.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
}

fn main() -> std::process::ExitCode {
    return_freed_memory();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("berth-control: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve())
}

async fn serve() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        // A log that cannot be written (its disk is full) must not take
        // requests down: tracing would report it with `eprintln!`, which
        // panics when stderr cannot be written either.
        .log_internal_errors(false)
        .init();

    let settings = match Config::parse().validate() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("berth-control: {e}");
            return std::process::ExitCode::from(2);
        }
    };

    // Everything control creates (database, WAL, keys, homes) is owner-only.
    berth_control::datadir::owner_only_umask();
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    match app::run(settings, shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "berth-control failed");
            eprintln!("berth-control: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Ctrl-C or SIGTERM: stop taking requests, finish the ones in flight, exit.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    shutdown.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
    shutdown.cancel();
}
