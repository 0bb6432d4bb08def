//! berth-control's API, as the edge uses it: wake a sandbox, look one up,
//! report activity, fetch the preview key.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use serde::Deserialize;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ControlError {
    #[error("no such sandbox")]
    NotFound,
    #[error("control answered {status}: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("control is unreachable: {0}")]
    Unreachable(String),
}

/// A sandbox as control describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct RemoteSandbox {
    pub ports: Vec<u16>,
    #[serde(default = "yes")]
    pub public: bool,
}

fn yes() -> bool {
    true
}

#[derive(Clone)]
pub struct Control {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Control {
    pub fn new(base: &str, token: Option<String>, wake_timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(wake_timeout + Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(3))
            .build()
            .unwrap_or_default();
        Self {
            http,
            base: base.to_string(),
            token,
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ControlError> {
        let resp = req
            .send()
            .await
            .map_err(|e| ControlError::Unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return Ok(resp);
        }
        if status == 404 {
            return Err(ControlError::NotFound);
        }
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        Err(ControlError::Refused {
            status,
            code: body["error"]["code"].as_str().unwrap_or("").to_string(),
            message: body["error"]["message"].as_str().unwrap_or("").to_string(),
        })
    }

    /// Starts (wakes) a sandbox; returns once control reports it running.
    pub async fn start(&self, id: &str) -> Result<(), ControlError> {
        self.send(self.request(reqwest::Method::POST, &format!("/v1/sandboxes/{id}/start")))
            .await?;
        Ok(())
    }

    pub async fn sandbox(&self, id: &str) -> Result<Option<RemoteSandbox>, ControlError> {
        match self
            .send(self.request(reqwest::Method::GET, &format!("/v1/sandboxes/{id}")))
            .await
        {
            Ok(resp) => resp
                .json()
                .await
                .map(Some)
                .map_err(|e| ControlError::Unreachable(e.to_string())),
            Err(ControlError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn report_activity(&self, batch: &HashMap<String, i64>) -> Result<(), ControlError> {
        let body = serde_json::json!({ "sandboxes": batch });
        self.send(
            self.request(reqwest::Method::POST, "/v1/activity")
                .json(&body),
        )
        .await?;
        Ok(())
    }

    /// The key preview tokens are signed with.
    pub async fn preview_key(&self) -> Result<Vec<u8>, ControlError> {
        let resp = self
            .send(self.request(reqwest::Method::GET, "/v1/edge/bootstrap"))
            .await?;
        let body: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| ControlError::Unreachable(e.to_string()))?;
        base64::engine::general_purpose::STANDARD
            .decode(body["preview_key"].as_str().unwrap_or(""))
            .map_err(|e| ControlError::Unreachable(format!("bad preview key: {e}")))
    }
}
