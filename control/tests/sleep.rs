//! Light sleep: an idle sandbox is frozen first (`docker pause`: no CPU,
//! memory kept), stopped after `BERTH_DEEP_SLEEP_AFTER`, and stopped first
//! under memory pressure; any use thaws it with its processes as they were.
//! Restarts and `kill -9` of control keep it asleep, and the reconciler
//! re-freezes (or thaws) a container that Docker shows otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Control, inspect, write_meminfo};
use reqwest::StatusCode;
use serde_json::json;

/// Whether Docker shows the sandbox's container frozen.
fn paused(c: &Control, id: &str) -> bool {
    inspect(&c.container(id), "{{.State.Paused}}") == "true"
}

/// The counter a background loop in the sandbox bumps every 100 ms (read
/// on the host, so reading it never wakes the sandbox).
fn ticks(c: &Control, id: &str) -> usize {
    std::fs::read_to_string(c.home(id).join("workspace/ticks"))
        .unwrap_or_default()
        .len()
}

/// A start command that records its pid, then appends a byte every 100 ms.
/// (An exec's processes die with it; the start command's live on.)
const TICKER: &str =
    "echo $$ > ~/workspace/pid; while :; do printf x >> ~/workspace/ticks; sleep 0.1; done";

/// Creates a sandbox running [`TICKER`]; returns its id and the loop's pid
/// once it ticks.
async fn ticking(c: &Control, idle_timeout_s: u64) -> (String, String) {
    let id = c
        .create(json!({"idle_timeout_s": idle_timeout_s, "start": TICKER}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    c.eventually("the loop to tick", Duration::from_secs(10), || async {
        ticks(c, &id) > 0
    })
    .await;
    let pid = std::fs::read_to_string(c.home(&id).join("workspace/pid")).unwrap();
    (id, pid.trim().to_string())
}

#[tokio::test]
async fn an_idle_sandbox_sleeps_light_then_deep() {
    let c = Control::start(&[("BERTH_DEEP_SLEEP_AFTER", "3")]).await;
    let (id, _) = ticking(&c, 1).await;
    c.eventually(
        "the idle sandbox to sleep lightly",
        Duration::from_secs(15),
        || async { c.status_of(&id).await == "asleep" },
    )
    .await;
    assert!(paused(&c, &id), "asleep means frozen in Docker");
    let view = c.get(&format!("/v1/sandboxes/{id}")).await.body;
    assert_eq!(view["desired_state"], "asleep", "{view}");
    // Frozen: its processes get no CPU.
    let before = ticks(&c, &id);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(ticks(&c, &id), before, "a frozen sandbox runs nothing");
    let metrics = c.get("/metrics").await.text;
    assert!(
        metrics.contains("berth_control_sandboxes{status=\"asleep\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("berth_control_sandbox_sleeps_total{reason=\"idle\"} 1"),
        "{metrics}"
    );

    c.eventually(
        "light sleep to end in deep sleep",
        Duration::from_secs(15),
        || async { c.status_of(&id).await == "stopped" },
    )
    .await;
    let r = c.get(&format!("/v1/sandboxes/{id}")).await.body;
    assert_eq!(r["container"]["running"], false, "{r}");
    assert!(
        r["status_detail"].as_str().unwrap().contains("light sleep"),
        "{r}"
    );
}

#[tokio::test]
async fn a_light_sleeper_thaws_on_any_use_with_its_processes_as_they_were() {
    let c = Control::start(&[("BERTH_DEEP_SLEEP_AFTER", "600")]).await;
    let (id, pid) = ticking(&c, 600).await;
    let r = c
        .post(&format!("/v1/sandboxes/{id}/sleep"), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["status"], "asleep", "{r:?}");
    assert!(paused(&c, &id));
    // Asleep again is fine.
    let again = c
        .post(&format!("/v1/sandboxes/{id}/sleep"), json!({}))
        .await;
    assert_eq!(again.status, StatusCode::OK, "{again:?}");

    // Reading files does not need the container: it stays frozen.
    let f = c.get(&format!("/v1/sandboxes/{id}/files?path=ticks")).await;
    assert_eq!(f.status, StatusCode::OK, "{f:?}");
    assert!(paused(&c, &id), "a file read leaves it asleep");

    // An exec thaws it: the same process is still there, and it ticks on.
    let alive = c.sh(&id, &format!("kill -0 {pid} && echo alive")).await;
    assert_eq!(alive, "alive\n");
    assert!(!paused(&c, &id));
    assert_eq!(c.status_of(&id).await, "running");
    let before = ticks(&c, &id);
    c.eventually("the loop to run again", Duration::from_secs(5), || async {
        ticks(&c, &id) > before
    })
    .await;
    let metrics = c.get("/metrics").await.text;
    assert!(
        metrics.contains("berth_control_container_thaw_seconds_count 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("berth_control_sandbox_sleeps_total{reason=\"api\"} 1"),
        "{metrics}"
    );

    // `start` thaws too.
    c.post(&format!("/v1/sandboxes/{id}/sleep"), json!({}))
        .await;
    let s = c
        .post(&format!("/v1/sandboxes/{id}/start"), json!({}))
        .await;
    assert_eq!(
        (s.status, &s.body["status"]),
        (StatusCode::OK, &json!("running"))
    );
    assert!(!paused(&c, &id));
}

#[tokio::test]
async fn sleep_refuses_what_cannot_sleep() {
    let c = Control::start(&[("BERTH_DEEP_SLEEP_AFTER", "600")]).await;
    let unknown = c.post("/v1/sandboxes/nope/sleep", json!({})).await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (StatusCode::NOT_FOUND, "not_found")
    );

    let id = c.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Busy: a command runs in it.
    let busy = {
        let c2 = c.request(reqwest::Method::POST, &format!("/v1/sandboxes/{id}/exec"));
        tokio::spawn(c2.json(&json!({"cmd": ["sleep", "3"]})).send())
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    let r = c
        .post(&format!("/v1/sandboxes/{id}/sleep"), json!({}))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "conflict"),
        "{r:?}"
    );
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("busy")
    );
    assert_eq!(busy.await.unwrap().unwrap().status(), StatusCode::OK);

    let stopped = c.post(&format!("/v1/sandboxes/{id}/stop"), json!({})).await;
    assert_eq!(stopped.status, StatusCode::OK);
    let r = c
        .post(&format!("/v1/sandboxes/{id}/sleep"), json!({}))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "conflict"),
        "{r:?}"
    );
    assert_eq!(c.status_of(&id).await, "stopped", "still stopped");
}

