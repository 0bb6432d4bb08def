//! Test harness: the real `berth-control` binary on a free port, with its own
//! data directory and Docker network, against the host's real Docker daemon.
//! Everything a test makes is removed when its `Control` is dropped, also
//! when the test panics.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

pub const TEST_IMAGE: &str = "berth-test-sandbox:latest";
pub const TOKEN: &str = "test-secret-0123456789abcdef";
/// The edge's scoped token, when a test turns auth on.
pub const EDGE_TOKEN: &str = "edge-secret-0123456789abcdef";

/// Builds the sandbox image the tests use: static busybox on `scratch`, with
/// a user 1000 and a command that stays up and stops fast.
pub fn ensure_test_image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("static busybox is needed for the test image: apt-get install busybox-static");
        let ctx = std::env::temp_dir().join(format!("berth-test-image-{}", std::process::id()));
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::copy(busybox, ctx.join("busybox")).unwrap();
        std::fs::write(
            ctx.join("passwd"),
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(ctx.join("group"), "root:x:0:\nuser:x:1000:\n").unwrap();
        std::fs::write(
            ctx.join("Dockerfile"),
            r#"FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY passwd group /etc/
LABEL org.opencontainers.image.title="berth test sandbox"
CMD ["/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"]
"#,
        )
        .unwrap();
        let out = Command::new("docker")
            .args(["build", "-q", "-t", TEST_IMAGE])
            .arg(&ctx)
            .output()
            .expect("docker CLI");
        assert!(
            out.status.success(),
            "building the test image failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_dir_all(&ctx);
    });
}

pub const AGENT_IMAGE: &str = "berth-test-agent:latest";

/// The workspace's root directory (both crates sit one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crates live in the workspace")
        .to_path_buf()
}

/// A binary of the workspace, next to the running test's directory
/// (`target/<profile>/deps/..`). `cargo test --workspace` builds them all.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo test --workspace` (or `cargo build -p {name}`)",
        path.display()
    );
    path
}

/// berth's real sandbox image (agent-image/), built on the Debian base made
/// by agent-image/build-base.sh (debootstrap; no registry needed), tagged
/// for the tests. Kept between runs: it holds the build cache.
pub const SANDBOX_IMAGE: &str = "berth-sandbox:test";

pub fn ensure_sandbox_image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = workspace_root();
        let status = Command::new(root.join("agent-image/build-base.sh"))
            .status()
            .expect("agent-image/build-base.sh");
        assert!(status.success(), "building the Debian base image failed");
        // The real Claude Code CLI's pinned wheel, downloaded once into
        // /var/tmp/berth-cache and reused by every run.
        let status = Command::new(root.join("agent-image/fetch-claude.sh"))
            .status()
            .expect("agent-image/fetch-claude.sh");
        assert!(status.success(), "fetching Claude Code's wheel failed");
        let out = Command::new("docker")
            .args([
                "build",
                "-q",
                "--build-arg",
                "BASE_IMAGE=berth-base:bookworm",
                "-t",
                SANDBOX_IMAGE,
            ])
            .arg(root.join("agent-image"))
            .output()
            .expect("docker CLI");
        assert!(
            out.status.success(),
            "building the sandbox image failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// The real sandbox image plus fake `claude` and `opencode` CLIs
/// (control/tests/fixtures) that print the real output formats.
pub fn ensure_agent_image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        ensure_sandbox_image();
        let root = workspace_root();
        let ctx = std::env::temp_dir().join(format!("berth-agent-image-{}", std::process::id()));
        std::fs::create_dir_all(&ctx).unwrap();
        let fixtures = root.join("control/tests/fixtures");
        for agent in ["claude", "opencode"] {
            std::fs::copy(fixtures.join(agent), ctx.join(agent)).unwrap();
        }
        // Both CLIs are there now: the image lists both, none missing.
        std::fs::write(ctx.join("agents-missing"), "\n").unwrap();
        std::fs::write(ctx.join("agents"), "claude fake\nopencode fake\n").unwrap();
        std::fs::write(
            ctx.join("Dockerfile"),
            r#"FROM berth-sandbox:test
COPY claude opencode /usr/local/bin/
COPY agents-missing /etc/berth-agents-missing
COPY agents /etc/berth-agents
"#,
        )
        .unwrap();
        let out = Command::new("docker")
            .args(["build", "-q", "-t", AGENT_IMAGE])
            .arg(&ctx)
            .output()
            .expect("docker CLI");
        assert!(
            out.status.success(),
            "building the agent test image failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_dir_all(&ctx);
    });
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: i64,
    pub event: String,
    pub data: Value,
}

