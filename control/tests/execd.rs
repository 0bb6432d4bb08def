//! The exec agent: commands run through berth-execd over the sandbox's own
//! socket, with everything they start killed with them; Docker's exec takes
//! over when the agent does not answer, and the agent is back after the
//! next start of the container.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::json;

/// What ran the exec, as the sandbox sees it: the agent's command line, or
/// `docker` for Docker's exec (its process's parent is outside the
/// container: pid 0).
async fn runner_of_exec(c: &Control, id: &str) -> String {
    let line = c
        .sh(
            id,
            "[ \"$PPID\" = 0 ] && echo docker || tr '\\0' ' ' < /proc/$PPID/cmdline",
        )
        .await;
    line.trim().to_string()
}

const AGENT: &str = "/.berth/execd serve /.berth/run/execd.sock";

async fn until_agent(c: &Control, id: &str) {
    c.eventually(
        "the exec agent runs the sandbox's commands",
        Duration::from_secs(15),
        || async { runner_of_exec(c, id).await == AGENT },
    )
    .await;
}

async fn new_sandbox(c: &Control) -> String {
    c.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn commands_go_through_the_agent_and_docker_takes_over_when_it_is_gone() {
    let c = Control::start(&[]).await;
    let id = new_sandbox(&c).await;
    until_agent(&c, &id).await;

    // Its socket is the sandbox's alone: a directory of its uid, 0700, a
    // socket 0600, in the sandbox's own host directory; the executable is
    // read-only; no other sandbox's socket is in sight.
    let uid: u32 = c.sh(&id, "id -u").await.trim().parse().unwrap();
    let run = c.data_dir.join("identity").join(&id).join("run");
    let dir = std::fs::metadata(&run).unwrap();
    assert_eq!((dir.uid(), dir.permissions().mode() & 0o777), (uid, 0o700));
    let socket = std::fs::metadata(run.join("execd.sock")).unwrap();
    assert_eq!(socket.permissions().mode() & 0o777, 0o600);
    assert_eq!(c.sh(&id, "ls -A /.berth/run").await, "execd.sock\n");
    let write = c
        .exec(&id, &["/bin/sh", "-c", "echo x > /.berth/execd"])
        .await;
    assert_ne!(write.body["exit_code"], 0, "{write:?}");

    // Output, stdin, env, cwd and exit codes as through Docker.
    let r = c
        .post(
            &format!("/v1/sandboxes/{id}/exec"),
            json!({"cmd": "pwd", "cwd": "app"}),
        )
        .await;
    assert_eq!(r.body["exit_code"], 126, "{r:?}");
    assert!(
        r.body["stderr"]
            .as_str()
            .unwrap()
            .contains("working directory"),
        "{r:?}"
    );
    c.sh(&id, "mkdir -p app").await;
    let r = c
        .post(
            &format!("/v1/sandboxes/{id}/exec"),
            json!({"cmd": "read l; echo \"$l $X $(pwd)\"; echo err >&2; exit 3", "stdin": "in", "env": {"X": "y"}, "cwd": "app"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["stdout"], "in y /home/user/workspace/app\n", "{r:?}");
    assert_eq!(r.body["stderr"], "err\n");
    assert_eq!(r.body["exit_code"], 3);
    let missing = c.exec(&id, &["/no/such/program"]).await;
    assert_eq!(missing.body["exit_code"], 127, "{missing:?}");
    assert!(
        missing.body["stderr"]
            .as_str()
            .unwrap()
            .contains("/no/such/program"),
        "{missing:?}"
    );
    let killed = c.exec(&id, &["/bin/sh", "-c", "kill -9 $$"]).await;
    assert_eq!(killed.body["exit_code"], 137, "{killed:?}");

    // The agent killed (as a user could): Docker's exec runs the commands.
    let kill_agent = r#"for d in /proc/[0-9]*; do
        case "$(tr '\0' ' ' < $d/cmdline 2>/dev/null)" in "/.berth/execd serve"*) kill ${d#/proc/};; esac
      done"#;
    let (ok, out) = docker(&["exec", &c.container(&id), "sh", "-c", kill_agent]);
    assert!(ok, "{out}");
    assert_eq!(runner_of_exec(&c, &id).await, "docker");

    // A fresh start of the container brings the agent back, on a socket
    // its last run left behind.
    let r = c.post(&format!("/v1/sandboxes/{id}/stop"), json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert!(run.join("execd.sock").exists(), "the stale socket stays");
    until_agent(&c, &id).await;
}

#[tokio::test]
async fn everything_an_agent_command_started_dies_with_it() {
    let mut c = Control::start(&[]).await;
    let id = new_sandbox(&c).await;
    until_agent(&c, &id).await;
    c.assert_execs_take_their_children(&id, 410).await;
    let exec = format!("/v1/sandboxes/{id}/exec");

    // Also when the command itself has exited but a background child still
    // holds its output open (the exec has not ended: its output has not).
    c.hang_up_and_see_gone(&id, "sleep 416 & echo ready", "sleep 416")
        .await;

    // When control dies under a running command: the agent sees its
    // connection close and kills the command.
    let stream = c
        .request(reqwest::Method::POST, &format!("{exec}/stream"))
        .json(&json!({"cmd": "(setsid sleep 415 >/dev/null 2>&1 &); echo ready; sleep 100"}))
        .send()
        .await
        .unwrap();
    let first = read_sse(stream, &exec, Some(1), Duration::from_secs(20)).await;
    assert_eq!(first[0].data["text"], "ready\n", "{first:?}");
    c.kill9();
    let container = c.container(&id);
    let gone = (0..100).any(|_| {
        let (_, ps) = docker(&["exec", &container, "ps", "-o", "args"]);
        !ps.contains("sleep 415") || {
            std::thread::sleep(Duration::from_millis(100));
            false
        }
    });
    assert!(gone, "a command outlived the control plane that ran it");
    c.spawn().await;
}

#[tokio::test]
async fn without_the_agent_every_command_is_dockers() {
    let c = Control::start(&[("BERTH_EXEC_AGENT", "false")]).await;
    let id = new_sandbox(&c).await;
    assert_eq!(runner_of_exec(&c, &id).await, "docker");
    assert_eq!(
        c.sh(&id, "ls -A /.berth 2>/dev/null || echo none").await,
        "none\n"
    );
}
