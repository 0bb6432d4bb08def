//! Client requests and their validation: every limit a client can hit is
//! checked here, before anything is written or started.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::Settings;
use crate::docker::spec::WORKSPACE;
use crate::store::NewSandbox;
use crate::units::ByteSize;

use super::SandboxError;

pub const MAX_PORTS: usize = 32;
pub const MAX_ENV: usize = 256;
/// The longest idle timeout a sandbox may ask for: 30 days.
pub const MAX_IDLE_TIMEOUT_S: i64 = 30 * 86_400;
const MAX_METADATA: usize = 32;

pub use berth_api::exec::{Command, ExecBody};
pub use berth_api::sandbox::{CreateRequest, NumberOrString, SizeOrNumber};

fn invalid(message: impl Into<String>) -> SandboxError {
    SandboxError::Invalid(message.into())
}

/// Sandbox ids are DNS-label safe, as they appear in preview hosts:
/// lower-case letters, digits and inner dashes, 1 to 40 characters.
pub fn normalize_id(raw: &str) -> Result<String, SandboxError> {
    let id = raw.trim().to_ascii_lowercase();
    let ok_chars = id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if id.is_empty() || id.len() > 40 || !ok_chars || id.starts_with('-') || id.ends_with('-') {
        return Err(invalid(format!(
            "id `{raw}` is not valid: use 1 to 40 letters, digits and inner dashes"
        )));
    }
    Ok(id)
}

pub fn new_id() -> String {
    ulid::Ulid::generate().to_string().to_ascii_lowercase()
}

/// Environment variable names a client may set.
pub fn validate_env(env: &BTreeMap<String, String>) -> Result<(), SandboxError> {
    if env.len() > MAX_ENV {
        return Err(invalid(format!("at most {MAX_ENV} environment variables")));
    }
    for (key, value) in env {
        let mut chars = key.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(invalid(format!(
                "environment variable name `{key}` is not valid: use letters, digits and _"
            )));
        }
        if key == "HOME" || key.starts_with("BERTH_") {
            return Err(invalid(format!(
                "environment variable `{key}` is set by berth"
            )));
        }
        if value.contains('\0') {
            return Err(invalid(format!(
                "environment variable `{key}` holds a NUL byte"
            )));
        }
    }
    Ok(())
}

fn validate_ports(raw: &[i64]) -> Result<Vec<u16>, SandboxError> {
    if raw.len() > MAX_PORTS {
        return Err(invalid(format!("at most {MAX_PORTS} ports")));
    }
    let mut ports = Vec::with_capacity(raw.len());
    for &p in raw {
        let port = u16::try_from(p)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| invalid(format!("port {p} is not valid: use 1 to 65535")))?;
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    Ok(ports)
}

