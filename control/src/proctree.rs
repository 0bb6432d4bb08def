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

/// SIGKILLs `root` and its descendants; returns how many were signalled.
/// Scans twice so that children forked during the first pass die too.
pub fn kill_tree(root: i32) -> usize {
    if root <= 1 || fs::metadata(format!("/proc/{root}")).is_err() {
        return 0;
    }
    let mut killed = HashSet::new();
    for _ in 0..2 {
        let parents = parents();
        // Once the root is dead its children are re-parented; keep the ones
        // already seen as roots too.
        let mut targets = tree(root, &parents);
        for pid in killed.iter().copied().collect::<Vec<i32>>() {
            targets.extend(tree(pid, &parents));
        }
        for pid in targets {
            if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                killed.insert(pid);
            }
        }
    }
    killed.len()
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
