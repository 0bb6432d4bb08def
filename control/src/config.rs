//! Configuration: every setting is an environment variable and a `--flag`
//! (`berth-control --help` lists them with their defaults).
//!
//! Parsing is clap's job; this module adds the checks clap cannot express,
//! such as refusing to serve an unauthenticated API beyond loopback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use berth_wire::Secret;

use crate::auth::{TokenError, Tokens};
use crate::cidr::{self, Cidr};
use crate::store::Egress;
use crate::units::{ByteSize, Headroom};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "BERTH_API_BIND is {0}, which is reachable beyond this host, and no BERTH_API_TOKENS are set: \
         berth refuses to serve an open API. Set BERTH_API_TOKENS=name:secret (secret of 16+ characters) \
         or bind to a loopback address such as 127.0.0.1:9090"
    )]
    OpenNonLoopbackBind(SocketAddr),
    #[error("BERTH_API_TOKENS: {0}")]
    Tokens(#[from] TokenError),
    #[error("{name} must be {what}")]
    Invalid { name: &'static str, what: String },
}

/// berth's control plane: isolated dev sandboxes on one Docker host.
#[derive(Debug, Clone, Parser)]
#[command(name = "berth-control", version, about, long_about = None)]
pub struct Config {
    /// Directory holding the SQLite database and one home directory per sandbox.
    #[arg(long, env = "BERTH_DATA_DIR", default_value = "/var/lib/berth")]
    pub data_dir: PathBuf,

    /// Address the HTTP API listens on.
    #[arg(long, env = "BERTH_API_BIND", default_value = "127.0.0.1:9090")]
    pub api_bind: SocketAddr,

    /// API tokens, `name:secret,name2:secret2`. When set, every route but
    /// /healthz and /readyz needs `Authorization: Bearer <secret>`.
    #[arg(long, env = "BERTH_API_TOKENS", hide_env_values = true)]
    pub api_tokens: Option<Secret>,

    /// The token berth-edge presents (16+ characters). It opens only the
    /// edge's routes (`/v1/edge/…`: bootstrap, look-ups, wakes, activity).
    #[arg(long, env = "BERTH_EDGE_TOKEN", hide_env_values = true)]
    pub edge_token: Option<Secret>,

    /// Default OCI runtime of sandboxes (`runsc` for gVisor); Docker's
    /// default when empty. A sandbox may ask for another with `runtime`.
    #[arg(long, env = "BERTH_RUNTIME", default_value = "")]
    pub runtime: String,

    /// Default egress of sandboxes: `open` (the internet, but not the host,
    /// metadata or denied ranges) or `none` (no route out).
    #[arg(long, env = "BERTH_EGRESS", default_value = "open")]
    pub egress: String,

    /// Networks sandboxes may not reach (comma-separated CIDRs); the host
    /// itself is always refused.
    #[arg(
        long,
        env = "BERTH_EGRESS_DENY",
        default_value = "169.254.0.0/16,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,0.0.0.0/8,224.0.0.0/4,240.0.0.0/4,fe80::/10,fc00::/7"
    )]
    pub egress_deny: String,

    /// Install the egress rules (iptables) at start. Off only where another
    /// tool owns the host firewall.
    #[arg(long, env = "BERTH_FIREWALL", default_value_t = true, action = clap::ArgAction::Set)]
    pub firewall: bool,

    /// Run commands through the exec agent bind-mounted into every sandbox
    /// (a unix socket, milliseconds) rather than Docker's exec; Docker's
    /// exec stays the fallback wherever the agent does not answer.
    #[arg(long, env = "BERTH_EXEC_AGENT", default_value_t = true, action = clap::ArgAction::Set)]
    pub exec_agent: bool,

    /// First host uid given to sandboxes: each sandbox runs as its own uid
    /// (and gid) from here up, skipping host accounts.
    #[arg(long, env = "BERTH_SANDBOX_UID_BASE", default_value_t = 1_100_000)]
    pub sandbox_uid_base: u32,

    /// Where the host's `passwd` and `group` are (their uids are never given
    /// to sandboxes); in a container, mount the host's there.
    #[arg(long, env = "BERTH_HOST_ETC", default_value = "/etc")]
    pub host_etc: PathBuf,

    /// Default sandbox image (any image whose command stays up works).
    #[arg(long, env = "BERTH_IMAGE", default_value = "berth-sandbox:latest")]
    pub image: String,

    /// Docker network for sandboxes (created if missing, inter-container traffic off).
    #[arg(long, env = "BERTH_NETWORK", default_value = "berth")]
    pub network: String,

    /// Name of the sandbox network's Linux bridge (e.g. `berth0`, for host
    /// firewall rules); Docker picks one when empty. Applies when the network
    /// is created.
    #[arg(long, env = "BERTH_NETWORK_BRIDGE", default_value = "")]
    pub network_bridge: String,

    /// Domain preview URLs hang off: `s-<id>-<port>.preview.<domain>`.
    #[arg(long, env = "BERTH_PREVIEW_DOMAIN", default_value = "localhost")]
    pub preview_domain: String,

    /// Scheme of preview URLs (`https` once the edge serves TLS).
    #[arg(long, env = "BERTH_PREVIEW_SCHEME", default_value = "http")]
    pub preview_scheme: String,

    /// Port appended to preview URLs when the edge is not on the scheme's default port.
    #[arg(long, env = "BERTH_PREVIEW_PORT")]
    pub preview_port: Option<u16>,

    /// Seconds without activity after which a sandbox goes to sleep: light
    /// sleep first (frozen), then stopped after BERTH_DEEP_SLEEP_AFTER.
    #[arg(long, env = "BERTH_IDLE_TIMEOUT", default_value_t = 900)]
    pub idle_timeout: u64,

    /// Seconds an interactive terminal (`/v1/sandboxes/{id}/pty`) outlives
    /// its WebSocket, for the client to reconnect; then it is killed.
    #[arg(long, env = "BERTH_PTY_GRACE", default_value_t = 60)]
    pub pty_grace: u64,

    /// Ready sandboxes of the default image kept frozen, so that a create
    /// without a client-chosen id claims one in milliseconds. 0: none.
    #[arg(long, env = "BERTH_WARM_POOL", default_value_t = 0)]
    pub warm_pool: usize,

    /// Seconds a sandbox stays in light sleep (its container frozen: no CPU,
    /// memory kept, woken in milliseconds) before it is stopped. Under memory
    /// pressure light sleepers are stopped first. 0: no light sleep, idle
    /// sandboxes are stopped at once.
    #[arg(long, env = "BERTH_DEEP_SLEEP_AFTER", default_value_t = 1800)]
    pub deep_sleep_after: u64,

    /// Longest keepalive a client may ask for, in seconds from now.
    #[arg(long, env = "BERTH_KEEPALIVE_MAX", default_value_t = 86_400)]
    pub keepalive_max: u64,

    /// Memory limit of a sandbox that asks for none (`512m`, `2g`).
    #[arg(long, env = "BERTH_DEFAULT_MEMORY", default_value = "2g")]
    pub default_memory: ByteSize,

    /// Largest memory limit a sandbox may ask for.
    #[arg(long, env = "BERTH_MAX_MEMORY", default_value = "8g")]
    pub max_memory: ByteSize,

    /// CPUs of a sandbox that asks for none.
    #[arg(long, env = "BERTH_DEFAULT_CPUS", default_value_t = 1.0)]
    pub default_cpus: f64,

    /// Most CPUs a sandbox may ask for (default: the host's CPU count).
    #[arg(long, env = "BERTH_MAX_CPUS")]
    pub max_cpus: Option<f64>,

    /// Process limit inside a sandbox.
    #[arg(long, env = "BERTH_PIDS_LIMIT", default_value_t = 1024)]
    pub pids_limit: i64,

    /// Size of the tmpfs mounted on /tmp in every sandbox.
    #[arg(long, env = "BERTH_TMP_SIZE", default_value = "512m")]
    pub tmp_size: ByteSize,

    /// Memory kept free on the host: `10%` of total or an amount (`1g`). Below it,
    /// idle sandboxes are stopped oldest first and creates/wakes get 503.
    #[arg(long, env = "BERTH_MEMORY_HEADROOM", default_value = "10%")]
    pub memory_headroom: Headroom,

    /// Seconds between reconciler passes (it also runs on boot).
    #[arg(long, env = "BERTH_RECONCILE_INTERVAL", default_value_t = 30)]
    pub reconcile_interval: u64,

    /// Seconds between idle-reaper and memory-pressure passes.
    #[arg(long, env = "BERTH_REAP_INTERVAL", default_value_t = 15)]
    pub reap_interval: u64,

    /// Default and maximum timeout of an exec, in seconds.
    #[arg(long, env = "BERTH_EXEC_TIMEOUT", default_value_t = 300)]
    pub exec_timeout: u64,

    /// Largest stdout (and stderr) an exec returns; the rest is dropped and flagged.
    #[arg(long, env = "BERTH_EXEC_OUTPUT_LIMIT", default_value = "4m")]
    pub exec_output_limit: ByteSize,

    /// Largest file the files API reads or writes.
    #[arg(long, env = "BERTH_MAX_FILE_SIZE", default_value = "64m")]
    pub max_file_size: ByteSize,

    /// Seconds `docker stop` waits for a sandbox before killing it.
    #[arg(long, env = "BERTH_STOP_TIMEOUT", default_value_t = 5)]
    pub stop_timeout: u64,

    /// Default timeout of a coding-agent task, in seconds.
    #[arg(long, env = "BERTH_TASK_TIMEOUT", default_value_t = 1800)]
    pub task_timeout: u64,

    /// Longest timeout a task may ask for, in seconds.
    #[arg(long, env = "BERTH_TASK_TIMEOUT_MAX", default_value_t = 7200)]
    pub task_timeout_max: u64,

    /// Where host memory is read from (tests point this at a file).
    #[arg(
        long,
        env = "BERTH_MEMINFO_PATH",
        default_value = "/proc/meminfo",
        hide = true
    )]
    pub meminfo_path: PathBuf,
}

