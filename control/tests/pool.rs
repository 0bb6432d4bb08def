//! The warm pool: ready sandboxes made ahead and frozen, claimed by creates
//! that fit (the default image, runtime and egress, no chosen id), never
//! twice, with the client's env, limits and start command applied; refilled
//! in the background; kept across a `kill -9`; emptied when turned off.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Control, inspect};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn pool(c: &Control) -> Value {
    c.get("/v1/info").await.body["warm_pool"].clone()
}

async fn until_ready(c: &Control, n: u64) {
    c.eventually("the warm pool to fill", Duration::from_secs(60), || async {
        pool(c).await["ready"] == n
    })
    .await;
}

/// Containers of this instance by name, with their `berth.pool` label.
fn pool_labels(c: &Control) -> Vec<(String, String)> {
    let filter = format!("label=berth.instance={}", c.instance);
    let (_, out) = common::docker(&[
        "ps",
        "-a",
        "--filter",
        &filter,
        "--format",
        "{{.Names}} {{.Label \"berth.pool\"}}",
    ]);
    out.lines()
        .map(|l| {
            let (n, p) = l.split_once(' ').unwrap_or((l, ""));
            (n.to_string(), p.to_string())
        })
        .collect()
}

#[tokio::test]
async fn concurrent_creates_claim_pooled_sandboxes_once_each_with_their_own_settings() {
    let c = Control::start(&[("BERTH_WARM_POOL", "3")]).await;
    until_ready(&c, 3).await;
    assert_eq!(pool(&c).await["target"], 3);
    assert!(
        c.get("/v1/sandboxes").await.body["sandboxes"]
            .as_array()
            .unwrap()
            .is_empty(),
        "pooled sandboxes are nobody's: not listed"
    );

    let creates = (0..6).map(|i| {
        let req = c
            .request(reqwest::Method::POST, "/v1/sandboxes")
            .json(&json!({
                "env": {"GREETING": format!("hello {i}")},
                "memory": "128m",
                "cpus": 0.5,
                "start": "echo \"$GREETING\" > ~/workspace/started",
                "metadata": {"n": i.to_string()},
            }));
        tokio::spawn(async move {
            let r = req.send().await.unwrap();
            let status = r.status();
            let placement = r.headers()["berth-placement"].to_str().unwrap().to_string();
            let body: Value = r.json().await.unwrap();
            (status, placement, body)
        })
    });
    let mut made = Vec::new();
    for create in creates {
        made.push(create.await.unwrap());
    }
    let ids: HashSet<String> = made
        .iter()
        .map(|(s, _, b)| {
            assert_eq!(*s, StatusCode::CREATED, "{b}");
            b["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids.len(), 6, "six sandboxes, six ids");
    let warm: Vec<&(StatusCode, String, Value)> =
        made.iter().filter(|(_, p, _)| p == "warm").collect();
    assert!(
        warm.len() >= 3,
        "the three ready ones were claimed: {made:?}"
    );
    for (_, p, _) in made.iter().filter(|(_, p, _)| p != "warm") {
        assert_eq!(p, "cold; the warm pool is empty");
    }
    // Never handed out twice: one container per sandbox.
    let containers: HashSet<String> = {
        let mut set = HashSet::new();
        for id in &ids {
            let view = c.get(&format!("/v1/sandboxes/{id}")).await.body;
            assert_eq!(view["status"], "running", "{view}");
            set.insert(inspect(&c.container(id), "{{.Id}}"));
        }
        set
    };
    assert_eq!(containers.len(), 6);

    // A claimed sandbox has the client's settings, though its container
    // was made before the client asked.
    for (_, _, body) in warm {
        let id = body["id"].as_str().unwrap();
        let n = body["metadata"]["n"].as_str().unwrap();
        assert_eq!(c.sh(id, "echo \"$GREETING\"").await, format!("hello {n}\n"));
        c.eventually(
            "the start command to run",
            Duration::from_secs(10),
            || async {
                std::fs::read_to_string(c.home(id).join("workspace/started")).ok()
                    == Some(format!("hello {n}\n"))
            },
        )
        .await;
        let limits = inspect(
            &c.container(id),
            "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.State.Paused}}",
        );
        assert_eq!(limits, format!("{} 500000000 false", 128 << 20));
        assert_eq!(body["memory"], "128m", "{body}");
    }
    assert_eq!(
        c.get("/v1/sandboxes").await.body["sandboxes"]
            .as_array()
            .unwrap()
            .len(),
        6
    );

    // Refilled in the background.
    until_ready(&c, 3).await;
    let metrics = c.get("/metrics").await.text;
    assert!(
        metrics.contains("berth_control_warm_pool_ready 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("berth_control_sandboxes{status=\"running\"} 6"),
        "pooled sandboxes are not counted as the fleet's: {metrics}"
    );
}

#[tokio::test]
async fn a_create_the_pool_cannot_serve_is_cold_and_says_why() {
    let c = Control::start(&[("BERTH_WARM_POOL", "1")]).await;
    until_ready(&c, 1).await;
    let chosen = c
        .request(reqwest::Method::POST, "/v1/sandboxes")
        .json(&json!({"id": "mine"}))
        .send()
        .await
        .unwrap();
    assert_eq!(chosen.status(), StatusCode::CREATED);
    assert_eq!(
        chosen.headers()["berth-placement"],
        "cold; the client chose the id"
    );
    let offline = c
        .request(reqwest::Method::POST, "/v1/sandboxes")
        .json(&json!({"egress": "none"}))
        .send()
        .await
        .unwrap();
    assert_eq!(offline.status(), StatusCode::CREATED);
    assert_eq!(
        offline.headers()["berth-placement"],
        "cold; not the default egress"
    );
    assert_eq!(pool(&c).await["ready"], 1, "the pool is untouched");

    // Without a pool, every create is cold.
    let none = Control::start(&[]).await;
    let r = none
        .request(reqwest::Method::POST, "/v1/sandboxes")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["berth-placement"], "cold; no warm pool");
}

#[tokio::test]
async fn the_pool_survives_kill_9_is_claimable_after_and_goes_when_turned_off() {
    let mut c = Control::start(&[("BERTH_WARM_POOL", "2")]).await;
    until_ready(&c, 2).await;
    let before: HashSet<(String, String)> = pool_labels(&c).into_iter().collect();
    assert_eq!(before.len(), 2);
    assert!(before.iter().all(|(_, p)| p == "true"), "{before:?}");
    c.kill9();
    c.spawn().await;
    until_ready(&c, 2).await;
    let after: HashSet<(String, String)> = pool_labels(&c).into_iter().collect();
    assert_eq!(before, after, "the same pooled sandboxes, kept frozen");

    let r = c
        .request(reqwest::Method::POST, "/v1/sandboxes")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["berth-placement"], "warm");
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(c.sh(&id, "echo up").await, "up\n");

    // Once it sleeps deeply, its next start makes it an ordinary container.
    c.post(&format!("/v1/sandboxes/{id}/stop"), json!({})).await;
    c.post(&format!("/v1/sandboxes/{id}/start"), json!({}))
        .await;
    assert_eq!(
        inspect(
            &c.container(&id),
            "{{index .Config.Labels \"berth.pool\"}}|{{index .Config.Labels \"berth.public\"}}"
        ),
        "|true",
        "no pool label; its visibility labelled"
    );

    // Turned off: the pool goes, the client's sandbox stays.
    c.kill9();
    c.env_set("BERTH_WARM_POOL", "0");
    c.spawn().await;
    c.eventually(
        "the pool to be emptied",
        Duration::from_secs(30),
        || async { pool_labels(&c).iter().all(|(_, p)| p != "true") },
    )
    .await;
    assert_eq!(pool(&c).await["ready"], 0);
    assert_eq!(c.status_of(&id).await, "running");
}
