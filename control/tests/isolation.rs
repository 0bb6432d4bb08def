//! Isolation on the real Docker daemon: owner-only data, a host uid per
//! sandbox, egress rules proven against listeners the tests make themselves
//! (a network namespace and a host socket; never an outside address), the
//! edge's scoped token, and runtimes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Control, EDGE_TOKEN, PrivateDocker, TEST_IMAGE, TOKEN, docker, inspect};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

#[tokio::test]
async fn the_data_directory_and_everything_secret_in_it_are_owner_only() {
    let c = Control::start(&[]).await;
    let id = c
        .create(json!({"env": {"ANTHROPIC_API_KEY": "sk-ant-secret-value"}}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for name in ["berth.db", "berth.db-wal", "berth.db-shm", "instance-id"] {
        let path = c.data_dir.join(name);
        assert_eq!(mode(&path), 0o600, "{name}");
    }
    assert_eq!(mode(&c.data_dir), 0o700);
    assert_eq!(mode(&c.data_dir.join("sandboxes")), 0o700);
    assert_eq!(mode(&c.home(&id)), 0o700);
    // The secret never shows in control's log.
    assert!(!c.log_text().contains("sk-ant-secret-value"));
}

#[tokio::test]
async fn an_install_made_readable_is_repaired_at_start() {
    let mut c = Control::start(&[]).await;
    c.create(json!({})).await;
    c.terminate();
    for name in ["berth.db", "berth.db-wal", "berth.db-shm"] {
        let path = c.data_dir.join(name);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    std::fs::set_permissions(&c.data_dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    c.spawn().await;
    assert_eq!(mode(&c.data_dir), 0o700);
    assert_eq!(mode(&c.data_dir.join("berth.db")), 0o600);
    for name in ["berth.db-wal", "berth.db-shm"] {
        let path = c.data_dir.join(name);
        if path.exists() {
            assert_eq!(mode(&path), 0o600, "{name}");
        }
    }
    assert!(
        c.log_text().contains("made owner-only"),
        "what was tightened is logged"
    );
}

#[tokio::test]
async fn every_sandbox_runs_as_its_own_host_uid_named_user_inside() {
    let c = Control::start(&[]).await;
    let a = c.create(json!({})).await;
    let b = c.create(json!({})).await;
    let (a_id, b_id) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let (a_uid, b_uid) = (a["uid"].as_i64().unwrap(), b["uid"].as_i64().unwrap());
    assert_ne!(a_uid, b_uid);
    for (id, uid) in [(a_id, a_uid), (b_id, b_uid)] {
        assert_eq!(
            c.sh(id, "id -u; id -g; id -un; echo $HOME").await,
            format!("{uid}\n{uid}\nuser\n/home/user\n")
        );
        let home = std::fs::metadata(c.home(id)).unwrap();
        assert_eq!((home.uid(), home.gid()), (uid as u32, uid as u32));
        // The generated identity files are read-only inside.
        let r = c
            .exec(id, &["/bin/sh", "-c", "echo x >> /etc/passwd"])
            .await;
        assert_ne!(r.body["exit_code"], 0);
    }
    // Files one sandbox makes are its own, not another's.
    c.sh(a_id, "echo private > ~/workspace/secret").await;
    let made = std::fs::metadata(c.home(a_id).join("workspace/secret")).unwrap();
    assert_eq!(made.uid(), a_uid as u32);
}

/// Python that opens inotify instances until the kernel refuses, prints how
/// many it got, and (with `hold`) keeps them.
fn inotify_script(hold: bool) -> String {
    format!(
        "import ctypes, os, time\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         got = 0\n\
         while got < 100000:\n\
         \x20   if libc.inotify_init() < 0:\n\
         \x20       break\n\
         \x20   got += 1\n\
         print(got, flush=True)\n\
         {}",
        if hold { "time.sleep(600)\n" } else { "" }
    )
}

#[tokio::test]
async fn one_sandbox_using_up_inotify_instances_does_not_break_another() {
    common::ensure_sandbox_image();
    let c = Control::start(&[("BERTH_IMAGE", common::SANDBOX_IMAGE)]).await;
    let a = c.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = c.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Sandbox a takes every inotify instance its uid may have, and keeps
    // them (Vite, webpack and nodemon each take some).
    c.put(
        &format!("/v1/sandboxes/{a}/files"),
        json!({"path": "hog.py", "content": inotify_script(true)}),
    )
    .await;
    c.sh(&a, "python3 hog.py > hog.out 2>&1 &").await;
    c.eventually(
        "sandbox a to use up its instances",
        Duration::from_secs(20),
        || async { !c.sh(&a, "cat hog.out").await.trim().is_empty() },
    )
    .await;
    let taken: u64 = c.sh(&a, "cat hog.out").await.trim().parse().unwrap();
    assert!(
        taken > 0 && taken < 100_000,
        "a per-user limit stopped it: {taken}"
    );
    c.put(
        &format!("/v1/sandboxes/{a}/files"),
        json!({"path": "probe.py", "content": inotify_script(false)}),
    )
    .await;
    assert_eq!(c.sh(&a, "python3 probe.py").await, "0\n", "a has none left");
    // Sandbox b still gets its own: it runs as another uid.
    c.put(
        &format!("/v1/sandboxes/{b}/files"),
        json!({"path": "probe.py", "content": inotify_script(false)}),
    )
    .await;
    let in_b: u64 = c.sh(&b, "python3 probe.py").await.trim().parse().unwrap();
    assert!(
        in_b > 0,
        "b has instances of its own ({in_b}; a took {taken})"
    );
}

#[tokio::test]
async fn a_sandbox_keeps_its_uid_and_files_across_delete_and_recreate() {
    let c = Control::start(&[]).await;
    let first = c.create(json!({"id": "keeper"})).await;
    c.sh("keeper", "echo kept > ~/workspace/note").await;
    assert_eq!(
        c.delete("/sandbox/keeper").await.status,
        StatusCode::NO_CONTENT
    );
    let again = c.create(json!({"id": "keeper"})).await;
    assert_eq!(again["uid"], first["uid"]);
    assert_eq!(c.sh("keeper", "cat ~/workspace/note").await, "kept\n");
    c.sh("keeper", "echo more >> ~/workspace/note").await;
    // Purge frees the uid with the files.
    let purged = c.post("/sandbox/keeper/purge", json!({})).await;
    assert_eq!(purged.status, StatusCode::NO_CONTENT);
    assert!(!c.data_dir.join("identity/keeper").exists());
}

#[tokio::test]
async fn a_sandbox_made_before_per_sandbox_uids_is_moved_to_its_own() {
    let mut c = Control::start(&[]).await;
    c.create(json!({"id": "old"})).await;
    c.terminate();
    // What an earlier berth left: a running container as uid 1000, without
    // the uid label, on a home owned by 1000, and no uid recorded.
    let name = c.container("old");
    assert!(docker(&["rm", "-f", &name]).0);
    let home = c.home("old");
    assert!(
        Command::new("chown")
            .args(["-R", "1000:1000"])
            .arg(&home)
            .status()
            .unwrap()
            .success()
    );
    let db = c.data_dir.join("berth.db");
    let forgot = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; d=sqlite3.connect(sys.argv[1]); d.execute('DELETE FROM sandbox_uids'); d.commit()",
        ])
        .arg(&db)
        .status()
        .unwrap();
    assert!(forgot.success());
    let home_bind = format!("{}:/home/user", home.display());
    let instance_label = format!("berth.instance={}", c.instance);
    let (ok, out) = docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--user",
        "1000:1000",
        "--network",
        &c.network,
        "--label",
        "berth.managed=true",
        "--label",
        &instance_label,
        "--label",
        "berth.sandbox.id=old",
        "-v",
        &home_bind,
        TEST_IMAGE,
        "/bin/sh",
        "-c",
        "echo from-1000 > /home/user/workspace/old-file; sleep 3600",
    ]);
    assert!(ok, "{out}");
    c.eventually(
        "the old container to write its file",
        Duration::from_secs(10),
        || {
            let p = home.join("workspace/old-file");
            async move { p.exists() }
        },
    )
    .await;

    c.spawn().await;
    c.eventually(
        "the sandbox to run as its own uid",
        Duration::from_secs(30),
        || async {
            let r = c.exec("old", &["id", "-u"]).await;
            r.body["stdout"]
                .as_str()
                .is_some_and(|s| s.trim() != "1000" && !s.trim().is_empty())
        },
    )
    .await;
    let uid = c.get("/v1/sandboxes/old").await.body["uid"]
        .as_i64()
        .unwrap();
    assert_eq!(c.sh("old", "id -u").await, format!("{uid}\n"));
    // Everything in the home moved with it, and is writable.
    assert_eq!(c.sh("old", "cat ~/workspace/old-file").await, "from-1000\n");
    c.sh("old", "echo again >> ~/workspace/old-file").await;
    assert_eq!(
        std::fs::metadata(home.join("workspace/old-file"))
            .unwrap()
            .uid(),
        uid as u32
    );
    assert_eq!(inspect(&name, "{{.Config.User}}"), format!("{uid}:{uid}"));
}

