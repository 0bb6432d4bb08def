//! Crashes and restarts lose nothing: the database is the truth and the
//! reconciler converges Docker to it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Control, docker};
use reqwest::StatusCode;
use serde_json::json;

/// Waits until every record has a container in its status's state and every
/// container of the instance has a record.
async fn converged(c: &Control) -> HashMap<String, String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let list = c.get("/sandboxes").await;
        if list.status == StatusCode::OK {
            let records: HashMap<String, String> = list.body["sandboxes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    (
                        s["id"].as_str().unwrap().to_string(),
                        s["status"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            let containers = c.containers();
            let agree = records.len() == containers.len()
                && records.iter().all(|(id, status)| match containers.get(id) {
                    Some(true) => status == "running",
                    Some(false) => status == "stopped",
                    None => false,
                });
            if agree {
                return records;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "Docker did not converge: records {records:?}, containers {containers:?}\n{}",
                c.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_restart_keeps_every_sandbox_and_its_state() {
    let mut c = Control::start(&[]).await;
    let running = c
        .create(json!({"id": format!("run-{}", std::process::id())}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let stopped = c.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    c.post(&format!("/v1/sandboxes/{stopped}/stop"), json!({}))
        .await;
    c.sh(&running, "echo kept > file").await;

    c.restart().await;
    let states = converged(&c).await;
    assert_eq!(states[&running], "running");
    assert_eq!(states[&stopped], "stopped");
    assert_eq!(c.sh(&running, "cat file").await, "kept\n");
}

#[tokio::test]
async fn after_kill_9_a_container_deleted_behind_berths_back_is_recreated() {
    let mut c = Control::start(&[]).await;
    let a = c
        .create(json!({"start": "echo started >> ~/workspace/starts.log; sleep 1000"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = c.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    c.post(&format!("/v1/sandboxes/{b}/stop"), json!({})).await;
    c.sh(&a, "echo precious > data").await;

    c.kill9();
    assert!(docker(&["rm", "-f", &c.container(&a)]).0);
    assert!(docker(&["rm", "-f", &c.container(&b)]).0);
    c.spawn().await;

    let states = converged(&c).await;
    assert_eq!(states[&a], "running");
    assert_eq!(states[&b], "stopped");
    assert_eq!(c.sh(&a, "cat data").await, "precious\n");
    c.eventually(
        "the start command to run in the recreated container",
        Duration::from_secs(10),
        || async {
            std::fs::read_to_string(c.home(&a).join("workspace/starts.log"))
                .is_ok_and(|s| s.lines().count() == 2)
        },
    )
    .await;
    // The stopped one wakes on its recreated container.
    assert_eq!(c.sh(&b, "echo up").await, "up\n");
}

#[tokio::test]
async fn containers_without_a_record_are_removed_and_others_left_alone() {
    let c = Control::start(&[]).await;
    let keep = c.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let orphan = format!("berth-orphan-{}", std::process::id());
    let foreign = format!("not-berth-{}", std::process::id());
    let instance_label = format!("berth.instance={}", c.instance);
    assert!(
        docker(&[
            "run",
            "-d",
            "--name",
            &orphan,
            "--label",
            "berth.managed=true",
            "--label",
            &instance_label,
            "--label",
            "berth.sandbox.id=ghost",
            common::TEST_IMAGE
        ])
        .0
    );
    assert!(
        docker(&[
            "run",
            "-d",
            "--name",
            &foreign,
            "--label",
            "berth.managed=true",
            "--label",
            "berth.instance=someone-else",
            "--label",
            "berth.sandbox.id=ghost",
            common::TEST_IMAGE
        ])
        .0
    );

    c.eventually(
        "the orphan to be removed",
        Duration::from_secs(15),
        || async { !docker(&["inspect", &orphan]).0 },
    )
    .await;
    assert!(
        docker(&["inspect", &foreign]).0,
        "another instance's container survives"
    );
    assert!(c.containers().contains_key(&keep));
    docker(&["rm", "-f", &foreign]);
}

#[tokio::test]
async fn kill_9_at_any_moment_converges_and_keeps_what_was_acknowledged() {
    let mut c = Control::start(&[]).await;
    let pid = std::process::id();
    let mut acknowledged: Vec<String> = Vec::new();
    let mut deleted: Vec<String> = Vec::new();
    for round in 0..4u64 {
        // Creates and deletes in flight when control dies.
        let ids: Vec<String> = (0..3).map(|i| format!("k{pid}-{round}-{i}")).collect();
        let client = reqwest::Client::new();
        let base = c.base.clone();
        let inflight: Vec<_> = ids
            .iter()
            .map(|id| {
                let (client, base, id) = (client.clone(), base.clone(), id.clone());
                tokio::spawn(async move {
                    let r = client
                        .post(format!("{base}/sandbox"))
                        .json(&json!({"id": id}))
                        .send()
                        .await;
                    matches!(r, Ok(r) if r.status() == StatusCode::CREATED).then_some(id)
                })
            })
            .collect();
        if let Some(victim) = acknowledged.pop() {
            let (client, base) = (client.clone(), base.clone());
            let v = victim.clone();
            let del = tokio::spawn(async move {
                let r = client.delete(format!("{base}/sandbox/{v}")).send().await;
                matches!(r, Ok(r) if r.status() == StatusCode::NO_CONTENT)
            });
            tokio::time::sleep(Duration::from_millis(150 + round * 120)).await;
            c.kill9();
            if del.await.unwrap() {
                deleted.push(victim);
            } else {
                acknowledged.push(victim);
            }
        } else {
            tokio::time::sleep(Duration::from_millis(150 + round * 120)).await;
            c.kill9();
        }
        for task in inflight {
            if let Some(id) = task.await.unwrap() {
                acknowledged.push(id);
            }
        }
        c.spawn().await;
        let states = converged(&c).await;
        for id in &acknowledged {
            assert_eq!(
                states.get(id).map(String::as_str),
                Some("running"),
                "acknowledged {id} lost"
            );
        }
        for id in &deleted {
            assert!(
                !states.contains_key(id),
                "acknowledged delete of {id} undone"
            );
        }
        // Every record, acknowledged or not, is whole: it answers an exec.
        for id in states.keys() {
            assert_eq!(c.sh(id, "echo ok").await, "ok\n");
        }
    }
}

#[tokio::test]
async fn a_container_made_just_before_a_crash_is_adopted() {
    // The state a kill -9 leaves between Docker's create and the record's
    // update: a container exists, the record does not know its id.
    let mut c = Control::start(&[]).await;
    let id = c.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let docker_id = common::inspect(&c.container(&id), "{{.Id}}");
    c.kill9();
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        c.data_dir.join("berth.db").display()
    ))
    .await
    .unwrap();
    sqlx::query("UPDATE sandboxes SET container_id = NULL")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    c.spawn().await;

    assert_eq!(c.sh(&id, "echo adopted").await, "adopted\n");
    let got = c.get(&format!("/sandbox/{id}")).await;
    assert_eq!(got.body["container_id"], docker_id.as_str());
    assert_eq!(c.containers().len(), 1, "adopted, not duplicated");
}

#[tokio::test]
async fn a_foreign_container_with_the_sandbox_name_is_never_removed() {
    let c = Control::start(&[]).await;
    let id = format!("foreign{}", std::process::id());
    let name = c.container(&id);
    let (ok, out) = docker(&[
        "create",
        "--name",
        &name,
        "--label",
        "berth.managed=true",
        "--label",
        "berth.instance=someone-else",
        common::TEST_IMAGE,
    ]);
    assert!(ok, "{out}");
    let r = c.post("/v1/sandboxes", json!({"id": id})).await;
    let still_there = docker(&["inspect", &name]).0;
    docker(&["rm", "-f", &name]);
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "conflict"),
        "{r:?}"
    );
    assert!(
        still_there,
        "the create's rollback removed another instance's container"
    );
    assert_eq!(
        c.get(&format!("/v1/sandboxes/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_container_that_exits_by_itself_is_an_error_restarted_with_backoff() {
    // An image whose command ends at once.
    let image = "berth-test-exits:latest";
    let ctx = std::env::temp_dir().join(format!("berth-exits-{}", std::process::id()));
    std::fs::create_dir_all(&ctx).unwrap();
    common::ensure_test_image();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {}\nCMD [\"/bin/sh\", \"-c\", \"echo bye from pid 1; exit 3\"]\n",
            common::TEST_IMAGE
        ),
    )
    .unwrap();
    let (ok, out) = docker(&["build", "-q", "-t", image, ctx.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&ctx);
    assert!(ok, "{out}");

    let c = Control::start(&[("BERTH_RECONCILE_INTERVAL", "1")]).await;
    let r = c.post("/v1/sandboxes", json!({"image": image})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let id = r.body["id"].as_str().unwrap().to_string();
    let container = c.container(&id);
    let started_at = || common::inspect(&container, "{{.State.StartedAt}}");

    c.eventually(
        "the sandbox to show the crash",
        Duration::from_secs(20),
        || async {
            let s = c.get(&format!("/v1/sandboxes/{id}")).await.body;
            s["status"] == "error"
                && s["status_detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("exit code 3") && d.contains("bye from pid 1"))
        },
    )
    .await;

    // Restarts back off: over 12 s of 1 s passes, far fewer than 12 starts.
    let mut starts = std::collections::HashSet::new();
    for _ in 0..24 {
        starts.insert(started_at());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        starts.len() <= 5,
        "restarted {} times in 12 s",
        starts.len()
    );

    // An explicit start retries at once.
    let before = started_at();
    let r = c
        .post(&format!("/v1/sandboxes/{id}/start"), json!({}))
        .await;
    assert!(r.status.is_success(), "{r:?}");
    assert_ne!(started_at(), before, "start did not restart the container");
    c.delete(&format!("/v1/sandboxes/{id}")).await;
    docker(&["rmi", image]);
}

#[tokio::test]
async fn kill_9_during_stop_purge_and_exec_keeps_what_was_acknowledged() {
    let mut c = Control::start(&[]).await;
    let pid = std::process::id();
    for round in 0..3u64 {
        let ids: Vec<String> = ["run", "stop", "purge"]
            .iter()
            .map(|k| format!("{k}{pid}-{round}"))
            .collect();
        for id in &ids {
            c.create(json!({"id": id})).await;
        }
        c.sh(&ids[2], "echo keep > ~/workspace/f").await;
        let (client, base) = (reqwest::Client::new(), c.base.clone());
        let call = |method: reqwest::Method, path: String, body: serde_json::Value| {
            let (client, base) = (client.clone(), base.clone());
            tokio::spawn(async move {
                client
                    .request(method, format!("{base}{path}"))
                    .json(&body)
                    .send()
                    .await
                    .map(|r| r.status())
                    .ok()
            })
        };
        let exec = call(
            reqwest::Method::POST,
            format!("/v1/sandboxes/{}/exec", ids[0]),
            json!({"cmd": "sleep 30", "timeout_s": 60}),
        );
        let stop = call(
            reqwest::Method::POST,
            format!("/v1/sandboxes/{}/stop", ids[1]),
            json!({}),
        );
        let purge = call(
            reqwest::Method::POST,
            format!("/v1/sandboxes/{}/purge", ids[2]),
            json!({}),
        );
        tokio::time::sleep(Duration::from_millis(100 + round * 200)).await;
        c.kill9();
        let exec = exec.await.unwrap();
        let stopped = stop.await.unwrap() == Some(StatusCode::OK);
        let purged = purge.await.unwrap() == Some(StatusCode::NO_CONTENT);
        assert_ne!(exec, Some(StatusCode::INTERNAL_SERVER_ERROR));

        c.spawn().await;
        let states = converged(&c).await;
        assert_eq!(
            states.get(&ids[0]).map(String::as_str),
            Some("running"),
            "{states:?}"
        );
        // The exec cut by the crash does not run on unwatched.
        let left = c.sh(&ids[0], "ps -o args | grep '^sleep 30' || true").await;
        assert_eq!(left, "", "an exec abandoned by the crash still runs");
        if stopped {
            assert_eq!(
                states.get(&ids[1]).map(String::as_str),
                Some("stopped"),
                "an acknowledged stop was undone: {states:?}"
            );
        }
        if purged {
            assert!(
                !states.contains_key(&ids[2]),
                "an acknowledged purge was undone"
            );
            assert!(!c.home(&ids[2]).exists(), "a purged home is back");
        } else if let Some(status) = states.get(&ids[2]) {
            // Not acknowledged: it is whole, or the purge finished.
            assert_eq!(status, "running");
        }
        // The interrupted purge finishes or the sandbox is whole; a retry
        // of the purge always ends it.
        let again = c
            .post(&format!("/v1/sandboxes/{}/purge", ids[2]), json!({}))
            .await;
        assert!(
            matches!(again.status, StatusCode::NO_CONTENT | StatusCode::NOT_FOUND),
            "{again:?}"
        );
        assert!(!c.home(&ids[2]).exists());
        for id in &ids[..2] {
            c.delete(&format!("/v1/sandboxes/{id}")).await;
        }
    }
}
