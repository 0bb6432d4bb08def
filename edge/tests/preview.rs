//! Preview hosts through the real berth-edge, in front of the real
//! berth-control and Docker.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{APP_START, WebSocket, app_sandbox, served_app, stack, until_served};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test]
async fn a_sandbox_port_is_routed_and_everything_else_is_a_404() {
    let (_c, edge, id, host) = served_app().await;
    assert_eq!(
        edge.get_text(&host, "/").await,
        (200, format!("hello from {id}"))
    );

    // Host names are case-insensitive and may carry a port.
    let shouting = format!("{}:{}", host.to_ascii_uppercase(), edge.port);
    assert_eq!(edge.get_text(&shouting, "/").await.0, 200);

    // A request shorter than HTTP/2's 24-byte preface is answered at once
    // (cleartext HTTP/2 is off by default: no waiting to sniff for it).
    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", edge.port))
        .await
        .unwrap();
    raw.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut answer))
        .await
        .expect("a short HTTP/1.0 request gets an answer at once")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1."), "{answer}");

    // Forwarding headers reach the app.
    let headers: Value = edge.get(&host, "/headers").await.json().await.unwrap();
    assert_eq!(headers["x-forwarded-host"], host);
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");

    for (what, h) in [
        ("unknown sandbox", edge.preview_host("nosuchsandbox", 3000)),
        ("undeclared port", edge.preview_host(&id, 3001)),
        ("unknown host", "example.org".to_string()),
    ] {
        let r = edge.get(&h, "/").await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{what}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{what}");
    }
    // Browsers get a page.
    let page = edge
        .request(Method::GET, "example.org", "/")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    assert!(page.text().await.unwrap().contains("<html>"));
}

#[tokio::test]
async fn a_stopped_sandbox_wakes_on_its_first_request() {
    let (c, edge, id, host) = served_app().await;
    c.post(&format!("/v1/sandboxes/{id}/stop"), json!({})).await;
    assert_eq!(c.status_of(&id).await, "stopped");

    // An API client is held until the app answers, then proxied.
    assert_eq!(
        edge.get_text(&host, "/").await,
        (200, format!("hello from {id}"))
    );
    assert_eq!(c.status_of(&id).await, "running");
    assert_eq!(
        edge.metric("berth_edge_wakes_total{result=\"ok\"}").await,
        1.0
    );

    // A request right on the heels of a stop may find the edge's route
    // table not yet told (Docker's event is in flight): the refused
    // connection is rechecked with Docker and the sandbox woken, never a 502.
    // Freezing the edge across the stop makes the request race the event.
    for round in 0..3 {
        edge.signal("STOP");
        c.post(&format!("/v1/sandboxes/{id}/stop"), json!({})).await;
        edge.signal("CONT");
        assert_eq!(
            edge.get_text(&host, "/").await,
            (200, format!("hello from {id}")),
            "round {round}\n{}",
            edge.log_text()
        );
    }
}

#[tokio::test]
async fn a_browser_waiting_too_long_gets_a_starting_page() {
    // An app that takes 4 s to listen after each start.
    let (c, edge) = stack(&[], &[("BERTH_EDGE_STARTING_PAGE_AFTER", "0.5")]).await;
    let id = app_sandbox(&c, json!({"start": format!("sleep 4; {APP_START}")})).await;
    c.post(&format!("/v1/sandboxes/{id}/stop"), json!({})).await;
    let host = edge.preview_host(&id, 3000);
    let page = edge
        .request(Method::GET, &host, "/")
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
    let text = page.text().await.unwrap();
    assert!(text.contains("http-equiv=\"refresh\""), "{text}");
    // An API client is held instead, and proxied once the app listens.
    assert_eq!(edge.get_text(&host, "/").await.0, 200);
}

