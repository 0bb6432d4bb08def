//! berth-edge's settings: environment variables, each also a `--flag`.

use std::time::Duration;

use clap::Parser;

/// berth's front door: routes preview hosts to sandboxes (waking them), and
/// Traefik-labelled containers to their services.
#[derive(Debug, Clone, Parser)]
#[command(name = "berth-edge", version, about, long_about = None)]
pub struct Config {
    /// Address the HTTP entrypoint (`web`) listens on.
    #[arg(long, env = "BERTH_EDGE_HTTP_BIND", default_value = "0.0.0.0:80")]
    pub http_bind: String,

    /// Address of the admin listener: /metrics (Prometheus) and /healthz.
    #[arg(long, env = "BERTH_EDGE_ADMIN_BIND", default_value = "127.0.0.1:9091")]
    pub admin_bind: String,

    /// berth-control's API.
    #[arg(
        long,
        env = "BERTH_CONTROL_URL",
        default_value = "http://127.0.0.1:9090"
    )]
    pub control_url: String,

    /// A token of control's BERTH_API_TOKENS (the secret part), when its auth is on.
    #[arg(long, env = "BERTH_CONTROL_TOKEN", hide_env_values = true)]
    pub control_token: Option<String>,

    /// Domain of preview hosts: `s-<id>-<port>.preview.<domain>`.
    #[arg(long, env = "BERTH_PREVIEW_DOMAIN", default_value = "localhost")]
    pub preview_domain: String,

    /// Seconds a request for a stopped sandbox is held while it wakes, before 504.
    #[arg(long, env = "BERTH_EDGE_WAKE_TIMEOUT", default_value_t = 60)]
    pub wake_timeout: u64,

    /// Seconds after which a waiting browser gets a "starting…" page that reloads itself.
    #[arg(long, env = "BERTH_EDGE_STARTING_PAGE_AFTER", default_value_t = 3.0)]
    pub starting_page_after: f64,

    /// Seconds to connect to an app before 504.
    #[arg(long, env = "BERTH_EDGE_CONNECT_TIMEOUT", default_value_t = 5)]
    pub connect_timeout: u64,

    /// Seconds an app may take to answer (and between reads) before 504;
    /// upgraded connections (WebSocket) have none.
    #[arg(long, env = "BERTH_EDGE_UPSTREAM_TIMEOUT", default_value_t = 300)]
    pub upstream_timeout: u64,

    /// Seconds between activity reports to control.
    #[arg(long, env = "BERTH_EDGE_ACTIVITY_INTERVAL", default_value_t = 5)]
    pub activity_interval: u64,

    /// Route containers by their Traefik labels.
    #[arg(long, env = "BERTH_EDGE_TRAEFIK", default_value_t = true, action = clap::ArgAction::Set)]
    pub traefik: bool,

    /// Route labelled containers without `traefik.enable=true` too (Traefik's exposedByDefault).
    #[arg(long, env = "BERTH_EDGE_TRAEFIK_EXPOSED_BY_DEFAULT", default_value_t = false, action = clap::ArgAction::Set)]
    pub exposed_by_default: bool,

    /// Worker threads of the proxy (default: the host's CPU count).
    #[arg(long, env = "BERTH_EDGE_THREADS")]
    pub threads: Option<usize>,

    /// Seconds open connections get to finish on SIGTERM (SIGINT stops at once).
    #[arg(long, env = "BERTH_EDGE_GRACE_PERIOD", default_value_t = 5)]
    pub grace_period: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} must be {1}")]
    Invalid(&'static str, &'static str),
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub http_bind: String,
    pub admin_bind: String,
    pub control_url: String,
    pub control_token: Option<String>,
    pub preview_domain: String,
    pub wake_timeout: Duration,
    pub starting_page_after: Duration,
    pub connect_timeout: Duration,
    pub upstream_timeout: Duration,
    pub activity_interval: Duration,
    pub traefik: bool,
    pub exposed_by_default: bool,
    pub threads: usize,
    pub grace_period: u64,
}

impl Config {
    pub fn validate(self) -> Result<Settings, ConfigError> {
        let domain = self
            .preview_domain
            .trim()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if domain.is_empty() || domain.contains(['/', ':', ' ']) {
            return Err(ConfigError::Invalid(
                "BERTH_PREVIEW_DOMAIN",
                "a DNS name such as example.com",
            ));
        }
        if !self.control_url.starts_with("http://") {
            return Err(ConfigError::Invalid("BERTH_CONTROL_URL", "an http:// URL"));
        }
        if self.wake_timeout == 0
            || self.connect_timeout == 0
            || self.upstream_timeout == 0
            || self.activity_interval == 0
        {
            return Err(ConfigError::Invalid(
                "timeouts and intervals",
                "at least 1 second",
            ));
        }
        if !(self.starting_page_after.is_finite() && self.starting_page_after >= 0.0) {
            return Err(ConfigError::Invalid(
                "BERTH_EDGE_STARTING_PAGE_AFTER",
                "a number of seconds",
            ));
        }
        Ok(Settings {
            http_bind: self.http_bind,
            admin_bind: self.admin_bind,
            control_url: self.control_url.trim_end_matches('/').to_string(),
            control_token: self.control_token.filter(|t| !t.is_empty()),
            preview_domain: domain,
            wake_timeout: Duration::from_secs(self.wake_timeout),
            starting_page_after: Duration::from_secs_f64(self.starting_page_after),
            connect_timeout: Duration::from_secs(self.connect_timeout),
            upstream_timeout: Duration::from_secs(self.upstream_timeout),
            activity_interval: Duration::from_secs(self.activity_interval),
            traefik: self.traefik,
            exposed_by_default: self.exposed_by_default,
            threads: self
                .threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            grace_period: self.grace_period,
        })
    }
}
