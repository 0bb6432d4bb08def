//! Each sandbox runs as its own host uid and gid (the same number), taken
//! from a range that belongs to no host account and recorded in SQLite
//! (`Store::sandbox_uid`). Per-uid kernel limits (inotify instances,
//! `RLIMIT_NPROC`, …) are then a sandbox's own: one sandbox cannot use up
//! another's. Inside, the user is still `user` with HOME `/home/user`: a
//! generated `/etc/passwd` and `/etc/group` are bind-mounted read-only.

use std::collections::BTreeSet;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where a sandbox's identity files live: `<data>/identity/<id>/`.
pub fn identity_dir(data_dir: &Path, sandbox_id: &str) -> PathBuf {
    data_dir.join("identity").join(sandbox_id)
}

/// The uids and gids of the host's accounts and groups at or above `base`
/// (read from `passwd` and `group` in `etc`): sandboxes never get them.
pub fn host_ids(etc: &Path, base: u32) -> BTreeSet<i64> {
    let mut ids = BTreeSet::new();
    for (file, field) in [("passwd", 2), ("group", 2)] {
        let Ok(text) = std::fs::read_to_string(etc.join(file)) else {
            continue;
        };
        ids.extend(
            text.lines()
                .filter_map(|line| line.split(':').nth(field))
                .filter_map(|id| id.parse::<i64>().ok())
                .filter(|id| *id >= i64::from(base)),
        );
    }
    ids
}

/// Writes the sandbox's `passwd` and `group` (readable by everyone: they
/// are bind-mounted at /etc inside the sandbox; control's umask is 077).
pub fn write_identity(dir: &Path, uid: u32) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let passwd = format!(
        "root:x:0:0:root:/root:/bin/sh\n\
         user:x:{uid}:{uid}:berth sandbox:/home/user:/bin/sh\n\
         nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    );
    let group = format!("root:x:0:\nuser:x:{uid}:\nnogroup:x:65534:\n");
    for (name, text) in [("passwd", passwd), ("group", group)] {
        let path = dir.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, text)?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
            std::fs::rename(&tmp, &path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_accounts_in_the_range_are_found() {
        let dir = std::env::temp_dir().join(format!("berth-uids-{}", ulid::Ulid::generate()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("passwd"),
            "root:x:0:0::/root:/bin/sh\nodd:x:1100001:5::/:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(dir.join("group"), "g:x:1100003:\nbad line\n").unwrap();
        assert_eq!(
            host_ids(&dir, 1_100_000),
            BTreeSet::from([1_100_001, 1_100_003])
        );
        write_identity(&dir.join("id"), 1_100_002).unwrap();
        let passwd = std::fs::read_to_string(dir.join("id/passwd")).unwrap();
        assert!(passwd.contains("user:x:1100002:1100002:berth sandbox:/home/user:"));
        let mode = std::fs::metadata(dir.join("id/group"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
