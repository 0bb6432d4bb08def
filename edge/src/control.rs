//! berth-control's API, as the edge uses it (`/v1/edge/…`, the routes its
//! scoped token opens): wake a sandbox, look one up, report activity, fetch
//! the bootstrap (instance id and preview key).

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use berth_wire::Secret;
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

/// A sandbox as control describes it to the edge.
#[derive(Debug, Clone, Deserialize)]
pub struct RemoteSandbox {
    pub ports: Vec<u16>,
    pub public: bool,
    /// Preview tokens must name it.
    pub preview_generation: String,
}

/// What the edge learns from control once.
#[derive(Clone)]
pub struct Bootstrap {
    /// The install whose containers this edge routes.
    pub instance_id: String,
    /// The key preview tokens are signed with.
    pub preview_key: Vec<u8>,
}

#[derive(Clone)]
pub struct Control {
    http: reqwest::Client,
    base: String,
    token: Option<Secret>,
}

impl Control {
    pub fn new(base: &str, token: Option<Secret>, wake_timeout: Duration) -> Self {
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
            Some(t) => req.bearer_auth(t.expose()),
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
        self.send(self.request(
            reqwest::Method::POST,
            &format!("/v1/edge/sandboxes/{id}/wake"),
        ))
        .await?;
        Ok(())
    }

    pub async fn sandbox(&self, id: &str) -> Result<Option<RemoteSandbox>, ControlError> {
        match self
            .send(self.request(reqwest::Method::GET, &format!("/v1/edge/sandboxes/{id}")))
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
            self.request(reqwest::Method::POST, "/v1/edge/activity")
                .json(&body),
        )
        .await?;
        Ok(())
    }

    /// The instance id and the preview key.
    pub async fn bootstrap(&self) -> Result<Bootstrap, ControlError> {
        let resp = self
            .send(self.request(reqwest::Method::GET, "/v1/edge/bootstrap"))
            .await?;
        let body: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| ControlError::Unreachable(e.to_string()))?;
        let preview_key = base64::engine::general_purpose::STANDARD
            .decode(body["preview_key"].as_str().unwrap_or(""))
            .map_err(|e| ControlError::Unreachable(format!("bad preview key: {e}")))?;
        let instance_id = body["instance_id"]
            .as_str()
            .filter(|i| !i.is_empty())
            .ok_or_else(|| ControlError::Unreachable("the bootstrap has no instance id".into()))?
            .to_string();
        Ok(Bootstrap {
            instance_id,
            preview_key,
        })
    }
}