/// Settings after validation, in the types the rest of control works with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub api_bind: SocketAddr,
    pub tokens: Tokens,
    pub image: String,
    pub network: String,
    pub network_bridge: Option<String>,
    pub preview_domain: String,
    pub preview_scheme: String,
    pub preview_port: Option<u16>,
    pub idle_timeout: Duration,
    /// Zero: no light sleep.
    pub deep_sleep_after: Duration,
    pub warm_pool: usize,
    pub pty_grace: Duration,
    pub keepalive_max: Duration,
    pub default_memory: u64,
    pub max_memory: u64,
    pub default_cpus: f64,
    pub max_cpus: f64,
    pub pids_limit: i64,
    pub tmp_size: u64,
    pub memory_headroom: Headroom,
    pub reconcile_interval: Duration,
    pub reap_interval: Duration,
    pub exec_timeout: Duration,
    pub exec_output_limit: usize,
    pub max_file_size: usize,
    pub stop_timeout: Duration,
    pub task_timeout: Duration,
    pub task_timeout_max: Duration,
    pub meminfo_path: PathBuf,
    pub runtime: Option<String>,
    pub egress: Egress,
    pub egress_deny: Vec<Cidr>,
    pub firewall: bool,
    pub exec_agent: bool,
    pub sandbox_uid_base: u32,
    pub host_etc: PathBuf,
}