#[tokio::test]
async fn twenty_concurrent_first_requests_start_the_sandbox_once() {
    let (c, edge) = stack(&[], &[]).await;
    let id = app_sandbox(
        &c,
        json!({"start": format!("echo started >> ~/workspace/starts.log; {APP_START}")}),
    )
    .await;
    let host = edge.preview_host(&id, 3000);
    until_served(&edge, &host).await;
    c.post(&format!("/v1/sandboxes/{id}/stop"), json!({})).await;
    let starts = || {
        std::fs::read_to_string(c.home(&id).join("workspace/starts.log"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    let before = starts();
    let requests = (0..20).map(|_| edge.get_text(&host, "/"));
    for (status, body) in futures_util::future::join_all(requests).await {
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        starts(),
        before + 1,
        "one start command: one container start"
    );
    assert_eq!(
        edge.metric("berth_edge_wakes_total{result=\"ok\"}").await,
        1.0
    );
}

#[tokio::test]
async fn preview_traffic_and_an_open_websocket_keep_a_sandbox_awake() {
    let (c, edge) = stack(&[], &[("BERTH_EDGE_ACTIVITY_INTERVAL", "1")]).await;
    let id = app_sandbox(&c, json!({"idle_timeout_s": 2})).await;
    let host = edge.preview_host(&id, 3000);
    until_served(&edge, &host).await;

    // Requests every 300 ms for 6 s: three idle timeouts.
    for _ in 0..20 {
        assert_eq!(edge.get_text(&host, "/").await.0, 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(c.status_of(&id).await, "running");
    }
    // A WebSocket (hot reload) open and silent for 6 s.
    let port = edge.port;
    let h = host.clone();
    let mut ws = tokio::task::spawn_blocking(move || WebSocket::connect(port, &h, "/ws"))
        .await
        .unwrap();
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            c.status_of(&id).await,
            "running",
            "an open WebSocket is activity"
        );
    }
    let reply = tokio::task::spawn_blocking(move || {
        ws.send("still here");
        let reply = ws.receive();
        (ws, reply)
    })
    .await
    .unwrap();
    assert_eq!(reply.1, "echo: still here");
    drop(reply.0);
    // Without traffic it goes to sleep.
    c.eventually(
        "the idle sandbox to stop",
        Duration::from_secs(20),
        || async { c.status_of(&id).await == "stopped" },
    )
    .await;
}

#[tokio::test]
async fn streaming_responses_large_uploads_and_upstream_failures() {
    let (c, edge) = stack(&[], &[("BERTH_EDGE_UPSTREAM_TIMEOUT", "2")]).await;
    let id = app_sandbox(&c, json!({"ports": [3000, 4000]})).await;
    let host = edge.preview_host(&id, 3000);
    until_served(&edge, &host).await;

    // SSE from the app arrives event by event, not at the end.
    let started = std::time::Instant::now();
    let mut sse = edge.get(&host, "/sse").await;
    let first = sse.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("tick 0"));
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the first event was held back"
    );

    // 32 MiB upload, streamed through.
    let body = vec![7u8; 32 << 20];
    let r: Value = edge
        .request(Method::POST, &host, "/upload")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["bytes"], 32 << 20);

    // Nothing listens on port 4000: a clear 502, not a hang.
    let refused = edge.get(&edge.preview_host(&id, 4000), "/").await;
    assert_eq!(refused.status(), StatusCode::BAD_GATEWAY);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "connection_refused");
    // An app slower than the upstream timeout: 504.
    let slow = edge.get(&host, "/slow").await;
    assert_eq!(slow.status(), StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test]
async fn cleartext_http2_is_served_when_turned_on() {
    let (c, edge) = stack(&[], &[("BERTH_EDGE_H2C", "true")]).await;
    let id = app_sandbox(&c, json!({})).await;
    let host = edge.preview_host(&id, 3000);
    until_served(&edge, &host).await;
    // Prior knowledge: the host comes in `:authority`, not in a Host header.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .resolve(&host, ([127, 0, 0, 1], edge.port).into())
        .build()
        .unwrap();
    let r = h2
        .get(format!("http://{host}:{}/", edge.port))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.text().await.unwrap(), format!("hello from {id}"));
}

