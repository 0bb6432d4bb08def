//! Coding-agent tasks against the real Docker daemon, with fake `claude` and
//! `opencode` CLIs (tests/fixtures) that print the real output formats and
//! really change the workspace.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{AGENT_IMAGE, Control, SseEvent};
use reqwest::StatusCode;
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(90);

async fn control() -> Control {
    common::ensure_agent_image();
    Control::start(&[("BERTH_IMAGE", AGENT_IMAGE)]).await
}

async fn sandbox(c: &Control) -> String {
    c.create(json!({"env": {"FAKE_KEY": "from-sandbox"}})).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn start_task(c: &Control, id: &str, body: Value) -> Value {
    let r = c.post(&format!("/v1/sandboxes/{id}/tasks"), body).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    r.body
}

async fn follow(c: &Control, task: &Value) -> Vec<SseEvent> {
    c.sse(task["events_url"].as_str().unwrap(), None, None, LONG)
        .await
}

fn kinds(events: &[SseEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event.as_str()).collect()
}

fn assert_increasing(events: &[SseEvent]) {
    for pair in events.windows(2) {
        assert_eq!(
            pair[1].id,
            pair[0].id + 1,
            "ids must increase by one: {events:?}"
        );
    }
}

#[tokio::test]
async fn a_claude_task_streams_text_tool_calls_and_the_result() {
    let c = control().await;
    // Control can tell this is berth's sandbox image (built from agent-image/).
    assert_eq!(
        c.get("/v1/info").await.body["default_image_status"]["berth"],
        "sandbox"
    );
    let id = sandbox(&c).await;
    let task = start_task(
        &c,
        &id,
        json!({"prompt": "make a landing page", "agent": "claude", "model": "opus"}),
    )
    .await;
    assert_eq!(task["status"], "running");
    assert_eq!(task["agent"], "claude");
    let task_id = task["id"].as_str().unwrap();
    assert_eq!(
        task["events_url"],
        format!("/v1/sandboxes/{id}/tasks/{task_id}/events")
    );

    let events = follow(&c, &task).await;
    assert_eq!(events[0].id, 1);
    assert_increasing(&events);
    let k = kinds(&events);
    assert_eq!(k[0], "status");
    assert_eq!(events[0].data["status"], "queued");
    assert_eq!(*k.last().unwrap(), "done", "{k:?}");
    for kind in ["message", "tool_call", "tool_result", "log"] {
        assert!(k.contains(&kind), "no {kind} event: {k:?}");
    }
    let first_message = events.iter().find(|e| e.event == "message").unwrap();
    assert_eq!(
        first_message.data["text"],
        "I will create index.html (key: from-sandbox)."
    );
    let call = events.iter().find(|e| e.event == "tool_call").unwrap();
    assert_eq!(call.data["name"], "Write");
    assert_eq!(call.data["id"], "toolu_01");
    assert!(
        call.data["input"]["file_path"]
            .as_str()
            .unwrap()
            .ends_with("/index.html")
    );
    let logs: Vec<&Value> = events
        .iter()
        .filter(|e| e.event == "log")
        .map(|e| &e.data)
        .collect();
    assert!(
        logs.iter()
            .any(|l| l["line"] == "this line is not JSON" && l["stream"] == "stdout"),
        "{logs:?}"
    );
    assert!(logs.iter().any(|l| l["stream"] == "stderr"), "{logs:?}");

    let done = &events.last().unwrap().data;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["exit_code"], 0);
    let result = &done["result"];
    assert_eq!(result["message"], "Created index.html with a heading.");
    assert_eq!(
        result["files_changed"],
        json!([{"path": "index.html", "change": "added"}])
    );
    assert_eq!(result["checkpoint"].as_str().unwrap().len(), 40);
    assert_eq!(result["usage"]["input_tokens"], 1200);
    assert_eq!(result["usage"]["cost_usd"], 0.0421);

    // The record agrees with the stream, and the file is really there.
    let got = c
        .get(&format!("/v1/sandboxes/{id}/tasks/{task_id}"))
        .await
        .body;
    assert_eq!(got["status"], "succeeded");
    assert_eq!(got["result"], *result);
    assert_eq!(got["cost_usd"], 0.0421);
    assert!(got["finished_at"].as_str().is_some());
    let file = c
        .get(&format!("/v1/sandboxes/{id}/files?path=app/index.html"))
        .await;
    assert_eq!(file.body["content"], "<h1>built by claude</h1>\n");
}

