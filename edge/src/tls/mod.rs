//! HTTPS: certificates chosen at handshake time and swapped in memory.
//!
//! One certificate covers `*.preview.<domain>` and `<domain>`. It comes from
//! a local CA made on the spot (`BERTH_TLS=local`), or from an ACME CA over
//! DNS-01 (`BERTH_TLS=acme`), renewed in the background. Handshakes read the
//! current certificate from an `ArcSwap`, so a renewal never restarts the
//! edge nor touches open connections.

pub mod acme;
pub mod dns;
pub mod files;
pub mod local;
pub mod propagation;

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use openssl::asn1::Asn1Time;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use pingora::listeners::TlsAccept;
use pingora::listeners::tls::TlsSettings;
use pingora::protocols::tls::TlsRef;
use pingora::tls::ext;
use pingora::tls::ssl::SslVersion;

use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate: {0}")]
    Openssl(#[from] openssl::error::ErrorStack),
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("the certificate file holds no certificate")]
    Empty,
    #[error("TLS listener: {0}")]
    Listener(String),
}

/// A certificate chain and its key, ready for handshakes.
pub struct CertPair {
    pub chain: Vec<X509>,
    pub key: PKey<Private>,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    pub serial: String,
}

fn unix_of(time: &openssl::asn1::Asn1TimeRef) -> Result<i64, TlsError> {
    let diff = Asn1Time::from_unix(0)?.diff(time)?;
    Ok(i64::from(diff.days) * 86_400 + i64::from(diff.secs))
}

impl CertPair {
    /// Parses a PEM chain (leaf first) and a PEM private key.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let chain = X509::stack_from_pem(chain_pem)?;
        let leaf = chain.first().ok_or(TlsError::Empty)?;
        let serial = leaf.serial_number().to_bn()?.to_hex_str()?.to_string();
        Ok(Self {
            not_before: unix_of(leaf.not_before())?,
            not_after: unix_of(leaf.not_after())?,
            serial,
            key: PKey::private_key_from_pem(key_pem)?,
            chain,
        })
    }

    /// Seconds of validity left at `now`.
    pub fn remaining(&self, now: i64) -> i64 {
        self.not_after - now
    }

    /// When to renew: once a third of the lifetime is left.
    pub fn renew_at(&self) -> i64 {
        self.not_after - (self.not_after - self.not_before) / 3
    }
}

pub fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The certificate currently served.
#[derive(Clone, Default)]
pub struct CertStore {
    current: Arc<ArcSwapOption<CertPair>>,
}

impl CertStore {
    pub fn current(&self) -> Option<Arc<CertPair>> {
        self.current.load_full()
    }

    /// Serves `pair` from the next handshake on.
    pub fn install(&self, pair: CertPair, metrics: &Metrics) {
        metrics.certificate_installed(pair.not_after);
        tracing::info!(serial = %pair.serial, not_after = pair.not_after, "serving a new certificate");
        self.current.store(Some(Arc::new(pair)));
    }
}

/// Handshake callback: hands the current certificate to each new connection.
struct PickCertificate {
    store: CertStore,
}

#[async_trait]
impl TlsAccept for PickCertificate {
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        let Some(pair) = self.store.current() else {
            tracing::warn!("a TLS handshake arrived before any certificate was ready");
            return;
        };
        let installed = ext::ssl_use_certificate(ssl, &pair.chain[0])
            .and_then(|()| ext::ssl_use_private_key(ssl, &pair.key))
            .and_then(|()| {
                pair.chain[1..]
                    .iter()
                    .try_for_each(|c| ext::ssl_add_chain_cert(ssl, c))
            });
        if let Err(e) = installed {
            tracing::error!(error = %e, "could not use the certificate in a handshake");
        }
    }
}

/// Listener settings: TLS 1.2 and 1.3, ALPN h2 then http/1.1, the
/// certificate picked per handshake.
pub fn listener_settings(store: CertStore) -> Result<TlsSettings, TlsError> {
    let mut settings = TlsSettings::with_callbacks(Box::new(PickCertificate { store }))
        .map_err(|e| TlsError::Listener(e.to_string()))?;
    settings.set_min_proto_version(Some(SslVersion::TLS1_2))?;
    settings.enable_h2();
    Ok(settings)
}

/// The names the certificate covers.
pub fn names(domain: &str) -> Vec<String> {
    vec![format!("*.preview.{domain}"), domain.to_string()]
}
