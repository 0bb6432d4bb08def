//! End to end, as a user would: `./install.sh` on a copy of the repository
//! (the offline path: no image registry here), then the API with the token,
//! a preview through the edge, a task and its event stream, then
//! `./uninstall.sh --all --yes`, which must leave nothing of berth behind and
//! nothing else touched.
//!
//! Everything is namespaced (project, ports, network, image tags, data
//! directory) so that it never meets another install on this host.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{docker, free_port, workspace_root};
use serde_json::{Value, json};

/// A copy of the repository's files (tracked and new, not ignored): what a
/// clean clone holds, including uncommitted work. Kept at a fixed path so
/// that install.sh's cargo build is incremental across runs.
fn copy_repository(to: &Path) {
    let root = workspace_root();
    let listed = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(&root)
        .output()
        .expect("git");
    assert!(listed.status.success());
    let _ = std::fs::remove_dir_all(to);
    for name in listed.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let rel = Path::new(std::str::from_utf8(name).unwrap());
        let from = root.join(rel);
        if !from.is_file() {
            continue;
        }
        let dest = to.join(rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&from, &dest).unwrap();
    }
}

struct Install {
    dir: PathBuf,
    data: PathBuf,
    env: Vec<(String, String)>,
    uninstalled: bool,
}

impl Install {
    fn script(&self, script: &str, args: &[&str]) -> (bool, String) {
        let out = Command::new(self.dir.join(script))
            .args(args)
            .current_dir(&self.dir)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect(script);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn env_value(&self, key: &str) -> String {
        std::fs::read_to_string(self.dir.join(".env"))
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .next_back()
            .unwrap_or("")
            .to_string()
    }
}

impl Drop for Install {
    fn drop(&mut self) {
        if !self.uninstalled {
            let (_, out) = self.script("uninstall.sh", &["--all", "--yes"]);
            eprintln!("cleanup uninstall:\n{out}");
        }
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

#[tokio::test]
async fn install_use_and_uninstall_leave_nothing_behind() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The images the install builds reuse the cache of the ones the tests
    // keep: the same base, the same Dockerfile.
    common::ensure_test_image();
    common::ensure_sandbox_image();
    let pid = std::process::id();
    assert!(docker(&["tag", "berth-base:bookworm", "berth-base:e2e"]).0);

    let dir = PathBuf::from("/var/tmp/berth-e2e-src");
    copy_repository(&dir);
    let data = PathBuf::from(format!("/var/tmp/berth-e2e-data-{pid}"));
    let (api_port, http_port) = (free_port(), free_port());
    let env: Vec<(String, String)> = [
        ("COMPOSE_PROJECT_NAME", format!("berthe2e{pid}")),
        ("BERTH_VERSION", "e2e".to_string()),
        ("BERTH_IMAGE", "berth-sandbox:e2e".to_string()),
        ("BERTH_BASE_IMAGE", "berth-base:e2e".to_string()),
        ("BERTH_DATA_DIR", data.display().to_string()),
        ("BERTH_API_PORT", api_port.to_string()),
        ("BERTH_HTTP_PORT", http_port.to_string()),
        ("BERTH_HTTPS_PORT", free_port().to_string()),
        ("BERTH_EDGE_ADMIN_PORT", free_port().to_string()),
        ("BERTH_NETWORK", format!("berth-e2e-{pid}")),
        ("BERTH_NETWORK_BRIDGE", format!("be2e{}", pid % 100_000)),
        ("BERTH_OFFLINE", "1".to_string()),
        // The CLI goes where the test can look, never into /usr/local/bin.
        ("BERTH_BIN_DIR", data.join("bin").display().to_string()),
        // A target directory of its own: this test runs inside `cargo test`.
        ("CARGO_TARGET_DIR", "/var/tmp/berth-target-e2e".to_string()),
        // The install flow is under test, not the optimiser: a cheaper
        // release profile halves a cold build (CI on a brand-new machine).
        ("CARGO_PROFILE_RELEASE_LTO", "off".to_string()),
        ("CARGO_PROFILE_RELEASE_OPT_LEVEL", "1".to_string()),
        ("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut install = Install {
        dir,
        data: data.clone(),
        env,
        uninstalled: false,
    };

    let (ok, out) = install.script("install.sh", &[]);
    assert!(ok, "install.sh failed:\n{out}");
    assert!(out.contains("berth is running"), "{out}");
    let token = install
        .env_value("BERTH_API_TOKENS")
        .split(',')
        .find_map(|t| t.strip_prefix("admin:"))
        .unwrap()
        .to_string();
    assert!(out.contains(&token), "the token is printed");
    // The CLI is on the host, and the printed login line works.
    let cli = data.join("bin/berth");
    let login = format!("berth login http://127.0.0.1:{api_port} --token {token}");
    assert!(out.contains(&login), "{out}");
    let cli_home = data.join("cli-home");
    let logged_in = Command::new(&cli)
        .env("HOME", &cli_home)
        .args([
            "login",
            &format!("http://127.0.0.1:{api_port}"),
            "--token",
            &token,
        ])
        .output()
        .unwrap();
    assert!(logged_in.status.success(), "{logged_in:?}");
    let listed = Command::new(&cli)
        .env("HOME", &cli_home)
        .args(["--json", "ls"])
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert!(listed["sandboxes"].is_array(), "{listed}");
    let instance = std::fs::read_to_string(data.join("instance-id")).unwrap();
    let project = format!("berthe2e{pid}");

    // Each container gets only its own settings: the edge never sees the
    // admin tokens, control never sees the edge's or the DNS provider's.
    let env_of = |service: &str| {
        let id = docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ])
        .1;
        docker(&[
            "inspect",
            "-f",
            "{{range .Config.Env}}{{println .}}{{end}}",
            id.trim(),
        ])
        .1
    };
    let (control_env, edge_env) = (env_of("control"), env_of("edge"));
    assert!(
        control_env.contains("BERTH_API_TOKENS=admin:"),
        "{control_env}"
    );
    assert!(
        !control_env.contains("BERTH_CONTROL_TOKEN"),
        "{control_env}"
    );
    assert!(!edge_env.contains("BERTH_API_TOKENS"), "{edge_env}");
    assert!(!edge_env.contains("BERTH_EDGE_TOKEN"), "{edge_env}");
    // The edge's token opens the edge's routes and nothing else.
    let edge_token = install.env_value("BERTH_CONTROL_TOKEN");
    assert_eq!(edge_token, install.env_value("BERTH_EDGE_TOKEN"));
    assert!(!install.env_value("BERTH_API_TOKENS").contains(&edge_token));
    // Secrets on disk are owner-only.
    use std::os::unix::fs::PermissionsExt;
    for path in [install.dir.join(".env"), data.clone()] {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
    }
    // Control installed the egress firewall in the host's namespace.
    let tag = instance[instance.len() - 16..].to_uppercase();
    let chains = || {
        let out = Command::new("iptables")
            .args(["-w", "-S"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&format!("BERTH-{tag}-")))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while chains() == 0 {
        assert!(Instant::now() < deadline, "no firewall rules for {tag}");
        std::thread::sleep(Duration::from_millis(250));
    }

    // The API, with the token (and without it: refused).
    let api = format!("http://127.0.0.1:{api_port}");
    let http = reqwest::Client::new();
    let anon = http.get(format!("{api}/sandboxes")).send().await.unwrap();
    assert_eq!(anon.status(), 401);
    let as_edge = http
        .get(format!("{api}/sandboxes"))
        .bearer_auth(&edge_token)
        .send()
        .await
        .unwrap();
    assert_eq!(as_edge.status(), 403);
    let created: Value = http
        .post(format!("{api}/sandbox"))
        .bearer_auth(&token)
        .json(&json!({"id": "e2e", "ports": [3000], "start": "cd ~/workspace && exec python3 -m http.server 3000"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["status"], "running", "{created}");
    let preview = created["preview_urls"]["3000"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        preview,
        format!("http://s-e2e-3000.preview.localhost:{http_port}")
    );
    let wrote = http
        .put(format!("{api}/v1/sandboxes/e2e/files"))
        .bearer_auth(&token)
        .json(&json!({"path": "index.html", "content": "<h1>hello from an installed berth</h1>"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrote.status(), 200);

    // The preview URL, through the installed edge.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = http
            .get(format!("http://127.0.0.1:{http_port}/"))
            .header("host", format!("s-e2e-3000.preview.localhost:{http_port}"))
            .send()
            .await;
        if let Ok(r) = r {
            if r.status() == 200 {
                assert_eq!(
                    r.text().await.unwrap(),
                    "<h1>hello from an installed berth</h1>"
                );
                break;
            }
        }
        assert!(Instant::now() < deadline, "the preview was never served");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A task, and its event stream to the end.
    let task: Value = http
        .post(format!("{api}/v1/sandboxes/e2e/tasks"))
        .bearer_auth(&token)
        .json(&json!({"prompt": "make a todo app on port 3000", "agent": "claude"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = http
        .get(format!("{api}{}", task["events_url"].as_str().unwrap()))
        .bearer_auth(&token)
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(events.contains("event: done"), "{events}");
    // The image has the real Claude Code CLI (from PyPI) on every host;
    // with no provider key it fails and says which variable to set.
    assert!(events.contains("agent_auth"), "{events}");
    assert!(events.contains("ANTHROPIC_API_KEY"), "{events}");

    // Something berth did not make, which must survive the uninstall.
    let foreign = format!("not-berth-{pid}");
    assert!(docker(&["run", "-d", "--name", &foreign, common::TEST_IMAGE]).0);

    let (ok, out) = install.script("uninstall.sh", &["--all", "--yes"]);
    install.uninstalled = true;
    assert!(ok, "uninstall.sh failed:\n{out}");
    assert!(out.contains("removing the berth CLI"), "{out}");
    assert!(!data.join("bin/berth").exists(), "the CLI is removed");
    let labelled = |label: String| docker(&["ps", "-aq", "--filter", &format!("label={label}")]).1;
    assert_eq!(
        labelled(format!("berth.instance={instance}")),
        "",
        "sandboxes left"
    );
    assert_eq!(
        labelled(format!("com.docker.compose.project={project}")),
        "",
        "stack containers left"
    );
    for net in [
        format!("berth-e2e-{pid}"),
        format!("berth-e2e-{pid}-internal"),
    ] {
        assert!(
            !docker(&["network", "inspect", &net]).0,
            "network {net} left"
        );
    }
    for image in [
        "berth-control:e2e",
        "berth-edge:e2e",
        "berth-sandbox:e2e",
        "berth-base:e2e",
    ] {
        assert!(
            !docker(&["image", "inspect", image]).0,
            "image {image} left"
        );
    }
    assert!(!data.exists(), "data left");
    assert_eq!(chains(), 0, "firewall rules left");
    assert!(
        docker(&["inspect", &foreign]).0,
        "a container not made by berth survives"
    );
    docker(&["rm", "-f", &foreign]);
    assert!(
        docker(&["image", "inspect", "berth-base:bookworm"]).0,
        "other tags untouched"
    );
}
