//! The Docker daemon restarting under a running stack (a private dockerd:
//! the machine's own is never touched): the edge answers 503 with
//! Retry-After meanwhile, not a 500 or a hang, and serves the sandbox again
//! once Docker and the sandbox are back, having re-followed Docker's events.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::control::PrivateDocker;
use common::{APP_START, Control, Edge, WEB_IMAGE};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn the_edge_rides_out_a_docker_restart() {
    common::ensure_web_image();
    let mut docker = PrivateDocker::start(&json!({}));
    docker.load(WEB_IMAGE);
    let host = docker.host();
    let c = Control::start(&[
        ("DOCKER_HOST", &host),
        ("BERTH_IMAGE", WEB_IMAGE),
        ("BERTH_FIREWALL", "false"),
        ("BERTH_RECONCILE_INTERVAL", "1"),
    ])
    .await;
    let edge = Edge::start(&c, &[("DOCKER_HOST", &host)]).await;
    let id = c.create(json!({"ports": [3000], "start": APP_START})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let preview = edge.preview_host(&id, 3000);
    common::until_served(&edge, &preview).await;

    docker.down();
    let r = tokio::time::timeout(Duration::from_secs(60), edge.get(&preview, "/"))
        .await
        .expect("a preview request hung while Docker was down");
    assert_eq!(
        r.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        edge.log_text()
    );
    assert!(r.headers().contains_key("retry-after"));

    docker.up();
    // The sandbox runs again (control's reconciler) at a new address: the
    // edge learns it from Docker's events, which it follows again.
    common::until_served(&edge, &preview).await;
    let (status, body) = edge.get_text(&preview, "/").await;
    assert_eq!((status, body), (200, format!("hello from {id}")));
    drop(edge);
    drop(c);
}
