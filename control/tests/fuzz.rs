//! The API fuzzed against its own contract: schemathesis (from PyPI) reads
//! the live `/v1/openapi.json` of a real control with real Docker and sends
//! what the document allows, and what it does not. Pass: no 5xx, every
//! answer's status, type and body as documented (errors in the JSON error
//! shape with a listed code), SSE events as documented, and nothing
//! answers after a DELETE as if it were still there.
//!
//! The tests after it keep what the fuzzer found, one each.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{Control, TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Where `.ci/run` installs schemathesis (a venv of its own, pinned), or
/// `BERTH_SCHEMATHESIS`, or the one on PATH.
fn schemathesis() -> PathBuf {
    if let Some(path) = std::env::var_os("BERTH_SCHEMATHESIS") {
        return PathBuf::from(path);
    }
    let venv = PathBuf::from("/var/tmp/berth-ci-venv/bin/schemathesis");
    if venv.exists() {
        return venv;
    }
    let on_path = Command::new("schemathesis")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        on_path,
        "schemathesis is not installed: .ci/run installs it (python3 -m venv /var/tmp/berth-ci-venv && /var/tmp/berth-ci-venv/bin/pip install schemathesis==4.32.5), or set BERTH_SCHEMATHESIS"
    );
    PathBuf::from("schemathesis")
}

/// The checks that make up the contract. Left out: `positive_data_acceptance`
/// (a schema-valid image name still names no local image; an `until` must
/// be in the future) and `ensure_resource_availability` (it cannot know
/// that `POST …/purge` removes what a create made, and reports the 404
/// after it as a lost resource).
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance,use_after_free";

#[tokio::test]
async fn schemathesis_finds_nothing_against_a_real_control() {
    let c = Control::start(&[
        ("BERTH_API_TOKENS", &format!("fuzz:{TOKEN}")),
        // Short limits keep what the fuzzer may run short; they are in the
        // document, so it knows them.
        ("BERTH_EXEC_TIMEOUT", "5"),
        ("BERTH_DEFAULT_MEMORY", "64m"),
    ])
    .await;
    let report = c.data_dir.join("fuzz-report");
    // The seed that found the SSE schema mismatch and the null bodies.
    let seed = std::env::var("BERTH_FUZZ_SEED").unwrap_or_else(|_| "1".into());
    let out = Command::new(schemathesis())
        .current_dir(&c.data_dir)
        .args(["run", &format!("{}/v1/openapi.json", c.base)])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .args(["--checks", CHECKS])
        // The `sandboxed` aliases run the same handlers as /v1: fuzzing
        // them too would double the time and find nothing new.
        .args([
            "--exclude-path-regex",
            "^/(sandbox|sandboxes|v1/activity)(/|$)",
        ])
        .args(["--max-examples", "25", "--seed", &seed])
        .args(["--max-time", "240", "--request-timeout", "30"])
        // `/` answers its redirect; that answer is what is documented.
        .args(["--max-redirects", "0"])
        // The fleet stream never ends by itself (the dashboard test reads it in a browser).
        .args(["--exclude-operation-id", "fleet_events"])
        // `/mcp` speaks JSON-RPC, whose answers the MCP SDK shapes; the real
        // MCP clients drive it in tests/mcp.rs.
        .args(["--exclude-path", "/mcp"])
        .args(["--generation-database", "none", "--no-color"])
        .args(["--report", "junit", "--report-dir"])
        .arg(&report)
        .stdin(Stdio::null())
        .output()
        .expect("schemathesis runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(200)..].join("\n");
    assert!(
        out.status.success(),
        "schemathesis found failures (seed {seed}):\n{tail}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // It tested the API, not just a 404 page: most operations were reached.
    assert!(text.contains("Tested:"), "{tail}");
}

/// Found by the fuzzer: optional bodies were documented as required, and
/// `null` (which a client serialising "no options" sends) was refused.
#[tokio::test]
async fn optional_bodies_may_be_absent_or_null() {
    let c = Control::start(&[("BERTH_API_TOKENS", &format!("t:{TOKEN}"))]).await;
    let doc = c.anonymous(Method::GET, "/v1/openapi.json").await.body;
    for (path, method) in [
        ("/v1/sandboxes", "post"),
        ("/v1/sandboxes/{id}/keepalive", "post"),
        ("/v1/sandboxes/{id}/preview-token", "post"),
        ("/v1/edge/activity", "post"),
    ] {
        let body = &doc["paths"][path][method]["requestBody"];
        assert!(body.is_object(), "{path}: {body}");
        assert_ne!(body["required"], json!(true), "{path} {method}: {body}");
    }
    let made = c.post_raw("/v1/sandboxes", "null").await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    let id = made.body["id"].as_str().unwrap().to_string();
    let token = c
        .post_raw(&format!("/v1/sandboxes/{id}/preview-token"), "null")
        .await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.text);
    let kept = c
        .post_raw(&format!("/v1/sandboxes/{id}/keepalive"), "null")
        .await;
    assert!(kept.status.is_success(), "{}", kept.text);
    let seen = c.post_raw("/v1/edge/activity", " null ").await;
    assert_eq!(seen.status, StatusCode::NO_CONTENT, "{}", seen.text);
    // A required body is still required: null is `{}`, which lacks `cmd`.
    let exec = c
        .post_raw(&format!("/v1/sandboxes/{id}/exec"), "null")
        .await;
    assert_eq!(exec.status, StatusCode::BAD_REQUEST, "{}", exec.text);
    assert_eq!(exec.body["error"]["code"], "invalid_request");
}

/// Found by the fuzzer: the streamed exec's events were documented as a
/// plain string. Each event is now an object whose `data` has a schema,
/// and what the stream sends is exactly what the document names.
#[tokio::test]
async fn the_documented_stream_events_are_the_ones_sent() {
    let c = Control::start(&[("BERTH_API_TOKENS", &format!("t:{TOKEN}"))]).await;
    let doc = c.anonymous(Method::GET, "/v1/openapi.json").await.body;
    let events = |path: &str, method: &str| -> Vec<(String, String)> {
        doc["paths"][path][method]["responses"]["200"]["content"]["text/event-stream"]["schema"]
            ["oneOf"]
            .as_array()
            .unwrap_or_else(|| panic!("{path}: no events"))
            .iter()
            .map(|e| {
                let name = e["properties"]["event"]["const"].as_str().unwrap();
                let data = e["properties"]["data"]["contentSchema"]["$ref"]
                    .as_str()
                    .unwrap();
                let schema = data.rsplit('/').next().unwrap();
                assert!(
                    doc["components"]["schemas"][schema].is_object(),
                    "{schema} is not in the document"
                );
                (name.to_string(), schema.to_string())
            })
            .collect()
    };
    let exec = events("/v1/sandboxes/{id}/exec/stream", "post");
    let task = events("/v1/sandboxes/{id}/tasks/{task}/events", "get");
    assert!(task.iter().any(|(n, _)| n == "done"), "{task:?}");
    let made = c.post("/v1/sandboxes", json!({})).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    let id = made.body["id"].as_str().unwrap();
    let reply = c
        .post_raw(
            &format!("/v1/sandboxes/{id}/exec/stream"),
            r#"{"cmd": "echo out; echo err >&2"}"#,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let mut sent = Vec::new();
    for block in reply.text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let field = |name: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}:")))
                .map(|v| v.trim().to_string())
        };
        let (Some(name), Some(data)) = (field("event"), field("data")) else {
            continue;
        };
        let data: Value = serde_json::from_str(&data).unwrap();
        let schema = &exec
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("`{name}` is not a documented event"))
            .1;
        for required in doc["components"]["schemas"][schema]["required"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let key = required.as_str().unwrap();
            assert!(data.get(key).is_some(), "{name}: {data} lacks {key}");
        }
        sent.push(name);
    }
    // stdout and stderr are two streams: which one Docker hands over first
    // is not fixed, so only their presence is.
    assert!(sent.iter().any(|n| n == "stdout"), "{sent:?}");
    assert!(sent.iter().any(|n| n == "stderr"), "{sent:?}");
    assert_eq!(sent.last().map(String::as_str), Some("exit"), "{sent:?}");
}

