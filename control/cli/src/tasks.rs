//! Following a task: its events rendered as they come, a spinner while the
//! agent thinks, and a reconnect (with `Last-Event-ID`) when the stream drops.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::client::{CliError, Client};
use crate::render::{Spinner, Style, short};
use crate::sse;

/// Follows `events_url` to `done`; exit code 0 when the task succeeded.
pub async fn follow(
    client: &Client,
    events_url: &str,
    json: bool,
    verbose: bool,
    style: &Style,
) -> Result<i32, CliError> {
    let mut last_id: Option<String> = None;
    let mut spinner = Spinner::new();
    let mut failures = 0u32;
    loop {
        let mut req = client.request(Method::GET, events_url);
        if let Some(id) = &last_id {
            req = req.header("Last-Event-ID", id);
        }
        let response = match client.send(req).await {
            Ok(r) => r,
            Err(CliError::Unreachable { url, cause }) if failures < 10 => {
                failures += 1;
                spinner.clear();
                eprintln!(
                    "{}",
                    style.dim(&format!(
                        "(connection to {url} lost: {cause}; reconnecting)"
                    ))
                );
                tokio::time::sleep(Duration::from_millis(500 * u64::from(failures))).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut events = sse::Reader::new(response.bytes_stream());
        let mut ticker = tokio::time::interval(Duration::from_millis(120));
        loop {
            let next = tokio::select! {
                next = events.next() => next,
                _ = ticker.tick() => {
                    if !json {
                        spinner.tick("agent working");
                    }
                    continue;
                }
            };
            let event = match next {
                Ok(Some(e)) => e,
                // The stream dropped before `done`: pick up where it stopped.
                Ok(None) | Err(_) => break,
            };
            failures = 0;
            if event.id.is_some() {
                last_id.clone_from(&event.id);
            }
            let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
            spinner.clear();
            if json {
                let line = serde_json::json!({"id": event.id, "event": event.event, "data": data});
                println!("{line}");
            } else {
                render(&event.event, &data, verbose, style);
            }
            if event.event == "message" || event.event == "tool_result" {
                spinner.restart();
            }
            if event.event == "done" {
                return Ok(if data["status"] == "succeeded" { 0 } else { 1 });
            }
        }
        failures += 1;
        if failures > 10 {
            return Err(CliError::Other(
                "the event stream keeps dropping; try `berth logs` later".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(300 * u64::from(failures))).await;
    }
}

/// A tool call's input in a few words: the command, the file, the pattern….
fn input_summary(input: &Value) -> String {
    for key in [
        "command",
        "file_path",
        "path",
        "pattern",
        "url",
        "description",
        "prompt",
    ] {
        if let Some(v) = input.get(key).and_then(Value::as_str) {
            return short(v, 80);
        }
    }
    match input {
        Value::Null => String::new(),
        Value::String(s) => short(s, 80),
        other => short(&other.to_string(), 80),
    }
}

fn output_text(output: &Value) -> String {
    match output {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p.get("text").and_then(Value::as_str) {
                Some(t) => t.to_string(),
                None => format!(
                    "[{}]",
                    p.get("type").and_then(Value::as_str).unwrap_or("part")
                ),
            })
            .collect::<Vec<_>>()
            .join(" "),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn render(kind: &str, data: &Value, verbose: bool, style: &Style) {
    let indent = if data.get("parent_id").is_some_and(|p| !p.is_null()) {
        "    "
    } else {
        ""
    };
    match kind {
        "status" => {
            let phase = data["phase"]
                .as_str()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default();
            println!(
                "{indent}{} {}{}",
                style.dim("●"),
                style.status(data["status"].as_str().unwrap_or("?")),
                style.dim(&phase)
            );
        }
        "message" => {
            for line in data["text"].as_str().unwrap_or("").lines() {
                println!("{indent}{line}");
            }
        }
        "tool_call" => println!(
            "{indent}{} {} {}",
            style.cyan("→"),
            style.bold(data["name"].as_str().unwrap_or("tool")),
            style.dim(&input_summary(&data["input"]))
        ),
        "tool_result" => {
            let mark = if data["is_error"] == true {
                style.red("  ✗")
            } else {
                style.green("  ✓")
            };
            println!(
                "{indent}{mark} {}",
                style.dim(&short(&output_text(&data["output"]), 100))
            );
        }
        "log" if verbose || data["stream"] == "berth" => {
            let line = match &data["line"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            println!(
                "{indent}{}",
                style.dim(&format!(
                    "[{}] {}",
                    data["stream"].as_str().unwrap_or("log"),
                    short(&line, 200)
                ))
            );
        }
        "error" => {
            let kind = data["kind"]
                .as_str()
                .map(|k| format!(" ({k})"))
                .unwrap_or_default();
            println!(
                "{indent}{} {}{kind}",
                style.red("error:"),
                data["message"].as_str().unwrap_or("")
            );
        }
        "done" => done(data, style),
        _ => {}
    }
}

fn done(data: &Value, style: &Style) {
    let status = data["status"].as_str().unwrap_or("?");
    let result = &data["result"];
    println!();
    println!("{} {}", style.bold("task"), style.status(status));
    if let Some(reason) = result["failure_reason"].as_str() {
        println!("  {} {reason}", style.bold("reason"));
    }
    if let Some(files) = result["files_changed"].as_array().filter(|f| !f.is_empty()) {
        println!("  {}", style.bold("files changed"));
        for f in files {
            let change = f["change"].as_str().unwrap_or("?");
            let mark = match change {
                "added" => style.green("A"),
                "deleted" => style.red("D"),
                _ => style.yellow("M"),
            };
            println!("    {mark} {}", f["path"].as_str().unwrap_or("?"));
        }
    }
    let usage = &result["usage"];
    if let Some(cost) = usage["cost_usd"].as_f64() {
        println!("  {} ${cost:.4}", style.bold("cost"));
    }
    if let (Some(i), Some(o)) = (
        usage["input_tokens"].as_i64(),
        usage["output_tokens"].as_i64(),
    ) {
        println!("  {} {i} in, {o} out", style.bold("tokens"));
    }
    if let Some(ms) = result["duration_ms"].as_i64() {
        println!("  {} {:.1}s", style.bold("took"), ms as f64 / 1000.0);
    }
}
