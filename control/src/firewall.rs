//! Egress rules for the sandbox networks, in the host's iptables: a sandbox
//! reaches the internet, but not the host itself (any port), link-local and
//! metadata addresses, or the denied (private) ranges (`BERTH_EGRESS_DENY`).
//! Replies to connections the host opened (the edge reaching a preview
//! port) pass.
//!
//! Two chains per berth instance, named from its id so that installs never
//! touch each other's: `BERTH-<tag>-FWD`, jumped to from Docker's
//! `DOCKER-USER` for traffic leaving a sandbox bridge, and `BERTH-<tag>-IN`,
//! jumped to from `INPUT` for traffic to the host. Each chain is replaced
//! whole in one `iptables-restore` transaction (never empty in between), the
//! jumps are checked and added when missing, so applying is idempotent and
//! runs at start and on every reconciler pass (rules flushed by another
//! tool come back). `deploy/firewall/berth-firewall.sh remove` removes them.

use std::sync::Mutex;

use serde::Serialize;
use tokio::process::Command;

use crate::cidr::Cidr;

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("could not run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed: {stderr}")]
    Failed { command: String, stderr: String },
    #[error("egress rules missing: {0}")]
    Missing(String),
}

/// The chains' tag: the random part of the instance's ULID, upper-cased
/// (`BERTH-<16>-FWD` fits iptables' 28-character limit).
pub fn tag(instance_id: &str) -> String {
    let start = instance_id.len().saturating_sub(16);
    instance_id[start..].to_ascii_uppercase()
}

/// What `GET /v1/info` shows.
#[derive(Debug, Clone, Serialize, Default)]
pub struct FirewallStatus {
    pub enabled: bool,
    pub installed: bool,
    pub chains: Vec<String>,
    pub bridges: Vec<String>,
    pub deny: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub struct Firewall {
    enabled: bool,
    deny: Vec<Cidr>,
    forward_chain: String,
    input_chain: String,
    status: Mutex<FirewallStatus>,
}

impl Firewall {
    pub fn new(instance_id: &str, deny: Vec<Cidr>, enabled: bool) -> Self {
        let tag = tag(instance_id);
        let forward_chain = format!("BERTH-{tag}-FWD");
        let input_chain = format!("BERTH-{tag}-IN");
        let status = FirewallStatus {
            enabled,
            chains: vec![forward_chain.clone(), input_chain.clone()],
            deny: deny.iter().map(Cidr::to_string).collect(),
            ..FirewallStatus::default()
        };
        Self {
            enabled,
            deny,
            forward_chain,
            input_chain,
            status: Mutex::new(status),
        }
    }

    pub fn status(&self) -> FirewallStatus {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Installs (or re-installs) the rules for these sandbox bridges, and
    /// reads them back: rules another writer lost in a race are installed
    /// once more before this answers.
    pub async fn apply(&self, bridges: &[String]) -> Result<(), FirewallError> {
        if !self.enabled {
            return Ok(());
        }
        let mut result = self.apply_family(Family::V4, bridges).await;
        if result.is_ok() {
            if let Err(missing) = self.verify(bridges).await {
                tracing::warn!(%missing, "egress rules missing right after they were installed: installing them again");
                result = self.apply_family(Family::V4, bridges).await;
                if result.is_ok() {
                    result = self.verify(bridges).await;
                }
            }
        }
        if result.is_ok() {
            // IPv6: best effort (many hosts have no ip6tables or no IPv6).
            if let Err(e) = self.apply_family(Family::V6, bridges).await {
                tracing::debug!(error = %e, "IPv6 egress rules not installed");
            }
        }
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        status.installed = result.is_ok();
        status.bridges = bridges.to_vec();
        status.error = result.as_ref().err().map(ToString::to_string);
        result
    }

    /// Whether the IPv4 rules for `bridges` are all in place: one read of
    /// the filter table. `Err` names what is missing.
    pub async fn verify(&self, bridges: &[String]) -> Result<(), FirewallError> {
        if !self.enabled {
            return Ok(());
        }
        let program = Family::V4.program().await;
        let out = Command::new(&program.iptables)
            .args(["-w", "-S"])
            .output()
            .await
            .map_err(|source| FirewallError::Spawn {
                program: program.iptables.clone(),
                source,
            })?;
        let table = String::from_utf8_lossy(&out.stdout);
        let present: std::collections::HashSet<&str> = table.lines().map(str::trim).collect();
        let parent = if present.contains("-N DOCKER-USER") {
            "DOCKER-USER"
        } else {
            "FORWARD"
        };
        let mut wanted: Vec<String> = self
            .rules(Family::V4)
            .lines()
            .filter(|l| l.starts_with("-A "))
            .map(String::from)
            .collect();
        for bridge in bridges {
            wanted.push(format!("-A {parent} -i {bridge} -j {}", self.forward_chain));
            wanted.push(format!("-A INPUT -i {bridge} -j {}", self.input_chain));
        }
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|rule| !present.contains(rule.as_str()))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(FirewallError::Missing(
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        ))
    }

