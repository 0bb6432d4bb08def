//! A user's script for any other DNS: `<script> present|cleanup <fqdn> <value>`,
//! exit 0 on success.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

use super::{DnsError, DnsProvider, provider_error};

pub struct Exec {
    script: PathBuf,
}

impl Exec {
    pub fn new(script: PathBuf) -> Result<Self, DnsError> {
        if !script.is_file() {
            return Err(DnsError::Config(format!(
                "BERTH_DNS_EXEC `{}` is not a file",
                script.display()
            )));
        }
        Ok(Self { script })
    }

    async fn run(&self, action: &str, fqdn: &str, value: &str) -> Result<(), DnsError> {
        let child = tokio::process::Command::new(&self.script)
            .args([action, fqdn, value])
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(300), child)
            .await
            .map_err(|_| provider_error("exec", format!("`{action}` ran past 300 s")))?
            .map_err(|e| {
                provider_error(
                    "exec",
                    format!("could not run {}: {e}", self.script.display()),
                )
            })?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        Err(provider_error(
            "exec",
            format!(
                "`{} {action} {fqdn}` failed ({}): {}",
                self.script.display(),
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            ),
        ))
    }
}

#[async_trait]
impl DnsProvider for Exec {
    fn name(&self) -> &'static str {
        "exec"
    }

    async fn present(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        self.run("present", fqdn, value).await
    }

    async fn cleanup(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        self.run("cleanup", fqdn, value).await
    }
}