/// A host on a network namespace the test makes: a veth pair with a /30
/// from 10.0.0.0/8 (a range the default deny list covers) and an HTTP
/// listener inside. Removed on drop.
/// A minimal HTTP server answering `ok` on port 8080 of the address in argv[1].
const TEST_HOST_SERVER: &str = r#"
import http.server, socketserver, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
socketserver.TCPServer.allow_reuse_address = True
socketserver.TCPServer((sys.argv[1], 8080), H).serve_forever()
"#;

struct TestHost {
    netns: String,
    addr: Ipv4Addr,
    server: Child,
}

impl TestHost {
    fn start() -> TestHost {
        // Unique per test in this process, and across processes.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        let third = (pid.wrapping_mul(7) + k * 13) % 250;
        let netns = format!("berth-t-ns{pid}-{k}");
        let host_if = format!("bth{}{k}", pid % 10_000);
        let (host_ip, peer_ip) = (
            format!("10.231.{third}.1"),
            Ipv4Addr::new(10, 231, third as u8, 2),
        );
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().unwrap();
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ip(&["netns", "add", &netns]);
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", "eth-t", "netns", &netns,
        ]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{peer_ip}/30"),
            "dev",
            "eth-t",
        ]);
        ip(&["-n", &netns, "link", "set", "eth-t", "up"]);
        ip(&["-n", &netns, "link", "set", "lo", "up"]);
        ip(&["-n", &netns, "route", "add", "default", "via", &host_ip]);
        let server = Command::new("ip")
            // Not `python3 -m http.server`: its bind looks up the host's
            // name, which would ask a resolver this namespace must not reach.
            .args(["netns", "exec", &netns, "python3", "-c", TEST_HOST_SERVER])
            .arg(peer_ip.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let host = TestHost {
            netns,
            addr: peer_ip,
            server,
        };
        // The host reaches it: the listener is up and the path works.
        for _ in 0..100 {
            if std::net::TcpStream::connect_timeout(
                &(host.addr, 8080).into(),
                Duration::from_millis(200),
            )
            .is_ok()
            {
                return host;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the test host's listener never came up");
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        // Deleting the namespace deletes the veth pair.
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.netns])
            .status();
    }
}