    async fn apply_family(&self, family: Family, bridges: &[String]) -> Result<(), FirewallError> {
        let program = family.program().await;
        let rules = self.rules(family);
        run(
            &program,
            &["-w", "--noflush"],
            Some(&rules),
            "iptables-restore",
        )
        .await?;
        let docker_user = run_quiet(&program.iptables, &["-w", "-n", "-L", "DOCKER-USER"]).await;
        let forward_parent = if docker_user {
            "DOCKER-USER"
        } else {
            "FORWARD"
        };
        for bridge in bridges {
            for (parent, chain) in [
                (forward_parent, &self.forward_chain),
                ("INPUT", &self.input_chain),
            ] {
                let rule = ["-i", bridge.as_str(), "-j", chain.as_str()];
                let mut check = vec!["-w", "-C", parent];
                check.extend(rule);
                if !run_quiet(&program.iptables, &check).await {
                    let mut insert = vec!["-w", "-I", parent, "1"];
                    insert.extend(rule);
                    run_plain(&program.iptables, &insert).await?;
                }
            }
        }
        Ok(())
    }

    /// Both chains, whole, as `iptables-restore` input, each rule spelt as
    /// `iptables -S` prints it back (see [`Firewall::verify`]).
    fn rules(&self, family: Family) -> String {
        let (fwd, input) = (&self.forward_chain, &self.input_chain);
        let mut out = format!("*filter\n:{fwd} - [0:0]\n:{input} - [0:0]\n");
        out.push_str(&format!(
            "-A {fwd} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN\n"
        ));
        for net in self
            .deny
            .iter()
            .filter(|c| c.is_v4() == (family == Family::V4))
        {
            out.push_str(&format!(
                "-A {fwd} -d {net} -j REJECT --reject-with {}\n",
                family.prohibited()
            ));
        }
        out.push_str(&format!("-A {fwd} -j RETURN\n"));
        out.push_str(&format!(
            "-A {input} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN\n"
        ));
        out.push_str(&format!(
            "-A {input} -p tcp -j REJECT --reject-with tcp-reset\n"
        ));
        out.push_str(&format!(
            "-A {input} -j REJECT --reject-with {}\n",
            family.prohibited()
        ));
        out.push_str("COMMIT\n");
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

/// The iptables flavour Docker uses: the one whose tables hold Docker's
/// `DOCKER-USER` chain (nft or legacy), else plain `iptables`.
struct Programs {
    iptables: String,
    restore: String,
}

impl Family {
    fn prohibited(self) -> &'static str {
        match self {
            Family::V4 => "icmp-admin-prohibited",
            Family::V6 => "icmp6-adm-prohibited",
        }
    }

    async fn program(self) -> Programs {
        let base = match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        };
        for flavour in ["", "-nft", "-legacy"] {
            let iptables = format!("{base}{flavour}");
            if run_quiet(&iptables, &["-w", "-n", "-L", "DOCKER-USER"]).await {
                return Programs {
                    restore: format!("{base}{flavour}-restore"),
                    iptables,
                };
            }
        }
        Programs {
            iptables: base.to_string(),
            restore: format!("{base}-restore"),
        }
    }
}

async fn run_quiet(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

async fn run_plain(program: &str, args: &[&str]) -> Result<(), FirewallError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .await
        .map_err(|source| FirewallError::Spawn {
            program: program.to_string(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(FirewallError::Failed {
        command: format!("{program} {}", args.join(" ")),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

/// Runs `programs.restore` with `input` on stdin.
async fn run(
    programs: &Programs,
    args: &[&str],
    input: Option<&str>,
    what: &str,
) -> Result<(), FirewallError> {
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new(&programs.restore)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|source| FirewallError::Spawn {
            program: programs.restore.clone(),
            source,
        })?;
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
        stdin
            .write_all(input.as_bytes())
            .await
            .map_err(|source| FirewallError::Spawn {
                program: programs.restore.clone(),
                source,
            })?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|source| FirewallError::Spawn {
            program: programs.restore.clone(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(FirewallError::Failed {
        command: what.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_are_named_per_instance_and_fit_iptables() {
        assert_eq!(tag("01kbx2abcdefghjkmnpqrstvwx"), "EFGHJKMNPQRSTVWX");
        let fw = Firewall::new("01kbx2abcdefghjkmnpqrstvwx", vec![], true);
        assert!(fw.forward_chain.len() <= 28, "{}", fw.forward_chain);
        assert!(fw.forward_chain.starts_with("BERTH-"));
        assert_ne!(
            Firewall::new("01kbx2abcdefghjkmnpqrstvwy", vec![], true).forward_chain,
            fw.forward_chain
        );
    }

    #[test]
    fn rules_deny_the_listed_ranges_and_the_host() {
        let deny = crate::cidr::parse_list("169.254.0.0/16,10.0.0.0/8,fc00::/7").unwrap();
        let fw = Firewall::new("01kbx2abcdefghjkmnpqrstvwx", deny, true);
        let v4 = fw.rules(Family::V4);
        assert!(v4.contains("-d 169.254.0.0/16 -j REJECT"), "{v4}");
        assert!(v4.contains("-d 10.0.0.0/8 -j REJECT"), "{v4}");
        assert!(!v4.contains("fc00"), "{v4}");
        let established = v4.find("ESTABLISHED").unwrap();
        assert!(
            established < v4.find("169.254").unwrap(),
            "replies pass first"
        );
        assert!(v4.contains("-p tcp -j REJECT --reject-with tcp-reset"));
        assert!(fw.rules(Family::V6).contains("-d fc00::/7"));
    }
}