/// Found by the fuzzer: limits this host's settings put on requests
/// (BERTH_EXEC_TIMEOUT, BERTH_TASK_TIMEOUT_MAX, env names, ports) were not
/// in the document, so schema-valid requests were refused. They are now,
/// with this host's values, and the API refuses exactly past them.
#[tokio::test]
async fn the_document_carries_this_hosts_limits() {
    let c = Control::start(&[
        ("BERTH_API_TOKENS", &format!("t:{TOKEN}")),
        ("BERTH_EXEC_TIMEOUT", "7"),
    ])
    .await;
    let doc = c.anonymous(Method::GET, "/v1/openapi.json").await.body;
    let schemas = &doc["components"]["schemas"];
    let timeout = &schemas["ExecBody"]["properties"]["timeout_s"];
    assert_eq!(
        (&timeout["minimum"], &timeout["maximum"]),
        (&json!(1), &json!(7))
    );
    let names = &schemas["ExecBody"]["properties"]["env"]["propertyNames"];
    assert_eq!(names["pattern"], "^[A-Za-z_][A-Za-z0-9_]*$", "{names}");
    let ports = &schemas["CreateRequest"]["properties"]["ports"];
    assert_eq!(ports["items"]["maximum"], 65535, "{ports}");

    let made = c.post("/v1/sandboxes", json!({})).await;
    let id = made.body["id"].as_str().unwrap();
    let exec = |t: u64| json!({"cmd": "true", "timeout_s": t});
    let ok = c.post(&format!("/v1/sandboxes/{id}/exec"), exec(7)).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    let over = c.post(&format!("/v1/sandboxes/{id}/exec"), exec(8)).await;
    assert_eq!(over.status, StatusCode::BAD_REQUEST, "{}", over.text);
    let home = c
        .post(
            &format!("/v1/sandboxes/{id}/exec"),
            json!({"cmd": "true", "env": {"BERTH_X": "1"}}),
        )
        .await;
    assert_eq!(home.status, StatusCode::BAD_REQUEST, "{}", home.text);
}
