//! Killing a process together with everything it started, found through the
//! host's /proc (Docker can only signal a container's PID 1).

use std::collections::{HashMap, HashSet};
use std::fs;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Parent of each live process, read from /proc/<pid>/stat.
fn parents() -> HashMap<i32, i32> {
    let mut map = HashMap::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return map;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) {
            if let Some(ppid) = parse_ppid(&stat) {
                map.insert(pid, ppid);
            }
        }
    }
    map
}

/// The parent pid in a /proc/<pid>/stat line; the command name may hold
/// spaces and parentheses, so fields are counted after its last `)`.
fn parse_ppid(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// `root` and all its descendants in `parents`.
fn tree(root: i32, parents: &HashMap<i32, i32>) -> HashSet<i32> {
    let mut found = HashSet::from([root]);
    loop {
        let before = found.len();
        for (pid, ppid) in parents {
            if found.contains(ppid) {
                found.insert(*pid);
            }
        }
        if found.len() == before {
            return found;
        }
    }
}

/// The variable every exec carries (`BERTH_EXEC=<marker>`), inherited by
/// everything it starts: a process that left its parent's tree (`setsid`,
/// a double fork, `nohup … &` in a subshell) is found by it.
pub const MARKER_VAR: &str = "BERTH_EXEC";

/// Whether `environ` (NUL-separated, as in /proc/<pid>/environ) holds
/// `BERTH_EXEC=<marker>`.
fn carries(environ: &[u8], marker: &str) -> bool {
    let wanted = format!("{MARKER_VAR}={marker}");
    environ.split(|b| *b == 0).any(|v| v == wanted.as_bytes())
}

/// Live processes carrying `marker`; unreadable environments (a process
/// that just ended, or no permission) are skipped and counted.
fn marked(marker: &str, pids: impl Iterator<Item = i32>) -> (HashSet<i32>, usize) {
    let mut found = HashSet::new();
    let mut unreadable = 0;
    for pid in pids {
        match fs::read(format!("/proc/{pid}/environ")) {
            Ok(environ) if carries(&environ, marker) => {
                found.insert(pid);
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => unreadable += 1,
            Err(_) => {}
        }
    }
    (found, unreadable)
}

/// The `BERTH_EXEC` marker in a process's environment, if it has one.
pub fn marker_of(pid: i32) -> Option<String> {
    let environ = fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{MARKER_VAR}=");
    environ
        .split(|b| *b == 0)
        .find_map(|v| v.strip_prefix(prefix.as_bytes()))
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .filter(|m| !m.is_empty())
}

/// What [`kill_exec`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Killed {
    pub signalled: usize,
    /// Processes whose environment could not be read (control lacks
    /// CAP_SYS_PTRACE): an exec's detached children may be among them.
    pub unreadable: usize,
}

/// SIGKILLs `root` and its descendants; returns how many were signalled.
pub fn kill_tree(root: i32) -> usize {
    kill_exec(Some(root), None).signalled
}

/// SIGKILLs everything an exec started: the tree under `root` (its host
/// PID, when it still runs) and every process carrying `marker`, with their
/// descendants. Scans until a pass finds nothing new, at most four times,
/// so children forked meanwhile die too.
pub fn kill_exec(root: Option<i32>, marker: Option<&str>) -> Killed {
    let root = root.filter(|r| *r > 1 && fs::metadata(format!("/proc/{r}")).is_ok());
    let mut killed = HashSet::new();
    let mut unreadable = 0;
    for _ in 0..4 {
        let parents = parents();
        let mut roots: HashSet<i32> = root.into_iter().collect();
        if let Some(marker) = marker {
            let (found, denied) = marked(marker, parents.keys().copied());
            roots.extend(found);
            unreadable = denied;
        }
        // Once a parent is dead its children are re-parented; keep the ones
        // already seen as roots too.
        roots.extend(killed.iter().copied());
        let mut targets = HashSet::new();
        for r in roots {
            targets.extend(tree(r, &parents));
        }
        let before = killed.len();
        for pid in targets {
            if pid > 1 && kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                killed.insert(pid);
            }
        }
        if killed.len() == before {
            break;
        }
    }
    Killed {
        signalled: killed.len(),
        unreadable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppid_is_read_after_the_command_name() {
        assert_eq!(parse_ppid("42 (sh) S 7 42 42 0"), Some(7));
        assert_eq!(parse_ppid("42 (a b) c) R 9 1 1"), Some(9));
        assert_eq!(parse_ppid("garbage"), None);
    }

    #[test]
    fn tree_holds_all_descendants_and_nothing_else() {
        let parents = HashMap::from([(2, 1), (3, 2), (4, 3), (5, 1), (6, 4)]);
        assert_eq!(tree(2, &parents), HashSet::from([2, 3, 4, 6]));
    }

    #[test]
    fn markers_match_whole_variables_only() {
        let env = b"PATH=/bin\0BERTH_EXEC=01ABC\0HOME=/root\0";
        assert!(carries(env, "01ABC"));
        assert!(!carries(env, "01AB"));
        assert!(!carries(b"XBERTH_EXEC=01ABC\0", "01ABC"));
    }

    #[test]
    fn a_detached_process_carrying_the_marker_is_killed() {
        // `setsid` in a subshell: the sleep is re-parented away from `sh`.
        let marker = format!("test-{}", std::process::id());
        let status = std::process::Command::new("sh")
            .args(["-c", "(setsid sleep 31 >/dev/null 2>&1 &)"])
            .env(MARKER_VAR, &marker)
            .status()
            .unwrap();
        assert!(status.success());
        std::thread::sleep(std::time::Duration::from_millis(200));
        let parents = parents();
        let (found, _) = marked(&marker, parents.keys().copied());
        assert_eq!(found.len(), 1, "{found:?}");
        let pid = *found.iter().next().unwrap();
        let killed = kill_exec(None, Some(&marker));
        assert_eq!(killed.signalled, 1);
        // Reaped by whoever adopted it; gone or a zombie.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(stat.is_empty() || stat.contains(") Z"), "{stat}");
    }

    #[test]
    fn kill_tree_kills_a_real_process_tree() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let killed = kill_tree(child.id() as i32);
        assert!(killed >= 3, "killed {killed}");
        let status = child.wait().unwrap();
        assert!(!status.success());
    }
}
