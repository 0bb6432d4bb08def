//! ARP on the sandbox bridges. When the host's neighbour entry for a
//! sandbox's address is unresolved (a request reached it while it was
//! stopped), the kernel asks again only every `retrans_time_ms`, 1000 ms by
//! default; a sandbox that starts in between gets its first packets up to a
//! second late (the one-in-five ~1 s start → port-ready tail). berth asks
//! again every [`RETRANS_MS`] on its own bridges. Nothing else changes: the
//! host's other interfaces keep their settings.

use std::collections::HashSet;
use std::sync::Mutex;

use tokio::process::Command;

/// How often an unresolved sandbox address is asked for again.
pub const RETRANS_MS: u32 = 100;

/// Bridges already tuned, so that a pass costs nothing.
#[derive(Default)]
pub struct Neighbours {
    tuned: Mutex<HashSet<String>>,
}

impl Neighbours {
    /// Tunes each bridge once: the sysctl where /proc/sys is writable
    /// (control on the host), else netlink through `ip ntable` (control in
    /// a container, where /proc/sys is read-only). A failure is logged, not
    /// fatal: sandboxes work, with the slower tail.
    pub async fn tune(&self, bridges: &[String]) {
        for bridge in bridges {
            if self.is_tuned(bridge) {
                continue;
            }
            match retrans(bridge).await {
                Ok(how) => {
                    tracing::debug!(
                        bridge,
                        how,
                        ms = RETRANS_MS,
                        "sandbox bridge: ARP retried fast"
                    );
                    if let Ok(mut tuned) = self.tuned.lock() {
                        tuned.insert(bridge.clone());
                    }
                }
                Err(why) => {
                    tracing::warn!(bridge, error = %why, "could not shorten the bridge's ARP retry: a sandbox woken after a request found it stopped may answer up to 1 s late");
                    // Not retried every pass: once per bridge is enough to say it.
                    if let Ok(mut tuned) = self.tuned.lock() {
                        tuned.insert(bridge.clone());
                    }
                }
            }
        }
    }

    fn is_tuned(&self, bridge: &str) -> bool {
        self.tuned.lock().is_ok_and(|t| t.contains(bridge))
    }
}

/// Sets the bridge's ARP retransmit time; says how.
async fn retrans(bridge: &str) -> Result<&'static str, String> {
    if bridge.is_empty() || bridge.contains(['/', '.']) {
        return Err(format!("`{bridge}` is not an interface name"));
    }
    let path = format!("/proc/sys/net/ipv4/neigh/{bridge}/retrans_time_ms");
    let sysctl = match tokio::fs::write(&path, RETRANS_MS.to_string()).await {
        Ok(()) => return Ok("sysctl"),
        Err(e) => e,
    };
    let ms = RETRANS_MS.to_string();
    let out = Command::new("ip")
        .args([
            "ntable",
            "change",
            "name",
            "arp_cache",
            "dev",
            bridge,
            "retrans",
            &ms,
        ])
        .output()
        .await
        .map_err(|e| format!("{path}: {sysctl}; `ip`: {e}"))?;
    if out.status.success() {
        Ok("ip ntable")
    } else {
        Err(format!(
            "{path}: {sysctl}; ip ntable: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
