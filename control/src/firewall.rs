//! Egress rules for the sandbox networks, in the host's iptables: a sandbox
//! reaches the internet, but not the host itself (any port), link-local and
//! metadata addresses, or the denied (private) ranges (`BERTH_EGRESS_DENY`).
//! Replies to connections the host opened (the edge reaching a preview
//! port) pass.
//!
//! Two chains per berth instance, named from its id so that installs never
//! touch each other's: `BERTH-<tag>-FWD`, jumped to from Docker's
//! `DOCKER-USER` and from `FORWARD` itself, ahead of the bridge's own
//! `ACCEPT`, for traffic leaving a sandbox bridge (Docker deletes and
//! re-inserts its jump to `DOCKER-USER` on every network create, and a
//! packet sent meanwhile passed the bridge's `ACCEPT` unfiltered: a sandbox
//! reached a denied range that way), and `BERTH-<tag>-IN`, jumped to from
//! `INPUT` ahead of anything that may accept, for traffic to the host. Each chain is replaced
//! whole in one `iptables-restore` transaction (never empty in between), the
//! jumps are checked and added when missing, or added again on top when a
//! rule that may accept the bridge's traffic came before them, so applying
//! is idempotent and
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
    /// The IPv4 programs found holding Docker's chains, once found (the
    /// check before every sandbox start then runs one command, not two).
    v4: Mutex<Option<Programs>>,
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
            v4: Mutex::new(None),
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

    /// Whether the IPv4 rules for `bridges` are all in place, and the jumps
    /// ahead of every rule that may accept the bridges' traffic: one read of
    /// the filter table. `Err` names what is missing or misplaced.
    pub async fn verify(&self, bridges: &[String]) -> Result<(), FirewallError> {
        if !self.enabled {
            return Ok(());
        }
        let program = self.v4_programs().await;
        let table = list_rules(&program.iptables).await?;
        let present: std::collections::HashSet<&str> = table.lines().map(str::trim).collect();
        let mut wrong: Vec<String> = self
            .rules(Family::V4)
            .lines()
            .filter(|l| l.starts_with("-A ") && !present.contains(l))
            .map(String::from)
            .collect();
        for (rule, placement) in self.jumps_to_fix(&table, bridges) {
            wrong.push(match placement {
                Placement::Below => format!("{rule} (below a rule that may accept)"),
                _ => rule,
            });
        }
        if wrong.is_empty() {
            return Ok(());
        }
        Err(FirewallError::Missing(wrong.join("; ")))
    }

    /// The jumps for `bridges` that `table` (`iptables -S`) lacks, or has
    /// below a rule that may accept the bridge's traffic where that matters.
    fn jumps_to_fix(&self, table: &str, bridges: &[String]) -> Vec<(String, Placement)> {
        let docker_user = table.lines().any(|l| l.trim() == "-N DOCKER-USER");
        let mut fix = Vec::new();
        for bridge in bridges {
            for (parent, chain, on_top) in self.jumps(docker_user) {
                let rule = jump_rule(parent, bridge, chain);
                match placement(table, parent, bridge, &rule) {
                    Placement::OnTop => {}
                    Placement::Below if !on_top => {}
                    other => fix.push((rule, other)),
                }
            }
        }
        fix
    }

    /// The parent chains and the chain each jumps to, per sandbox bridge,
    /// and whether the jump must stand ahead of rules that may accept the
    /// bridge's traffic. Traffic leaving a sandbox is jumped to from the top
    /// of `FORWARD` and from Docker's `DOCKER-USER`: Docker keeps its jump
    /// to `DOCKER-USER` first, but deletes and re-inserts it on every
    /// network create, and a packet sent in between met the bridge's own
    /// `ACCEPT` first; the `FORWARD` jump, kept ahead of that `ACCEPT`,
    /// covers the gap. Traffic to the host is jumped to from `INPUT`.
    fn jumps(&self, docker_user: bool) -> Vec<(&'static str, &str, bool)> {
        let mut jumps = vec![
            ("FORWARD", self.forward_chain.as_str(), true),
            ("INPUT", self.input_chain.as_str(), true),
        ];
        if docker_user {
            jumps.push(("DOCKER-USER", self.forward_chain.as_str(), false));
        }
        jumps
    }

    /// The IPv4 programs, remembered once Docker's chains were found.
    async fn v4_programs(&self) -> Programs {
        let known = self
            .v4
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(known) = known {
            return known;
        }
        let found = Family::V4.program().await;
        if found.holds_docker {
            *self
                .v4
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(found.clone());
        }
        found
    }

    async fn apply_family(&self, family: Family, bridges: &[String]) -> Result<(), FirewallError> {
        let program = match family {
            Family::V4 => self.v4_programs().await,
            Family::V6 => family.program().await,
        };
        let rules = self.rules(family);
        run(
            &program,
            &["-w", "--noflush"],
            Some(&rules),
            "iptables-restore",
        )
        .await?;
        let table = list_rules(&program.iptables).await?;
        // A copy on top; one left lower down does no harm (the packet meets
        // the same chain twice), and deleting it first would open a gap.
        for (rule, _) in self.jumps_to_fix(&table, bridges) {
            insert_first(&program.iptables, &rule).await?;
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
#[derive(Debug, Clone)]
struct Programs {
    iptables: String,
    restore: String,
    /// Docker's `DOCKER-USER` is in this flavour's tables.
    holds_docker: bool,
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
                    holds_docker: true,
                };
            }
        }
        Programs {
            iptables: base.to_string(),
            restore: format!("{base}-restore"),
            holds_docker: false,
        }
    }
}

