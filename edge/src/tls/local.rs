//! `BERTH_TLS=local`: a CA made once and kept in the data directory, and a
//! leaf for `*.preview.<domain>` and `<domain>` signed by it at every start.
//! Trust the CA once (its path is logged) and every preview URL is green.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use super::{CertPair, TlsError, files, names};

fn ca_params(domain: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("berth local CA ({domain})"));
    dn.push(DnType::OrganizationName, "berth");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

pub struct LocalCa {
    pub ca_path: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl LocalCa {
    /// Loads the CA from `dir`, making it on first use (valid 10 years).
    pub fn load_or_create(dir: &Path, domain: &str) -> Result<Self, TlsError> {
        let ca_path = dir.join("local-ca.pem");
        let key_path = dir.join("local-ca.key");
        let key = match (
            files::read_optional(&ca_path)?,
            files::read_optional(&key_path)?,
        ) {
            (Some(_), Some(key_pem)) => KeyPair::from_pem(&String::from_utf8_lossy(&key_pem))?,
            _ => {
                let key = KeyPair::generate()?;
                let mut params = ca_params(domain);
                let now = OffsetDateTime::now_utc();
                params.not_before = now - Duration::days(1);
                params.not_after = now + Duration::days(3650);
                let cert = params.self_signed(&key)?;
                files::write_atomic(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
                files::write_atomic(&ca_path, cert.pem().as_bytes(), 0o644)?;
                tracing::info!(path = %ca_path.display(), "made a local CA");
                key
            }
        };
        // The issuer's name and key id derive from the same parameters and key.
        Ok(Self {
            ca_path,
            issuer: Issuer::new(ca_params(domain), key),
        })
    }

    /// A leaf for the preview names, valid `days`, with the CA in its chain.
    pub fn issue(&self, domain: &str, days: i64) -> Result<(String, String), TlsError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names(domain))?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("*.preview.{domain}"));
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(days);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = params.signed_by(&key, &self.issuer)?;
        let ca = std::fs::read_to_string(&self.ca_path).map_err(|source| TlsError::File {
            path: self.ca_path.display().to_string(),
            source,
        })?;
        Ok((format!("{}{ca}", leaf.pem()), key.serialize_pem()))
    }
}

/// The local certificate: CA loaded or made, leaf issued and written next
/// to it (for other servers to use the same certificate).
pub fn certificate(dir: &Path, domain: &str) -> Result<(CertPair, PathBuf), TlsError> {
    let ca = LocalCa::load_or_create(dir, domain)?;
    let (chain, key) = ca.issue(domain, 397)?;
    files::write_atomic(&dir.join("cert.pem"), chain.as_bytes(), 0o644)?;
    files::write_atomic(&dir.join("key.pem"), key.as_bytes(), 0o600)?;
    Ok((
        CertPair::from_pem(chain.as_bytes(), key.as_bytes())?,
        ca.ca_path,
    ))
}

/// A throwaway self-signed certificate, served in ACME mode until the
/// first order completes (clients warn instead of failing the handshake).
pub fn placeholder(domain: &str) -> Result<CertPair, TlsError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names(domain))?;
    params
        .distinguished_name
        .push(DnType::CommonName, "berth: certificate pending");
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(7);
    let cert = params.self_signed(&key)?;
    CertPair::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
}

#[cfg(test)]
mod tests {
    use openssl::x509::X509;
    use openssl::x509::store::X509StoreBuilder;

    use super::*;

    #[test]
    fn the_leaf_chains_to_the_kept_ca_across_restarts() {
        let dir = std::env::temp_dir().join(format!("berth-local-ca-{}", std::process::id()));
        let (first, ca_path) = certificate(&dir, "example.test").unwrap();
        let ca_pem = std::fs::read(&ca_path).unwrap();
        // A second start keeps the CA and issues a new leaf under it.
        let (second, _) = certificate(&dir, "example.test").unwrap();
        assert_eq!(std::fs::read(&ca_path).unwrap(), ca_pem);
        assert_ne!(first.serial, second.serial);
        let ca = X509::from_pem(&ca_pem).unwrap();
        for pair in [&first, &second] {
            let leaf = &pair.chain[0];
            assert!(
                leaf.verify(&ca.public_key().unwrap()).unwrap(),
                "signed by the CA"
            );
            let mut store = X509StoreBuilder::new().unwrap();
            store.add_cert(ca.clone()).unwrap();
            let sans: Vec<String> = leaf
                .subject_alt_names()
                .unwrap()
                .iter()
                .filter_map(|n| n.dnsname().map(String::from))
                .collect();
            assert_eq!(sans, vec!["*.preview.example.test", "example.test"]);
            assert!(pair.not_after - pair.not_before > 300 * 86_400);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