/// Whether sandbox `id` gets the test host's answer.
async fn fetches(c: &Control, id: &str, target: &TestHost) -> bool {
    let body = c
        .http_get_from(id, &target.addr.to_string(), 8080, "/")
        .await;
    body.as_deref() == Some("ok")
}

/// The host's filter table with packet counters and its routes, for a
/// failure message.
fn firewall_state() -> String {
    let run = |program: &str, args: &[&str]| {
        let out = Command::new(program).args(args).output().unwrap();
        format!(
            "$ {program} {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    [
        run("iptables", &["-w", "-S"]),
        run("iptables", &["-w", "-L", "-v", "-n", "-x"]),
        run("iptables", &["-w", "-t", "nat", "-S"]),
        run("ip", &["route"]),
        run("ip", &["-br", "addr"]),
    ]
    .join("\n")
}

fn rules(chain: &str) -> String {
    let out = Command::new("iptables")
        .args(["-w", "-S", chain])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test]
async fn sandboxes_reach_neither_denied_networks_nor_the_host() {
    let target = TestHost::start();
    let strict = Control::start(&[]).await;
    // Only link-local denied: the test host's range is allowed here, which
    // proves the path to it works and that the rule is what blocks it.
    let lax = Control::start(&[("BERTH_EGRESS_DENY", "169.254.0.0/16")]).await;
    let s = strict.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let l = lax.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();

    // The path works: the lax sandbox gets there (allowing for a slow first
    // answer of the test host on a loaded machine).
    lax.eventually(
        "the lax sandbox to reach the test host",
        Duration::from_secs(20),
        || async { fetches(&lax, &l, &target).await },
    )
    .await;
    if fetches(&strict, &s, &target).await {
        panic!(
            "the strict sandbox reached the test host at {}.\n{}\n--- strict's sandbox ---\n{}\n--- strict's log ---\n{}",
            target.addr,
            firewall_state(),
            strict.sh(&s, "ip addr 2>&1; ip route 2>&1; true").await,
            strict.log_text()
        );
    }

    // The installed rules: metadata and private ranges refused, the host
    // guarded, on this instance's bridges; /v1/info says so.
    let info = strict.get("/v1/info").await.body;
    let firewall = &info["isolation"]["egress"]["firewall"];
    assert_eq!(firewall["installed"], true, "{info}");
    let chains: Vec<String> = serde_json::from_value(firewall["chains"].clone()).unwrap();
    let forward = rules(&chains[0]);
    for net in [
        "169.254.0.0/16",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
    ] {
        assert!(
            forward.contains(&format!("-d {net} -j REJECT")),
            "{net}: {forward}"
        );
    }
    let bridges: Vec<String> = serde_json::from_value(firewall["bridges"].clone()).unwrap();
    assert_eq!(bridges.len(), 2);
    let forward = rules("FORWARD");
    let input = rules("INPUT");
    for bridge in &bridges {
        assert!(
            forward.contains(&format!("-i {bridge} -j {}", chains[0])),
            "{forward}"
        );
        assert!(
            input.contains(&format!("-i {bridge} -j {}", chains[1])),
            "{input}"
        );
    }

    // The host itself, on any port: a listener of the test's own on every
    // address, reached through the sandbox's gateway.
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let gateway = inspect(&strict.network, "{{range .IPAM.Config}}{{.Gateway}}{{end}}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    let r = strict
        .exec(
            &s,
            &[
                "/bin/sh",
                "-c",
                &format!("nc -w 3 {gateway} {port} </dev/null; echo exit=$?"),
            ],
        )
        .await;
    assert_ne!(r.body["stdout"], "exit=0\n", "the host is reachable: {r:?}");

    // Rules another tool flushed come back on the next reconciler pass.
    assert!(
        Command::new("iptables")
            .args(["-w", "-F", &chains[0]])
            .status()
            .unwrap()
            .success()
    );
    strict
        .eventually(
            "the rules to be reinstalled",
            Duration::from_secs(10),
            || {
                let chain = chains[0].clone();
                async move { rules(&chain).contains("-d 169.254.0.0/16 -j REJECT") }
            },
        )
        .await;
    assert!(!fetches(&strict, &s, &target).await);

    // A rule that accepts the sandbox's traffic, put ahead of berth's jump
    // (Docker does so for its bridges, and while it re-arranges FORWARD on
    // every network create its own DOCKER-USER jump is briefly gone): the
    // next pass moves berth's jump back on top.
    let bridge = bridges[0].clone();
    let accept = [
        "-i",
        bridge.as_str(),
        "!",
        "-o",
        bridge.as_str(),
        "-j",
        "ACCEPT",
    ];
    let _undo = Undo(accept.iter().map(|s| s.to_string()).collect());
    let mut insert = vec!["-w", "-I", "FORWARD", "1"];
    insert.extend(accept);
    assert!(
        Command::new("iptables")
            .args(&insert)
            .status()
            .unwrap()
            .success()
    );
    let jump = format!("-A FORWARD -i {bridge} -j {}", chains[0]);
    strict
        .eventually("berth's jump back on top", Duration::from_secs(10), || {
            let jump = jump.clone();
            let bridge = bridge.clone();
            async move {
                let forward = rules("FORWARD");
                let first = forward
                    .lines()
                    .find(|l| l.contains(&format!("-i {bridge} ")))
                    .unwrap_or_default();
                first == jump
            }
        })
        .await;
    assert!(!fetches(&strict, &s, &target).await);
}

/// Deletes the FORWARD rule a test inserted (its comment sets it apart
/// from Docker's own), also when the test fails.
struct Undo(Vec<String>);

impl Drop for Undo {
    fn drop(&mut self) {
        let mut args = vec!["-w".to_string(), "-D".into(), "FORWARD".into()];
        args.extend(self.0.iter().cloned());
        while Command::new("iptables")
            .args(&args)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {}
    }
}

#[tokio::test]
async fn a_sandbox_without_egress_has_no_route_out_but_serves_the_host() {
    let target = TestHost::start();
    let lax = Control::start(&[("BERTH_EGRESS_DENY", "169.254.0.0/16")]).await;
    let closed = lax
        .create(json!({"egress": "none", "start": "httpd -p 8000 -h /home/user/workspace"}))
        .await;
    assert_eq!(closed["egress"], "none");
    let id = closed["id"].as_str().unwrap();
    lax.sh(id, "echo served > ~/workspace/index.html").await;
    assert!(!fetches(&lax, id, &target).await);
    let open = lax.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(fetches(&lax, &open, &target).await);

    // The edge (here: the host) still reaches its port.
    let live = lax.get(&format!("/v1/sandboxes/{id}")).await.body;
    let ip = live["container"]["ip"].as_str().unwrap().to_string();
    let mut served = String::new();
    for _ in 0..50 {
        if let Ok(r) = reqwest::get(format!("http://{ip}:8000/index.html")).await {
            served = r.text().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served, "served\n");
    let bad = lax.post("/sandbox", json!({"egress": "sometimes"})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{bad:?}");
}

#[tokio::test]
async fn the_edge_token_opens_only_the_edge_routes() {
    let c = Control::start(&[
        ("BERTH_API_TOKENS", &format!("admin:{TOKEN}")),
        ("BERTH_EDGE_TOKEN", EDGE_TOKEN),
    ])
    .await;
    let id = c.create(json!({"public": false})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let edge = |method: reqwest::Method, path: &str| {
        reqwest::Client::new()
            .request(method, format!("{}{path}", c.base))
            .bearer_auth(EDGE_TOKEN)
    };
    let boot = edge(reqwest::Method::GET, "/v1/edge/bootstrap")
        .send()
        .await
        .unwrap();
    assert_eq!(boot.status(), StatusCode::OK);
    let looked: Value = edge(reqwest::Method::GET, &format!("/v1/edge/sandboxes/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(looked["public"], false);
    assert_eq!(looked["preview_generation"].as_str().unwrap().len(), 32);
    assert!(
        looked.get("env_keys").is_none(),
        "only routing facts: {looked}"
    );
    for (method, path) in [
        (reqwest::Method::GET, "/v1/sandboxes".to_string()),
        (reqwest::Method::POST, format!("/v1/sandboxes/{id}/exec")),
        (
            reqwest::Method::POST,
            format!("/v1/sandboxes/{id}/preview-token"),
        ),
        (reqwest::Method::DELETE, format!("/sandbox/{id}")),
        (reqwest::Method::GET, "/metrics".to_string()),
    ] {
        let r = edge(method.clone(), &path)
            .json(&json!({"cmd": ["true"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{method} {path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "forbidden");
    }
    // The admin token still opens everything, the edge's routes included.
    assert_eq!(c.get("/v1/sandboxes").await.status, StatusCode::OK);
    assert_eq!(c.get("/v1/edge/bootstrap").await.status, StatusCode::OK);
}

/// runsc's arguments as install.sh registers them: the ptrace platform
/// (works without KVM), plus `--network=host` where runsc's own network
/// stack cannot start (older runsc mistakes every namespace for the root one
/// on newer kernels; the container keeps its own network namespace).
fn runsc_config(host_network: bool) -> Value {
    let mut args = vec!["--platform=ptrace"];
    if host_network {
        args.push("--network=host");
    }
    json!({"runtimes": {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": args}}})
}

#[tokio::test]
async fn gvisor_runs_sandboxes_where_docker_has_runsc() {
    if !Path::new("/usr/bin/runsc").exists() {
        eprintln!(
            "skipped: runsc is not installed here (apt-get install runsc; .ci/run installs it)"
        );
        return;
    }
    // A Docker of the test's own, with runsc registered as install.sh does:
    // the machine's daemon is never reconfigured.
    let docker = PrivateDocker::start(&runsc_config(false));
    docker.load(TEST_IMAGE);
    assert!(docker.cli(&["network", "create", "smoke"]).0);
    let smoke = [
        "run",
        "--rm",
        "--runtime",
        "runsc",
        "--network",
        "smoke",
        TEST_IMAGE,
        "true",
    ];
    let (ok, out) = docker.cli(&smoke);
    if !ok {
        assert!(
            out.contains("root network namespace"),
            "runsc failed: {out}"
        );
        docker.reload(&runsc_config(true));
        let (ok, out) = docker.cli(&smoke);
        assert!(ok, "runsc failed with --network=host too: {out}");
    }

    let c = Control::start(&[
        ("DOCKER_HOST", &docker.host()),
        ("BERTH_RUNTIME", "runsc"),
        // No iptables in the private daemon's world: the rules are the
        // other tests' subject.
        ("BERTH_FIREWALL", "false"),
    ])
    .await;
    let info = c.get("/v1/info").await.body;
    assert_eq!(info["isolation"]["default_runtime"], "runsc", "{info}");
    assert!(
        info["isolation"]["runtimes"]
            .as_array()
            .unwrap()
            .contains(&json!("runsc"))
    );

    // The default runtime: a user-space kernel, and still `user` at home,
    // as the sandbox's own uid, writing its workspace.
    let s = c.create(json!({})).await;
    assert_eq!(s["runtime"], "runsc", "{s}");
    let id = s["id"].as_str().unwrap();
    let out = c
        .sh(
            id,
            "dmesg | head -1; id -un; echo $HOME; echo hi > ~/workspace/f && cat ~/workspace/f",
        )
        .await;
    assert!(out.contains("gVisor"), "{out}");
    assert!(out.contains("user\n/home/user\nhi"), "{out}");
    let uid = s["uid"].as_u64().unwrap();
    let meta = std::fs::metadata(c.home(id).join("workspace/f")).unwrap();
    assert_eq!(u64::from(meta.uid()), uid);
    let runtime = docker.cli(&["inspect", "-f", "{{.HostConfig.Runtime}}", &c.container(id)]);
    assert_eq!(runtime.1, "runsc");

    // A sandbox may ask for Docker's own runtime on the same host.
    let plain = c.create(json!({"runtime": "runc"})).await;
    let plain_id = plain["id"].as_str().unwrap();
    assert!(
        !c.sh(plain_id, "dmesg 2>&1 | head -1; true")
            .await
            .contains("gVisor")
    );
    // Stopped and woken, still on gVisor.
    assert_eq!(
        c.post(&format!("/sandbox/{id}/stop"), json!({}))
            .await
            .status,
        StatusCode::OK
    );
    assert!(c.sh(id, "dmesg | head -1").await.contains("gVisor"));
    drop(c);
}

#[tokio::test]
async fn an_unknown_runtime_is_refused_at_once_and_gvisor_runs_where_docker_has_it() {
    let c = Control::start(&[]).await;
    let r = c
        .post("/sandbox", json!({"runtime": "no-such-runtime"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert_eq!(r.code(), "runtime_unavailable");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no-such-runtime")
    );
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--runtime gvisor")
    );
    let bad = c.post("/sandbox", json!({"runtime": "run sc"})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let info = c.get("/v1/info").await.body;
    let runtimes: Vec<String> =
        serde_json::from_value(info["isolation"]["runtimes"].clone()).unwrap();
    if !runtimes.iter().any(|r| r == "runsc") {
        eprintln!(
            "skipped the gVisor half: this Docker has no runsc runtime ({runtimes:?}); \
             `./install.sh --runtime gvisor` registers it"
        );
        return;
    }
    let s = c.create(json!({"runtime": "runsc"})).await;
    let id = s["id"].as_str().unwrap();
    assert_eq!(
        inspect(&c.container(id), "{{.HostConfig.Runtime}}"),
        "runsc"
    );
    assert!(
        c.sh(id, "dmesg 2>/dev/null | head -1; uname -a")
            .await
            .contains("gVisor")
            || c.sh(id, "cat /proc/version").await.contains("gVisor")
    );
}

#[tokio::test]
async fn no_sandbox_runs_where_the_egress_rules_cannot_be_installed() {
    // iptables that always fails (no NET_ADMIN, say), first on control's PATH.
    let shims = tempfile_dir("berth-noipt-");
    for name in [
        "iptables",
        "iptables-restore",
        "iptables-nft",
        "iptables-nft-restore",
        "iptables-legacy",
        "iptables-legacy-restore",
        "ip6tables",
        "ip6tables-restore",
    ] {
        let path = shims.join(name);
        std::fs::write(
            &path,
            "#!/bin/sh\necho 'Permission denied (you must be root)' >&2\nexit 4\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        shims.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let c = Control::start(&[("PATH", &path)]).await;
    let r = c.post("/sandbox", json!({})).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{r:?}");
    assert_eq!(r.code(), "firewall_unavailable");
    let (_, running) = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=berth.instance={}", c.instance),
    ]);
    assert_eq!(running, "", "a sandbox runs without its rules");
    let info = c.get("/v1/info").await.body;
    assert_eq!(
        info["isolation"]["egress"]["firewall"]["installed"], false,
        "{info}"
    );

    // The same host with the firewall left to another tool: it runs.
    let off = Control::start(&[("PATH", &path), ("BERTH_FIREWALL", "false")]).await;
    assert_eq!(
        off.post("/sandbox", json!({})).await.status,
        StatusCode::CREATED
    );
    let _ = std::fs::remove_dir_all(&shims);
}

fn tempfile_dir(prefix: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(
        format!(
            "{prefix}{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        )
        .replace(['(', ')'], ""),
    );
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