/// `-A <parent> -i <bridge> -j <chain>`, as `iptables -S` prints it.
fn jump_rule(parent: &str, bridge: &str, chain: &str) -> String {
    format!("-A {parent} -i {bridge} -j {chain}")
}

#[derive(Debug, PartialEq, Eq)]
enum Placement {
    /// No rule before it can accept a packet from the bridge.
    OnTop,
    /// A rule that may accept a packet from the bridge comes first.
    Below,
    Missing,
}

/// Whether `line` (a rule of `FORWARD` or `INPUT`) cannot accept a packet
/// that entered from `bridge` before berth's jump sees it: jumps to berth's
/// chains (of any install) and to Docker's `DOCKER-USER` and
/// `DOCKER-ISOLATION-STAGE-1` (which Docker moves to the top on every network
/// create; they drop or return, or accept only what the host's admin put
/// there), rules for packets from another interface, and Docker's rules for
/// packets to another Docker bridge (which Docker inserts on top for every new
/// network; `DOCKER-USER`, on top of them, filters that traffic).
fn cannot_accept_from(line: &str, bridge: &str) -> bool {
    if line.contains(" -j BERTH-")
        || line.ends_with(" -j DOCKER-USER")
        || line.ends_with(" -j DOCKER-ISOLATION-STAGE-1")
    {
        return true;
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    let value_of = |flag: &str| {
        words
            .windows(2)
            .enumerate()
            .find(|(i, w)| w[0] == flag && (*i == 0 || words[i - 1] != "!"))
            .map(|(_, w)| w[1])
    };
    if value_of("-i").is_some_and(|i| i != bridge) {
        return true;
    }
    value_of("-o").is_some_and(|o| o != bridge && (o.starts_with("br-") || o == "docker0"))
}

/// Where `rule` (a jump for packets from `bridge`) stands in `parent`, in
/// `iptables -S` output.
fn placement(table: &str, parent: &str, bridge: &str, rule: &str) -> Placement {
    let prefix = format!("-A {parent} ");
    for line in table
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with(&prefix))
    {
        if line == rule {
            return Placement::OnTop;
        }
        if !cannot_accept_from(line, bridge) {
            return if table.lines().any(|l| l.trim() == rule) {
                Placement::Below
            } else {
                Placement::Missing
            };
        }
    }
    Placement::Missing
}

/// The filter table as `iptables -S` prints it.
async fn list_rules(iptables: &str) -> Result<String, FirewallError> {
    run_plain(iptables, &["-w", "-S"]).await
}

/// Inserts `rule` (an `-A <parent> …` line) first in its chain.
async fn insert_first(iptables: &str, rule: &str) -> Result<(), FirewallError> {
    let mut words = rule.split_whitespace().skip(1);
    let parent = words.next().unwrap_or("FORWARD");
    let mut args = vec!["-w", "-I", parent, "1"];
    args.extend(words);
    run_plain(iptables, &args).await.map(drop)
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

/// Runs `program`; its stdout, or its stderr as the error.
async fn run_plain(program: &str, args: &[&str]) -> Result<String, FirewallError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .await
        .map_err(|source| FirewallError::Spawn {
            program: program.to_string(),
            source,
        })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
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
    fn jumps_must_come_before_anything_that_can_accept() {
        let rule = jump_rule("FORWARD", "br-a", "BERTH-X-FWD");
        let at = |table: &str| placement(table, "FORWARD", "br-a", &rule);
        // What Docker puts on top for a network made later, for another
        // bridge, does not count.
        let top = "-P FORWARD DROP\n-A FORWARD -j DOCKER-USER\n-A FORWARD -j DOCKER-ISOLATION-STAGE-1\n\
                   -A FORWARD -o br-new -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
                   -A FORWARD -o br-new -j DOCKER\n-A FORWARD -i br-new ! -o br-new -j ACCEPT\n\
                   -A FORWARD -i br-b -j BERTH-Y-FWD\n\
                   -A FORWARD -i br-a -j BERTH-X-FWD\n-A FORWARD -i br-a ! -o br-a -j ACCEPT\n";
        assert_eq!(at(top), Placement::OnTop);
        // The bridge's own ACCEPT first, or a rule for every interface.
        let below = "-A FORWARD -i br-a ! -o br-a -j ACCEPT\n-A FORWARD -i br-a -j BERTH-X-FWD\n";
        assert_eq!(at(below), Placement::Below);
        let generic = "-A FORWARD -o eth0 -j ACCEPT\n-A FORWARD -i br-a -j BERTH-X-FWD\n";
        assert_eq!(at(generic), Placement::Below);
        let negated = "-A FORWARD ! -i br-z -j ACCEPT\n-A FORWARD -i br-a -j BERTH-X-FWD\n";
        assert_eq!(at(negated), Placement::Below);
        assert_eq!(at("-A FORWARD -j DOCKER-USER\n"), Placement::Missing);
        // Rules of other chains do not count.
        let other = "-A INPUT -j ACCEPT\n-A FORWARD -i br-a -j BERTH-X-FWD\n";
        assert_eq!(at(other), Placement::OnTop);
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