#[tokio::test]
async fn a_request_racing_a_create_takes_no_dead_port_for_a_waking_one() {
    // The route table lags Docker by an event: a request that arrives
    // before the table knows a fresh sandbox must not treat it as woken
    // (whose ports are waited for), or a port nothing listens on holds the
    // request for the whole wake timeout (504) instead of a prompt 502.
    // The edge is frozen while the sandbox is created and the requests
    // are sent, so each request races the creation's events.
    let (c, edge) = stack(&[], &[("BERTH_EDGE_WAKE_TIMEOUT", "20")]).await;
    for round in 0..3 {
        edge.signal("STOP");
        let id = app_sandbox(&c, json!({"ports": [3000, 4000]})).await;
        let dead = edge.preview_host(&id, 4000);
        let started = std::time::Instant::now();
        let pending = edge.request(Method::GET, &dead, "/").send();
        let pending = tokio::spawn(pending);
        tokio::time::sleep(Duration::from_millis(100)).await;
        edge.signal("CONT");
        let answer = pending.await.unwrap().unwrap();
        assert_eq!(
            (answer.status(), round),
            (StatusCode::BAD_GATEWAY, round),
            "after {:?}\n{}",
            started.elapsed(),
            edge.log_text()
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}

#[tokio::test]
async fn the_relay_keeps_connections_alive_and_passes_every_framing() {
    let (_c, edge, id, host) = served_app().await;
    let errors = || edge.log_text().matches("ERROR").count();
    let errors_before = errors();

    // Sequential requests share kept-alive connections to the app.
    let reused = r#"berth_edge_upstream_requests_total{connection="reused"}"#;
    let before = edge.metric(reused).await;
    for _ in 0..10 {
        assert_eq!(edge.get_text(&host, "/").await.0, 200);
    }
    let now = edge.metric(reused).await - before;
    assert!(now >= 8.0, "only {now} of 10 requests reused a connection");

    // The client's connection fields stay with the client; a forwarded
    // chain is extended.
    let seen: Value = edge
        .request(Method::GET, &host, "/headers")
        .header("connection", "keep-alive, X-Secret")
        .header("x-secret", "1")
        .header("x-forwarded-for", "10.0.0.1")
        .header("X-Custom-Case", "kept")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(seen.get("x-secret").is_none(), "{seen}");
    assert!(seen.get("connection").is_none(), "{seen}");
    assert_eq!(seen["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
    assert_eq!(seen["x-custom-case"], "kept");

    // A chunked body arrives piece by piece and whole; trailers are dropped.
    let mut chunked = edge.get(&host, "/chunked").await;
    assert_eq!(chunked.status(), StatusCode::OK);
    let first = chunked.chunk().await.unwrap().unwrap();
    assert_eq!(&first[..], b"hello, ", "the first piece, alone (streamed)");
    let mut rest = Vec::new();
    while let Some(piece) = chunked.chunk().await.unwrap() {
        rest.extend_from_slice(&piece);
    }
    assert_eq!(rest, b"chunked world");

    // HEAD: the app's length, no body; 204: nothing.
    let head = edge.request(Method::HEAD, &host, "/").send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    let length = format!("hello from {id}").len().to_string();
    assert_eq!(head.headers()["content-length"], length.as_str());
    assert_eq!(
        edge.get(&host, "/empty").await.status(),
        StatusCode::NO_CONTENT
    );

    // An app that closes a kept-alive connection without saying so: the
    // next request goes out again on a fresh connection, unnoticed.
    for _ in 0..5 {
        assert_eq!(edge.get_text(&host, "/bye").await, (200, "bye".to_string()));
        assert_eq!(edge.get_text(&host, "/").await.0, 200);
    }
    // The same, with the close racing the request: the app reads the next
    // request on the kept connection and closes it unanswered.
    for _ in 0..5 {
        assert_eq!(edge.get_text(&host, "/drop-next").await.0, 200);
        assert_eq!(edge.get_text(&host, "/").await.0, 200);
    }
    assert_eq!(
        errors(),
        errors_before,
        "new errors in the log:\n{}",
        edge.log_text()
    );
}

#[tokio::test]
async fn a_private_sandbox_needs_a_token_then_a_cookie() {
    let (c, edge) = stack(&[], &[]).await;
    let id = app_sandbox(&c, json!({"public": false})).await;
    let host = edge.preview_host(&id, 3000);
    let public = app_sandbox(&c, json!({})).await;
    until_served(&edge, &edge.preview_host(&public, 3000)).await;

    let refused = edge.get(&host, "/").await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let bad = edge.get(&host, "/?berth_token=forged.token").await;
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    // A token of another sandbox does not open this one.
    let other = c
        .post(&format!("/v1/sandboxes/{public}/preview-token"), json!({}))
        .await;
    let other_token = other.body["token"].as_str().unwrap();
    assert_eq!(
        edge.get(&host, &format!("/?berth_token={other_token}"))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );

    let minted = c
        .post(
            &format!("/v1/sandboxes/{id}/preview-token"),
            json!({"ttl_s": 600}),
        )
        .await;
    assert_eq!(minted.status, StatusCode::OK, "{minted:?}");
    let token = minted.body["token"].as_str().unwrap();
    assert!(
        minted.body["urls"]["3000"]
            .as_str()
            .unwrap()
            .contains(token)
    );
    let exchange = edge
        .get(&host, &format!("/headers?x=1&berth_token={token}"))
        .await;
    assert_eq!(exchange.status(), StatusCode::FOUND);
    assert_eq!(exchange.headers()["location"], "/headers?x=1");
    let cookie = exchange.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(
        !cookie.to_ascii_lowercase().contains("domain="),
        "host-only: {cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    // Framed by another site (the dashboard): a cookie that frame can keep.
    let framed = edge
        .request(Method::GET, &host, &format!("/?berth_token={token}"))
        .header("sec-fetch-dest", "iframe")
        .send()
        .await
        .unwrap();
    assert_eq!(framed.status(), StatusCode::FOUND);
    let framed = framed.headers()["set-cookie"].to_str().unwrap();
    assert!(
        framed.contains("SameSite=None; Secure; Partitioned"),
        "{framed}"
    );

    for _ in 0..200 {
        let r = edge
            .request(Method::GET, &host, "/headers")
            .header("cookie", format!("theme=dark; {pair}"))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::OK {
            let headers: Value = r.json().await.unwrap();
            assert_eq!(
                headers["cookie"], "theme=dark",
                "berth's cookie is not passed to the app"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the private sandbox was never served with its cookie");
}

#[tokio::test]
async fn a_sandbox_whose_container_was_removed_is_recreated_on_request() {
    let (c, edge, id, host) = served_app().await;
    assert!(common::docker(&["rm", "-f", &c.container(&id)]).0);
    // The edge no longer sees a container; control still has the record.
    for _ in 0..100 {
        let (status, body) = edge.get_text(&host, "/").await;
        if status == 200 {
            assert_eq!(body, format!("hello from {id}"));
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never served again\n{}", edge.log_text());
}

#[tokio::test]
async fn a_light_sleeping_sandbox_thaws_on_a_request_and_under_an_open_one() {
    let (c, edge) = stack(&[("BERTH_DEEP_SLEEP_AFTER", "600")], &[]).await;
    let id = app_sandbox(&c, json!({})).await;
    let host = edge.preview_host(&id, 3000);
    until_served(&edge, &host).await;
    for round in 0..3 {
        let r = c
            .post(&format!("/v1/sandboxes/{id}/sleep"), json!({}))
            .await;
        assert_eq!(r.body["status"], "asleep", "round {round}: {r:?}");
        // At once after the sleep: the edge may not have seen Docker's pause
        // event yet, and a frozen app accepts connections but never answers.
        // Either way the request thaws it and is answered.
        let answered = tokio::time::timeout(Duration::from_secs(10), edge.get_text(&host, "/"))
            .await
            .unwrap_or_else(|_| panic!("round {round}: no answer\n{}", edge.log_text()));
        assert_eq!(answered, (200, format!("hello from {id}")), "round {round}");
        // Thawed by the open request (reported as activity), the app may
        // answer a moment before control records the sandbox as running.
        c.eventually(
            "it to be recorded running",
            Duration::from_secs(5),
            || async { c.status_of(&id).await == "running" },
        )
        .await;
    }

    // Frozen while a stream to it is open: the open connection wakes it
    // again, and the stream ends whole.
    let stream = {
        let req = edge.request(Method::GET, &host, "/sse");
        tokio::spawn(async move { req.send().await.unwrap().text().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = c
        .post(&format!("/v1/sandboxes/{id}/sleep"), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let body = tokio::time::timeout(Duration::from_secs(15), stream)
        .await
        .unwrap_or_else(|_| panic!("the stream hung on a frozen app\n{}", edge.log_text()))
        .unwrap();
    assert_eq!(body.matches("data: tick").count(), 3, "{body}");
    c.eventually("it to be awake again", Duration::from_secs(5), || async {
        c.status_of(&id).await == "running"
    })
    .await;
}

#[tokio::test]
async fn a_sandbox_claimed_from_the_warm_pool_is_routed_by_its_own_ports_and_visibility() {
    let (c, edge) = stack(&[("BERTH_WARM_POOL", "2")], &[]).await;
    c.eventually("the warm pool to fill", Duration::from_secs(60), || async {
        c.get("/v1/info").await.body["warm_pool"]["ready"] == 2
    })
    .await;
    let id = app_sandbox(&c, json!({})).await;
    // Its container was made for the pool: no ports nor visibility labelled.
    assert_eq!(
        common::control::inspect(&c.container(&id), "{{index .Config.Labels \"berth.pool\"}}"),
        "true"
    );
    let host = edge.preview_host(&id, 3000);
    until_served(&edge, &host).await;
    assert_eq!(
        edge.get_text(&host, "/").await,
        (200, format!("hello from {id}"))
    );
    assert_eq!(
        edge.get(&edge.preview_host(&id, 3001), "/").await.status(),
        StatusCode::NOT_FOUND,
        "a port it did not declare"
    );

    let private = app_sandbox(&c, json!({"public": false})).await;
    assert_eq!(
        common::control::inspect(
            &c.container(&private),
            "{{index .Config.Labels \"berth.pool\"}}"
        ),
        "true"
    );
    let host = edge.preview_host(&private, 3000);
    assert_eq!(
        edge.get(&host, "/").await.status(),
        StatusCode::UNAUTHORIZED,
        "private, though its labels cannot say so"
    );
}
