//! Cloudflare's API v4 with an API token holding DNS edit rights: find the
//! zone of the name, create TXT records, delete them by id.

use berth_wire::Secret;
use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::{DnsError, DnsProvider, provider_error};

pub struct Cloudflare {
    http: reqwest::Client,
    token: Secret,
    api: String,
    /// (fqdn, value) → (zone id, record id), for cleanup.
    records: Mutex<HashMap<(String, String), (String, String)>>,
}

fn err(message: impl Into<String>) -> DnsError {
    provider_error("cloudflare", message)
}

/// `_acme-challenge.preview.example.com` → the candidate zones, longest first.
fn zone_candidates(fqdn: &str) -> Vec<String> {
    let labels: Vec<&str> = fqdn.trim_end_matches('.').split('.').collect();
    (1..labels.len().saturating_sub(1))
        .map(|i| labels[i..].join("."))
        .collect()
}

impl Cloudflare {
    pub fn new(token: Secret, api: String) -> Result<Self, DnsError> {
        if token.expose().trim().is_empty() {
            return Err(DnsError::Config(
                "BERTH_CLOUDFLARE_API_TOKEN is empty".into(),
            ));
        }
        Ok(Self {
            http: reqwest::Client::new(),
            token,
            api: api.trim_end_matches('/').to_string(),
            records: Mutex::new(HashMap::new()),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, DnsError> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(self.token.expose());
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.map_err(|e| err(e.to_string()))?;
        let status = resp.status();
        let body: Value = resp.json().await.map_err(|e| err(e.to_string()))?;
        if !status.is_success() || body["success"] == false {
            return Err(err(format!("{path} answered {status}: {}", body["errors"])));
        }
        Ok(body)
    }

    async fn zone_id(&self, fqdn: &str) -> Result<String, DnsError> {
        for zone in zone_candidates(fqdn) {
            let found = self
                .call(reqwest::Method::GET, &format!("/zones?name={zone}"), None)
                .await?;
            if let Some(id) = found["result"][0]["id"].as_str() {
                return Ok(id.to_string());
            }
        }
        Err(err(format!("no zone of this account holds {fqdn}")))
    }
}

#[async_trait]
impl DnsProvider for Cloudflare {
    fn name(&self) -> &'static str {
        "cloudflare"
    }

    async fn present(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        let zone = self.zone_id(fqdn).await?;
        let created = self
            .call(
                reqwest::Method::POST,
                &format!("/zones/{zone}/dns_records"),
                Some(json!({"type": "TXT", "name": fqdn, "content": value, "ttl": 60})),
            )
            .await?;
        let id = created["result"]["id"]
            .as_str()
            .ok_or_else(|| err("the created record has no id"))?
            .to_string();
        self.records
            .lock()
            .await
            .insert((fqdn.to_string(), value.to_string()), (zone, id));
        Ok(())
    }

    async fn cleanup(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        let Some((zone, id)) = self
            .records
            .lock()
            .await
            .remove(&(fqdn.to_string(), value.to_string()))
        else {
            return Ok(());
        };
        self.call(
            reqwest::Method::DELETE,
            &format!("/zones/{zone}/dns_records/{id}"),
            None,
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn zones_are_tried_from_the_longest() {
        assert_eq!(
            super::zone_candidates("_acme-challenge.preview.example.com"),
            vec!["preview.example.com", "example.com"]
        );
    }
}
