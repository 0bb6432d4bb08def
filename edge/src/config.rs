//! berth-edge's settings: environment variables, each also a `--flag`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use berth_wire::Secret;
use clap::{Parser, ValueEnum};

use crate::tls::acme::{AcmeSettings, LETS_ENCRYPT, LETS_ENCRYPT_STAGING};
use crate::tls::dns::ProviderConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TlsMode {
    /// Plain HTTP only.
    Off,
    /// A local CA made on the spot (trust it once).
    Local,
    /// An ACME CA over DNS-01 (Let's Encrypt by default).
    Acme,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DnsProviderKind {
    Cloudflare,
    Exec,
    Challtestsrv,
}

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

    /// The edge's token: control's BERTH_EDGE_TOKEN (it opens only the
    /// edge's routes), when control's auth is on.
    #[arg(long, env = "BERTH_CONTROL_TOKEN", hide_env_values = true)]
    pub control_token: Option<Secret>,

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

    /// `false` (the default) pins each connection to one single-threaded
    /// runtime, nginx-style: no wake-ups cross threads, which measured a
    /// lower p99 (docs/EDGE.md). `true`: Tokio's multi-threaded runtime,
    /// idle threads stealing work from busy ones.
    #[arg(long, env = "BERTH_EDGE_WORK_STEALING", default_value_t = false, action = clap::ArgAction::Set)]
    pub work_stealing: bool,

    /// Relay plain HTTP/1.1 GET and HEAD requests on the edge's own
    /// keep-alive path (see docs/EDGE.md); `false` sends every request
    /// through Pingora's proxy loop.
    #[arg(long, env = "BERTH_EDGE_RELAY", default_value_t = true, action = clap::ArgAction::Set)]
    pub relay: bool,

    /// Accept cleartext HTTP/2 with prior knowledge on the HTTP entrypoint.
    /// Off by default: telling it from HTTP/1 means waiting for 24 bytes,
    /// so a shorter HTTP/1 request (`GET / HTTP/1.0`) would get no answer
    /// until the read timeout. Browsers use HTTP/2 only over TLS (ALPN).
    #[arg(long, env = "BERTH_EDGE_H2C", default_value_t = false, action = clap::ArgAction::Set)]
    pub h2c: bool,

    /// Seconds open connections get to finish on SIGTERM (SIGINT stops at once).
    #[arg(long, env = "BERTH_EDGE_GRACE_PERIOD", default_value_t = 5)]
    pub grace_period: u64,

    /// HTTPS: off, local (a local CA) or acme (DNS-01 wildcard certificate).
    #[arg(long, env = "BERTH_TLS", value_enum, default_value_t = TlsMode::Off)]
    pub tls: TlsMode,

    /// Address the HTTPS entrypoint (`websecure`) listens on.
    #[arg(long, env = "BERTH_EDGE_HTTPS_BIND", default_value = "0.0.0.0:443")]
    pub https_bind: String,

    /// berth's data directory (shared with control); the edge keeps its
    /// files in its `edge/` unless BERTH_EDGE_DATA_DIR says otherwise.
    #[arg(
        long = "berth-data-dir",
        env = "BERTH_DATA_DIR",
        default_value = "/var/lib/berth"
    )]
    pub berth_data_dir: PathBuf,

    /// Where certificates, keys and the ACME account are kept
    /// [default: $BERTH_DATA_DIR/edge].
    #[arg(long, env = "BERTH_EDGE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// ACME directory URL (`staging` for Let's Encrypt's staging).
    #[arg(long, env = "BERTH_ACME_DIRECTORY", default_value = LETS_ENCRYPT)]
    pub acme_directory: String,

    /// Contact address of the ACME account.
    #[arg(long, env = "BERTH_ACME_EMAIL")]
    pub acme_email: Option<String>,

    /// A PEM root to trust for a private ACME server's HTTPS.
    #[arg(long, env = "BERTH_ACME_CA_ROOT")]
    pub acme_ca_root: Option<PathBuf>,

    /// Who publishes the DNS-01 TXT records.
    #[arg(long, env = "BERTH_DNS_PROVIDER", value_enum)]
    pub dns_provider: Option<DnsProviderKind>,

    /// Cloudflare API token with DNS edit rights.
    #[arg(long, env = "BERTH_CLOUDFLARE_API_TOKEN", hide_env_values = true)]
    pub cloudflare_api_token: Option<Secret>,

    /// Cloudflare's API (tests point it elsewhere).
    #[arg(
        long,
        env = "BERTH_CLOUDFLARE_API_URL",
        default_value = "https://api.cloudflare.com/client/v4",
        hide = true
    )]
    pub cloudflare_api_url: String,

    /// Script run as `<script> present|cleanup <fqdn> <value>`.
    #[arg(long, env = "BERTH_DNS_EXEC")]
    pub dns_exec: Option<PathBuf>,

    /// Names of the variables the DNS script is given besides PATH, HOME
    /// and LANG (comma-separated): it never sees the edge's whole
    /// environment.
    #[arg(long, env = "BERTH_DNS_EXEC_ENV", default_value = "")]
    pub dns_exec_env: String,

    /// pebble-challtestsrv's management URL.
    #[arg(long, env = "BERTH_CHALLTESTSRV_URL")]
    pub challtestsrv_url: Option<String>,

    /// `host:port` of the DNS server asked whether TXT records are visible
    /// (default: the system's resolvers).
    #[arg(long, env = "BERTH_DNS_PROPAGATION_RESOLVER")]
    pub dns_propagation_resolver: Option<SocketAddr>,

    /// Seconds to wait for TXT records to become visible.
    #[arg(long, env = "BERTH_DNS_PROPAGATION_TIMEOUT", default_value_t = 300)]
    pub dns_propagation_timeout: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} must be {1}")]
    Invalid(&'static str, &'static str),
    #[error("{0}")]
    Missing(String),
}

