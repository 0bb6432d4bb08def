//! Waiting until TXT records are visible at a resolver, before asking the
//! ACME server to look.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_resolver::Resolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;

use super::dns::DnsError;

#[derive(Debug, Clone)]
pub struct Propagation {
    /// `None`: the system's resolvers.
    pub resolver: Option<SocketAddr>,
    pub timeout: Duration,
    pub poll: Duration,
}

impl Propagation {
    fn resolver(&self) -> Result<Resolver<TokioRuntimeProvider>, DnsError> {
        let mut builder = match self.resolver {
            Some(addr) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                let server = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
                Resolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![server]),
                    TokioRuntimeProvider::default(),
                )
            }
            None => Resolver::builder_tokio().map_err(|e| DnsError::Lookup(e.to_string()))?,
        };
        // Every poll must ask again.
        builder.options_mut().cache_size = 0;
        builder.build().map_err(|e| DnsError::Lookup(e.to_string()))
    }

    /// The TXT values at `fqdn` now (none when the name has none).
    pub async fn txt_values(&self, fqdn: &str) -> Result<Vec<String>, DnsError> {
        let resolver = self.resolver()?;
        let name = format!("{}.", fqdn.trim_end_matches('.'));
        let Ok(found) = resolver.txt_lookup(name.as_str()).await else {
            return Ok(Vec::new());
        };
        Ok(found
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(txt) => Some(txt.to_string()),
                _ => None,
            })
            .collect())
    }

    /// Returns once every value is among `fqdn`'s TXT records.
    pub async fn wait(&self, fqdn: &str, values: &[String]) -> Result<(), DnsError> {
        let began = Instant::now();
        loop {
            let seen = self.txt_values(fqdn).await?;
            if values.iter().all(|v| seen.contains(v)) {
                tracing::debug!(
                    fqdn,
                    secs = began.elapsed().as_secs(),
                    "TXT records visible"
                );
                return Ok(());
            }
            if began.elapsed() >= self.timeout {
                return Err(DnsError::NotPropagated {
                    fqdn: fqdn.to_string(),
                    resolver: self
                        .resolver
                        .map_or_else(|| "the system resolver".to_string(), |a| a.to_string()),
                    secs: self.timeout.as_secs(),
                });
            }
            tokio::time::sleep(self.poll).await;
        }
    }
}
