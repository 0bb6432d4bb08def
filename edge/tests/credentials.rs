//! Preview credentials and routing boundaries through the real berth-edge,
//! in front of the real berth-control and Docker: tokens die with their
//! sandbox and on revoke, berth's credentials never reach an app, only the
//! canonical host spelling routes, another install's sandboxes are not
//! routed, and scans of unknown ids cannot load control.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Control, Edge, app_sandbox, stack, until_served};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// An id of its own per test and process (container names are global).
fn unique_id(stem: &str) -> String {
    format!("{stem}{}", std::process::id())
}

async fn mint(c: &Control, id: &str) -> String {
    let minted = c
        .post(
            &format!("/v1/sandboxes/{id}/preview-token"),
            json!({"ttl_s": 30 * 86_400}),
        )
        .await;
    assert_eq!(minted.status, StatusCode::OK, "{minted:?}");
    minted.body["token"].as_str().unwrap().to_string()
}

/// Exchanges a token for the preview cookie (`berth_preview=…`).
async fn cookie_for(edge: &Edge, host: &str, token: &str) -> String {
    let r = edge.get(host, &format!("/?berth_token={token}")).await;
    assert_eq!(r.status(), StatusCode::FOUND, "{}", edge.log_text());
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    set.split(';').next().unwrap().to_string()
}

