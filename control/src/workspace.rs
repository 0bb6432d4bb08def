//! Sandbox home directories on the host, and the files API inside them.
//!
//! Layout: `<data>/sandboxes/<id>/` is mounted as the sandbox's `/home/user`
//! and holds `workspace/`, the root of the files API. Both are owned by the
//! sandbox's own host uid (and gid), and nothing below `<data>/sandboxes`
//! (mode 0700) is reachable by other host users. Files the API writes are
//! given to the owner of the workspace.
//!
//! Control runs as root and the directories are written by untrusted code, so
//! every path below a home directory is opened through `cap-std`: `..`,
//! absolute paths and symlinks that lead out are refused by construction,
//! never by string checks alone.

use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt, fchown, lchown};
use std::path::{Component, Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt};

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("invalid path `{path}`: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("`{0}` does not exist in the workspace")]
    NotFound(String),
    #[error("`{path}` is {size} bytes, more than the limit of {max}")]
    TooLarge { path: String, size: u64, max: u64 },
    #[error("`{0}` is a directory")]
    IsDirectory(String),
    #[error("workspace I/O: {0}")]
    Io(#[from] io::Error),
}

/// Whether an I/O error means the disk (or the owner's quota) is full.
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc_codes::ENOSPC | libc_codes::EDQUOT)
    ) || e.kind() == io::ErrorKind::StorageFull
        || e.kind() == io::ErrorKind::QuotaExceeded
}

/// The two errno values, spelled out (no libc dependency for two numbers).
mod libc_codes {
    pub const ENOSPC: i32 = 28;
    pub const EDQUOT: i32 = 122;
}

pub use berth_api::files::DirEntry;

/// What a path in the workspace holds.
#[derive(Debug)]
pub enum Entry {
    File(Vec<u8>),
    Dir(Vec<DirEntry>),
}

#[derive(Debug, Clone)]
pub struct Workspaces {
    root: PathBuf,
}

/// Checks a client's path lexically and returns it relative to the workspace.
/// `""` and `"."` mean the workspace itself.
pub fn relative_path(raw: &str) -> Result<PathBuf, FilesError> {
    let invalid = |reason| FilesError::InvalidPath {
        path: raw.to_string(),
        reason,
    };
    if raw.contains('\0') {
        return Err(invalid("it contains a NUL byte"));
    }
    let mut clean = PathBuf::new();
    for component in Path::new(raw).components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(invalid("`..` would leave the workspace")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(invalid("paths are relative to the workspace, not absolute"));
            }
        }
    }
    Ok(clean)
}

fn nix_is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn kind_of(file_type: cap_std::fs::FileType) -> &'static str {
    if file_type.is_dir() {
        "dir"
    } else if file_type.is_file() {
        "file"
    } else if file_type.is_symlink() {
        "symlink"
    } else {
        "other"
    }
}

/// A uid and gid.
pub type Owner = (u32, u32);

/// Gives a path created by root to the sandbox's user; a control that is
/// not root cannot, and then the sandbox user must already own the data dir.
fn give_to(fd: &impl std::os::fd::AsFd, (uid, gid): Owner) -> io::Result<()> {
    match fchown(fd, Some(uid), Some(gid)) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Ok(()),
        other => other,
    }
}

/// The owner of an open directory (directories are read through a plain
/// handle: cap-std's `Dir` handles are O_PATH, which fstat takes but
/// fchown refuses).
fn owner_of(dir: &Dir) -> io::Result<Owner> {
    let meta = dir.open(".")?.into_std().metadata()?;
    Ok((meta.uid(), meta.gid()))
}

/// Gives a whole tree to `owner`, never following a symlink (links
/// themselves are re-owned). Runs while the sandbox is stopped: nothing
/// swaps paths under it.
fn chown_tree(path: &Path, owner: Owner) -> io::Result<u64> {
    let mut changed = 0;
    let meta = std::fs::symlink_metadata(path)?;
    if (meta.uid(), meta.gid()) != owner {
        lchown(path, Some(owner.0), Some(owner.1))?;
        changed += 1;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            changed += chown_tree(&entry?.path(), owner)?;
        }
    }
    Ok(changed)
}

