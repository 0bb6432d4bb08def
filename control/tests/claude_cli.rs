//! The real Claude Code CLI (from the pinned PyPI wheel, in berth's sandbox
//! image) running berth tasks in a real sandbox, against a scripted
//! Messages API (tests/fixtures/messages_mock.py) that runs inside the same
//! sandbox: no network leaves it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Control, SANDBOX_IMAGE, SseEvent};
use reqwest::StatusCode;
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(180);
const MOCK_PORT: u16 = 18080;

/// What the mock answers, rule by rule (first match wins).
fn script() -> Value {
    json!([
        {"when": "Say SUBDONE", "reply": [{"type": "text", "text": "SUBDONE: the sub-agent looked."}],
         "usage": {"input_tokens": 50, "output_tokens": 5}},
        {"when": "SUBDONE", "reply": [{"type": "text", "text": "Main: the sub-agent finished."}]},
        {"when": "Async agent launched", "reply": [{"type": "text", "text": "Waiting for the sub-agent."}]},
        {"when": "subagent please", "times": 1, "reply": [{"type": "tool_use", "name": "Task",
         "input": {"description": "look around", "prompt": "Say SUBDONE", "subagent_type": "general-purpose"}}]},
        {"when": "now make it blue", "seen": "build the page",
         "reply": [{"type": "text", "text": "Same session: made it blue."}]},
        {"when": "now make it blue", "reply": [{"type": "text", "text": "NOT RESUMED"}]},
        {"when": "bad request please", "status": 400,
         "error": {"type": "invalid_request_error", "message": "the mock refuses this request"}},
        {"when": "wrong key please", "status": 401,
         "error": {"type": "authentication_error", "message": "invalid x-api-key"}},
        {"when": "hang please", "delay_s": 120, "reply": [{"type": "text", "text": "too late"}]},
        {"when": "tool_result", "seen": "build the page", "usage": {"input_tokens": 300, "output_tokens": 15},
         "reply": [{"type": "text", "text": "Built index.html."}]},
        {"when": "build the page", "times": 1, "reply": [
            {"type": "text", "text": "I will build the page."},
            {"type": "tool_use", "name": "Write", "input": {
                "file_path": "/home/user/workspace/app/index.html",
                "content": "<h1>built by the real claude</h1>\n"}},
            {"type": "tool_use", "name": "Bash", "input": {"command": "cat index.html", "description": "show it"}}
        ]}
    ])
}

/// The provider settings a task gets: the mock, and a key unless `key` is
/// false.
fn env(key: bool) -> Value {
    let mut env = json!({"ANTHROPIC_BASE_URL": format!("http://127.0.0.1:{MOCK_PORT}")});
    if key {
        env["ANTHROPIC_API_KEY"] = json!("sk-ant-test-not-a-real-key");
    }
    env
}

async fn start_task(c: &Control, id: &str, body: Value) -> Value {
    let r = c.post(&format!("/v1/sandboxes/{id}/tasks"), body).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    r.body
}

async fn run_task(c: &Control, id: &str, body: Value) -> (Vec<SseEvent>, Value) {
    let task = start_task(c, id, body).await;
    let events = c
        .sse(task["events_url"].as_str().unwrap(), None, None, LONG)
        .await;
    let done = events.last().unwrap().data.clone();
    assert_eq!(events.last().unwrap().event, "done", "{events:?}");
    let record = c
        .get(&format!(
            "/v1/sandboxes/{id}/tasks/{}",
            task["id"].as_str().unwrap()
        ))
        .await
        .body;
    assert_eq!(record["status"], done["status"]);
    (events, record)
}

fn of_type<'a>(events: &'a [SseEvent], kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e.event == kind)
        .map(|e| &e.data)
        .collect()
}

/// Tokens the mock answered so far, from its request log.
async fn mock_usage(c: &Control, id: &str) -> (u64, u64) {
    let log = c.sh(id, "cat ~/workspace/mock/requests.log").await;
    log.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .fold((0, 0), |(i, o), r| {
            (
                i + r["usage"]["input_tokens"].as_u64().unwrap_or(0),
                o + r["usage"]["output_tokens"].as_u64().unwrap_or(0),
            )
        })
}