async fn with_cookie(edge: &Edge, host: &str, path: &str, cookie: &str) -> reqwest::Response {
    edge.request(Method::GET, host, path)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

/// Waits for `check` to hold, for up to `within`.
async fn within<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_preview_token_dies_with_its_sandbox_and_on_revoke() {
    let (c, edge) = stack(&[], &[]).await;
    let id = unique_id("tok");
    app_sandbox(&c, json!({"id": id, "public": false})).await;
    let host = edge.preview_host(&id, 3000);
    let token = mint(&c, &id).await;
    let cookie = cookie_for(&edge, &host, &token).await;
    within(
        "the app to serve the cookie holder",
        Duration::from_secs(10),
        || async { with_cookie(&edge, &host, "/", &cookie).await.status() == StatusCode::OK },
    )
    .await;

    // Deleted and made again under the same id: a new sandbox, which the
    // old sandbox's 30-day token and cookie do not open.
    assert_eq!(
        c.delete(&format!("/sandbox/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
    app_sandbox(&c, json!({"id": id, "public": false})).await;
    let fresh = mint(&c, &id).await;
    let fresh_cookie = cookie_for(&edge, &host, &fresh).await;
    within(
        "the re-created app to serve",
        Duration::from_secs(10),
        || async { with_cookie(&edge, &host, "/", &fresh_cookie).await.status() == StatusCode::OK },
    )
    .await;
    assert_eq!(
        edge.get(&host, &format!("/?berth_token={token}"))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        with_cookie(&edge, &host, "/", &cookie).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Revoked: every token and cookie minted so far is refused within
    // seconds; a token minted afterwards opens it again.
    let revoked = c
        .post(
            &format!("/v1/sandboxes/{id}/preview-token/revoke"),
            json!({}),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{revoked:?}");
    within(
        "the revoked cookie to be refused",
        Duration::from_secs(5),
        || async {
            with_cookie(&edge, &host, "/", &fresh_cookie).await.status() == StatusCode::UNAUTHORIZED
        },
    )
    .await;
    assert_eq!(
        edge.get(&host, &format!("/?berth_token={fresh}"))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let after = mint(&c, &id).await;
    let after_cookie = cookie_for(&edge, &host, &after).await;
    assert_eq!(
        with_cookie(&edge, &host, "/", &after_cookie).await.status(),
        StatusCode::OK
    );
    let unknown = c
        .post(
            "/v1/sandboxes/no-such-sandbox/preview-token/revoke",
            json!({}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_junk_cookie_beside_a_valid_one_does_not_lock_the_user_out() {
    let (c, edge) = stack(&[], &[]).await;
    let id = app_sandbox(&c, json!({"public": false})).await;
    let host = edge.preview_host(&id, 3000);
    let token = mint(&c, &id).await;
    let valid = cookie_for(&edge, &host, &token).await;
    // A sibling preview app may set any cookie on the shared parent domain.
    let jar = format!("berth_preview=junk; theme=dark; {valid}; berth_preview=x.y");
    let mut seen = Value::Null;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let r = with_cookie(&edge, &host, "/echo", &jar).await;
        if r.status() == StatusCode::OK {
            seen = r.json().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        seen["cookie"], "theme=dark",
        "berth's cookies reach the app: {seen}"
    );
    // Junk alone is still refused.
    assert_eq!(
        with_cookie(&edge, &host, "/", "berth_preview=junk; berth_preview=x.y")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_public_app_never_sees_berth_credentials() {
    let (c, edge) = stack(&[], &[]).await;
    let public = app_sandbox(&c, json!({})).await;
    let private = app_sandbox(&c, json!({"public": false})).await;
    let host = edge.preview_host(&public, 3000);
    until_served(&edge, &host).await;
    // A user's token and cookie for a private sandbox, sent (as browsers do
    // on a shared parent domain) to a public one.
    let token = mint(&c, &private).await;
    let r = edge
        .request(
            Method::GET,
            &host,
            &format!("/echo?a=1&berth_token={token}&b=2"),
        )
        .header("cookie", format!("berth_preview={token}; theme=dark"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let seen: Value = r.json().await.unwrap();
    assert_eq!(seen["path"], "/echo?a=1&b=2", "{seen}");
    assert_eq!(seen["cookie"], "theme=dark", "{seen}");
    let only = edge
        .request(Method::GET, &host, &format!("/echo?berth_token={token}"))
        .header("cookie", format!("berth_preview={token}"))
        .send()
        .await
        .unwrap();
    let seen: Value = only.json().await.unwrap();
    assert_eq!(seen["path"], "/echo", "{seen}");
    assert_eq!(seen["cookie"], Value::Null, "{seen}");
}

#[tokio::test]
async fn only_the_canonical_port_spelling_routes() {
    let (c, edge) = stack(&[], &[]).await;
    let id = app_sandbox(&c, json!({})).await;
    until_served(&edge, &edge.preview_host(&id, 3000)).await;
    for port in ["03000", "+3000", "003000", "3000.0", " 3000"] {
        let host = format!("s-{id}-{port}.preview.test.localhost");
        let (status, _) = edge.get_text(&host, "/").await;
        assert_eq!(status, 404, "{host}");
    }
}

#[tokio::test]
async fn another_installs_sandboxes_are_not_routed() {
    let (c, edge) = stack(&[], &[]).await;
    // A second install on the same Docker, with a sandbox serving the same
    // port, and one of ours.
    let (other, other_edge) = stack(&[], &[]).await;
    let theirs = app_sandbox(&other, json!({})).await;
    until_served(&other_edge, &other_edge.preview_host(&theirs, 3000)).await;
    let ours = app_sandbox(&c, json!({})).await;
    until_served(&edge, &edge.preview_host(&ours, 3000)).await;

    let (status, body) = edge.get_text(&edge.preview_host(&theirs, 3000), "/").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = other_edge
        .get_text(&other_edge.preview_host(&ours, 3000), "/")
        .await;
    assert_eq!(status, 404, "{body}");
}

/// How many times the edge asked control about a sandbox it did not know.
async fn control_lookups(edge: &Edge) -> f64 {
    let mut total = 0.0;
    for result in ["unknown", "found", "error"] {
        total += edge
            .metric(&format!("berth_edge_lookups_total{{result=\"{result}\"}}"))
            .await;
    }
    total
}

#[tokio::test]
async fn a_scan_of_unknown_ids_asks_control_a_bounded_number_of_times() {
    let (c, edge) = stack(&[], &[]).await;
    let id = app_sandbox(&c, json!({})).await;
    until_served(&edge, &edge.preview_host(&id, 3000)).await;
    let before = control_lookups(&edge).await;
    let started = Instant::now();
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..200 {
        let host = format!(
            "s-scan{i:04}x{}-3000.preview.test.localhost",
            std::process::id()
        );
        let (status, _) = edge.get_text(&host, "/").await;
        *statuses.entry(status).or_insert(0) += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let calls = control_lookups(&edge).await - before;
    // The bucket: a burst of 40, then 20 a second.
    let bound = 40.0 + 20.0 * elapsed.ceil();
    assert!(
        calls <= bound,
        "{calls} control look-ups for 200 unknown ids in {elapsed:.1}s"
    );
    assert!(
        calls < 200.0,
        "every unknown id was looked up: {statuses:?}"
    );
    assert!(
        statuses.keys().all(|s| *s == 404 || *s == 503),
        "{statuses:?}"
    );
    // The same unknown id again is answered from the negative cache.
    let host = format!(
        "s-scan0000x{}-3000.preview.test.localhost",
        std::process::id()
    );
    let again = edge.get_text(&host, "/").await.0;
    assert!(again == 404 || again == 503);
    // A real sandbox is still served meanwhile.
    let (status, _) = edge.get_text(&edge.preview_host(&id, 3000), "/").await;
    assert_eq!(status, 200);
}