/// HTTPS settings, when TLS is on.
#[derive(Debug, Clone)]
pub enum TlsSettings {
    Local {
        dir: PathBuf,
    },
    Acme {
        acme: AcmeSettings,
        provider: ProviderConfig,
        resolver: Option<SocketAddr>,
        timeout: Duration,
    },
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub http_bind: String,
    pub admin_bind: String,
    pub control_url: String,
    pub control_token: Option<Secret>,
    pub preview_domain: String,
    pub wake_timeout: Duration,
    pub starting_page_after: Duration,
    pub connect_timeout: Duration,
    pub upstream_timeout: Duration,
    pub activity_interval: Duration,
    pub traefik: bool,
    pub exposed_by_default: bool,
    pub threads: usize,
    pub work_stealing: bool,
    pub relay: bool,
    pub h2c: bool,
    pub grace_period: u64,
    pub https_bind: String,
    /// `None` when TLS is off.
    pub tls: Option<TlsSettings>,
    /// Port for HTTP→HTTPS redirects (omitted from URLs when 443).
    pub https_port: u16,
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
        let https_port = self
            .https_bind
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .ok_or(ConfigError::Invalid("BERTH_EDGE_HTTPS_BIND", "host:port"))?;
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| self.berth_data_dir.join("edge"));
        let tls = match self.tls {
            TlsMode::Off => None,
            TlsMode::Local => Some(TlsSettings::Local {
                dir: data_dir.join("tls-local"),
            }),
            TlsMode::Acme => {
                if domain == "localhost" || !domain.contains('.') {
                    return Err(ConfigError::Missing(format!(
                        "BERTH_TLS=acme needs a public BERTH_PREVIEW_DOMAIN, not `{domain}`; use BERTH_TLS=local for local development"
                    )));
                }
                let missing = |what: &str| {
                    ConfigError::Missing(format!(
                        "BERTH_TLS=acme with this BERTH_DNS_PROVIDER needs {what}"
                    ))
                };
                let provider = match self.dns_provider {
                    None => {
                        return Err(ConfigError::Missing(
                            "BERTH_TLS=acme needs BERTH_DNS_PROVIDER (cloudflare, exec or challtestsrv)".into(),
                        ));
                    }
                    Some(DnsProviderKind::Cloudflare) => ProviderConfig::Cloudflare {
                        token: self
                            .cloudflare_api_token
                            .clone()
                            .ok_or_else(|| missing("BERTH_CLOUDFLARE_API_TOKEN"))?,
                        api: self.cloudflare_api_url.clone(),
                    },
                    Some(DnsProviderKind::Exec) => ProviderConfig::Exec {
                        script: self
                            .dns_exec
                            .clone()
                            .ok_or_else(|| missing("BERTH_DNS_EXEC"))?,
                        env: self
                            .dns_exec_env
                            .split(',')
                            .map(str::trim)
                            .filter(|n| !n.is_empty())
                            .map(String::from)
                            .collect(),
                    },
                    Some(DnsProviderKind::Challtestsrv) => ProviderConfig::ChallTestSrv {
                        url: self
                            .challtestsrv_url
                            .clone()
                            .ok_or_else(|| missing("BERTH_CHALLTESTSRV_URL"))?,
                    },
                };
                let directory = match self.acme_directory.as_str() {
                    "staging" | "letsencrypt-staging" => LETS_ENCRYPT_STAGING.to_string(),
                    "production" | "letsencrypt" => LETS_ENCRYPT.to_string(),
                    url => url.to_string(),
                };
                Some(TlsSettings::Acme {
                    acme: AcmeSettings {
                        directory,
                        email: self.acme_email.clone().filter(|e| !e.is_empty()),
                        ca_root: self.acme_ca_root.clone(),
                        domain: domain.clone(),
                        dir: data_dir.join("acme"),
                    },
                    provider,
                    resolver: self.dns_propagation_resolver,
                    timeout: Duration::from_secs(self.dns_propagation_timeout.max(1)),
                })
            }
        };
        Ok(Settings {
            https_bind: self.https_bind,
            tls,
            https_port,
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
            work_stealing: self.work_stealing,
            relay: self.relay,
            h2c: self.h2c,
            grace_period: self.grace_period,
        })
    }
}
