//! `BERTH_TLS=acme`: one certificate for `*.preview.<domain>` and
//! `<domain>` from an ACME CA over DNS-01, renewed in the background when a
//! third of its lifetime is left (or at once when it is missing or expired),
//! with backoff on failure. The old certificate serves until the new one is
//! installed; the account is created once and reused.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use rcgen::{CertificateParams, DistinguishedName, KeyPair};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::dns::{DnsError, DnsProvider};
use super::propagation::Propagation;
use super::{CertPair, CertStore, TlsError, files, names, now_s};
use crate::metrics::Metrics;

pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("ACME: {0}")]
    Acme(#[from] instant_acme::Error),
    #[error(transparent)]
    Dns(#[from] DnsError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("ACME order: {0}")]
    Order(String),
    #[error("ACME account file: {0}")]
    AccountFile(#[from] serde_json::Error),
}

#[derive(Debug, Clone)]
pub struct AcmeSettings {
    pub directory: String,
    pub email: Option<String>,
    /// A root to trust for the ACME server's own HTTPS (private CAs, Pebble).
    pub ca_root: Option<PathBuf>,
    pub domain: String,
    /// Where the account, certificate and key are kept.
    pub dir: PathBuf,
}

/// What a kept certificate was issued for, stored beside it
/// (`cert.json`): it is served again only for the same CA directory and
/// domain.
#[derive(Serialize, Deserialize, PartialEq, Eq)]
struct Issued {
    directory: String,
    domain: String,
}

#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

pub struct Acme {
    settings: AcmeSettings,
    dns: Arc<dyn DnsProvider>,
    propagation: Propagation,
    store: CertStore,
    metrics: Metrics,
    /// Asks for a renewal now (the admin listener's `POST /tls/renew`).
    pub renew_now: Arc<Notify>,
    /// Whether a certificate from the CA is served (not the placeholder).
    issued: std::sync::atomic::AtomicBool,
}

impl Acme {
    pub fn new(
        settings: AcmeSettings,
        dns: Arc<dyn DnsProvider>,
        propagation: Propagation,
        store: CertStore,
        metrics: Metrics,
    ) -> Self {
        Self {
            settings,
            dns,
            propagation,
            store,
            metrics,
            renew_now: Arc::new(Notify::new()),
            issued: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn cert_path(&self) -> PathBuf {
        self.settings.dir.join("cert.pem")
    }

    fn key_path(&self) -> PathBuf {
        self.settings.dir.join("key.pem")
    }

    fn issued_path(&self) -> PathBuf {
        self.settings.dir.join("cert.json")
    }

    fn issued_for(&self) -> Issued {
        Issued {
            directory: self.settings.directory.clone(),
            domain: self.settings.domain.clone(),
        }
    }

    /// Serves the certificate kept from an earlier run, if any.
    /// Only a certificate issued by the same CA directory for the same
    /// domain (say, not a staging certificate once production is set).
    pub fn load_kept(&self) -> Result<bool, TlsError> {
        let (Some(chain), Some(key)) = (
            files::read_optional(&self.cert_path())?,
            files::read_optional(&self.key_path())?,
        ) else {
            return Ok(false);
        };
        let issued = files::read_optional(&self.issued_path())?
            .and_then(|bytes| serde_json::from_slice::<Issued>(&bytes).ok());
        match issued {
            Some(issued) if issued == self.issued_for() => {}
            Some(issued) => {
                tracing::warn!(
                    kept_directory = %issued.directory,
                    kept_domain = %issued.domain,
                    directory = %self.settings.directory,
                    domain = %self.settings.domain,
                    "the kept certificate was issued by another ACME directory or for another domain; a new one will be ordered"
                );
                return Ok(false);
            }
            None => {
                tracing::warn!(
                    "the kept certificate does not say which ACME directory issued it; a new one will be ordered"
                );
                return Ok(false);
            }
        }
        let pair = CertPair::from_pem(&chain, &key)?;
        let names_match = pair.chain[0].subject_alt_names().is_some_and(|sans| {
            sans.iter()
                .any(|n| n.dnsname() == Some(&format!("*.preview.{}", self.settings.domain)))
        });
        if !names_match {
            tracing::warn!("the kept certificate is for another domain; a new one will be ordered");
            return Ok(false);
        }
        self.store.install(pair, &self.metrics);
        self.issued
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(true)
    }

    /// The account, restored from its credentials or created (and kept).
    async fn account(&self) -> Result<Account, AcmeError> {
        let path = self.settings.dir.join("account.json");
        let builder = || match &self.settings.ca_root {
            Some(root) => Account::builder_with_root(root),
            None => Account::builder(),
        };
        if let Some(bytes) = files::read_optional(&path)? {
            let stored: StoredAccount = serde_json::from_slice(&bytes)?;
            if stored.directory == self.settings.directory {
                return Ok(builder()?.from_credentials(stored.credentials).await?);
            }
            tracing::info!("the ACME directory changed; creating a new account");
        }
        let contact = self.settings.email.as_ref().map(|e| format!("mailto:{e}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let (account, credentials) = builder()?
            .create(
                &NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.settings.directory.clone(),
                None,
            )
            .await?;
        let stored = StoredAccount {
            directory: self.settings.directory.clone(),
            credentials,
        };
        files::write_atomic(&path, &serde_json::to_vec_pretty(&stored)?, 0o600)?;
        tracing::info!(id = account.id(), "ACME account created");
        Ok(account)
    }

    /// Orders, validates (DNS-01), finalizes and stores a new certificate.
    /// TXT records are removed afterwards, also after a failure.
    pub async fn obtain(&self) -> Result<CertPair, AcmeError> {
        let account = self.account().await?;
        let identifiers: Vec<Identifier> = names(&self.settings.domain)
            .into_iter()
            .map(Identifier::Dns)
            .collect();
        let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
        let mut presented: Vec<(String, String)> = Vec::new();
        let result = self.validate_and_finalize(&mut order, &mut presented).await;
        for (fqdn, value) in &presented {
            if let Err(e) = self.dns.cleanup(fqdn, value).await {
                tracing::warn!(fqdn, error = %e, "could not remove a TXT record");
            }
        }
        result
    }

    async fn validate_and_finalize(
        &self,
        order: &mut instant_acme::Order,
        presented: &mut Vec<(String, String)>,
    ) -> Result<CertPair, AcmeError> {
        // The wildcard and the apex share `_acme-challenge.<domain>`: every
        // value must be up before any challenge is declared ready.
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz?;
            if authz.status == AuthorizationStatus::Valid {
                continue;
            }
            let challenge = authz
                .challenge(ChallengeType::Dns01)
                .ok_or_else(|| AcmeError::Order("the CA offers no dns-01 challenge".into()))?;
            let Identifier::Dns(base) = challenge.identifier().identifier else {
                return Err(AcmeError::Order("a non-DNS identifier".into()));
            };
            let fqdn = format!("_acme-challenge.{base}");
            let value = challenge.key_authorization().dns_value();
            self.dns.present(&fqdn, &value).await?;
            presented.push((fqdn, value));
        }
        let mut by_name: Vec<(String, Vec<String>)> = Vec::new();
        for (fqdn, value) in presented.iter() {
            match by_name.iter_mut().find(|(n, _)| n == fqdn) {
                Some((_, values)) => values.push(value.clone()),
                None => by_name.push((fqdn.clone(), vec![value.clone()])),
            }
        }
        for (fqdn, values) in &by_name {
            self.propagation.wait(fqdn, values).await?;
        }
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz?;
            if authz.status != AuthorizationStatus::Pending {
                continue;
            }
            if let Some(mut challenge) = authz.challenge(ChallengeType::Dns01) {
                challenge.set_ready().await?;
            }
        }
        let patience = RetryPolicy::new().timeout(Duration::from_secs(180));
        let status = order.poll_ready(&patience).await?;
        if status != OrderStatus::Ready {
            return Err(AcmeError::Order(format!(
                "the order is {status:?}, not ready"
            )));
        }
        let key = KeyPair::generate().map_err(TlsError::from)?;
        let mut params =
            CertificateParams::new(names(&self.settings.domain)).map_err(TlsError::from)?;
        params.distinguished_name = DistinguishedName::new();
        let csr = params.serialize_request(&key).map_err(TlsError::from)?;
        order.finalize_csr(csr.der()).await?;
        let chain = order.poll_certificate(&patience).await?;
        let key_pem = key.serialize_pem();
        let pair = CertPair::from_pem(chain.as_bytes(), key_pem.as_bytes())?;
        files::write_atomic(&self.key_path(), key_pem.as_bytes(), 0o600)?;
        files::write_atomic(&self.cert_path(), chain.as_bytes(), 0o644)?;
        let issued = serde_json::to_vec_pretty(&self.issued_for())?;
        files::write_atomic(&self.issued_path(), &issued, 0o644)?;
        Ok(pair)
    }

    /// Seconds until the current certificate should be renewed (0: now).
    fn due_in(&self) -> u64 {
        if !self.issued.load(std::sync::atomic::Ordering::Relaxed) {
            return 0;
        }
        match self.store.current() {
            Some(pair) => u64::try_from(pair.renew_at() - now_s()).unwrap_or(0),
            None => 0,
        }
    }
}

/// The background renewal loop.
pub struct Renewer {
    pub acme: Arc<Acme>,
}

#[async_trait]
impl BackgroundService for Renewer {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let acme = &self.acme;
        let mut failures: u32 = 0;
        loop {
            let wait = if failures == 0 {
                Duration::from_secs(acme.due_in())
            } else {
                // 30 s, 1 min, 2 min, … up to an hour; a still-valid
                // certificate keeps serving meanwhile.
                Duration::from_secs(30u64.saturating_mul(1 << (failures - 1).min(7)).min(3600))
            };
            if !wait.is_zero() {
                tracing::info!(in_s = wait.as_secs(), "next certificate renewal");
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = acme.renew_now.notified() => tracing::info!("certificate renewal asked for"),
                    _ = shutdown.changed() => return,
                }
            }
            tracing::info!(directory = %acme.settings.directory, domain = %acme.settings.domain, "ordering a certificate");
            let attempt = tokio::select! {
                result = acme.obtain() => result,
                _ = shutdown.changed() => return,
            };
            match attempt {
                Ok(pair) => {
                    failures = 0;
                    acme.metrics.renewal_finished(true);
                    acme.store.install(pair, &acme.metrics);
                    acme.issued
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e) => {
                    failures += 1;
                    acme.metrics.renewal_finished(false);
                    tracing::error!(error = %e, failures, "certificate renewal failed; the current certificate keeps serving");
                }
            }
        }
    }
}