impl Config {
    /// Checks the settings and converts them; the error says what to change.
    pub fn validate(self) -> Result<Settings, ConfigError> {
        let mut tokens = match self.api_tokens.as_ref().map(Secret::expose) {
            Some(raw) if !raw.trim().is_empty() => Tokens::parse(raw)?,
            _ => Tokens::none(),
        };
        if let Some(edge) = self.edge_token.as_ref().filter(|t| !t.is_empty()) {
            if tokens.is_empty() {
                // Auth would be on with no token that opens the API.
                return Err(invalid(
                    "BERTH_API_TOKENS",
                    "set as well when BERTH_EDGE_TOKEN is (the edge's token opens only /v1/edge/…)",
                ));
            }
            tokens = tokens.with_edge(edge.expose())?;
        }
        if tokens.is_empty() && !self.api_bind.ip().is_loopback() {
            return Err(ConfigError::OpenNonLoopbackBind(self.api_bind));
        }
        let max_cpus = self.max_cpus.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
        });
        positive("BERTH_DEFAULT_CPUS", self.default_cpus)?;
        positive("BERTH_MAX_CPUS", max_cpus)?;
        if self.default_cpus > max_cpus {
            return Err(invalid("BERTH_DEFAULT_CPUS", "at most BERTH_MAX_CPUS"));
        }
        if self.default_memory.0 > self.max_memory.0 {
            return Err(invalid("BERTH_DEFAULT_MEMORY", "at most BERTH_MAX_MEMORY"));
        }
        if self.default_memory.0 < 6 * 1024 * 1024 {
            return Err(invalid(
                "BERTH_DEFAULT_MEMORY",
                "at least 6m (Docker's minimum)",
            ));
        }
        if self.pids_limit < 16 {
            return Err(invalid("BERTH_PIDS_LIMIT", "at least 16"));
        }
        if self.idle_timeout == 0 {
            return Err(invalid("BERTH_IDLE_TIMEOUT", "at least 1 second"));
        }
        if self.reconcile_interval == 0 || self.reap_interval == 0 {
            return Err(invalid(
                "BERTH_RECONCILE_INTERVAL and BERTH_REAP_INTERVAL",
                "at least 1 second",
            ));
        }
        if self.task_timeout == 0 || self.task_timeout_max == 0 {
            return Err(invalid(
                "BERTH_TASK_TIMEOUT and BERTH_TASK_TIMEOUT_MAX",
                "at least 1 second",
            ));
        }
        if self.exec_timeout == 0 {
            return Err(invalid("BERTH_EXEC_TIMEOUT", "at least 1 second"));
        }
        let domain = self
            .preview_domain
            .trim()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if domain.is_empty() || domain.contains(['/', ':', ' ']) {
            return Err(invalid(
                "BERTH_PREVIEW_DOMAIN",
                "a DNS name such as example.com",
            ));
        }
        if !matches!(self.preview_scheme.as_str(), "http" | "https") {
            return Err(invalid("BERTH_PREVIEW_SCHEME", "http or https"));
        }
        if self.network_bridge.len() > 15 {
            return Err(invalid(
                "BERTH_NETWORK_BRIDGE",
                "at most 15 characters (a Linux interface name)",
            ));
        }
        if self.network.is_empty() || self.image.is_empty() {
            return Err(invalid("BERTH_NETWORK and BERTH_IMAGE", "non-empty"));
        }
        let egress = match self.egress.trim() {
            "open" => Egress::Open,
            "none" => Egress::None,
            _ => return Err(invalid("BERTH_EGRESS", "open or none")),
        };
        let egress_deny =
            cidr::parse_list(&self.egress_deny).map_err(|e| ConfigError::Invalid {
                name: "BERTH_EGRESS_DENY",
                what: format!("comma-separated CIDRs: {e}"),
            })?;
        let runtime = self.runtime.trim();
        if !runtime
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(invalid("BERTH_RUNTIME", "a runtime name such as runsc"));
        }
        if self.sandbox_uid_base < 65_536 {
            return Err(invalid(
                "BERTH_SANDBOX_UID_BASE",
                "at least 65536 (above the uids of host accounts)",
            ));
        }
        Ok(Settings {
            runtime: Some(runtime.to_string()).filter(|r| !r.is_empty()),
            egress,
            egress_deny,
            firewall: self.firewall,
            exec_agent: self.exec_agent,
            sandbox_uid_base: self.sandbox_uid_base,
            host_etc: self.host_etc,
            data_dir: self.data_dir,
            api_bind: self.api_bind,
            tokens,
            image: self.image,
            network: self.network,
            network_bridge: Some(self.network_bridge).filter(|b| !b.is_empty()),
            preview_domain: domain,
            preview_scheme: self.preview_scheme,
            preview_port: self.preview_port,
            idle_timeout: Duration::from_secs(self.idle_timeout),
            deep_sleep_after: Duration::from_secs(self.deep_sleep_after),
            warm_pool: self.warm_pool,
            pty_grace: Duration::from_secs(self.pty_grace),
            keepalive_max: Duration::from_secs(self.keepalive_max),
            default_memory: self.default_memory.0,
            max_memory: self.max_memory.0,
            default_cpus: self.default_cpus,
            max_cpus,
            pids_limit: self.pids_limit,
            tmp_size: self.tmp_size.0,
            memory_headroom: self.memory_headroom,
            reconcile_interval: Duration::from_secs(self.reconcile_interval),
            reap_interval: Duration::from_secs(self.reap_interval),
            exec_timeout: Duration::from_secs(self.exec_timeout),
            exec_output_limit: usize::try_from(self.exec_output_limit.0).unwrap_or(usize::MAX),
            max_file_size: usize::try_from(self.max_file_size.0).unwrap_or(usize::MAX),
            stop_timeout: Duration::from_secs(self.stop_timeout),
            task_timeout: Duration::from_secs(self.task_timeout),
            task_timeout_max: Duration::from_secs(self.task_timeout_max),
            meminfo_path: self.meminfo_path,
        })
    }
}

