//! `/mcp`, berth's MCP server, driven by real clients: the official MCP
//! Python SDK (PyPI `mcp`, in the venv `.ci/run` makes) runs
//! `tests/mcp/client.py` against a real control with the test agents, and
//! the real Claude Code CLI's own MCP client connects to it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{AGENT_IMAGE, Control, TOKEN};
use reqwest::{Method, StatusCode};

fn python() -> PathBuf {
    std::env::var_os("BERTH_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/berth-ci-venv/bin/python"))
}

async fn control() -> Control {
    common::ensure_agent_image();
    Control::start(&[
        ("BERTH_API_TOKENS", &format!("mcp:{TOKEN}")),
        ("BERTH_IMAGE", AGENT_IMAGE),
    ])
    .await
}

#[tokio::test]
async fn the_official_python_client_uses_every_tool() {
    let python = python();
    assert!(
        python.exists(),
        "{} is missing: .ci/run makes the venv (mcp from PyPI)",
        python.display()
    );
    let c = control().await;
    // No token: refused by the API's own check, in its JSON shape, before
    // the MCP service sees the request.
    let anonymous = c.anonymous(Method::POST, "/mcp").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.code(), "unauthorized");

    let script = common::workspace_root().join("control/tests/mcp/client.py");
    let run = Command::new(&python)
        .arg(&script)
        .arg(format!("{}/mcp", c.base))
        .arg(TOKEN)
        .stdin(Stdio::null())
        .output()
        .expect("python runs");
    assert!(
        run.status.success(),
        "the MCP client failed:\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(String::from_utf8_lossy(&run.stdout).contains("mcp: ok"));
    // Nothing the client made is left.
    let left = c.get("/v1/sandboxes").await;
    assert_eq!(
        left.body["sandboxes"].as_array().unwrap().len(),
        0,
        "{}",
        left.text
    );
}

/// The real Claude Code CLI, from the pinned wheel fetch-claude.sh keeps in
/// /var/tmp/berth-cache, extracted into the test's own folder.
fn real_claude(dir: &Path) -> PathBuf {
    let wheel = std::fs::read_dir("/var/tmp/berth-cache")
        .expect("fetch-claude.sh's cache")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("claude_agent_sdk-") && n.ends_with(".whl"))
        })
        .expect("the claude-agent-sdk wheel");
    let out = dir.join("claude");
    let status = Command::new(python())
        .args([
            "-c",
            "import shutil, sys, zipfile; shutil.copyfileobj(zipfile.ZipFile(sys.argv[1]).open('claude_agent_sdk/_bundled/claude'), open(sys.argv[2], 'wb'))",
        ])
        .arg(&wheel)
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    out
}

#[tokio::test]
async fn the_real_claude_cli_connects_to_it() {
    let c = control().await;
    let dir = c.data_dir.join("claude-home");
    std::fs::create_dir_all(&dir).unwrap();
    let claude = real_claude(&dir);
    let run = |args: &[&str]| {
        let out = Command::new(&claude)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &dir)
            .env("CLAUDE_CONFIG_DIR", dir.join(".claude"))
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let url = format!("{}/mcp", c.base);
    let header = format!("Authorization: Bearer {TOKEN}");
    let add = |header: &str| {
        run(&[
            "mcp",
            "add",
            "--transport",
            "http",
            "berth",
            &url,
            "--header",
            header,
        ])
    };
    let (added, text) = add(&header);
    assert!(added, "claude mcp add failed: {text}");
    let (listed, text) = run(&["mcp", "list"]);
    assert!(listed, "claude mcp list failed: {text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("berth:"))
        .unwrap_or_else(|| panic!("berth is not listed:\n{text}"));
    assert!(line.contains(&url) && line.contains("Connected"), "{text}");
    eprintln!("claude mcp list: {line}");

    // With a wrong token the same client sees it refused.
    let (_, _) = run(&["mcp", "remove", "berth"]);
    let bad = "Authorization: Bearer not-the-token-at-all-1234";
    let (added, text) = add(bad);
    assert!(added, "{text}");
    let (_, text) = run(&["mcp", "list"]);
    let line = text
        .lines()
        .find(|l| l.starts_with("berth:"))
        .unwrap_or_default();
    assert!(
        !line.contains("Connected") && line.contains("401"),
        "a bad token connected: {text}"
    );
    eprintln!("with a bad token: {line}");
}
