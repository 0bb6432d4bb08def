//! The data directory holds secrets (the database with every sandbox's
//! environment and the preview signing key; the WAL holds most of it):
//! everything in it is owner-only. Control runs with umask 077 so that what
//! it creates is; installs made before that are repaired at start.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Makes `dir` (created if missing) mode 0700 and every entry directly in it
/// owner-only (files 0600, directories 0700), without following links.
/// Sandbox homes below `sandboxes/` are left to their owners (the directory
/// itself is 0700, so no other host user reaches them). Returns what was
/// tightened, for the log.
pub fn make_private(dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut tightened = Vec::new();
    tighten(dir, 0o700, &mut tightened)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let mode = if kind.is_dir() {
            0o700
        } else if kind.is_file() {
            0o600
        } else {
            continue;
        };
        tighten(&entry.path(), mode, &mut tightened)?;
    }
    Ok(tightened)
}

fn tighten(path: &Path, mode: u32, tightened: &mut Vec<PathBuf>) -> io::Result<()> {
    let current = std::fs::symlink_metadata(path)?.permissions().mode() & 0o7777;
    if current & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        tightened.push(path.to_path_buf());
    }
    Ok(())
}

/// From now on this process creates files and directories owner-only.
pub fn owner_only_umask() {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_install_is_made_owner_only() {
        let dir = std::env::temp_dir().join(format!("berth-datadir-{}", ulid::Ulid::generate()));
        std::fs::create_dir_all(dir.join("sandboxes")).unwrap();
        for (name, mode) in [
            ("berth.db", 0o600),
            ("berth.db-wal", 0o644),
            ("berth.db-shm", 0o644),
        ] {
            std::fs::write(dir.join(name), "x").unwrap();
            std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(mode))
                .unwrap();
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711)).unwrap();
        std::fs::set_permissions(
            dir.join("sandboxes"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let tightened = make_private(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("berth.db-wal")), 0o600);
        assert_eq!(mode(&dir.join("berth.db-shm")), 0o600);
        assert_eq!(mode(&dir.join("sandboxes")), 0o700);
        assert_eq!(tightened.len(), 4, "{tightened:?}");
        assert!(make_private(&dir).unwrap().is_empty(), "nothing left to do");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
