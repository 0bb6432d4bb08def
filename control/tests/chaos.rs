//! Faults and load against the real binary, Docker and SQLite: a full disk
//! under the data directory, and hundreds of concurrent mixed requests.
//! (Crashes at any moment are in recovery.rs.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::Control;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A small tmpfs mounted for one test, unmounted when dropped (also on
/// failure).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = std::env::temp_dir().join(format!(
            "berth-full-{}-{}",
            std::process::id(),
            ulid::Ulid::generate()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mounting a tmpfs needs root");
        Tmpfs { dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Fills the filesystem of `dir` with one file; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0x5au8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    // The last partial chunk too.
    while file.write_all(&chunk[..512]).is_ok() {}
    let _ = file.flush();
    path
}

#[tokio::test]
async fn a_full_disk_answers_507_keeps_what_is_stored_and_recovers() {
    let disk = Tmpfs::mount("32m");
    let data = disk.dir.join("data");
    let c = Control::start(&[("BERTH_DATA_DIR", data.to_str().unwrap())]).await;
    let first = c.create(json!({"env": {"KEEP": "me"}})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let files = format!("/v1/sandboxes/{first}/files");
    let put = c
        .put(&files, json!({"path": "note.txt", "content": "before"}))
        .await;
    assert!(put.status.is_success(), "{put:?}");

    let filler = fill(&disk.dir);

    // Writes fail with a clear 507, at once.
    let put = c
        .put(
            &files,
            json!({"path": "note.txt", "content": "x".repeat(256 * 1024)}),
        )
        .await;
    assert_eq!(
        (put.status, put.code()),
        (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage"),
        "{put:?}"
    );
    assert_eq!(put.body["error"]["retryable"], true);
    let create = c.post("/v1/sandboxes", json!({})).await;
    assert_eq!(
        (create.status, create.code()),
        (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage"),
        "{create:?}"
    );

    // What was stored is intact and still served.
    let got = c.get(&format!("/v1/sandboxes/{first}")).await;
    assert_eq!(got.status, StatusCode::OK, "{got:?}");
    assert_eq!(got.body["env_keys"], json!(["KEEP"]));
    let list = c.get("/v1/sandboxes").await;
    assert_eq!(
        list.body["sandboxes"].as_array().unwrap().len(),
        1,
        "{list:?}"
    );
    assert_eq!(c.sh(&first, "cat ~/workspace/note.txt").await, "before");

    // Room again: service resumes without a restart.
    std::fs::remove_file(&filler).unwrap();
    let put = c
        .put(&files, json!({"path": "note.txt", "content": "after"}))
        .await;
    assert!(put.status.is_success(), "{put:?}");
    let second = c.create(json!({})).await;
    assert_eq!(second["status"], "running");
    assert_eq!(
        c.get("/v1/sandboxes").await.body["sandboxes"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    drop(c);
}

/// One client's mixed requests against its own sandbox; returns the id it
/// created (if the create was admitted) and every status it saw.
async fn client(c: Arc<Control>, n: usize) -> (Option<String>, Vec<(String, StatusCode, Value)>) {
    let mut seen = Vec::new();
    let mut note = |what: &str, r: &common::Reply| {
        seen.push((what.to_string(), r.status, r.body.clone()));
    };
    let r = c
        .post("/v1/sandboxes", json!({"env": {"N": n.to_string()}}))
        .await;
    note("create", &r);
    let Some(id) = r.body["id"].as_str().map(String::from) else {
        return (None, seen);
    };
    let base = format!("/v1/sandboxes/{id}");
    let r = c
        .post(
            &format!("{base}/exec"),
            json!({"cmd": ["sh", "-c", "echo $N"], "env": {"N": n.to_string()}}),
        )
        .await;
    note("exec", &r);
    let r = c
        .put(
            &format!("{base}/files"),
            json!({"path": "n.txt", "content": n.to_string()}),
        )
        .await;
    note("put", &r);
    let r = c.get(&format!("{base}/files?path=n.txt")).await;
    note("get file", &r);
    let r = c
        .post(
            &format!("{base}/tasks"),
            json!({"prompt": "say hi", "agent": "claude"}),
        )
        .await;
    note("task", &r);
    let r = c.get(&format!("{base}/files?path=.")).await;
    note("list files", &r);
    let r = c
        .post(&format!("{base}/exec"), json!({"cmd": ["cat", "n.txt"]}))
        .await;
    note("exec 2", &r);
    let r = c.get(&format!("{base}/tasks")).await;
    note("tasks", &r);
    let r = c.get(&base).await;
    note("get", &r);
    let r = c.delete(&base).await;
    note("delete", &r);
    (Some(id), seen)
}

#[tokio::test]
async fn five_hundred_concurrent_mixed_requests_from_fifty_clients() {
    let c = Arc::new(Control::start(&[("BERTH_DEFAULT_MEMORY", "64m")]).await);
    let clients: Vec<_> = (0..50)
        .map(|n| tokio::spawn(client(c.clone(), n)))
        .collect();
    let mut created = HashSet::new();
    let mut requests = 0;
    let mut problems = Vec::new();
    for handle in clients {
        let (id, seen) = tokio::time::timeout(Duration::from_secs(600), handle)
            .await
            .expect("a client hung: a deadlock")
            .unwrap();
        requests += seen.len();
        if let Some(id) = id {
            created.insert(id);
        }
        for (what, status, body) in seen {
            let documented_503 = status == StatusCode::SERVICE_UNAVAILABLE
                && matches!(
                    body["error"]["code"].as_str(),
                    Some("sandbox_capacity" | "docker_unavailable")
                );
            if status.is_server_error() && !documented_503 {
                problems.push(format!("{what}: {status} {body}"));
            }
        }
    }
    assert!(problems.is_empty(), "5xx answers:\n{}", problems.join("\n"));
    assert!(requests >= 450, "only {requests} requests were made");
    assert!(!created.is_empty());
    // Every sandbox is accounted for: each created one was deleted, and
    // neither a record nor a container is left.
    let left = c.get("/v1/sandboxes").await.body["sandboxes"].clone();
    assert_eq!(left, json!([]), "records left: {left}");
    c.eventually("no container is left", Duration::from_secs(30), || async {
        c.containers().is_empty()
    })
    .await;
    // And control still answers at once.
    assert_eq!(c.get("/readyz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_docker_restart_answers_503_meanwhile_and_sandboxes_run_again_after() {
    // A private dockerd: the machine's own daemon is never restarted, and
    // its bridge must survive ours restarting.
    let docker0 = || {
        Command::new("ip")
            .args(["link", "show", "docker0"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let had_docker0 = docker0();
    let mut docker = common::PrivateDocker::start(&json!({}));
    docker.load(common::TEST_IMAGE);
    let c = Control::start(&[
        ("DOCKER_HOST", &docker.host()),
        // No iptables in the private daemon's world.
        ("BERTH_FIREWALL", "false"),
        ("BERTH_RECONCILE_INTERVAL", "1"),
    ])
    .await;
    let id = c.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let name = c.container(&id);
    let running = |docker: &common::PrivateDocker| {
        docker
            .cli(&["inspect", "-f", "{{.State.Running}}", &name])
            .1
            == "true"
    };
    assert!(running(&docker));

    docker.down();
    // While Docker is away: a clear 503 with Retry-After, at once; reads of
    // the database still answer.
    let answered = |what: &str, r: &common::Reply| {
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::SERVICE_UNAVAILABLE, "docker_unavailable"),
            "{what}: {r:?}"
        );
        assert!(r.headers.contains_key("retry-after"), "{what}: {r:?}");
    };
    let exec = format!("/v1/sandboxes/{id}/exec");
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        c.post(&exec, json!({"cmd": ["true"]})),
    )
    .await
    .expect("exec hung while Docker was down");
    answered("exec", &r);
    let r = tokio::time::timeout(Duration::from_secs(30), c.post("/v1/sandboxes", json!({})))
        .await
        .expect("create hung while Docker was down");
    answered("create", &r);
    assert_eq!(
        c.get(&format!("/v1/sandboxes/{id}")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        c.get("/readyz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // Docker is back (its containers stopped with it): control reconnects
    // and the sandbox runs again, without a request asking for it.
    docker.up();
    c.eventually(
        "the sandbox runs again",
        Duration::from_secs(60),
        || async { running(&docker) && c.status_of(&id).await == "running" },
    )
    .await;
    assert_eq!(c.sh(&id, "echo back").await, "back\n");
    assert_eq!(c.get("/readyz").await.status, StatusCode::OK);
    // Nothing was left behind by the failed create.
    let list = c.get("/v1/sandboxes").await.body["sandboxes"].clone();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    drop(c);
    drop(docker);
    assert_eq!(docker0(), had_docker0, "the machine's docker0 was touched");
}