#[tokio::test]
async fn an_opencode_task_with_a_check_and_a_revert() {
    let c = control().await;
    let id = sandbox(&c).await;
    c.put(
        &format!("/v1/sandboxes/{id}/files"),
        json!({"path": "app/README.md", "content": "before\n"}),
    )
    .await;
    let task = start_task(
        &c,
        &id,
        json!({"prompt": "write app.js", "agent": "opencode", "check": "test -f app.js && echo checked", "env": {"X": "1"}}),
    )
    .await;
    let events = follow(&c, &task).await;
    assert_increasing(&events);
    let k = kinds(&events);
    assert_eq!(k.iter().filter(|k| **k == "tool_call").count(), 1, "{k:?}");
    assert_eq!(
        k.iter().filter(|k| **k == "tool_result").count(),
        1,
        "{k:?}"
    );
    assert!(events.iter().any(|e| e.data["phase"] == "check"));
    let done = &events.last().unwrap().data;
    assert_eq!(done["status"], "succeeded", "{done}");
    let result = &done["result"];
    assert_eq!(result["message"], "All done.");
    assert_eq!(result["check"]["ok"], true);
    assert_eq!(result["check"]["output_tail"], "checked");
    assert_eq!(result["usage"]["input_tokens"], 950);
    let mut changed: Vec<String> = result["files_changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{} {}",
                f["change"].as_str().unwrap(),
                f["path"].as_str().unwrap()
            )
        })
        .collect();
    changed.sort();
    assert_eq!(
        changed,
        vec!["added app.js", "added src/lib.js", "modified README.md"]
    );

    // The diff, per file, as git writes it; editing the file afterwards
    // does not change what the task did.
    let task_id = task["id"].as_str().unwrap();
    let diff_url = format!("/v1/sandboxes/{id}/tasks/{task_id}/diff");
    c.put(
        &format!("/v1/sandboxes/{id}/files"),
        json!({"path": "app/README.md", "content": "later\n"}),
    )
    .await;
    let diff = c.get(&diff_url).await;
    assert_eq!(diff.status, StatusCode::OK, "{diff:?}");
    assert_eq!(diff.body["checkpoint"], result["checkpoint"]);
    assert_eq!(
        diff.body["after"].as_str().unwrap().len(),
        40,
        "{}",
        diff.body
    );
    let files = diff.body["files"].as_array().unwrap();
    assert_eq!(files.len(), 3, "{}", diff.body);
    let readme = files.iter().find(|f| f["path"] == "README.md").unwrap();
    assert_eq!(readme["change"], "modified");
    assert!(
        readme["patch"]
            .as_str()
            .unwrap()
            .ends_with("@@ -1 +1,2 @@\n before\n+edited\n"),
        "{readme}"
    );
    let one = c.get(&format!("{diff_url}?path=src/lib.js")).await;
    assert_eq!(one.body["files"].as_array().unwrap().len(), 1, "{one:?}");
    assert_eq!(one.body["files"][0]["change"], "added");
    assert!(
        one.body["files"][0]["patch"]
            .as_str()
            .unwrap()
            .contains("\n+export {}\n")
    );
    // A ref keeps the end tree from git's garbage collection.
    let refs = c.sh(&id, "git -C /home/user/workspace/app show-ref").await;
    assert!(
        refs.contains(&format!("refs/berth/after/{task_id}")),
        "{refs}"
    );
    let unchanged = c.get(&format!("{diff_url}?path=other.txt")).await;
    assert_eq!(unchanged.status, StatusCode::NOT_FOUND, "{unchanged:?}");
    assert_eq!(unchanged.code(), "not_found");

    let r = c
        .post(
            &format!(
                "/v1/sandboxes/{id}/tasks/{}/revert",
                task["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["checkpoint"], result["checkpoint"]);
    let readme = c
        .get(&format!("/v1/sandboxes/{id}/files?path=app/README.md"))
        .await;
    assert_eq!(readme.body["content"], "before\n");
    let gone = c
        .get(&format!("/v1/sandboxes/{id}/files?path=app/app.js"))
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_failing_check_fails_the_task_with_its_output() {
    let c = control().await;
    let id = sandbox(&c).await;
    let task = start_task(
        &c,
        &id,
        json!({"prompt": "x", "agent": "opencode", "check": "echo compile error >&2; exit 3"}),
    )
    .await;
    let done = follow(&c, &task).await.pop().unwrap().data;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["result"]["failure_reason"], "check_failed");
    assert_eq!(done["result"]["check"]["exit_code"], 3);
    assert_eq!(done["result"]["check"]["output_tail"], "compile error");
}

#[tokio::test]
async fn last_event_id_replays_only_later_events_and_late_clients_get_everything() {
    let c = control().await;
    let id = sandbox(&c).await;
    let task = start_task(
        &c,
        &id,
        json!({"prompt": "build slowly", "agent": "claude"}),
    )
    .await;
    let url = task["events_url"].as_str().unwrap().to_string();
    // Live: the agent's first message arrives while the agent still runs
    // (it sleeps 3 s after it).
    // Seven events come before that sleep: four status, the message, and a
    // stdout and a stderr log line (in either order).
    let early = c.sse(&url, None, Some(7), LONG).await;
    assert!(early.iter().any(|e| e.event == "message"), "{early:?}");
    let status = c
        .get(&format!(
            "/v1/sandboxes/{id}/tasks/{}",
            task["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        status.body["status"], "running",
        "events are streamed, not buffered"
    );

    let all = c.sse(&url, None, None, LONG).await;
    assert_eq!(all.last().unwrap().event, "done");
    // Header and query parameter both resume after the given id.
    let after = c.sse(&url, Some(3), None, LONG).await;
    assert_eq!(after[0].id, 4);
    assert_eq!(after.len(), all.len() - 3);
    for (a, b) in after.iter().zip(&all[3..]) {
        assert_eq!((a.id, &a.event, &a.data), (b.id, &b.event, &b.data));
    }
    let q = c
        .sse(&format!("{url}?last_event_id=5"), None, None, LONG)
        .await;
    assert_eq!(q[0].id, 6);
    let none = c
        .sse(
            &url,
            Some(all.last().unwrap().id),
            None,
            Duration::from_secs(10),
        )
        .await;
    assert!(none.is_empty(), "nothing after done: {none:?}");
}

#[tokio::test]
async fn cancel_kills_the_agent_and_its_children() {
    let c = control().await;
    let id = sandbox(&c).await;
    let task = start_task(
        &c,
        &id,
        json!({"prompt": "hang forever", "agent": "claude"}),
    )
    .await;
    let task_id = task["id"].as_str().unwrap();
    c.eventually(
        "the agent to start its child",
        Duration::from_secs(30),
        || async { c.sh(&id, "ps -eo args").await.contains("sleep 601") },
    )
    .await;
    // A running task blocks a stop.
    let stop = c.post(&format!("/v1/sandboxes/{id}/stop"), json!({})).await;
    assert_eq!(
        (stop.status, stop.code()),
        (StatusCode::CONFLICT, "task_in_progress")
    );
    // Its diff is there once it ends.
    let diff = c
        .get(&format!("/v1/sandboxes/{id}/tasks/{task_id}/diff"))
        .await;
    assert_eq!(
        (diff.status, diff.code()),
        (StatusCode::CONFLICT, "conflict")
    );

    let r = c
        .post(
            &format!("/v1/sandboxes/{id}/tasks/{task_id}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["status"], "cancelled");
    let ps = c.sh(&id, "ps -eo args").await;
    assert!(
        !ps.contains("sleep 601") && !ps.contains("claude"),
        "left behind:\n{ps}"
    );
    let events = follow(&c, &task).await;
    assert_eq!(events.last().unwrap().data["status"], "cancelled");
    let again = c
        .post(
            &format!("/v1/sandboxes/{id}/tasks/{task_id}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_task_past_its_timeout_is_killed_and_timed_out() {
    let c = control().await;
    let id = sandbox(&c).await;
    let task = start_task(
        &c,
        &id,
        json!({"prompt": "hang", "agent": "claude", "timeout_s": 3}),
    )
    .await;
    let done = follow(&c, &task).await.pop().unwrap().data;
    assert_eq!(done["status"], "timed_out");
    assert_eq!(done["result"]["failure_reason"], "agent_timeout");
    assert!(!c.sh(&id, "ps -eo args").await.contains("sleep 601"));
}

#[tokio::test]
async fn a_task_on_a_stopped_sandbox_wakes_it() {
    let c = control().await;
    let id = sandbox(&c).await;
    c.post(&format!("/v1/sandboxes/{id}/stop"), json!({})).await;
    assert_eq!(c.status_of(&id).await, "stopped");
    let task = start_task(&c, &id, json!({"prompt": "page", "agent": "claude"})).await;
    let done = follow(&c, &task).await.pop().unwrap().data;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(c.status_of(&id).await, "running");
}

#[tokio::test]
async fn tasks_queue_one_at_a_time_and_list_newest_first() {
    let c = control().await;
    let id = sandbox(&c).await;
    let first = start_task(
        &c,
        &id,
        json!({"prompt": "build slowly", "agent": "claude"}),
    )
    .await;
    let second = start_task(
        &c,
        &id,
        json!({"prompt": "write app.js", "agent": "opencode"}),
    )
    .await;
    assert_eq!(first["status"], "running");
    assert_eq!(second["status"], "queued");
    let second_done = follow(&c, &second).await.pop().unwrap().data;
    assert_eq!(second_done["status"], "succeeded");
    let list = c.get(&format!("/v1/sandboxes/{id}/tasks")).await.body;
    let ids: Vec<&str> = list["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![
            second["id"].as_str().unwrap(),
            first["id"].as_str().unwrap()
        ]
    );
    let f = c
        .get(&format!(
            "/v1/sandboxes/{id}/tasks/{}",
            first["id"].as_str().unwrap()
        ))
        .await
        .body;
    let s = c
        .get(&format!(
            "/v1/sandboxes/{id}/tasks/{}",
            second["id"].as_str().unwrap()
        ))
        .await
        .body;
    assert!(
        f["finished_at"].as_str().unwrap() <= s["started_at"].as_str().unwrap(),
        "one at a time"
    );
}

#[tokio::test]
async fn agents_that_fail_or_do_nothing_are_failures() {
    let c = control().await;
    let id = sandbox(&c).await;
    for (agent, prompt, reason) in [
        ("claude", "do nothing", "no_output"),
        ("opencode", "do nothing", "no_output"),
        ("claude", "crash", "agent_error"),
        ("opencode", "api error", "agent_error"),
    ] {
        let task = start_task(&c, &id, json!({"prompt": prompt, "agent": agent})).await;
        let events = follow(&c, &task).await;
        let done = &events.last().unwrap().data;
        assert_eq!(done["status"], "failed", "{agent} {prompt}: {done}");
        assert_eq!(
            done["result"]["failure_reason"], reason,
            "{agent} {prompt}: {done}"
        );
        assert!(
            events.iter().any(|e| e.event == "error"),
            "{agent} {prompt}: an error event"
        );
    }
}

#[tokio::test]
async fn a_missing_agent_cli_fails_with_a_clear_error() {
    // The busybox test image has neither the agents nor git.
    let c = Control::start(&[]).await;
    // Control can tell this is not berth's sandbox image (see the claude
    // test for the other side).
    let info = c.get("/v1/info").await.body;
    assert_eq!(
        info["default_image_status"],
        json!({"present": true, "berth": null, "agents": null, "agent_versions": null}),
        "{info}"
    );
    assert!(
        c.log_text().contains("has no `berth.image=sandbox` label"),
        "{}",
        c.log_text()
    );
    let id = c.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let task = start_task(&c, &id, json!({"prompt": "anything", "agent": "claude"})).await;
    let done = follow(&c, &task).await.pop().unwrap().data;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["result"]["failure_reason"], "agent_missing");
    assert!(done["result"]["error"].as_str().unwrap().contains("claude"));
}

#[tokio::test]
async fn bad_task_input_gets_400s_and_unknown_ids_404s() {
    let c = Control::start(&[]).await;
    let id = c.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let tasks = format!("/v1/sandboxes/{id}/tasks");
    for body in [
        json!({"prompt": "", "agent": "claude"}),
        json!({"prompt": "   ", "agent": "claude"}),
        json!({"prompt": "x", "agent": "gpt-pilot"}),
        json!({"prompt": "x", "agent": "claude", "timeout_s": 0}),
        json!({"prompt": "x", "agent": "claude", "timeout_s": 999999}),
        json!({"prompt": "x", "agent": "claude", "env": {"BAD NAME": "1"}}),
        json!({"prompt": 5}),
    ] {
        let r = c.post(&tasks, body.clone()).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{body}: {r:?}"
        );
    }
    let r = c
        .post(
            "/v1/sandboxes/nope/tasks",
            json!({"prompt": "x", "agent": "claude"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = c.get(&format!("{tasks}/01nosuchtask")).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    let r = c.get(&format!("{tasks}/01nosuchtask/events")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        c.get(&tasks).await.body["tasks"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn history_survives_a_restart_and_a_task_cut_by_kill_9_is_failed() {
    let mut c = control().await;
    let id = sandbox(&c).await;
    let task = start_task(&c, &id, json!({"prompt": "page", "agent": "claude"})).await;
    let before = follow(&c, &task).await;

    let hanging = start_task(&c, &id, json!({"prompt": "hang", "agent": "claude"})).await;
    c.eventually("the agent to start", Duration::from_secs(30), || async {
        c.sh(&id, "ps -eo args").await.contains("sleep 601")
    })
    .await;
    c.kill9();
    c.spawn().await;

    let after = follow(&c, &task).await;
    assert_eq!(before.len(), after.len());
    for (a, b) in before.iter().zip(&after) {
        assert_eq!((a.id, &a.event, &a.data), (b.id, &b.event, &b.data));
    }
    let cut = follow(&c, &hanging).await;
    let done = &cut.last().unwrap().data;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["result"]["failure_reason"], "control_restarted");
    assert!(
        cut.iter().any(
            |e| e.event == "error" && e.data["message"].as_str().unwrap().contains("restarted")
        )
    );
    let ps = c.sh(&id, "ps -eo args").await;
    assert!(!ps.contains("sleep 601"), "the cut agent was killed:\n{ps}");
}

#[tokio::test]
async fn a_running_task_keeps_a_short_idle_sandbox_awake() {
    let c = control().await;
    let id = c.create(json!({"idle_timeout_s": 1})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The agent works for 3+ s; a reaper that ignored it would stop the
    // container under it and fail the task.
    let task = start_task(
        &c,
        &id,
        json!({"prompt": "build slowly", "agent": "claude"}),
    )
    .await;
    let done = follow(&c, &task).await.pop().unwrap().data;
    assert_eq!(done["status"], "succeeded", "{done}");
}

#[tokio::test]
async fn a_graceful_shutdown_ends_streams_and_fails_running_tasks() {
    let mut c = control().await;
    let id = sandbox(&c).await;
    let task = start_task(&c, &id, json!({"prompt": "hang", "agent": "claude"})).await;
    let url = task["events_url"].as_str().unwrap().to_string();
    let stream = {
        let base = c.base.clone();
        tokio::spawn(async move {
            let resp = reqwest::get(format!("{base}{url}")).await.unwrap();
            resp.text().await.unwrap_or_default()
        })
    };
    c.eventually("the agent to start", Duration::from_secs(30), || async {
        c.sh(&id, "ps -eo args").await.contains("sleep 601")
    })
    .await;
    let started = std::time::Instant::now();
    c.terminate();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "shutdown waited on the stream"
    );
    let seen = tokio::time::timeout(Duration::from_secs(5), stream)
        .await
        .unwrap()
        .unwrap();
    assert!(seen.contains("event: message"), "{seen}");
    c.spawn().await;
    let done = follow(&c, &task).await.pop().unwrap().data;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["result"]["failure_reason"], "control_stopped");
    assert!(!c.sh(&id, "ps -eo args").await.contains("sleep 601"));
}

#[tokio::test]
async fn delete_cancels_the_tasks_and_purge_forgets_them() {
    let c = control().await;
    let id = sandbox(&c).await;
    let running = start_task(
        &c,
        &id,
        json!({"prompt": "hang forever", "agent": "claude"}),
    )
    .await;
    let queued = start_task(
        &c,
        &id,
        json!({"prompt": "page", "agent": "claude", "env": {"PROVIDER_KEY": "sk-secret-1"}}),
    )
    .await;
    assert_eq!(queued["status"], "queued");
    c.eventually("the agent to start", Duration::from_secs(30), || async {
        c.sh(&id, "ps -eo args").await.contains("sleep 601")
    })
    .await;
    let container = c.container(&id);

    // Delete: the running task is cancelled (its agent killed with the
    // container), the queued one never starts.
    let r = c.delete(&format!("/v1/sandboxes/{id}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r:?}");
    assert!(!common::docker(&["inspect", &container]).0);
    let again = c.create(json!({"id": id})).await;
    assert_eq!(again["id"], id.as_str());
    for (task, status) in [(&running, "cancelled"), (&queued, "cancelled")] {
        let t = c
            .get(&format!(
                "/v1/sandboxes/{id}/tasks/{}",
                task["id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(t.body["status"], status, "{t:?}");
    }
    // Nothing started after the delete.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ps = c.sh(&id, "ps -eo args").await;
    assert!(!ps.contains("claude"), "an agent runs after delete:\n{ps}");

    // Purge: the rows (with their env) are gone, also for a sandbox made
    // later with the same id.
    c.delete(&format!("/v1/sandboxes/{id}")).await;
    let r = c
        .post(&format!("/v1/sandboxes/{id}/purge"), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r:?}");
    c.create(json!({"id": id})).await;
    let list = c.get(&format!("/v1/sandboxes/{id}/tasks")).await;
    assert_eq!(list.body["tasks"], json!([]), "{list:?}");
    let t = c
        .get(&format!(
            "/v1/sandboxes/{id}/tasks/{}",
            queued["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(t.status, StatusCode::NOT_FOUND, "{t:?}");
    let db = std::fs::read(c.data_dir.join("berth.db")).unwrap_or_default();
    let wal = std::fs::read(c.data_dir.join("berth.db-wal")).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&db).contains("sk-secret-1")
            && !String::from_utf8_lossy(&wal).contains("sk-secret-1"),
        "a purged task's env is still stored"
    );
}

#[tokio::test]
async fn info_names_the_agent_clis_of_the_default_image() {
    let c = control().await;
    let info = c.get("/v1/info").await.body;
    assert_eq!(
        info["default_image_status"]["agents"],
        json!(["claude", "opencode"]),
        "{info}"
    );
    // An image that does not say (not berth's): null, not a guess.
    let plain = Control::start(&[]).await;
    let info = plain.get("/v1/info").await.body;
    assert_eq!(
        info["default_image_status"]["agents"],
        Value::Null,
        "{info}"
    );
}

#[tokio::test]
async fn an_opencode_task_continues_its_session_and_gets_its_prompt_verbatim() {
    let c = control().await;
    let id = sandbox(&c).await;
    let tasks = format!("/v1/sandboxes/{id}/tasks");
    // Models are checked per agent.
    let r = c
        .post(
            &tasks,
            json!({"prompt": "x", "agent": "opencode", "model": "sonnet"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("provider/model")
    );
    let r = c
        .post(
            &tasks,
            json!({"prompt": "x", "agent": "claude", "model": "anthropic/claude"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");

    let first = start_task(
        &c,
        &id,
        json!({"prompt": "write app.js", "agent": "opencode"}),
    )
    .await;
    follow(&c, &first).await;
    let got = c
        .get(&format!("{tasks}/{}", first["id"].as_str().unwrap()))
        .await
        .body;
    assert_eq!(got["session_id"], "ses_fake01", "{got}");

    // Continued: the same session, and the prompt as written (a leading
    // dash and a double space reach the agent unchanged, through stdin).
    let next = start_task(
        &c,
        &id,
        json!({"prompt": "-rf now  make it blue", "agent": "opencode", "continue": true}),
    )
    .await;
    let events = follow(&c, &next).await;
    let done = &events.last().unwrap().data;
    assert_eq!(done["status"], "succeeded", "{events:?}");
    assert_eq!(
        done["result"]["message"],
        "Continuing session ses_fake01: -rf now  make it blue"
    );
}