fn invalid(name: &'static str, what: &str) -> ConfigError {
    ConfigError::Invalid {
        name,
        what: what.to_string(),
    }
}

fn positive(name: &'static str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(invalid(name, "a positive number"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut all = vec!["berth-control"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).unwrap()
    }

    #[test]
    fn loopback_without_tokens_is_allowed() {
        let s = parse(&["--api-bind", "127.0.0.1:9090"]).validate().unwrap();
        assert!(s.tokens.is_empty());
    }

    #[test]
    fn open_bind_without_tokens_is_refused_and_says_why() {
        let err = parse(&["--api-bind", "0.0.0.0:9090"])
            .validate()
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("BERTH_API_TOKENS"), "{text}");
        assert!(text.contains("0.0.0.0:9090"), "{text}");
    }

    #[test]
    fn an_edge_token_without_admin_tokens_is_refused() {
        let err = parse(&["--edge-token", "e".repeat(20).as_str()])
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("BERTH_API_TOKENS"), "{err}");
    }

    #[test]
    fn open_bind_with_tokens_is_allowed() {
        let s = parse(&[
            "--api-bind",
            "0.0.0.0:9090",
            "--api-tokens",
            "ci:0123456789abcdef0123",
        ])
        .validate()
        .unwrap();
        assert!(!s.tokens.is_empty());
    }

    #[test]
    fn debug_output_never_shows_tokens() {
        let config = parse(&[
            "--api-tokens",
            "ci:0123456789abcdef0123",
            "--edge-token",
            "edge-secret-0123456789",
        ]);
        let shown = format!("{config:?} {:?}", config.clone().validate().unwrap());
        assert!(!shown.contains("0123456789abcdef0123"), "{shown}");
        assert!(!shown.contains("edge-secret-0123456789"), "{shown}");
    }

    #[test]
    fn egress_settings_are_checked() {
        let s = parse(&[]).validate().unwrap();
        assert_eq!(s.egress, Egress::Open);
        assert!(
            s.egress_deny
                .iter()
                .any(|c| c.contains("169.254.169.254".parse().unwrap()))
        );
        assert!(parse(&["--egress", "closed"]).validate().is_err());
        assert!(parse(&["--egress-deny", "10.0.0.0/40"]).validate().is_err());
        assert!(parse(&["--runtime", "run sc"]).validate().is_err());
    }

    #[test]
    fn domain_is_normalised() {
        let s = parse(&["--preview-domain", "Example.COM."])
            .validate()
            .unwrap();
        assert_eq!(s.preview_domain, "example.com");
    }

    #[test]
    fn default_memory_above_max_is_refused() {
        let err = parse(&["--default-memory", "16g", "--max-memory", "8g"])
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("BERTH_DEFAULT_MEMORY"));
    }
}
