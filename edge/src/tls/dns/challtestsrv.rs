//! pebble-challtestsrv's management API: `POST /set-txt` appends a value,
//! `POST /clear-txt` removes the name's values. Used by the tests, and handy
//! for staging setups.

use async_trait::async_trait;
use serde_json::json;

use super::{DnsError, DnsProvider, provider_error};

pub struct ChallTestSrv {
    http: reqwest::Client,
    url: String,
}

impl ChallTestSrv {
    pub fn new(url: String) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: url.trim_end_matches('/').to_string(),
        }
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> Result<(), DnsError> {
        let resp = self
            .http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .map_err(|e| provider_error("challtestsrv", e.to_string()))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(provider_error(
                "challtestsrv",
                format!("{path} answered {}", resp.status()),
            ))
        }
    }
}

#[async_trait]
impl DnsProvider for ChallTestSrv {
    fn name(&self) -> &'static str {
        "challtestsrv"
    }

    async fn present(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        self.post(
            "/set-txt",
            json!({"host": format!("{fqdn}."), "value": value}),
        )
        .await
    }

    async fn cleanup(&self, fqdn: &str, _value: &str) -> Result<(), DnsError> {
        self.post("/clear-txt", json!({"host": format!("{fqdn}.")}))
            .await
    }
}