/// A create request checked against the limits, as the row to store.
pub fn new_sandbox(req: CreateRequest, settings: &Settings) -> Result<NewSandbox, SandboxError> {
    {
        let id = match req.id.as_deref() {
            Some(raw) => normalize_id(raw)?,
            None => new_id(),
        };
        let ports = validate_ports(&req.ports)?;
        validate_env(&req.env)?;

        let memory = match req.memory {
            None => settings.default_memory,
            Some(SizeOrNumber::Bytes(b)) => b,
            Some(SizeOrNumber::Text(t)) => {
                t.parse::<ByteSize>()
                    .map_err(|e| invalid(format!("memory: {e}")))?
                    .0
            }
        };
        if memory < 6 << 20 {
            return Err(invalid("memory must be at least 6m"));
        }
        if memory > settings.max_memory {
            return Err(invalid(format!(
                "memory {} is above this host's limit of {} (BERTH_MAX_MEMORY)",
                ByteSize(memory),
                ByteSize(settings.max_memory)
            )));
        }

        let cpus = match req.cpus {
            None => settings.default_cpus,
            Some(NumberOrString::Number(n)) => n,
            Some(NumberOrString::Text(t)) => t
                .trim()
                .parse()
                .map_err(|_| invalid(format!("cpus `{t}` is not a number")))?,
        };
        if !cpus.is_finite() || cpus < 0.01 {
            return Err(invalid("cpus must be at least 0.01"));
        }
        if cpus > settings.max_cpus {
            return Err(invalid(format!(
                "cpus {cpus} is above this host's limit of {} (BERTH_MAX_CPUS)",
                settings.max_cpus
            )));
        }

        let image = match req.image.map(|i| i.trim().to_string()) {
            Some(i) => match crate::image_ref::problem(&i) {
                // Shown escaped: the reference may hold control characters.
                Some(why) => {
                    return Err(SandboxError::InvalidImage(
                        i.escape_debug().to_string(),
                        why,
                    ));
                }
                None => i,
            },
            None => settings.image.clone(),
        };

        let start_cmd = match req.start {
            Some(s) if s.trim().is_empty() => None,
            Some(s) if s.len() > 8192 || s.contains('\0') => {
                return Err(invalid("start must be a shell command of at most 8 KiB"));
            }
            other => other,
        };

        let idle_timeout_s = match req.idle_timeout_s {
            None => i64::try_from(settings.idle_timeout.as_secs()).unwrap_or(i64::MAX),
            Some(s) if (1..=MAX_IDLE_TIMEOUT_S).contains(&s) => s,
            Some(s) => {
                return Err(invalid(format!(
                    "idle_timeout_s {s} is not valid: use 1 to {MAX_IDLE_TIMEOUT_S} seconds"
                )));
            }
        };

        if req.metadata.len() > MAX_METADATA
            || req
                .metadata
                .iter()
                .any(|(k, v)| k.is_empty() || k.len() > 64 || v.len() > 1024)
        {
            return Err(invalid(format!(
                "metadata holds at most {MAX_METADATA} entries, keys of 1 to 64 bytes, values up to 1 KiB"
            )));
        }

        let public = match (req.public, req.visibility.as_deref()) {
            (Some(p), None) => p,
            (None, None) | (None, Some("public")) | (Some(true), Some("public")) => true,
            (None, Some("private")) | (Some(false), Some("private")) => false,
            (_, Some(v)) if !matches!(v, "public" | "private") => {
                return Err(invalid(format!(
                    "visibility `{v}` is not valid: use public or private"
                )));
            }
            _ => return Err(invalid("public and visibility disagree")),
        };

        let runtime = match req.runtime.as_deref().map(str::trim) {
            None | Some("") => settings.runtime.clone(),
            Some(r)
                if r.len() <= 64
                    && r.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) =>
            {
                Some(r.to_string())
            }
            Some(r) => {
                return Err(invalid(format!(
                    "runtime `{}` is not a valid runtime name",
                    r.escape_default()
                )));
            }
        };

        Ok(NewSandbox {
            id,
            public,
            egress: req.egress.unwrap_or(settings.egress),
            runtime,
            image,
            ports,
            env: req.env,
            metadata: req.metadata,
            memory_bytes: i64::try_from(memory).unwrap_or(i64::MAX),
            nano_cpus: (cpus * 1e9).round() as i64,
            start_cmd,
            idle_timeout_s,
            idle_policy: req.idle_policy.unwrap_or_default(),
            pooled: false,
        })
    }
}

/// A validated exec.
#[derive(Debug)]
pub struct ExecSpec {
    pub argv: Vec<String>,
    pub cwd: String,
    pub env: Vec<String>,
    pub timeout: Duration,
    pub stdin: Option<Vec<u8>>,
}