#[tokio::test]
async fn light_sleep_survives_kill_9_and_the_reconciler_restores_it() {
    let mut c = Control::start(&[("BERTH_DEEP_SLEEP_AFTER", "600")]).await;
    let (asleep, pid) = ticking(&c, 600).await;
    let awake = c.create(json!({"idle_timeout_s": 600})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    c.post(&format!("/v1/sandboxes/{asleep}/sleep"), json!({}))
        .await;

    c.kill9();
    // Behind berth's back: the sleeper thawed, the awake one frozen.
    assert!(common::docker(&["unpause", &c.container(&asleep)]).0);
    assert!(common::docker(&["pause", &c.container(&awake)]).0);
    c.spawn().await;

    c.eventually(
        "the reconciler to restore both",
        Duration::from_secs(15),
        || async { paused(&c, &asleep) && !paused(&c, &awake) },
    )
    .await;
    assert_eq!(c.status_of(&asleep).await, "asleep");
    assert_eq!(c.status_of(&awake).await, "running");
    // A frozen container is never taken for a running one: an exec thaws
    // it and finds its process.
    let alive = c.sh(&asleep, &format!("kill -0 {pid} && echo alive")).await;
    assert_eq!(alive, "alive\n");
    assert_eq!(c.status_of(&asleep).await, "running");
}

#[tokio::test]
async fn a_sleeper_whose_container_stopped_is_in_deep_sleep_and_wakes_afresh() {
    let mut c = Control::start(&[("BERTH_DEEP_SLEEP_AFTER", "600")]).await;
    let id = c.create(json!({"idle_timeout_s": 600})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    c.post(&format!("/v1/sandboxes/{id}/sleep"), json!({}))
        .await;
    c.kill9();
    // What a Docker restart does to a frozen container.
    assert!(common::docker(&["kill", &c.container(&id)]).0);
    c.spawn().await;
    c.eventually(
        "the reconciler to see it stopped",
        Duration::from_secs(15),
        || async { c.status_of(&id).await == "stopped" },
    )
    .await;
    assert_eq!(c.sh(&id, "echo up").await, "up\n");
    assert_eq!(c.status_of(&id).await, "running");
}

#[tokio::test]
async fn memory_pressure_stops_light_sleepers_before_idle_awake_ones() {
    let meminfo = std::env::temp_dir().join(common::unique("berth-meminfo-"));
    write_meminfo(&meminfo, 8_000);
    let c = Control::start(&[
        ("BERTH_MEMINFO_PATH", meminfo.to_str().unwrap()),
        ("BERTH_MEMORY_HEADROOM", "10%"),
        ("BERTH_DEEP_SLEEP_AFTER", "600"),
    ])
    .await;
    // The awake one is the least recently used; the sleeper goes first anyway.
    let awake = c.create(json!({"idle_timeout_s": 600})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let sleeper = c.create(json!({"idle_timeout_s": 600})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    c.sh(&sleeper, "true").await;
    c.post(&format!("/v1/sandboxes/{sleeper}/sleep"), json!({}))
        .await;

    write_meminfo(&meminfo, 512);
    c.eventually("both to be stopped", Duration::from_secs(15), || async {
        c.status_of(&sleeper).await == "stopped" && c.status_of(&awake).await == "stopped"
    })
    .await;
    let s = c.get(&format!("/v1/sandboxes/{sleeper}")).await.body;
    let a = c.get(&format!("/v1/sandboxes/{awake}")).await.body;
    assert!(
        s["status_detail"].as_str().unwrap().contains("memory"),
        "{s}"
    );
    assert!(
        s["updated_at"].as_str().unwrap() < a["updated_at"].as_str().unwrap(),
        "the light sleeper first: {s} {a}"
    );
    write_meminfo(&meminfo, 8_000);
    let _ = std::fs::remove_file(&meminfo);
}

#[tokio::test]
async fn the_sandbox_bridges_ask_for_a_waking_sandbox_every_100_ms() {
    // A request that reaches a stopped sandbox leaves the host's neighbour
    // entry unresolved; with the kernel's 1 s retry a sandbox started just
    // after answers up to a second late.
    let c = Control::start(&[]).await;
    c.create(json!({})).await;
    for network in [c.network.clone(), format!("{}-internal", c.network)] {
        let id = inspect(&network, "{{.Id}}");
        let bridge = format!("br-{}", &id[..12]);
        let retrans =
            std::fs::read_to_string(format!("/proc/sys/net/ipv4/neigh/{bridge}/retrans_time_ms"))
                .unwrap();
        assert_eq!(retrans.trim(), "100", "{network} ({bridge})");
    }
}
