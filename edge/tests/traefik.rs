//! Standing in for Traefik: plain containers routed by their Traefik labels,
//! following Docker events.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Control, Edge, WEB_IMAGE, docker};

struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.0]);
    }
}

fn run(name: &str, labels: &[String], cmd: &str) -> Container {
    let mut args: Vec<String> = vec!["run".into(), "-d".into(), "--name".into(), name.into()];
    for l in labels {
        args.push("--label".into());
        args.push(l.clone());
    }
    args.extend([WEB_IMAGE.to_string(), "sh".into(), "-c".into(), cmd.into()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out) = docker(&refs);
    assert!(ok, "docker run failed: {out}");
    Container(name.to_string())
}

#[tokio::test]
async fn labelled_containers_are_routed_on_start_and_unrouted_on_removal() {
    common::ensure_web_image();
    let control = Control::start(&[]).await;
    let edge = Edge::start(&control, &[]).await;
    let name = format!("berth-traefik-test-{}", std::process::id());
    let host = format!("{name}.example.test");
    let labels = vec![
        "traefik.enable=true".to_string(),
        format!("traefik.http.routers.{name}.rule=Host(`{host}`) || Host(`www.{host}`)"),
        format!("traefik.http.routers.{name}-api.rule=Host(`{host}`) && PathPrefix(`/headers`)"),
        format!("traefik.http.routers.{name}-api.service=api"),
        format!("traefik.http.routers.{name}.service=web"),
        "traefik.http.services.web.loadbalancer.server.port=8000".to_string(),
        "traefik.http.services.api.loadbalancer.server.port=8001".to_string(),
    ];
    assert_eq!(edge.get_text(&host, "/").await.0, 404);

    let started = Instant::now();
    let _c = run(
        &name,
        &labels,
        "python3 /opt/app.py 8000 & exec python3 /opt/app.py 8001",
    );
    let mut routed = None;
    while started.elapsed() < Duration::from_secs(10) {
        if edge.get_text(&host, "/").await.0 == 200 {
            routed = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let routed = routed.unwrap_or_else(|| panic!("never routed\n{}", edge.log_text()));
    eprintln!("routed {routed:?} after `docker run` returned (including the app's own start)");
    assert_eq!(edge.get_text(&format!("www.{host}"), "/").await.0, 200);
    // The more specific router (longer rule: higher priority) wins.
    let r = edge.get(&host, "/headers").await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("x-forwarded-host"));
    assert!(
        edge.metric("berth_edge_routes{kind=\"traefik_routers\"}")
            .await
            >= 2.0
    );

    // Removed: unrouted without a restart.
    assert!(docker(&["rm", "-f", &name]).0);
    let gone = Instant::now();
    loop {
        if edge.get_text(&host, "/").await.0 == 404 {
            break;
        }
        assert!(
            gone.elapsed() < Duration::from_secs(5),
            "still routed after removal"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn containers_without_traefik_enable_are_left_alone() {
    common::ensure_web_image();
    let control = Control::start(&[]).await;
    let edge = Edge::start(&control, &[]).await;
    let name = format!("berth-traefik-off-{}", std::process::id());
    let host = format!("{name}.example.test");
    let _c = run(
        &name,
        &[
            format!("traefik.http.routers.x.rule=Host(`{host}`)"),
            "traefik.http.services.x.loadbalancer.server.port=8000".into(),
        ],
        "exec python3 /opt/app.py 8000",
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(edge.get_text(&host, "/").await.0, 404);
}
