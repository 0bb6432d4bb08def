//! Where the CLI finds its control plane: `~/.config/berth/config.toml`
//! (owner-only), with `BERTH_URL` and `BERTH_TOKEN` over it.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// No `Debug`: it holds the token.
#[derive(Default, Clone, Serialize, Deserialize)]
pub struct Config {
    pub url: Option<String>,
    pub token: Option<String>,
}

pub fn path() -> Result<PathBuf, String> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(
            std::env::var_os("HOME").ok_or("HOME is not set: cannot find the config file")?,
        )
        .join(".config"),
    };
    Ok(base.join("berth").join("config.toml"))
}

/// The stored settings with the environment's over them.
pub fn load() -> Result<Config, String> {
    let path = path()?;
    let mut config = match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::default(),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if let Some(url) = std::env::var("BERTH_URL").ok().filter(|v| !v.is_empty()) {
        config.url = Some(url);
    }
    if let Some(token) = std::env::var("BERTH_TOKEN").ok().filter(|v| !v.is_empty()) {
        config.token = Some(token);
    }
    Ok(config)
}

/// Writes the file 0600 (its directory 0700), replacing it whole.
pub fn save(config: &Config) -> Result<PathBuf, String> {
    let path = path()?;
    let dir = path.parent().ok_or("the config path has no directory")?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    let text = toml::to_string(config).map_err(|e| e.to_string())?;
    let tmp = path.with_extension("toml.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .and_then(|()| file.write_all(text.as_bytes()))
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}