impl Workspaces {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            root: data_dir.join("sandboxes"),
        }
    }

    /// The host directory mounted as the sandbox's home.
    pub fn home(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    pub fn exists(&self, id: &str) -> bool {
        self.home(id).is_dir()
    }

    /// Creates the home and workspace directories if missing (keeping what an
    /// earlier sandbox with this id left), owned by `owner`, the home
    /// owner-only. A home owned by someone else (made before sandboxes had
    /// uids of their own) is given to `owner` whole; the sandbox is stopped
    /// while this runs. Returns whether the home was new.
    pub fn ensure(&self, id: &str, owner: Owner) -> Result<bool, FilesError> {
        std::fs::create_dir_all(&self.root)?;
        std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o700))?;
        let home = self.home(id);
        let created = match std::fs::create_dir(&home) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(e.into()),
        };
        let home_dir = Dir::open_ambient_dir(&home, ambient_authority())?;
        if created {
            give_to(&home_dir.open(".")?, owner)?;
        } else if owner_of(&home_dir)? != owner && nix_is_root() {
            let changed = chown_tree(&home, owner)?;
            tracing::info!(sandbox = %id, uid = owner.0, files = changed, "gave an existing home to the sandbox's own uid");
        }
        let plain = home_dir.open(".")?.into_std();
        if plain.metadata()?.mode() & 0o077 != 0 {
            plain.set_permissions(std::fs::Permissions::from_mode(0o700))?;
        }
        match home_dir.create_dir("workspace") {
            Ok(()) => give_to(&home_dir.open("workspace")?, owner)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
        Ok(created)
    }

    /// Deletes a home directory and everything in it (symlinks are removed,
    /// never followed).
    pub fn remove(&self, id: &str) -> Result<(), FilesError> {
        match std::fs::remove_dir_all(self.home(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    fn workspace(&self, id: &str, shown: &str) -> Result<Dir, FilesError> {
        let home = Dir::open_ambient_dir(self.home(id), ambient_authority()).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                FilesError::NotFound(shown.to_string())
            } else {
                e.into()
            }
        })?;
        home.open_dir("workspace").map_err(|e| map_io(e, shown))
    }

    /// Reads a file, or lists a directory, at `path` in the workspace.
    pub fn read(&self, id: &str, path: &str, max: u64) -> Result<Entry, FilesError> {
        let rel = relative_path(path)?;
        let ws = self.workspace(id, path)?;
        if rel.as_os_str().is_empty() {
            return list(&ws, path);
        }
        let meta = ws.metadata(&rel).map_err(|e| map_io(e, path))?;
        if meta.is_dir() {
            let dir = ws.open_dir(&rel).map_err(|e| map_io(e, path))?;
            return list(&dir, path);
        }
        if !meta.is_file() {
            return Err(not_regular(path));
        }
        if meta.len() > max {
            return Err(FilesError::TooLarge {
                path: path.to_string(),
                size: meta.len(),
                max,
            });
        }
        // Non-blocking, and checked again on the open file: a FIFO swapped
        // in meanwhile must not hold this thread forever.
        let mut file = ws
            .open_with(&rel, OpenOptions::new().read(true).custom_flags(NONBLOCK))
            .map_err(|e| map_io(e, path))?;
        if !file.metadata()?.is_file() {
            return Err(not_regular(path));
        }
        let mut content = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        Read::by_ref(&mut file)
            .take(max + 1)
            .read_to_end(&mut content)?;
        if content.len() as u64 > max {
            return Err(FilesError::TooLarge {
                path: path.to_string(),
                size: content.len() as u64,
                max,
            });
        }
        Ok(Entry::File(content))
    }

    /// Writes (or appends to) a file, creating missing parent directories.
    /// Returns the file's size afterwards.
    pub fn write(
        &self,
        id: &str,
        path: &str,
        content: &[u8],
        append: bool,
    ) -> Result<u64, FilesError> {
        let rel = relative_path(path)?;
        if rel.as_os_str().is_empty() {
            return Err(FilesError::InvalidPath {
                path: path.to_string(),
                reason: "name a file to write",
            });
        }
        let ws = self.workspace(id, path)?;
        if let Some(parent) = rel.parent() {
            make_dirs(&ws, parent, path)?;
        }
        let owner = owner_of(&ws)?;
        let is_link = ws
            .symlink_metadata(&rel)
            .is_ok_and(|m| m.file_type().is_symlink());
        if append || is_link {
            return write_in_place(&ws, &rel, path, content, append, owner);
        }
        // A whole new content: written beside the file, then renamed over
        // it, so a failed write (a full disk) leaves the old file whole.
        if let Ok(existing) = ws.symlink_metadata(&rel) {
            if !existing.is_file() {
                return Err(not_regular(path));
            }
        }
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = rel.with_file_name(format!(
            ".{name}.berth-{}",
            ulid::Ulid::generate().to_string().to_ascii_lowercase()
        ));
        let written = (|| {
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            let mut file = ws.open_with(&temp, &options).map_err(|e| map_io(e, path))?;
            give_to(&file, owner)?;
            file.write_all(content)?;
            file.flush()?;
            ws.rename(&temp, &ws, &rel).map_err(|e| map_io(e, path))?;
            Ok(file.metadata()?.len())
        })();
        if written.is_err() {
            let _ = ws.remove_file(&temp);
        }
        written
    }

    /// Deletes a file, or a directory with everything in it.
    pub fn delete(&self, id: &str, path: &str) -> Result<(), FilesError> {
        let rel = relative_path(path)?;
        if rel.as_os_str().is_empty() {
            return Err(FilesError::InvalidPath {
                path: path.to_string(),
                reason: "the workspace itself cannot be deleted",
            });
        }
        let ws = self.workspace(id, path)?;
        let meta = ws.symlink_metadata(&rel).map_err(|e| map_io(e, path))?;
        let done = if meta.is_dir() {
            ws.remove_dir_all(&rel)
        } else {
            ws.remove_file(&rel)
        };
        done.map_err(|e| map_io(e, path))
    }
}

