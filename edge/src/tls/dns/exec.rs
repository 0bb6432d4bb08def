//! A user's script for any other DNS: `<script> present|cleanup <fqdn> <value>`,
//! exit 0 on success. It runs with PATH, HOME, LANG and the variables named
//! in BERTH_DNS_EXEC_ENV only, never the edge's whole environment (which
//! holds the edge's control token).

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

use super::{DnsError, DnsProvider, provider_error};

/// Variables every script gets, when the edge has them.
const BASE_ENV: [&str; 3] = ["PATH", "HOME", "LANG"];

pub struct Exec {
    script: PathBuf,
    /// Names of the variables passed on (values read at each run).
    env: Vec<String>,
}

impl Exec {
    pub fn new(script: PathBuf, env: &[String]) -> Result<Self, DnsError> {
        if !script.is_file() {
            return Err(DnsError::Config(format!(
                "BERTH_DNS_EXEC `{}` is not a file",
                script.display()
            )));
        }
        let mut names: Vec<String> = BASE_ENV.iter().map(|n| n.to_string()).collect();
        names.extend(env.iter().cloned());
        Ok(Self { script, env: names })
    }

    async fn run(&self, action: &str, fqdn: &str, value: &str) -> Result<(), DnsError> {
        let child = tokio::process::Command::new(&self.script)
            .args([action, fqdn, value])
            .env_clear()
            .envs(
                self.env
                    .iter()
                    .filter_map(|name| std::env::var_os(name).map(|v| (name, v))),
            )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_script_sees_only_the_variables_it_is_given() {
        let dir = std::env::temp_dir().join(format!("berth-dns-exec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("hook.sh");
        let out = dir.join("env.txt");
        std::fs::write(&script, format!("#!/bin/sh\nenv > {}\n", out.display())).unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        // Cargo runs tests with many CARGO_* variables set (as the edge runs
        // with its token): the script gets the one named, and no other.
        let exec = Exec::new(script, &["CARGO_PKG_NAME".to_string()]).unwrap();
        exec.present("_acme-challenge.example.com.", "v")
            .await
            .unwrap();
        let seen = std::fs::read_to_string(&out).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let names: Vec<&str> = seen
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, _)| k))
            .collect();
        assert!(names.contains(&"PATH"), "{seen}");
        assert!(names.contains(&"CARGO_PKG_NAME"), "{seen}");
        for name in names {
            assert!(
                [
                    "PATH",
                    "HOME",
                    "LANG",
                    "CARGO_PKG_NAME",
                    "PWD",
                    "SHLVL",
                    "_",
                    "OLDPWD"
                ]
                .contains(&name),
                "the script saw {name}"
            );
        }
        // Cargo runs tests with many CARGO_* variables set: none came through
        // but the one named.
        assert!(!seen.contains("CARGO_MANIFEST_DIR"), "{seen}");
    }
}
