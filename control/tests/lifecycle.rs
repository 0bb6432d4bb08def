//! Sandboxes on the real Docker daemon: hardening, exec, stop and wake,
//! idle reaping, delete and purge.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Control, inspect};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn containers_are_hardened_and_run_as_the_sandbox_user() {
    let c = Control::start(&[]).await;
    let s = c.create(json!({"memory": "300m", "cpus": 0.5})).await;
    let id = s["id"].as_str().unwrap();
    let name = c.container(id);
    assert_eq!(inspect(&name, "{{json .HostConfig.CapDrop}}"), r#"["ALL"]"#);
    assert!(inspect(&name, "{{json .HostConfig.SecurityOpt}}").contains("no-new-privileges"));
    assert_eq!(inspect(&name, "{{.HostConfig.ReadonlyRootfs}}"), "true");
    assert_eq!(inspect(&name, "{{.HostConfig.PidsLimit}}"), "1024");
    assert_eq!(
        inspect(&name, "{{.HostConfig.Memory}}"),
        (300u64 << 20).to_string()
    );
    assert_eq!(inspect(&name, "{{.HostConfig.NanoCpus}}"), "500000000");
    let uid = s["uid"].as_i64().unwrap();
    assert!(uid >= 1_100_000, "a uid of the sandbox range: {uid}");
    assert_eq!(inspect(&name, "{{.Config.User}}"), format!("{uid}:{uid}"));
    assert_eq!(inspect(&name, "{{.HostConfig.NetworkMode}}"), c.network);
    assert!(inspect(&name, "{{json .HostConfig.Tmpfs}}").contains("/tmp"));
    assert_eq!(
        inspect(&name, "{{index .Config.Labels \"berth.managed\"}}"),
        "true"
    );
    assert_eq!(
        inspect(
            &c.network,
            "{{index .Options \"com.docker.network.bridge.enable_icc\"}}"
        ),
        "false"
    );

    // Inside: its own uid, read-only root, writable home, workspace and /tmp.
    assert_eq!(c.sh(id, "id -u").await, format!("{uid}\n"));
    assert_eq!(c.sh(id, "pwd").await, "/home/user/workspace\n");
    let r = c.exec(id, &["/bin/sh", "-c", "touch /etc/x"]).await;
    assert_ne!(
        r.body["exit_code"], 0,
        "root filesystem must be read-only: {r:?}"
    );
    c.sh(id, "touch /tmp/x ~/x ~/workspace/x").await;
    // No privilege to gain.
    let r = c
        .exec(id, &["/bin/sh", "-c", "grep CapEff /proc/self/status"])
        .await;
    assert!(
        r.body["stdout"]
            .as_str()
            .unwrap()
            .contains("0000000000000000"),
        "{r:?}"
    );
}