/// An exec request checked, as what to run.
pub fn exec_spec(body: ExecBody, max_timeout: Duration) -> Result<ExecSpec, SandboxError> {
    {
        let argv = match body.cmd {
            Command::Argv(argv) => argv,
            Command::Shell(line) => vec!["/bin/sh".into(), "-lc".into(), line],
        };
        if argv.is_empty() || argv[0].is_empty() {
            return Err(invalid(
                "cmd must name a program: [\"ls\", \"-la\"] or \"ls -la\"",
            ));
        }
        if argv.iter().any(|a| a.contains('\0')) {
            return Err(invalid("cmd must not hold NUL bytes"));
        }
        validate_env(&body.env)?;
        if body.cwd.as_deref().is_some_and(|c| c.contains('\0')) {
            return Err(invalid("cwd must not hold NUL bytes"));
        }
        let cwd = match body.cwd.as_deref().map(str::trim) {
            None | Some("") => WORKSPACE.to_string(),
            Some(abs) if abs.starts_with('/') => abs.to_string(),
            Some(rel) => format!("{WORKSPACE}/{rel}"),
        };
        let timeout = match body.timeout_s {
            None => max_timeout,
            Some(0) => return Err(invalid("timeout_s must be at least 1")),
            Some(s) if Duration::from_secs(s) > max_timeout => {
                return Err(invalid(format!(
                    "timeout_s {s} is above this host's limit of {} (BERTH_EXEC_TIMEOUT)",
                    max_timeout.as_secs()
                )));
            }
            Some(s) => Duration::from_secs(s),
        };
        Ok(ExecSpec {
            argv,
            cwd,
            env: body.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            timeout,
            stdin: body.stdin.map(String::into_bytes),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::Config;

    fn settings() -> Settings {
        Config::try_parse_from(["berth-control", "--max-cpus", "2"])
            .unwrap()
            .validate()
            .unwrap()
    }

    fn create(json: &str) -> Result<NewSandbox, SandboxError> {
        new_sandbox(
            serde_json::from_str::<CreateRequest>(json).unwrap(),
            &settings(),
        )
    }

    #[test]
    fn ids_are_dns_safe_and_lower_case() {
        assert_eq!(normalize_id("My-App1").unwrap(), "my-app1");
        for bad in ["", "-a", "a-", "a_b", "a.b", "a/b", &"x".repeat(41)] {
            assert!(normalize_id(bad).is_err(), "{bad}");
        }
        assert_eq!(new_id().len(), 26);
        assert!(normalize_id(&new_id()).is_ok());
    }

    #[test]
    fn defaults_fill_an_empty_request() {
        let s = create("{}").unwrap();
        assert_eq!(s.image, "berth-sandbox:latest");
        assert_eq!(s.memory_bytes, 2 << 30);
        assert_eq!(s.nano_cpus, 1_000_000_000);
        assert_eq!(s.idle_timeout_s, 900);
        assert!(s.ports.is_empty());
    }

    #[test]
    fn ports_are_checked_and_deduplicated() {
        assert_eq!(
            create(r#"{"ports":[3000,3000,80]}"#).unwrap().ports,
            vec![3000, 80]
        );
        for bad in [
            r#"{"ports":[0]}"#,
            r#"{"ports":[70000]}"#,
            r#"{"ports":[-1]}"#,
        ] {
            assert!(
                matches!(create(bad), Err(SandboxError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn memory_and_cpus_accept_docker_notation_within_limits() {
        let s = create(r#"{"memory":"512m","cpus":"0.5"}"#).unwrap();
        assert_eq!(s.memory_bytes, 512 << 20);
        assert_eq!(s.nano_cpus, 500_000_000);
        assert!(create(r#"{"memory":"64g"}"#).is_err());
        assert!(create(r#"{"memory":"1k"}"#).is_err());
        assert!(create(r#"{"cpus":3}"#).is_err());
        assert!(create(r#"{"cpus":0}"#).is_err());
    }

    #[test]
    fn env_names_are_checked() {
        assert!(create(r#"{"env":{"OK_1":"x"}}"#).is_ok());
        for bad in [
            r#"{"env":{"1X":"x"}}"#,
            r#"{"env":{"A-B":"x"}}"#,
            r#"{"env":{"HOME":"/"}}"#,
        ] {
            assert!(create(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exec_accepts_argv_or_a_shell_line() {
        let max = Duration::from_secs(60);
        let e: ExecBody = serde_json::from_str(r#"{"cmd":"echo hi","cwd":"app"}"#).unwrap();
        let e = exec_spec(e, max).unwrap();
        assert_eq!(e.argv, vec!["/bin/sh", "-lc", "echo hi"]);
        assert_eq!(e.cwd, "/home/user/workspace/app");
        let e: ExecBody = serde_json::from_str(r#"{"cmd":[]}"#).unwrap();
        assert!(exec_spec(e, max).is_err());
        let e: ExecBody = serde_json::from_str(r#"{"cmd":["ls"],"timeout_s":61}"#).unwrap();
        assert!(exec_spec(e, max).is_err());
    }
}
