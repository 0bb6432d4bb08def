//! The HTTP contract: routes, JSON errors, validation, auth.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Control, TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn create_get_list_and_delete_a_sandbox() {
    let c = Control::start(&[]).await;
    let s = c
        .create(
            json!({"ports": [3000, 8080], "env": {"GREETING": "hi"}, "metadata": {"user": "u1"}}),
        )
        .await;
    let id = s["id"].as_str().unwrap();
    assert_eq!(id.len(), 26, "a ULID: {id}");
    assert_eq!(id, id.to_ascii_lowercase());
    assert_eq!(s["ports"], json!([3000, 8080]));
    assert_eq!(
        s["preview_urls"]["3000"],
        format!("http://s-{id}-3000.preview.test.localhost")
    );
    assert_eq!(s["env_keys"], json!(["GREETING"]));
    assert!(s.get("env").is_none(), "env values are never returned");
    assert_eq!(s["metadata"]["user"], "u1");
    assert_eq!(s["image"], common::TEST_IMAGE);

    let got = c.get(&format!("/sandbox/{id}")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["container"]["running"], true);
    let v1 = c.get(&format!("/v1/sandboxes/{id}")).await;
    assert_eq!(v1.body["id"], id);

    let list = c.get("/sandboxes").await;
    assert_eq!(list.body["sandboxes"].as_array().unwrap().len(), 1);

    assert_eq!(c.sh(id, "echo $GREETING").await, "hi\n");

    let del = c.delete(&format!("/sandbox/{id}")).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert_eq!(
        c.get(&format!("/sandbox/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert!(c.containers().is_empty(), "container removed");
}

#[tokio::test]
async fn bad_input_gets_clear_json_errors() {
    let c = Control::start(&[]).await;
    let cases: Vec<(&str, &str, StatusCode, &str)> = vec![
        (
            "/sandbox",
            "{not json",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/sandbox",
            r#"{"ports":[0]}"#,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/sandbox",
            r#"{"ports":[70000]}"#,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/sandbox",
            r#"{"ports":"3000"}"#,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/sandbox",
            r#"{"id":"../etc"}"#,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/sandbox",
            r#"{"id":"a_b"}"#,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/sandbox",
            r#"{"memory":"lots"}"#,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/sandbox",
            r#"{"memory":"1t"}"#,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/sandbox",
            r#"{"env":{"A B":"x"}}"#,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/sandbox/nope/exec",
            r#"{"cmd":["true"]}"#,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "/v1/sandboxes/nope/stop",
            "",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (path, body, status, code) in cases {
        let r = c.post_raw(path, body).await;
        assert_eq!(r.status, status, "{path} {body}: {r:?}");
        assert_eq!(r.code(), code, "{path} {body}: {r:?}");
        assert!(
            r.body["error"]["message"].as_str().unwrap().len() > 5,
            "{r:?}"
        );
    }
    let r = c.get("/sandbox/does-not-exist").await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    let r = c.get("/no/such/route").await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    let r = c.send_method(Method::PATCH, "/sandboxes").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );

    // Nothing was left half-made by any of it.
    assert!(
        c.get("/sandboxes").await.body["sandboxes"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(c.containers().is_empty());
}

#[tokio::test]
async fn duplicate_ids_conflict_and_given_ids_are_lower_cased() {
    let c = Control::start(&[]).await;
    let id = format!("my-App-{}", std::process::id());
    let s = c.create(json!({"id": id, "ports": [3000]})).await;
    let lower = id.to_ascii_lowercase();
    assert_eq!(s["id"], lower);
    assert_eq!(
        s["preview_urls"]["3000"],
        format!("http://s-{lower}-3000.preview.test.localhost")
    );
    let again = c.post("/sandbox", json!({"id": lower})).await;
    assert_eq!(
        (again.status, again.code()),
        (StatusCode::CONFLICT, "conflict")
    );
    // Lookups are case-insensitive, like preview hosts.
    assert_eq!(
        c.get(&format!("/sandbox/{id}")).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_missing_image_is_named_with_how_to_get_it() {
    let c = Control::start(&[]).await;
    let r = c
        .post("/sandbox", json!({"image": "berth-no-such-image:nope"}))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "image_not_found")
    );
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("berth-no-such-image:nope"), "{message}");
    assert!(message.contains("docker build"), "{message}");
    assert!(
        c.get("/sandboxes").await.body["sandboxes"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn health_and_readiness() {
    let c = Control::start(&[]).await;
    let h = c.anonymous(Method::GET, "/healthz").await;
    assert_eq!((h.status, h.text.as_str()), (StatusCode::OK, "ok"));
    let r = c.anonymous(Method::GET, "/readyz").await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
}

#[tokio::test]
async fn metrics_count_what_happened() {
    let c = Control::start(&[]).await;
    let id = c.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    c.sh(&id, "true").await;
    c.post(&format!("/v1/sandboxes/{id}/stop"), json!({})).await;
    c.get("/sandbox/nope").await;
    let r = c.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "{r:?}"
    );
    for line in [
        "berth_control_sandboxes{status=\"stopped\"} 1",
        "berth_control_sandboxes{status=\"running\"} 0",
        "berth_control_container_starts_total{result=\"ok\"} 1",
        "berth_control_container_start_seconds_count 1",
        "berth_control_sandbox_stops_total{reason=\"api\"} 1",
        "berth_control_sandbox_stops_total{reason=\"idle\"} 0",
        "berth_control_http_requests_total{status=\"201\"} 1",
        "berth_control_http_requests_total{status=\"404\"} 1",
    ] {
        assert!(r.text.contains(line), "missing `{line}` in:\n{}", r.text);
    }
    // One exec, run by the agent or (before it listens) by Docker.
    let execs: u64 = ["agent", "docker"]
        .iter()
        .map(|via| {
            let series = format!("berth_control_exec_seconds_count{{via=\"{via}\"}} ");
            r.text
                .lines()
                .find_map(|l| l.strip_prefix(series.as_str()))
                .unwrap_or_else(|| panic!("missing `{series}` in:\n{}", r.text))
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(execs, 1, "{}", r.text);
}

#[tokio::test]
async fn tokens_guard_every_route_but_health() {
    let c = Control::start(&[("BERTH_API_TOKENS", &format!("tests:{TOKEN}"))]).await;
    for (method, path) in [
        (Method::GET, "/sandboxes"),
        (Method::POST, "/sandbox"),
        (Method::GET, "/v1/info"),
        (Method::GET, "/metrics"),
        (Method::POST, "/sandbox/x/exec"),
        (Method::GET, "/v1/sandboxes/x/files"),
    ] {
        let r = c.anonymous(method.clone(), path).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            "{path}"
        );
        assert_eq!(r.headers["www-authenticate"], "Bearer");
    }
    let wrong = c
        .send(
            reqwest::Client::new()
                .get(format!("{}/sandboxes", c.base))
                .bearer_auth("test-secret-0123456789abcdeX"),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        c.anonymous(Method::GET, "/healthz").await.status,
        StatusCode::OK
    );
    assert_eq!(
        c.anonymous(Method::GET, "/readyz").await.status,
        StatusCode::OK
    );
    let ok = c.get("/sandboxes").await;
    assert_eq!(ok.status, StatusCode::OK);
    assert!(
        !c.log_text().contains(TOKEN),
        "the secret never reaches the log"
    );
}

#[test]
fn an_open_non_loopback_bind_without_tokens_is_refused() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth-control"))
        .env_clear()
        .env("BERTH_API_BIND", format!("0.0.0.0:{}", common::free_port()))
        .env(
            "BERTH_DATA_DIR",
            std::env::temp_dir().join("berth-never-used"),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("BERTH_API_TOKENS"), "{stderr}");
    assert!(!std::env::temp_dir().join("berth-never-used").exists());
}

#[test]
fn help_lists_every_setting() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth-control"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for var in [
        "BERTH_DATA_DIR",
        "BERTH_API_BIND",
        "BERTH_API_TOKENS",
        "BERTH_IMAGE",
        "BERTH_NETWORK",
        "BERTH_PREVIEW_DOMAIN",
        "BERTH_IDLE_TIMEOUT",
    ] {
        assert!(help.contains(var), "{var} missing from --help");
    }
    // Compose passes control only what it names: a setting missing there
    // (or from .env.example) silently keeps its default in a real install.
    let root = common::workspace_root();
    let compose = std::fs::read_to_string(root.join("docker-compose.yml")).unwrap();
    let example = std::fs::read_to_string(root.join(".env.example")).unwrap();
    // Test hooks and values Compose fixes for itself.
    let own = ["BERTH_HOST_ETC", "BERTH_MEMINFO_PATH", "BERTH_API_BIND"];
    let settings: std::collections::BTreeSet<&str> = help
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("BERTH_") && w.len() > "BERTH_".len())
        .collect();
    assert!(settings.len() > 20, "{settings:?}");
    for var in settings.into_iter().filter(|v| !own.contains(v)) {
        assert!(
            compose.contains(&format!("- {var}\n")) || compose.contains(&format!("- {var}=")),
            "{var} is not passed to control by docker-compose.yml"
        );
        assert!(example.contains(var), "{var} is missing from .env.example");
    }
}

#[tokio::test]
async fn hostile_input_gets_a_clear_400() {
    let c = Control::start(&[]).await;
    for image in [
        "alpine\u{0}x",
        "../containers/x",
        "img:latest/json?",
        "Alpine",
        "",
    ] {
        let r = c.post("/sandbox", json!({"image": image})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{image:?}: {r:?}");
        assert_eq!(r.code(), "invalid_image", "{image:?}");
    }
    let id = c.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();

    for until in [-1, 0, 1_000] {
        let r = c
            .post(&format!("/sandbox/{id}/keepalive"), json!({"until": until}))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{until}: {r:?}");
    }
    let r = c
        .post(
            &format!("/sandbox/{id}/exec"),
            json!({"cmd": ["pwd"], "cwd": "app\u{0}x"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(r.body["error"]["message"].as_str().unwrap().contains("cwd"));
    let r = c
        .post(
            &format!("/v1/sandboxes/{id}/tasks"),
            json!({"prompt": "make\u{0}an app", "agent": "opencode"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(r.body["error"]["message"].as_str().unwrap().contains("NUL"));
}
