use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use clap::Parser;
use pingora::apps::HttpServerOptions;
use pingora::apps::http_app::HttpServer;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::Server;
use pingora::server::configuration::ServerConf;
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use tracing_subscriber::EnvFilter;

use berth_edge::activity::{Activity, Reporter};
use berth_edge::config::{Config, Settings, TlsSettings};
use berth_edge::control::Control;
use berth_edge::docker::Docker;
use berth_edge::front::{CLIENT_WRITE_BUFFER, FrontDoor};
use berth_edge::metrics::{Admin, Metrics};
use berth_edge::preview_auth::PreviewAuth;
use berth_edge::proxy::{Edge, Proxy, RateLimit};
use berth_edge::relay::{Relay, Sweeper};
use berth_edge::routes::Routes;
use berth_edge::routes::watcher::Watcher;
use berth_edge::tls::acme::{Acme, Renewer};
use berth_edge::tls::propagation::Propagation;
use berth_edge::tls::{self, CertStore, dns, local};
use berth_edge::wake::Waker;

/// mimalloc: glibc's allocator showed up at ~8% of the proxy's CPU. Built
/// with `no_thp`: it would ask for transparent huge pages on its arenas,
/// and each 2 MiB page then counts whole (10 MiB of an idle edge's 29).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Look-ups of sandboxes the route table does not know (control is asked):
/// a scan of random preview hosts costs control at most this many calls.
const LOOKUPS_PER_SECOND: f64 = 20.0;
const LOOKUPS_BURST: f64 = 40.0;

fn main() -> std::process::ExitCode {
    // Pingora logs through `log`; this subscriber takes those records too.
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
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("berth-edge: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    // One TLS crypto provider for the whole process (ACME and DNS API clients).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let metrics = match Metrics::new() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("berth-edge: metrics: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };

    let conf = ServerConf {
        threads: settings.threads,
        work_stealing: settings.work_stealing,
        grace_period_seconds: Some(settings.grace_period),
        graceful_shutdown_timeout_seconds: Some(settings.grace_period),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let docker = Docker::default();
    let routes = Routes::new(settings.exposed_by_default);
    let control = Control::new(
        &settings.control_url,
        settings.control_token.clone(),
        settings.wake_timeout,
    );
    let activity = Activity::default();
    let relay = Arc::new(Relay::new(
        settings.connect_timeout,
        settings.upstream_timeout,
        metrics.clone(),
    ));
    let edge = Arc::new(Edge {
        settings: settings.clone(),
        routes: routes.clone(),
        waker: Waker::new(
            control.clone(),
            docker.clone(),
            routes.clone(),
            metrics.clone(),
            settings.wake_timeout,
        ),
        control: control.clone(),
        activity: activity.clone(),
        auth: PreviewAuth::new(control.clone()),
        metrics: metrics.clone(),
        relay: relay.clone(),
        unknown: Mutex::new(HashMap::new()),
        claimed: Mutex::new(HashMap::new()),
        lookups: Mutex::new(RateLimit::new(LOOKUPS_PER_SECOND, LOOKUPS_BURST)),
    });

    // Pingora's proxy behind the edge's front door, which serves the
    // common request itself and hands it everything else.
    let mut pingora_proxy = pingora::proxy::http_proxy(&server.configuration, Proxy(edge.clone()));
    let mut options = HttpServerOptions::default();
    options.h2c = settings.h2c;
    pingora_proxy.server_options = Some(options);
    let mut proxy = Service::new(
        "berth-edge".to_string(),
        FrontDoor::new(edge, pingora_proxy),
    );
    let buffers = L4BufferSettings::default().write(CLIENT_WRITE_BUFFER);
    proxy.add_listener(ListenerConfig::tcp(&settings.http_bind).l4_buffer(buffers));

    let (https, renewer) = match setup_tls(&settings, &metrics) {
        Ok(found) => found,
        Err(e) => {
            eprintln!("berth-edge: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let renew_now = renewer.as_ref().map(|r| r.acme.renew_now.clone());
    if let Some(listener) = https {
        proxy.add_listener(
            ListenerConfig::tcp(&settings.https_bind)
                .tls(listener)
                .l4_buffer(buffers),
        );
    }

    let mut admin = Service::new(
        "berth-edge admin".to_string(),
        HttpServer::new_app(Admin {
            metrics: metrics.clone(),
            renew_now,
        }),
    );
    admin.add_tcp(&settings.admin_bind);

    let watcher = background_service(
        "docker watcher",
        Watcher {
            docker,
            routes,
            metrics,
            control: control.clone(),
            activity: activity.clone(),
        },
    );
    let reporter = background_service(
        "activity reporter",
        Reporter {
            activity,
            control,
            every: settings.activity_interval,
        },
    );

    server.add_service(proxy);
    server.add_service(admin);
    server.add_service(watcher);
    server.add_service(reporter);
    server.add_service(background_service(
        "idle connection sweeper",
        Sweeper { relay },
    ));
    if let Some(renewer) = renewer {
        server.add_service(background_service("certificate renewer", renewer));
    }
    tracing::info!(
        https = %settings.tls.as_ref().map_or("off", |_| settings.https_bind.as_str()),
        http = %settings.http_bind,
        admin = %settings.admin_bind,
        control = %settings.control_url,
        domain = %settings.preview_domain,
        "berth-edge starting"
    );
    server.run_forever()
}

/// The HTTPS listener's settings and, in ACME mode, the renewal service.
fn setup_tls(
    settings: &Settings,
    metrics: &Metrics,
) -> Result<
    (
        Option<pingora::listeners::tls::TlsSettings>,
        Option<Renewer>,
    ),
    String,
> {
    let Some(tls_settings) = &settings.tls else {
        return Ok((None, None));
    };
    let store = CertStore::default();
    let renewer = match tls_settings {
        TlsSettings::Local { dir } => {
            let (pair, ca) =
                local::certificate(dir, &settings.preview_domain).map_err(|e| e.to_string())?;
            store.install(pair, metrics);
            tracing::info!(ca = %ca.display(), "serving a local certificate: trust this CA to open preview URLs over HTTPS");
            None
        }
        TlsSettings::Acme {
            acme,
            provider,
            resolver,
            timeout,
        } => {
            let dns = dns::build(provider).map_err(|e| e.to_string())?;
            let propagation = Propagation {
                resolver: *resolver,
                timeout: *timeout,
                poll: std::time::Duration::from_secs(2),
            };
            let acme = Acme::new(
                acme.clone(),
                dns,
                propagation,
                store.clone(),
                metrics.clone(),
            );
            if !acme.load_kept().map_err(|e| e.to_string())? {
                let placeholder =
                    local::placeholder(&settings.preview_domain).map_err(|e| e.to_string())?;
                store.install(placeholder, metrics);
            }
            Some(Renewer {
                acme: Arc::new(acme),
            })
        }
    };
    let listener = tls::listener_settings(store).map_err(|e| e.to_string())?;
    Ok((Some(listener), renewer))
}