/// Writes through an existing link, or appends; a failed append is cut
/// back to the file's length before it, so nothing half-written stays.
fn write_in_place(
    ws: &Dir,
    rel: &Path,
    shown: &str,
    content: &[u8],
    append: bool,
    owner: Owner,
) -> Result<u64, FilesError> {
    let mut options = OpenOptions::new();
    // Non-blocking: opening a FIFO to write would wait for a reader.
    options.write(true).create(true).custom_flags(NONBLOCK);
    if append {
        options.append(true);
    } else {
        options.truncate(true);
    }
    let mut file = ws.open_with(rel, &options).map_err(|e| map_io(e, shown))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(shown));
    }
    give_to(&file, owner)?;
    let before = meta.len();
    let written = file.write_all(content).and_then(|()| file.flush());
    if let Err(e) = written {
        if append {
            let _ = file.set_len(before);
        }
        return Err(e.into());
    }
    Ok(file.metadata()?.len())
}

/// Creates `rel` and its missing ancestors, each owned by the workspace's owner.
fn make_dirs(ws: &Dir, rel: &Path, shown: &str) -> Result<(), FilesError> {
    let owner = owner_of(ws)?;
    let mut sofar = PathBuf::new();
    for part in rel.components() {
        sofar.push(part);
        match ws.create_dir(&sofar) {
            Ok(()) => give_to(&ws.open(&sofar).map_err(|e| map_io(e, shown))?, owner)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(map_io(e, shown)),
        }
    }
    Ok(())
}

