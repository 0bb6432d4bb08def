//! DNS providers for ACME DNS-01: put a TXT record up, take it down. One
//! file per provider behind [`DnsProvider`]; a new provider is a new file.

mod challtestsrv;
mod cloudflare;
mod exec;

use berth_wire::Secret;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

pub use challtestsrv::ChallTestSrv;
pub use cloudflare::Cloudflare;
pub use exec::Exec;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("{provider}: {message}")]
    Provider {
        provider: &'static str,
        message: String,
    },
    #[error("the TXT record {fqdn} was not visible at {resolver} after {secs} s")]
    NotPropagated {
        fqdn: String,
        resolver: String,
        secs: u64,
    },
    #[error("DNS lookup: {0}")]
    Lookup(String),
    #[error("DNS provider settings: {0}")]
    Config(String),
}

#[async_trait]
pub trait DnsProvider: Send + Sync {
    fn name(&self) -> &'static str;

    /// Adds a TXT record `value` at `fqdn` (keeping other values there: a
    /// wildcard and its apex share one name).
    async fn present(&self, fqdn: &str, value: &str) -> Result<(), DnsError>;

    /// Removes what `present` added.
    async fn cleanup(&self, fqdn: &str, value: &str) -> Result<(), DnsError>;
}

/// Provider settings, as configured.
#[derive(Debug, Clone)]
pub enum ProviderConfig {
    Cloudflare { token: Secret, api: String },
    Exec { script: PathBuf, env: Vec<String> },
    ChallTestSrv { url: String },
}

pub fn build(config: &ProviderConfig) -> Result<Arc<dyn DnsProvider>, DnsError> {
    Ok(match config {
        ProviderConfig::Cloudflare { token, api } => {
            Arc::new(Cloudflare::new(token.clone(), api.clone())?)
        }
        ProviderConfig::Exec { script, env } => Arc::new(Exec::new(script.clone(), env)?),
        ProviderConfig::ChallTestSrv { url } => Arc::new(ChallTestSrv::new(url.clone())),
    })
}

fn provider_error(provider: &'static str, message: impl Into<String>) -> DnsError {
    DnsError::Provider {
        provider,
        message: message.into(),
    }
}
