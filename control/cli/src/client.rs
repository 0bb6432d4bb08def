//! The HTTP client: berth's JSON errors become [`CliError::Api`] with the
//! server's own message.

use std::time::Duration;

use berth_api::ErrorBody;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// An error answer of the API: its code and message.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("cannot reach berth at {url}: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Other(String),
}

impl CliError {
    /// The process exit code: 2 for usage, 3 unreachable, 4 for API refusals, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Unreachable { .. } => 3,
            CliError::Api { .. } => 4,
            CliError::Other(_) => 1,
        }
    }
}

#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(config: &Config) -> Result<Self, CliError> {
        let base = config
            .url
            .clone()
            .unwrap_or_else(|| "http://127.0.0.1:9090".to_string());
        let base = base.trim_end_matches('/').to_string();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| CliError::Other(e.to_string()))?;
        Ok(Self {
            base,
            token: config.token.clone(),
            http,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Sends, and turns an error answer into [`CliError::Api`].
    pub async fn send(&self, req: RequestBuilder) -> Result<reqwest::Response, CliError> {
        let response = req.send().await.map_err(|e| CliError::Unreachable {
            url: self.base.clone(),
            cause: root_cause(&e),
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => CliError::Api {
                status: status.as_u16(),
                code: body.error.code.as_str().to_string(),
                message: body.error.message,
            },
            Err(_) => CliError::Api {
                status: status.as_u16(),
                code: "http".into(),
                message: format!("{} {}", status, text.trim()),
            },
        })
    }

    /// A JSON answer, as raw JSON (for `--json`) and typed.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<(Value, T), CliError> {
        let mut req = self.request(method, path);
        if let Some(body) = body {
            req = req.json(body);
        }
        let response = self.send(req).await?;
        if response.status() == StatusCode::NO_CONTENT {
            let typed = serde_json::from_value(Value::Null)
                .map_err(|e| CliError::Other(format!("unexpected empty answer: {e}")))?;
            return Ok((Value::Null, typed));
        }
        let raw: Value = response
            .json()
            .await
            .map_err(|e| CliError::Other(format!("the answer is not JSON: {e}")))?;
        let typed = serde_json::from_value(raw.clone()).map_err(|e| {
            CliError::Other(format!("the answer is not what this CLI expects: {e}"))
        })?;
        Ok((raw, typed))
    }
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    cause
}