fn parse_sse_frame(frame: &str) -> Option<SseEvent> {
    let (mut id, mut event, mut data) = (None, String::new(), String::new());
    for line in frame.lines() {
        if let Some(v) = line.strip_prefix("id:") {
            id = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("event:") {
            event = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    if id.is_none() && event.is_empty() && data.is_empty() {
        return None; // a keep-alive comment
    }
    Some(SseEvent {
        // Task events always carry one; streamed exec events carry none.
        id: id.unwrap_or(0),
        event,
        data: serde_json::from_str(&data).unwrap_or(Value::Null),
    })
}

/// Reads an SSE response until it ends, `max` events arrived, or `timeout`
/// (then it panics: a stream that hangs is a failure). Dropping the
/// response, as returning early does, closes the stream.
pub async fn read_sse(
    mut resp: reqwest::Response,
    path: &str,
    max: Option<usize>,
    timeout: Duration,
) -> Vec<SseEvent> {
    assert_eq!(resp.status(), StatusCode::OK, "SSE {path}");
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let deadline = Instant::now() + timeout;
    let (mut buf, mut events) = (String::new(), Vec::new());
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = match tokio::time::timeout(left, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => chunk,
            Ok(_) => break,
            Err(_) => panic!("SSE {path} did not end within {timeout:?}; got {events:?}"),
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            if let Some(e) = parse_sse_frame(&frame) {
                events.push(e);
                if max.is_some_and(|m| events.len() >= m) {
                    return events;
                }
            }
        }
    }
    events
}

/// The port in control's "berth-control listening" line (colours or not).
fn listening_port(log: &str) -> Option<u16> {
    let line = log
        .lines()
        .find(|l| l.contains("berth-control listening"))?;
    let at = line.find("127.0.0.1:")? + "127.0.0.1:".len();
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// A port for a program that must be told where to listen (the edge,
/// Pebble). Handed out below the kernel's ephemeral range
/// (`ip_local_port_range`, 32768 and up by default), so no outgoing
/// connection and no `bind(0)` elsewhere can take it between this check and
/// the program's own bind; each test process starts at its own offset and
/// never hands out a port twice.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::process::id().wrapping_mul(211) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (base + n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN)
}

pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}{}{:x}", std::process::id(), nanos)
}