#[tokio::test]
async fn exec_returns_output_exit_code_and_honours_options() {
    let c = Control::start(&[]).await;
    let id = c.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c
        .post(
            &format!("/sandbox/{id}/exec"),
            json!({"cmd": ["/bin/sh", "-c", "echo out; echo err >&2; exit 3"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["exit_code"], 3);
    assert_eq!(r.body["stdout"], "out\n");
    assert_eq!(r.body["stderr"], "err\n");
    assert!(r.body["duration_ms"].as_u64().is_some());

    // A shell line, cwd relative to the workspace, env, stdin.
    c.sh(&id, "mkdir -p app").await;
    let r = c
        .post(
            &format!("/v1/sandboxes/{id}/exec"),
            json!({"cmd": "pwd; echo $X; cat", "cwd": "app", "env": {"X": "y"}, "stdin": "piped"}),
        )
        .await;
    assert_eq!(
        r.body["stdout"], "/home/user/workspace/app\ny\npiped",
        "{r:?}"
    );

    // A missing program is the command's failure, not the API's.
    let r = c.exec(&id, &["/no/such/program"]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_ne!(r.body["exit_code"], 0);
}

#[tokio::test]
async fn exec_timeout_kills_the_whole_process_tree() {
    let c = Control::start(&[]).await;
    let id = c.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let started = std::time::Instant::now();
    let r = c
        .post(
            &format!("/sandbox/{id}/exec"),
            json!({"cmd": ["/bin/sh", "-c", "sleep 300 & sleep 301; echo never"], "timeout_s": 1}),
        )
        .await;
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(r.body["timed_out"], true, "{r:?}");
    assert_eq!(r.body["exit_code"], serde_json::Value::Null);
    // Neither sleep survives.
    let ps = c.leftovers(&id, "sleep 30[01]").await;
    assert_eq!(ps, "", "processes left behind: {ps}");
}

#[tokio::test]
async fn stdin_output_and_the_timeout_run_together() {
    let c = Control::start(&[]).await;
    let id = c.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let exec = format!("/v1/sandboxes/{id}/exec");
    let big = "x".repeat(4 << 20);

    // `cat` echoes its input while it is fed: 4 MiB in, output read meanwhile.
    let answer = tokio::time::timeout(
        Duration::from_secs(60),
        c.post(
            &exec,
            json!({"cmd": ["cat"], "stdin": big, "timeout_s": 20}),
        ),
    )
    .await
    .expect("exec with a large stdin answers");
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["exit_code"], 0, "{}", answer.body["stderr"]);
    assert!(!answer.body["stdout"].as_str().unwrap().is_empty());

    // A command that never reads its stdin still meets its timeout.
    let answer = tokio::time::timeout(
        Duration::from_secs(60),
        c.post(
            &exec,
            json!({"cmd": ["sleep", "120"], "stdin": big, "timeout_s": 2}),
        ),
    )
    .await
    .expect("exec that ignores a large stdin answers at its timeout");
    assert_eq!(answer.body["timed_out"], true, "{answer:?}");
    assert_eq!(c.leftovers(&id, "sleep 120").await, "");

    // The same for a streamed exec.
    let events = c
        .post_sse(
            &format!("{exec}/stream"),
            json!({"cmd": ["sleep", "121"], "stdin": big, "timeout_s": 2}),
            None,
            Duration::from_secs(60),
        )
        .await;
    let last = events.last().expect("events");
    assert_eq!(
        (last.event.as_str(), &last.data["timed_out"]),
        ("exit", &json!(true)),
        "{events:?}"
    );
    assert_eq!(c.leftovers(&id, "sleep 121").await, "");
}

#[tokio::test]
async fn everything_an_exec_started_dies_with_it_however_it_detached() {
    // Through Docker's exec (tests/execd.rs has the agent's side of this).
    let c = Control::start(&[("BERTH_EXEC_AGENT", "false")]).await;
    let id = c.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    c.assert_execs_take_their_children(&id, 310).await;
}

#[tokio::test]
async fn streamed_exec_delivers_output_while_the_command_runs() {
    let c = Control::start(&[]).await;
    let id = c.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/v1/sandboxes/{id}/exec/stream");

    // The whole run: both streams, a character cut across two writes, the code.
    let line =
        r"printf 'one\n'; printf 'two\n' >&2; printf '\303'; sleep 0.2; printf '\251\n'; exit 3";
    let events = c
        .post_sse(&path, json!({"cmd": line}), None, Duration::from_secs(30))
        .await;
    let text = |kind: &str| -> String {
        events
            .iter()
            .filter(|e| e.event == kind)
            .map(|e| e.data["text"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(text("stdout"), "one\né\n", "{events:?}");
    assert_eq!(text("stderr"), "two\n", "{events:?}");
    let last = events.last().unwrap();
    assert_eq!(last.event, "exit", "{events:?}");
    assert_eq!(last.data["exit_code"], 3);
    assert_eq!(last.data["timed_out"], false);
    assert!(
        events
            .iter()
            .all(|e| !e.data["text"].as_str().unwrap_or("").contains('\u{FFFD}')),
        "a character was cut in two: {events:?}"
    );

    // Output arrives before the command ends: the first event comes while it
    // still sleeps. Hanging up then kills the command and its children.
    let first = c
        .post_sse(
            &path,
            json!({"cmd": "echo ready; sleep 302 & sleep 303"}),
            Some(1),
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(first[0].event, "stdout");
    assert_eq!(first[0].data["text"], "ready\n");
    c.eventually(
        "the abandoned command is killed",
        Duration::from_secs(10),
        || async { c.leftovers(&id, "sleep 30[23]").await.is_empty() },
    )
    .await;

    // Timeouts, as for exec.
    let events = c
        .post_sse(
            &path,
            json!({"cmd": "sleep 304", "timeout_s": 1}),
            None,
            Duration::from_secs(20),
        )
        .await;
    let last = events.last().unwrap();
    assert_eq!(
        (
            last.event.as_str(),
            &last.data["timed_out"],
            &last.data["exit_code"]
        ),
        ("exit", &json!(true), &serde_json::Value::Null),
        "{events:?}"
    );

    // Errors before the command starts are plain JSON errors.
    let r = c.post(&path, json!({"cmd": []})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_request"),
        "{r:?}"
    );
    let r = c
        .post("/v1/sandboxes/nope/exec/stream", json!({"cmd": ["true"]}))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "not_found"),
        "{r:?}"
    );
}

#[tokio::test]
async fn stop_then_exec_wakes_and_start_command_runs_again() {
    let c = Control::start(&[]).await;
    let s = c
        .create(json!({"start": "echo started >> ~/workspace/starts.log; sleep 1000"}))
        .await;
    let id = s["id"].as_str().unwrap();
    c.eventually(
        "the start command to run",
        Duration::from_secs(10),
        || async {
            std::fs::read_to_string(c.home(id).join("workspace/starts.log"))
                .is_ok_and(|s| s.lines().count() == 1)
        },
    )
    .await;

    let stopped = c.post(&format!("/v1/sandboxes/{id}/stop"), json!({})).await;
    assert_eq!(stopped.status, StatusCode::OK);
    assert_eq!(stopped.body["status"], "stopped");
    assert!(!c.containers()[id]);

    // exec wakes the sandbox first.
    assert_eq!(c.sh(id, "echo awake").await, "awake\n");
    assert_eq!(c.status_of(id).await, "running");
    c.eventually(
        "the start command to run again on wake",
        Duration::from_secs(10),
        || async {
            std::fs::read_to_string(c.home(id).join("workspace/starts.log"))
                .is_ok_and(|s| s.lines().count() == 2)
        },
    )
    .await;

    // Explicit start of a stopped sandbox, and of a running one (no-op).
    c.post(&format!("/v1/sandboxes/{id}/stop"), json!({})).await;
    let started = c
        .post(&format!("/v1/sandboxes/{id}/start"), json!({}))
        .await;
    assert_eq!(started.body["status"], "running");
    let again = c
        .post(&format!("/v1/sandboxes/{id}/start"), json!({}))
        .await;
    assert_eq!(again.status, StatusCode::OK);
}

#[tokio::test]
async fn concurrent_wakes_start_the_container_once() {
    let c = Control::start(&[]).await;
    let id = c
        .create(json!({"start": "echo x >> ~/workspace/starts.log"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    c.post(&format!("/v1/sandboxes/{id}/stop"), json!({})).await;
    let before = std::fs::read_to_string(c.home(&id).join("workspace/starts.log"))
        .unwrap_or_default()
        .lines()
        .count();
    let calls = (0..10).map(|_| c.exec(&id, &["true"]));
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(r.body["exit_code"], 0, "{r:?}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = std::fs::read_to_string(c.home(&id).join("workspace/starts.log"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(after, before + 1, "one wake, one start command");
}

#[tokio::test]
async fn idle_sandboxes_are_stopped_and_keepalive_postpones_it() {
    let c = Control::start(&[]).await;
    let idle = c.create(json!({"idle_timeout_s": 2})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let kept = c.create(json!({"idle_timeout_s": 2})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let always = c
        .create(json!({"idle_timeout_s": 1, "idle_policy": "always_on"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 30;
    let k = c
        .post(
            &format!("/sandbox/{kept}/keepalive"),
            json!({"until": until}),
        )
        .await;
    assert_eq!(k.status, StatusCode::OK);
    assert!(k.body["keepalive_until"].as_str().is_some());

    c.eventually(
        "the idle sandbox to be stopped",
        Duration::from_secs(15),
        || async { c.status_of(&idle).await == "stopped" },
    )
    .await;
    let r = c.get(&format!("/sandbox/{idle}")).await;
    assert_eq!(r.body["container"]["running"], false);
    assert!(r.body["status_detail"].as_str().unwrap().contains("idle"));
    assert_eq!(c.status_of(&kept).await, "running");
    assert_eq!(c.status_of(&always).await, "running");

    // A keepalive without body postpones by the sandbox's idle timeout.
    let k = c
        .post_raw(&format!("/sandbox/{always}/keepalive"), "")
        .await;
    assert_eq!(k.status, StatusCode::OK, "{k:?}");
}

#[tokio::test]
async fn a_long_exec_is_activity_and_is_never_reaped() {
    let c = Control::start(&[]).await;
    let id = c.create(json!({"idle_timeout_s": 1})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c.exec(&id, &["/bin/sh", "-c", "sleep 4; echo done"]).await;
    assert_eq!(r.body["stdout"], "done\n", "{r:?}");
}

#[tokio::test]
async fn delete_keeps_the_workspace_and_recreate_reattaches_it() {
    let c = Control::start(&[]).await;
    let id = format!("keep-{}", std::process::id());
    c.create(json!({"id": id})).await;
    c.sh(&id, "echo precious > ~/workspace/data.txt").await;
    assert_eq!(
        c.delete(&format!("/sandbox/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert!(c.containers().is_empty());
    assert!(c.home(&id).join("workspace/data.txt").exists());

    c.create(json!({"id": id})).await;
    assert_eq!(c.sh(&id, "cat ~/workspace/data.txt").await, "precious\n");

    // Purge removes everything; a second purge is a 404.
    assert_eq!(
        c.post(&format!("/sandbox/{id}/purge"), json!({}))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert!(!c.home(&id).exists());
    assert!(c.containers().is_empty());
    assert_eq!(
        c.get(&format!("/sandbox/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.post(&format!("/sandbox/{id}/purge"), json!({}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn purge_after_delete_removes_the_kept_workspace() {
    let c = Control::start(&[]).await;
    let id = format!("left-{}", std::process::id());
    c.create(json!({"id": id})).await;
    c.delete(&format!("/sandbox/{id}")).await;
    assert!(c.home(&id).exists());
    let r = c.post(&format!("/sandbox/{id}/purge"), json!({})).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(!c.home(&id).exists());
}

#[tokio::test]
async fn sandboxes_cannot_reach_each_other_nor_the_control_api() {
    let c = Control::start(&[]).await;
    let a = c.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = c
        .create(json!({"ports": [8080], "start": "mkdir -p /tmp/www && echo hello-from-b > /tmp/www/index.html && httpd -f -p 8080 -h /tmp/www"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b_ip = c.get(&format!("/sandbox/{b}")).await.body["container"]["ip"]
        .as_str()
        .unwrap()
        .to_string();
    // The host reaches B's app (that is how the edge proxies to it)...
    c.eventually(
        "B's app to answer the host",
        Duration::from_secs(10),
        || async { reqwest::get(format!("http://{b_ip}:8080/")).await.is_ok() },
    )
    .await;
    // ...but A cannot.
    assert_eq!(
        c.http_get_from(&a, &b_ip, 8080, "/").await,
        None,
        "A reached B"
    );

    // Nor the control API, through the bridge gateway.
    let gateway = common::inspect(&c.network, "{{(index .IPAM.Config 0).Gateway}}");
    let reached = c.http_get_from(&a, &gateway, c.port, "/healthz").await;
    assert_eq!(reached, None, "A reached the control API");
}
