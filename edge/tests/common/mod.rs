//! Edge test harness: the real berth-edge binary in front of the real
//! berth-control (started through control's own harness) and Docker.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../control/tests/common/mod.rs"]
pub mod control;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[allow(unused_imports)]
pub use control::{Control, docker, free_port};

pub const WEB_IMAGE: &str = "berth-test-web:latest";
/// Runs the fixture app (edge/tests/fixtures/app.py) on port 3000.
pub const APP_START: &str = "exec python3 /opt/app.py 3000";

/// A Debian sandbox image with Python and the fixture app.
pub fn ensure_web_image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        control::ensure_test_image();
        let root = control::workspace_root();
        let status = Command::new(root.join("agent-image/build-base.sh")).status().unwrap();
        assert!(status.success(), "building the Debian base image failed");
        let ctx = std::env::temp_dir().join(format!("berth-web-image-{}", std::process::id()));
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::copy(root.join("edge/tests/fixtures/app.py"), ctx.join("app.py")).unwrap();
        std::fs::write(
            ctx.join("Dockerfile"),
            r#"FROM berth-base:bookworm
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 >/dev/null \
 && rm -rf /var/lib/apt/lists/* && useradd -u 1000 -m user
COPY app.py /opt/app.py
CMD ["/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"]
"#,
        )
        .unwrap();
        let out = Command::new("docker").args(["build", "-q", "-t", WEB_IMAGE]).arg(&ctx).output().unwrap();
        assert!(out.status.success(), "building the web test image failed: {}", String::from_utf8_lossy(&out.stderr));
        let _ = std::fs::remove_dir_all(&ctx);
    });
}

pub struct Edge {
    pub port: u16,
    pub admin: u16,
    pub domain: String,
    child: Option<Child>,
    log: PathBuf,
    pub http: reqwest::Client,
}

impl Edge {
    /// Starts berth-edge in front of `control`, and waits until it has
    /// read Docker's containers.
    pub async fn start(control: &Control, extra: &[(&str, &str)]) -> Edge {
        let port = free_port();
        let admin = free_port();
        let log = control.data_dir.join("edge.log");
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(control::binary("berth-edge"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("BERTH_EDGE_HTTP_BIND", format!("127.0.0.1:{port}"))
            .env("BERTH_EDGE_ADMIN_BIND", format!("127.0.0.1:{admin}"))
            .env("BERTH_CONTROL_URL", &control.base)
            .env("BERTH_PREVIEW_DOMAIN", "test.localhost")
            .env("BERTH_EDGE_GRACE_PERIOD", "0")
            .env("BERTH_DATA_DIR", &control.data_dir)
            .env("RUST_LOG", "info,berth_edge=debug");
        if let Some(token) = control.edge_token.as_ref().or(control.token.as_ref()) {
            cmd.env("BERTH_CONTROL_TOKEN", token);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .expect("berth-edge binary");
        let domain = extra
            .iter()
            .find(|(k, _)| *k == "BERTH_PREVIEW_DOMAIN")
            .map_or("test.localhost", |(_, v)| *v)
            .to_string();
        let edge = Edge {
            port,
            admin,
            domain,
            child: Some(child),
            log,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{admin}/metrics")).await {
                if r.text()
                    .await
                    .unwrap_or_default()
                    .contains("berth_edge_routes")
                {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "berth-edge did not come up:\n{}",
                edge.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        edge
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn preview_host(&self, id: &str, port: u16) -> String {
        format!("s-{id}-{port}.preview.{}", self.domain)
    }

    /// A request to the edge for `host`.
    pub fn request(
        &self,
        method: reqwest::Method,
        host: &str,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("http://127.0.0.1:{}{path}", self.port))
            .header("host", host)
    }

    pub async fn get(&self, host: &str, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::GET, host, path)
            .send()
            .await
            .expect("request to the edge")
    }

    /// Freezes (`STOP`) or thaws (`CONT`) the edge process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().map(|c| c.id().to_string()).unwrap();
        let ok = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} {pid}");
    }

    pub async fn get_text(&self, host: &str, path: &str) -> (u16, String) {
        let r = self.get(host, path).await;
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    /// The value of a metric line (`name{labels}`), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- edge log ---\n{}", self.log_text());
        }
    }
}

/// A minimal WebSocket client: handshake, then text frames.
pub struct WebSocket {
    stream: TcpStream,
}

impl WebSocket {
    pub fn connect(edge_port: u16, host: &str, path: &str) -> WebSocket {
        let mut stream = TcpStream::connect(("127.0.0.1", edge_port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "no upgrade: {head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
            "{head}"
        );
        WebSocket { stream }
    }

    pub fn send(&mut self, text: &str) {
        let payload = text.as_bytes();
        assert!(payload.len() < 126);
        let mask = [1u8, 2, 3, 4];
        let mut frame = vec![0x81, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).unwrap();
    }

    pub fn receive(&mut self) -> String {
        let mut head = [0u8; 2];
        self.stream.read_exact(&mut head).unwrap();
        let len = (head[1] & 0x7F) as usize;
        assert!(len < 126);
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload).unwrap();
        String::from_utf8(payload).unwrap()
    }
}

/// control (serving the web image) and an edge in front of it.
pub async fn stack(control_env: &[(&str, &str)], edge_env: &[(&str, &str)]) -> (Control, Edge) {
    ensure_web_image();
    let mut env = vec![("BERTH_IMAGE", WEB_IMAGE)];
    env.extend_from_slice(control_env);
    let control = Control::start(&env).await;
    let edge = Edge::start(&control, edge_env).await;
    (control, edge)
}

pub async fn app_sandbox(c: &Control, extra: Value) -> String {
    let mut body = json!({"ports": [3000], "start": APP_START});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    c.create(body).await["id"].as_str().unwrap().to_string()
}

/// Waits for the app to listen (the start command is asynchronous).
pub async fn until_served(edge: &Edge, host: &str) {
    for _ in 0..200 {
        if edge.get_text(host, "/").await.0 == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{host} was never served\n{}", edge.log_text());
}

/// The stack with one app sandbox, served: (control, edge, its id, its host).
pub async fn served_app() -> (Control, Edge, String, String) {
    let (c, edge) = stack(&[], &[]).await;
    let id = app_sandbox(&c, json!({})).await;
    let host = edge.preview_host(&id, 3000);
    until_served(&edge, &host).await;
    (c, edge, id, host)
}