#[tokio::test]
async fn the_real_claude_cli_builds_continues_fails_and_is_cancelled() {
    common::ensure_sandbox_image();
    let c = Control::start(&[("BERTH_IMAGE", SANDBOX_IMAGE)]).await;

    // The image has the real CLI, and says which version.
    let info = c.get("/v1/info").await.body;
    let agents = &info["default_image_status"]["agent_versions"];
    assert!(
        agents
            .as_array()
            .unwrap()
            .contains(&json!({"name": "claude", "version": "2.1.332"})),
        "{info}"
    );

    let id = c.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // An agent the image lacks is refused at once.
    let has_opencode = info["default_image_status"]["agents"]
        .as_array()
        .unwrap()
        .contains(&json!("opencode"));
    if !has_opencode {
        let r = c
            .post(
                &format!("/v1/sandboxes/{id}/tasks"),
                json!({"prompt": "hi", "agent": "opencode"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
        assert_eq!(r.code(), "agent_missing");
    }
    // `continue` with nothing to continue is refused at once too.
    let r = c
        .post(
            &format!("/v1/sandboxes/{id}/tasks"),
            json!({"prompt": "hi", "agent": "claude", "continue": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");

    // The mock API, inside the sandbox, on loopback.
    for (path, content) in [
        (
            "mock/messages_mock.py",
            include_str!("fixtures/messages_mock.py").to_string(),
        ),
        ("mock/script.json", script().to_string()),
    ] {
        let r = c
            .put(
                &format!("/v1/sandboxes/{id}/files"),
                json!({"path": path, "content": content}),
            )
            .await;
        assert!(r.status.is_success(), "{r:?}");
    }
    c.sh(
        &id,
        &format!(
            "cd ~/workspace/mock && nohup python3 messages_mock.py script.json {MOCK_PORT} requests.log \
             > mock.out 2>&1 &"
        ),
    )
    .await;
    c.eventually("the mock to listen", Duration::from_secs(20), || async {
        c.sh(
            &id,
            &format!(
                "curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{MOCK_PORT}/; true"
            ),
        )
        .await
            == "200"
    })
    .await;

    // 1. A tool-using run: text, Write, Bash.
    let (events, build) = run_task(
        &c,
        &id,
        json!({"prompt": "build the page", "agent": "claude", "env": env(true)}),
    )
    .await;
    assert_eq!(build["status"], "succeeded", "{build} {events:?}");
    let calls: Vec<&str> = of_type(&events, "tool_call")
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(calls, ["Write", "Bash"], "{events:?}");
    let results = of_type(&events, "tool_result");
    assert!(
        results
            .iter()
            .any(|r| r["output"] == "<h1>built by the real claude</h1>"),
        "{results:?}"
    );
    let messages: Vec<&str> = of_type(&events, "message")
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(messages, ["I will build the page.", "Built index.html."]);
    let result = &build["result"];
    assert_eq!(result["message"], "Built index.html.");
    assert_eq!(
        result["files_changed"],
        json!([{"path": "index.html", "change": "added"}])
    );
    assert_eq!(build["agent_version"], "2.1.332");
    assert!(build["agent_model"].as_str().is_some(), "{build}");
    let session = build["session_id"].as_str().unwrap().to_string();
    // Usage: what the API answered, summed (the CLI's modelUsage).
    let (input, output) = mock_usage(&c, &id).await;
    assert_eq!(result["usage"]["input_tokens"], input, "{result}");
    assert_eq!(result["usage"]["output_tokens"], output, "{result}");
    assert!(result["usage"]["cost_usd"].as_f64().unwrap() > 0.0);
    assert_eq!(build["cost_usd"], result["usage"]["cost_usd"]);

    // 2. "Now make it blue": the same session, resumed.
    let (_, more) = run_task(
        &c,
        &id,
        json!({"prompt": "now make it blue", "agent": "claude", "continue": true, "env": env(true)}),
    )
    .await;
    assert_eq!(more["status"], "succeeded", "{more}");
    assert_eq!(more["continue"], true);
    assert_eq!(more["result"]["message"], "Same session: made it blue.");
    assert_eq!(more["session_id"], session.as_str());
    // Only this run's tokens, not the session's.
    assert_eq!(more["result"]["usage"]["input_tokens"], 100, "{more}");

    // 3. A sub-agent: its events carry the tool call that started it.
    let (events, sub) = run_task(
        &c,
        &id,
        json!({"prompt": "subagent please", "agent": "claude", "env": env(true)}),
    )
    .await;
    assert_eq!(sub["status"], "succeeded", "{sub}");
    let task_call = of_type(&events, "tool_call")
        .into_iter()
        .find(|e| e["name"] == "Task")
        .unwrap()["id"]
        .clone();
    let nested: Vec<&SseEvent> = events
        .iter()
        .filter(|e| e.data["parent_id"] == task_call)
        .collect();
    assert!(
        nested
            .iter()
            .any(|e| e.event == "message" && e.data["text"] == "SUBDONE: the sub-agent looked."),
        "{events:?}"
    );
    assert_eq!(sub["result"]["message"], "Main: the sub-agent finished.");

    // 4. The API refuses: one error event, with its kind.
    let (events, refused) = run_task(
        &c,
        &id,
        json!({"prompt": "bad request please", "agent": "claude", "env": env(true)}),
    )
    .await;
    assert_eq!(refused["status"], "failed");
    assert_eq!(refused["result"]["failure_reason"], "agent_error");
    let errors = of_type(&events, "error");
    assert_eq!(errors.len(), 1, "{events:?}");
    assert!(errors[0]["kind"].as_str().is_some(), "{errors:?}");
    assert_eq!(refused["result"]["error"], errors[0]["message"]);
    assert!(of_type(&events, "message").is_empty(), "{events:?}");

    // 5. No key at all (and no agent named: the image's own is chosen).
    let (events, nokey) = run_task(&c, &id, json!({"prompt": "build it", "env": env(false)})).await;
    if !has_opencode {
        assert_eq!(nokey["agent"], "claude", "{nokey}");
    }
    assert_eq!(nokey["status"], "failed");
    assert_eq!(nokey["result"]["failure_reason"], "agent_auth", "{nokey}");
    assert!(
        nokey["result"]["error"]
            .as_str()
            .unwrap()
            .contains("ANTHROPIC_API_KEY")
    );
    assert_eq!(of_type(&events, "error").len(), 1, "{events:?}");

    // A key the provider refuses: failed at the CLI's first retry, not
    // after its ten.
    let (events, refused_key) = run_task(
        &c,
        &id,
        json!({"prompt": "wrong key please", "agent": "claude", "env": env(true)}),
    )
    .await;
    assert_eq!(
        refused_key["result"]["failure_reason"], "agent_auth",
        "{refused_key}"
    );
    assert_eq!(of_type(&events, "error").len(), 1, "{events:?}");
    let tries: u32 = c
        .sh(
            &id,
            "grep -c 'wrong key please' ~/workspace/mock/requests.log; true",
        )
        .await
        .trim()
        .parse()
        .unwrap();
    assert!(tries < 4, "the CLI went on retrying: {tries} requests");

    // 6. Cancelled while the API is slow: nothing of the agent is left.
    let task = start_task(
        &c,
        &id,
        json!({"prompt": "hang please", "agent": "claude", "env": env(true)}),
    )
    .await;
    let task_id = task["id"].as_str().unwrap();
    c.eventually(
        "the agent to wait on the API",
        Duration::from_secs(60),
        || async {
            c.sh(
                &id,
                "grep -c 'hang please' ~/workspace/mock/requests.log; true",
            )
            .await
            .trim()
                != "0"
        },
    )
    .await;
    let r = c
        .post(
            &format!("/v1/sandboxes/{id}/tasks/{task_id}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    c.eventually("the task to end", Duration::from_secs(30), || async {
        c.get(&format!("/v1/sandboxes/{id}/tasks/{task_id}"))
            .await
            .body["status"]
            == "cancelled"
    })
    .await;
    assert_eq!(
        c.sh(&id, "ps -eo comm= | grep -c '^claude'; true")
            .await
            .trim(),
        "0"
    );

    // 7. The first task's change is undone.
    let r = c
        .post(
            &format!(
                "/v1/sandboxes/{id}/tasks/{}/revert",
                build["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let gone = c
        .get(&format!("/v1/sandboxes/{id}/files?path=app/index.html"))
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}
