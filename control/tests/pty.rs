//! `GET /v1/sandboxes/{id}/pty`: an interactive terminal over a real
//! WebSocket: a login shell sized by the client and resized live, that
//! survives a reconnect within its grace period, keeps its sandbox awake,
//! and is killed with everything it started once left past the grace.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Control;
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(c: &Control, id: &str, query: &str) -> (Socket, String) {
    let url = format!(
        "{}/v1/sandboxes/{id}/pty{query}",
        c.base.replacen("http", "ws", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let hello = next_text(&mut ws).await;
    assert_eq!(hello["type"], "session", "{hello}");
    (ws, hello["id"].as_str().unwrap().to_string())
}

async fn next_text(ws: &mut Socket) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).unwrap(),
            Ok(Some(Ok(_))) => {}
            other => panic!("no text frame: {other:?}"),
        }
    }
}

/// Terminal output until it contains `want`; returns all of it.
async fn screen_until(ws: &mut Socket, want: &str) -> String {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains(want) {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => seen.push_str(&String::from_utf8_lossy(&b)),
            Ok(Some(Ok(Message::Text(t)))) => seen.push_str(&format!("[{t}]")),
            Ok(Some(Ok(_))) => {}
            other => panic!("waiting for {want:?}, got {other:?}; the screen so far:\n{seen}"),
        }
    }
    seen
}

async fn typed(ws: &mut Socket, line: &str) {
    ws.send(Message::Binary(line.as_bytes().to_vec().into()))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_terminal_is_sized_resized_kept_across_a_reconnect_and_keeps_its_sandbox_awake() {
    let c = Control::start(&[("BERTH_PTY_GRACE", "5")]).await;
    let id = c
        .create(json!({"idle_timeout_s": 1, "env": {"GREETING": "hi"}}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (mut ws, session) = connect(&c, &id, "?cols=100&rows=30").await;
    // Markers are printed by arithmetic, so that the echo of what was typed
    // never matches them.
    typed(
        &mut ws,
        "stty size; echo \"T=$TERM G=$GREETING $((40+2))\"\n",
    )
    .await;
    let screen = screen_until(&mut ws, "42").await;
    assert!(screen.contains("30 100"), "{screen}");
    assert!(screen.contains("T=xterm-256color G=hi"), "{screen}");

    ws.send(Message::Text(
        json!({"type": "resize", "cols": 120, "rows": 40})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    typed(&mut ws, "stty size; export MARK=kept; echo $((6*7+1))\n").await;
    let screen = screen_until(&mut ws, "43").await;
    assert!(screen.contains("40 120"), "{screen}");
    // A frame that is not one.
    ws.send(Message::Text("{\"type\":\"nonsense\"}".into()))
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await["type"], "error");

    // Gone for a moment (a dropped connection, a page reload): the same
    // shell comes back, with the screen's recent output.
    drop(ws);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut ws, again) = connect(&c, &id, &format!("?session={session}")).await;
    assert_eq!(again, session);
    typed(&mut ws, "echo \"mark=$MARK\" $((50+5))\n").await;
    let screen = screen_until(&mut ws, "55").await;
    assert!(screen.contains("40 120"), "the backlog first: {screen}");
    assert!(screen.contains("mark=kept"), "{screen}");

    // Idle past its timeout, but a terminal is open: awake.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(c.status_of(&id).await, "running");

    typed(&mut ws, "exit 3\n").await;
    let bye = loop {
        let frame = next_text(&mut ws).await;
        if frame["type"] == "exit" {
            break frame;
        }
    };
    assert_eq!(bye["code"], 3, "{bye}");
    let url = format!(
        "{}/v1/sandboxes/{id}/pty?session={session}",
        c.base.replacen("http", "ws", 1)
    );
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status().as_u16(), 404)
        }
        other => panic!("an ended session is gone: {other:?}"),
    }
}

#[tokio::test]
async fn a_terminal_left_past_its_grace_is_killed_with_what_it_started() {
    let c = Control::start(&[("BERTH_PTY_GRACE", "2")]).await;
    let id = c.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (mut ws, session) = connect(&c, &id, "").await;
    typed(&mut ws, "sleep 1234 & echo $((30+3))\n").await;
    screen_until(&mut ws, "33").await;
    assert_eq!(c.sh(&id, "ps | grep -c '[s]leep 1234'").await, "1\n");
    drop(ws);
    c.eventually(
        "the terminal to be killed",
        Duration::from_secs(15),
        || async { c.sh(&id, "ps | grep -c '[s]leep 1234' || true").await == "0\n" },
    )
    .await;
    let url = format!(
        "{}/v1/sandboxes/{id}/pty?session={session}",
        c.base.replacen("http", "ws", 1)
    );
    assert!(tokio_tungstenite::connect_async(url).await.is_err());
}

#[tokio::test]
async fn the_pty_route_answers_plain_requests_in_json() {
    let c = Control::start(&[]).await;
    let id = c.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c.get(&format!("/v1/sandboxes/{id}/pty")).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_request"),
        "{r:?}"
    );
    let r = c.get("/v1/sandboxes/nope/pty").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "not_found"),
        "{r:?}"
    );
}