/// Runs the docker CLI; returns stdout (trimmed) and whether it succeeded.
pub fn docker(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

/// A /proc/meminfo stand-in for control (`BERTH_MEMINFO_PATH`): 10 GiB in
/// all, `available_mb` available.
pub fn write_meminfo(path: &std::path::Path, available_mb: u64) {
    let text = format!(
        "MemTotal:       {} kB\nMemFree:        1 kB\nMemAvailable:   {} kB\n",
        10_240 * 1024,
        available_mb * 1024
    );
    std::fs::write(path, text).unwrap();
}

/// `docker inspect -f <format> <target>`.
pub fn inspect(target: &str, format: &str) -> String {
    let (ok, out) = docker(&["inspect", "-f", format, target]);
    assert!(ok, "docker inspect {target} failed");
    out
}

pub struct Control {
    pub base: String,
    pub port: u16,
    pub data_dir: PathBuf,
    pub network: String,
    pub instance: String,
    pub token: Option<String>,
    /// BERTH_EDGE_TOKEN, for the edge's harness.
    pub edge_token: Option<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
    http: reqwest::Client,
    log: PathBuf,
}

/// A response: status and JSON body (`Value::Null` when the body is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl Control {
    /// Starts control with test-friendly defaults plus `extra` settings.
    pub async fn start(extra: &[(&str, &str)]) -> Self {
        // reqwest is built without a default TLS provider in this workspace.
        let _ = rustls::crypto::ring::default_provider().install_default();
        ensure_test_image();
        // A test may bring its own data directory (a small tmpfs, say).
        let data_dir = extra
            .iter()
            .find(|(k, _)| *k == "BERTH_DATA_DIR")
            .map_or_else(
                || std::env::temp_dir().join(unique("berth-it-")),
                |(_, v)| PathBuf::from(v),
            );
        std::fs::create_dir_all(&data_dir).unwrap();
        let network = unique("berth-t-");
        // Port 0: control binds a free port itself and logs it (a port
        // picked here could be taken by another test before control binds).
        let port = 0;
        let mut env: Vec<(String, String)> = vec![
            ("BERTH_DATA_DIR".into(), data_dir.display().to_string()),
            ("BERTH_API_BIND".into(), "127.0.0.1:0".into()),
            ("BERTH_IMAGE".into(), TEST_IMAGE.into()),
            ("BERTH_NETWORK".into(), network.clone()),
            ("BERTH_PREVIEW_DOMAIN".into(), "test.localhost".into()),
            ("BERTH_DEFAULT_MEMORY".into(), "256m".into()),
            ("BERTH_RECONCILE_INTERVAL".into(), "2".into()),
            ("BERTH_REAP_INTERVAL".into(), "1".into()),
            // Idle sandboxes stop at once, as before light sleep; the tests
            // of light sleep (sleep.rs) set their own.
            ("BERTH_DEEP_SLEEP_AFTER".into(), "0".into()),
            ("BERTH_STOP_TIMEOUT".into(), "2".into()),
            ("RUST_LOG".into(), "info,berth_control=debug".into()),
        ];
        let (mut token, mut edge_token) = (None, None);
        for (k, v) in extra {
            if *k == "BERTH_API_TOKENS" {
                token = v.split_once(':').map(|(_, s)| s.to_string());
            }
            if *k == "BERTH_EDGE_TOKEN" {
                edge_token = Some((*v).to_string());
            }
            env.retain(|(key, _)| key != k);
            env.push(((*k).into(), (*v).into()));
        }
        let log = data_dir.join("control.log");
        let mut control = Control {
            base: format!("http://127.0.0.1:{port}"),
            port,
            data_dir,
            network,
            instance: String::new(),
            token,
            edge_token,
            env,
            child: None,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
            log,
        };
        control.spawn().await;
        let info = control.get("/v1/info").await;
        assert_eq!(info.status, StatusCode::OK, "{info:?}");
        control.instance = info.body["instance_id"].as_str().unwrap().to_string();
        control
    }

    /// Starts the binary and waits for /healthz.
    pub async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0) as usize;
        let child = Command::new(binary("berth-control"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("berth-control binary");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "berth-control exited early ({status}):\n{}",
                    self.log_text()
                );
            }
            if self.port == 0 {
                // The first start: learn the port control bound, then keep
                // it for restarts (an edge may point at it).
                let text = std::fs::read(&self.log).unwrap_or_default();
                let text = String::from_utf8_lossy(text.get(log_start..).unwrap_or_default());
                if let Some(port) = listening_port(&text) {
                    self.port = port;
                    self.base = format!("http://127.0.0.1:{port}");
                    self.env.retain(|(k, _)| k != "BERTH_API_BIND");
                    self.env
                        .push(("BERTH_API_BIND".into(), format!("127.0.0.1:{port}")));
                } else {
                    assert!(
                        Instant::now() < deadline,
                        "berth-control did not say where it listens:\n{}",
                        self.log_text()
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            }
            if let Ok(r) = self.http.get(format!("{}/healthz", self.base)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "berth-control did not come up:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no shutdown path runs.
    /// Changes one setting for the next `spawn`.
    pub fn env_set(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let status = child.wait().unwrap();
            assert!(status.success(), "control did not exit cleanly: {status}");
        }
    }

    pub async fn restart(&mut self) {
        self.terminate();
        self.spawn().await;
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let r = req.send().await.expect("request to control");
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            body,
            headers,
            text,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn send_method(&self, method: reqwest::Method, path: &str) -> Reply {
        self.send(self.request(method, path)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(self.request(reqwest::Method::DELETE, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(self.request(reqwest::Method::POST, path).json(&body))
            .await
    }

    pub async fn post_raw(&self, path: &str, body: &str) -> Reply {
        self.send(
            self.request(reqwest::Method::POST, path)
                .body(body.to_string()),
        )
        .await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.send(self.request(reqwest::Method::PUT, path).json(&body))
            .await
    }

    /// A request with no token at all, whatever the harness holds.
    pub async fn anonymous(&self, method: reqwest::Method, path: &str) -> Reply {
        self.send(self.http.request(method, format!("{}{path}", self.base)))
            .await
    }

    /// Creates a sandbox and asserts it is running.
    pub async fn create(&self, body: Value) -> Value {
        let r = self.post("/sandbox", body).await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "create failed: {r:?}\n{}",
            self.log_text()
        );
        assert_eq!(r.body["status"], "running", "{r:?}");
        r.body
    }

    pub async fn exec(&self, id: &str, cmd: &[&str]) -> Reply {
        self.post(
            &format!("/sandbox/{id}/exec"),
            serde_json::json!({ "cmd": cmd }),
        )
        .await
    }

    /// Runs a shell line and returns its stdout, asserting exit 0.
    pub async fn sh(&self, id: &str, line: &str) -> String {
        let r = self.exec(id, &["/bin/sh", "-c", line]).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        assert_eq!(r.body["exit_code"], 0, "`{line}` failed: {r:?}");
        r.body["stdout"].as_str().unwrap().to_string()
    }

    /// The body sandbox `id` gets for `GET http://{addr}:{port}{path}`, or
    /// None when it gets no HTTP answer within 3 s. Plain `nc`: the static
    /// busybox of the test image crashes in `wget` (glibc NSS in a static
    /// binary), which would make every "cannot reach" check pass vacuously.
    pub async fn http_get_from(
        &self,
        id: &str,
        addr: &str,
        port: u16,
        path: &str,
    ) -> Option<String> {
        let line = format!(
            "printf 'GET {path} HTTP/1.0\\r\\nHost: {addr}\\r\\n\\r\\n' | nc -w 3 {addr} {port}"
        );
        let r = self.exec(id, &["/bin/sh", "-c", &line]).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        let out = r.body["stdout"].as_str().unwrap_or_default();
        if !out.starts_with("HTTP/1.") {
            return None;
        }
        Some(
            out.split_once("\r\n\r\n")
                .map(|(_, b)| b)
                .unwrap_or_default()
                .to_string(),
        )
    }

    /// Reads an SSE stream until it ends, `max` events arrived, or `timeout`.
    pub async fn sse(
        &self,
        path: &str,
        last_event_id: Option<i64>,
        max: Option<usize>,
        timeout: Duration,
    ) -> Vec<SseEvent> {
        let mut req = self.request(reqwest::Method::GET, path);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let resp = req.send().await.expect("SSE request");
        read_sse(resp, path, max, timeout).await
    }

    /// `POST` a JSON body and read the SSE answer, as [`Control::sse`] does.
    pub async fn post_sse(
        &self,
        path: &str,
        body: Value,
        max: Option<usize>,
        timeout: Duration,
    ) -> Vec<SseEvent> {
        let resp = self
            .request(reqwest::Method::POST, path)
            .json(&body)
            .send()
            .await
            .expect("SSE request");
        read_sse(resp, path, max, timeout).await
    }

    pub async fn status_of(&self, id: &str) -> String {
        self.get(&format!("/sandbox/{id}")).await.body["status"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Polls `check` until it holds or `timeout` passes.
    pub async fn eventually<F, Fut>(&self, what: &str, timeout: Duration, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + timeout;
        while !check().await {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n--- control log ---\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Processes in the sandbox whose arguments match `pattern` (a grep regex).
    pub async fn leftovers(&self, id: &str, pattern: &str) -> String {
        self.sh(
            id,
            &format!("ps -o args | grep '{pattern}' | grep -v grep || true"),
        )
        .await
    }

    /// Streams `cmd` (which prints `ready` first), hangs up after that
    /// line, and waits until no process matches `pattern`.
    pub async fn hang_up_and_see_gone(&self, id: &str, cmd: &str, pattern: &str) {
        let path = format!("/v1/sandboxes/{id}/exec/stream");
        let first = self
            .post_sse(
                &path,
                serde_json::json!({ "cmd": cmd }),
                Some(1),
                Duration::from_secs(20),
            )
            .await;
        assert_eq!(first[0].data["text"], "ready\n", "{first:?}");
        self.eventually(
            &format!("`{pattern}` is killed once the stream's reader hung up"),
            Duration::from_secs(10),
            || async { self.leftovers(id, pattern).await.is_empty() },
        )
        .await;
    }

    /// What every way of running commands keeps to, with `sleep base+1` to
    /// `base+4` (`base` a multiple of 10): at its timeout an exec dies with everything it started
    /// (a child in its own session, re-parented to the container's init,
    /// a double fork through nohup), likewise when a streamed exec's reader
    /// hangs up, and a command that ends normally leaves its background
    /// server running.
    pub async fn assert_execs_take_their_children(&self, id: &str, base: u32) {
        let [a, b, c, d] = [base + 1, base + 2, base + 3, base + 4];
        let r = self
            .post(
                &format!("/v1/sandboxes/{id}/exec"),
                serde_json::json!({"cmd": format!("(setsid sleep {a} &); (nohup sleep {b} >/dev/null 2>&1 &); sleep 100"), "timeout_s": 2}),
            )
            .await;
        assert_eq!(r.body["timed_out"], true, "{r:?}");
        assert_eq!(r.body["exit_code"], Value::Null);
        assert_eq!(
            self.leftovers(id, &format!("sleep {}[12]", base / 10))
                .await,
            ""
        );
        self.hang_up_and_see_gone(
            id,
            &format!("(setsid sleep {c} >/dev/null 2>&1 &); echo ready; sleep 100"),
            &format!("sleep {c}"),
        )
        .await;
        self.sh(id, &format!("(setsid sleep {d} >/dev/null 2>&1 &)"))
            .await;
        assert_ne!(self.leftovers(id, &format!("sleep {d}")).await, "");
    }

    pub fn container(&self, id: &str) -> String {
        format!("berth-{id}")
    }

    pub fn home(&self, id: &str) -> PathBuf {
        self.data_dir.join("sandboxes").join(id)
    }

    /// Containers of this instance, by sandbox id, with their running state.
    pub fn containers(&self) -> HashMap<String, bool> {
        let filter = format!("label=berth.instance={}", self.instance);
        let (_, out) = docker(&[
            "ps",
            "-a",
            "--filter",
            &filter,
            "--format",
            "{{.Label \"berth.sandbox.id\"}} {{.State}}",
        ]);
        out.lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(id, state)| (id.to_string(), state == "running"))
            .collect()
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.kill9();
        if !self.instance.is_empty() {
            let filter = format!("label=berth.instance={}", self.instance);
            let (_, ids) = docker(&["ps", "-aq", "--filter", &filter]);
            for id in ids.lines() {
                let _ = docker(&["rm", "-f", "-v", id]);
            }
        }
        let _ = docker(&["network", "rm", &self.network]);
        let _ = docker(&["network", "rm", &format!("{}-internal", self.network)]);
        // This instance's egress rules (a failed start may have left some),
        // by its id: a test may have moved the data directory elsewhere.
        let _ = Command::new(workspace_root().join("deploy/firewall/berth-firewall.sh"))
            .arg("remove")
            .arg(if self.instance.is_empty() {
                self.data_dir.as_os_str()
            } else {
                std::ffi::OsStr::new(&self.instance)
            })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if std::thread::panicking() {
            eprintln!("--- control log ---\n{}", self.log_text());
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A Docker daemon of the test's own (data root, exec root, socket, pid
/// file under a temp directory, a bridge of its own, address pools apart
/// from the machine's daemon, no iptables), for what must not touch the
/// machine's daemon: registering runtimes, killing it. Dropping it removes
/// its containers, stops it and what it started, and deletes its files and
/// its bridge.
///
/// Never `--bridge=none`: a dockerd told so deletes the host's `docker0`,
/// the machine daemon's default bridge.
pub struct PrivateDocker {
    pub dir: PathBuf,
    bridge: String,
    child: Option<Child>,
}

impl PrivateDocker {
    /// Starts dockerd with `config` as its daemon.json, and waits for it.
    pub fn start(config: &Value) -> PrivateDocker {
        let dir = std::env::temp_dir().join(unique("berth-dockerd-"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("daemon.json"), config.to_string()).unwrap();
        std::fs::File::create(dir.join("dockerd.log")).unwrap();
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let bridge = format!("bpd{}x{k}", std::process::id() % 100_000);
        let third = (std::process::id() * 3 + k * 7) % 250;
        for args in [
            vec!["link", "add", &bridge, "type", "bridge"],
            vec![
                "addr",
                "add",
                &format!("10.233.{third}.1/24"),
                "dev",
                &bridge,
            ],
            vec!["link", "set", &bridge, "up"],
        ] {
            let out = Command::new("ip").args(&args).output().unwrap();
            assert!(out.status.success(), "ip {args:?}: {out:?}");
        }
        let mut docker = PrivateDocker {
            dir,
            bridge,
            child: None,
        };
        docker.up();
        docker
    }

    /// Starts this dockerd (again) on its own directories and bridge, and
    /// waits until it answers.
    pub fn up(&mut self) {
        let dir = &self.dir;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("dockerd.log"))
            .unwrap();
        let child = Command::new("dockerd")
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("docker.sock").display()))
            .arg(format!("--bridge={}", self.bridge))
            // No --default-address-pool: with one, a restarted dockerd
            // deletes the interface named docker0 (the machine's daemon's),
            // as Docker 20.10 does when it clears a stale default network.
            // Docker's own pools skip ranges the host already routes.
            .args(["--iptables=false", "--ip6tables=false", "--ip-masq=false"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("dockerd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.cli(&["info"]).0 {
            assert!(
                Instant::now() < deadline,
                "the private dockerd did not come up:\n{}",
                std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops this dockerd (SIGTERM, as an upgrade or a restart does); its
    /// containers stop with it.
    pub fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Replaces daemon.json and makes dockerd reload it (SIGHUP; runtimes
    /// are reloadable).
    pub fn reload(&self, config: &Value) {
        std::fs::write(self.dir.join("daemon.json"), config.to_string()).unwrap();
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(
            Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    /// `DOCKER_HOST` for clients of this daemon.
    pub fn host(&self) -> String {
        format!("unix://{}", self.dir.join("docker.sock").display())
    }

    /// Runs the docker CLI against this daemon: (succeeded, stdout+stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("docker")
            .arg("-H")
            .arg(self.host())
            .args(args)
            .output()
            .expect("docker CLI");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text.trim().to_string())
    }

    /// Copies an image of the machine's daemon into this one.
    pub fn load(&self, image: &str) {
        let mut save = Command::new("docker")
            .args(["save", image])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let loaded = Command::new("docker")
            .arg("-H")
            .arg(self.host())
            .args(["load", "-q"])
            .stdin(save.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(save.wait().unwrap().success(), "docker save {image}");
        assert!(loaded.status.success(), "docker load: {loaded:?}");
    }
}

impl Drop for PrivateDocker {
    fn drop(&mut self) {
        let (_, ids) = self.cli(&["ps", "-aq"]);
        for id in ids.lines().filter(|l| !l.is_empty()) {
            let _ = self.cli(&["rm", "-f", "-v", id]);
        }
        let _ = self.cli(&["network", "prune", "-f"]);
        self.down();
        // Shims and runtime processes it started that outlived it (a
        // container whose start failed): they name its directories.
        let _ = Command::new("pkill")
            .args(["-KILL", "-f", &self.dir.display().to_string()])
            .status();
        let _ = Command::new("ip")
            .args(["link", "delete", &self.bridge])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
