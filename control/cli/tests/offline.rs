//! The CLI on its own, with no control plane: usage, exit codes, the config
//! file. (`control/tests/cli.rs` drives it against a real control.) Having an
//! integration test here also makes `cargo test --workspace` build the
//! `berth` binary that the control's test runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct Home(PathBuf);

impl Home {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("berth-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Home {
    /// Writes `~/.config/berth/config.toml`.
    fn config(&self, text: &str) {
        let dir = self.0.join(".config/berth");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.toml"), text).unwrap();
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn berth(home: &Path, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_berth"))
        .env_clear()
        .env("HOME", home)
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

#[test]
fn usage_errors_exit_2_and_help_names_the_commands() {
    let home = Home::new("usage");
    let (code, out, _) = berth(&home.0, &[], &["--help"]);
    assert_eq!(code, 0);
    for command in [
        "login", "ls", "create", "exec", "task", "files", "open", "purge",
    ] {
        assert!(out.contains(command), "{command} missing from:\n{out}");
    }
    let (code, _, err) = berth(&home.0, &[], &["create", "--no-such-flag"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = berth(&home.0, &[], &["exec"]);
    assert_eq!(code, 2, "{err}");
    let (code, out, _) = berth(&home.0, &[], &["completions", "zsh"]);
    assert_eq!(code, 0);
    assert!(out.contains("berth"), "{out}");
}

#[test]
fn an_unreachable_control_exits_3_naming_where_it_looked() {
    let home = Home::new("away");
    home.config("url = \"http://127.0.0.1:1\"\n");
    let (code, _, err) = berth(&home.0, &[], &["ls"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("127.0.0.1:1"), "{err}");

    // The environment wins over the file.
    let (code, _, err) = berth(&home.0, &[("BERTH_URL", "http://127.0.0.1:2")], &["ls"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("127.0.0.1:2"), "{err}");
}

#[test]
fn a_broken_config_file_is_named_not_ignored() {
    let home = Home::new("broken");
    home.config("url = [not toml");
    let (code, _, err) = berth(&home.0, &[], &["ls"]);
    assert_ne!(code, 0);
    assert!(err.contains("config.toml"), "{err}");
}
