//! Host memory pressure: idle sandboxes are stopped oldest first, and
//! creates that would overcommit get 503 with Retry-After. The host's
//! /proc/meminfo is replaced by a file the test controls.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Control;
use reqwest::StatusCode;
use serde_json::json;

use common::write_meminfo;

#[tokio::test]
async fn memory_pressure_stops_idle_sandboxes_oldest_first_and_refuses_creates() {
    let meminfo = std::env::temp_dir().join(format!("berth-meminfo-{}", std::process::id()));
    write_meminfo(&meminfo, 8_000);
    let c = Control::start(&[
        ("BERTH_MEMINFO_PATH", meminfo.to_str().unwrap()),
        ("BERTH_MEMORY_HEADROOM", "10%"),
    ])
    .await;
    let older = c.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let newer = c.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let kept = c.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    c.post(
        &format!("/sandbox/{kept}/keepalive"),
        json!({"until": until}),
    )
    .await;
    let always = c.create(json!({"idle_policy": "always_on"})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    c.sh(&newer, "true").await;

    // 512 MiB available, 1 GiB headroom.
    write_meminfo(&meminfo, 512);
    c.eventually(
        "idle sandboxes to be stopped",
        Duration::from_secs(15),
        || async {
            c.status_of(&older).await == "stopped" && c.status_of(&newer).await == "stopped"
        },
    )
    .await;
    let o = c.get(&format!("/sandbox/{older}")).await.body;
    let n = c.get(&format!("/sandbox/{newer}")).await.body;
    assert!(
        o["status_detail"].as_str().unwrap().contains("memory"),
        "{o}"
    );
    assert!(
        o["updated_at"].as_str().unwrap() < n["updated_at"].as_str().unwrap(),
        "oldest first"
    );
    assert_eq!(
        c.status_of(&kept).await,
        "running",
        "a keepalive is honoured"
    );
    assert_eq!(
        c.status_of(&always).await,
        "running",
        "always_on is never stopped"
    );

    let r = c.post("/sandbox", json!({})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "sandbox_capacity"),
        "{r:?}"
    );
    assert_eq!(r.headers["retry-after"], "30");
    assert_eq!(r.body["error"]["retryable"], true);
    let wake = c.exec(&older, &["true"]).await;
    assert_eq!(
        wake.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "waking would overcommit: {wake:?}"
    );
    assert_eq!(
        c.get("/sandboxes").await.body["sandboxes"]
            .as_array()
            .unwrap()
            .len(),
        4,
        "nothing half-made"
    );

    write_meminfo(&meminfo, 8_000);
    assert_eq!(c.sh(&older, "echo back").await, "back\n");
    c.create(json!({})).await;
    let _ = std::fs::remove_file(&meminfo);
}