fn list(dir: &Dir, shown: &str) -> Result<Entry, FilesError> {
    let mut entries = Vec::new();
    for entry in dir.entries().map_err(|e| map_io(e, shown))? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let file_type = entry.file_type()?;
        let size = if file_type.is_file() {
            entry.metadata().map(|m| m.len()).unwrap_or(0)
        } else {
            0
        };
        entries.push(DirEntry {
            name,
            kind: kind_of(file_type).to_string(),
            size,
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Entry::Dir(entries))
}

/// `O_NONBLOCK`: opening a FIFO never waits (regular files ignore it).
const NONBLOCK: i32 = nix::libc::O_NONBLOCK;

/// Only regular files and directories are served.
fn not_regular(shown: &str) -> FilesError {
    FilesError::InvalidPath {
        path: shown.to_string(),
        reason: "it is not a regular file or a directory (a FIFO, socket or device)",
    }
}

/// Turns cap-std's refusals into what the client did wrong.
fn map_io(e: io::Error, shown: &str) -> FilesError {
    let invalid = |reason| FilesError::InvalidPath {
        path: shown.to_string(),
        reason,
    };
    match e.raw_os_error() {
        Some(nix::libc::ELOOP) => return invalid("it goes through a loop of symbolic links"),
        Some(nix::libc::ENAMETOOLONG) => return invalid("a name in it is too long"),
        // A FIFO opened to write without a reader.
        Some(nix::libc::ENXIO) => return not_regular(shown),
        _ => {}
    }
    match e.kind() {
        io::ErrorKind::NotFound => FilesError::NotFound(shown.to_string()),
        // cap-std reports a path leading outside the workspace this way.
        io::ErrorKind::PermissionDenied => FilesError::InvalidPath {
            path: shown.to_string(),
            reason: "it leads outside the workspace",
        },
        io::ErrorKind::IsADirectory => FilesError::IsDirectory(shown.to_string()),
        io::ErrorKind::NotADirectory => FilesError::InvalidPath {
            path: shown.to_string(),
            reason: "a parent of it is not a directory",
        },
        _ => FilesError::Io(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn setup() -> (Workspaces, Tmp) {
        let dir = std::env::temp_dir().join(format!("berth-ws-{}", ulid::Ulid::generate()));
        std::fs::create_dir_all(&dir).unwrap();
        let ws = Workspaces::new(&dir);
        ws.ensure("s1", (1000, 1000)).unwrap();
        (ws, Tmp(dir))
    }

    #[test]
    fn lexical_checks() {
        assert_eq!(relative_path("a/./b").unwrap(), PathBuf::from("a/b"));
        assert_eq!(relative_path(".").unwrap(), PathBuf::new());
        assert!(relative_path("../x").is_err());
        assert!(relative_path("a/../../x").is_err());
        assert!(relative_path("/etc/passwd").is_err());
        assert!(relative_path("a\0b").is_err());
    }

    #[test]
    fn write_read_append_list_delete() {
        let (ws, _t) = setup();
        assert_eq!(ws.write("s1", "app/index.html", b"<h1>", false).unwrap(), 4);
        assert_eq!(ws.write("s1", "app/index.html", b"hi", true).unwrap(), 6);
        match ws.read("s1", "app/index.html", 100).unwrap() {
            Entry::File(c) => assert_eq!(c, b"<h1>hi"),
            other => panic!("{other:?}"),
        }
        match ws.read("s1", "app", 100).unwrap() {
            Entry::Dir(e) => assert_eq!(e[0].name, "index.html"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            ws.read("s1", "app/index.html", 3),
            Err(FilesError::TooLarge { .. })
        ));
        ws.delete("s1", "app").unwrap();
        assert!(matches!(
            ws.read("s1", "app", 100),
            Err(FilesError::NotFound(_))
        ));
    }

    #[test]
    fn symlinks_out_of_the_workspace_are_refused() {
        let (ws, t) = setup();
        let outside = t.0.join("secret");
        std::fs::write(&outside, "s3cret").unwrap();
        let link = ws.home("s1").join("workspace/link");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        std::os::unix::fs::symlink("../../..", ws.home("s1").join("workspace/up")).unwrap();
        for path in ["link", "up/secret", "up"] {
            let err = ws.read("s1", path, 100).unwrap_err();
            assert!(
                matches!(err, FilesError::InvalidPath { .. }),
                "{path}: {err:?}"
            );
        }
        assert!(matches!(
            ws.write("s1", "link", b"x", false).unwrap_err(),
            FilesError::InvalidPath { .. }
        ));
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "s3cret");
    }

    #[test]
    fn a_replaced_workspace_symlink_is_refused() {
        let (ws, _t) = setup();
        let w = ws.home("s1").join("workspace");
        std::fs::remove_dir(&w).unwrap();
        std::os::unix::fs::symlink("/etc", &w).unwrap();
        assert!(matches!(
            ws.read("s1", "passwd", 1 << 20),
            Err(FilesError::InvalidPath { .. })
        ));
        // Ensuring the directories again does not follow the link either.
        ws.ensure("s1", (1000, 1000)).unwrap();
    }
}
