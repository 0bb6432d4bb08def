//! The dashboard, proven in a real browser: Playwright for Python (PyPI,
//! in the venv `.ci/run` makes) drives Debian's Chromium through
//! `tests/browser/dashboard.py` against a real control with the test agents,
//! with a real berth-edge in front of the sandboxes for the preview frame.
//! Screenshots land in `$CARGO_TARGET_DIR/berth-test-output/dashboard/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// The edge's harness, which carries control's as `control`: one `Control`
// type for both.
#[path = "../../edge/tests/common/mod.rs"]
mod edge;

use edge::{Edge, control as common};

use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{AGENT_IMAGE, Control, TOKEN};
use reqwest::{Method, StatusCode};

fn python() -> PathBuf {
    std::env::var_os("BERTH_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/berth-ci-venv/bin/python"))
}

fn output_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> → target/berth-test-output/dashboard
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let dir = target.join("berth-test-output").join("dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn the_dashboard_works_in_a_real_chromium() {
    let python = python();
    assert!(
        python.exists(),
        "{} is missing: .ci/run makes the venv (playwright from PyPI) and installs Debian's chromium",
        python.display()
    );
    common::ensure_agent_image();
    // Previews are served by a real edge on this port (Chromium resolves
    // every *.localhost name to loopback by itself).
    let edge_port = common::free_port();
    let c = Control::start(&[
        ("BERTH_API_TOKENS", &format!("ui:{TOKEN}")),
        ("BERTH_IMAGE", AGENT_IMAGE),
        ("BERTH_PREVIEW_DOMAIN", "test.localhost"),
        ("BERTH_PREVIEW_PORT", &edge_port.to_string()),
    ])
    .await;
    let edge = Edge::start(
        &c,
        &[("BERTH_EDGE_HTTP_BIND", &format!("127.0.0.1:{edge_port}"))],
    )
    .await;
    // The page and its assets are served with a strict policy.
    let page = c.anonymous(Method::GET, "/ui/").await;
    assert_eq!(page.status, StatusCode::OK);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let missing = c.anonymous(Method::GET, "/ui/nothing.js").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let out = output_dir();
    let script = common::workspace_root().join("control/tests/browser/dashboard.py");
    let run = Command::new(&python)
        .arg(&script)
        .arg(&c.base)
        .arg(TOKEN)
        .arg(&out)
        .stdin(Stdio::null())
        .output()
        .expect("python runs");
    assert!(
        run.status.success(),
        "the browser test failed (screenshots in {}):\n{}\n{}\nedge log:\n{}",
        out.display(),
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
        edge.log_text()
    );
    for shot in [
        "fleet.png",
        "sandbox.png",
        "fleet-390.png",
        "sandbox-390.png",
    ] {
        assert!(out.join(shot).exists(), "{shot} was not saved");
    }
}

/// With no tokens the API listens on loopback only, and a browser is the
/// one thing that can still reach it from elsewhere: another site's page
/// (CSRF) or a name rebound to 127.0.0.1. Both are refused; the CLI's and
/// curl's requests (no `Origin`, a loopback `Host`) are not.
#[tokio::test]
async fn without_tokens_only_this_hosts_pages_may_call_the_api() {
    let c = Control::start(&[]).await;
    let list = c.get("/v1/sandboxes").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    let same = c
        .send(
            c.request(Method::GET, "/v1/sandboxes")
                .header("origin", c.base.clone()),
        )
        .await;
    assert_eq!(same.status, StatusCode::OK, "{}", same.text);
    let csrf = c
        .send(
            c.request(Method::POST, "/v1/sandboxes")
                .header("origin", "https://evil.example")
                .header("content-type", "text/plain")
                .body("{}"),
        )
        .await;
    assert_eq!(csrf.status, StatusCode::FORBIDDEN, "{}", csrf.text);
    assert_eq!(csrf.code(), "forbidden");
    let rebound = c
        .send(
            c.request(Method::GET, "/v1/sandboxes")
                .header("host", "evil.example"),
        )
        .await;
    assert_eq!(rebound.status, StatusCode::FORBIDDEN, "{}", rebound.text);
    // Nothing was created by the refused request.
    let after = c.get("/v1/sandboxes").await;
    assert_eq!(after.body["sandboxes"].as_array().unwrap().len(), 0);
}
