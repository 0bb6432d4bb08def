//! OpenCode: `opencode run --format json --dangerously-skip-permissions <prompt>`.
//!
//! Each stdout line is an event with a `type`: `step_start`, `text` (a text
//! part), `tool_use` (a tool part whose `state.status` is pending, running,
//! completed or error), `step_finish` (tokens and cost of a step) and
//! `error`.

use serde_json::Value;

use super::{Agent, AgentEvent, RunState, as_u64, text_of};

pub struct OpenCode;

impl Agent for OpenCode {
    fn name(&self) -> &'static str {
        "opencode"
    }

    fn command(&self, prompt: &str, model: Option<&str>) -> Vec<String> {
        let mut argv: Vec<String> = [
            "opencode",
            "run",
            "--format",
            "json",
            "--dangerously-skip-permissions",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        if let Some(model) = model {
            argv.extend(["--model".to_string(), model.to_string()]);
        }
        argv.push(prompt.to_string());
        argv
    }

    fn parse_line(&self, line: &str, state: &mut RunState) -> Option<Vec<AgentEvent>> {
        let v: Value = serde_json::from_str(line).ok()?;
        let kind = v.get("type")?.as_str()?;
        let part = v.get("part").cloned().unwrap_or(Value::Null);
        let mut events = Vec::new();
        match kind {
            "step_start" => {}
            "text" => {
                let text = part.get("text").and_then(Value::as_str).unwrap_or("");
                if !text.trim().is_empty() {
                    state.messages += 1;
                    state.final_text = Some(text.to_string());
                    events.push(AgentEvent::Message(text.to_string()));
                }
            }
            "tool_use" => {
                let id = part
                    .get("callID")
                    .or_else(|| part.get("id"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let name = part
                    .get("tool")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let tool_state = part.get("state").cloned().unwrap_or(Value::Null);
                if state.tools_seen.insert(id.clone()) {
                    state.tool_calls += 1;
                    events.push(AgentEvent::ToolCall {
                        id: id.clone(),
                        name,
                        input: tool_state.get("input").cloned().unwrap_or(Value::Null),
                    });
                }
                let status = tool_state
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if matches!(status, "completed" | "error")
                    && state.tools_finished.insert(id.clone())
                {
                    let output = tool_state
                        .get("output")
                        .or_else(|| tool_state.get("error"))
                        .map(text_of)
                        .unwrap_or_default();
                    events.push(AgentEvent::ToolResult {
                        id,
                        output,
                        is_error: status == "error",
                    });
                }
            }
            "step_finish" => {
                if let Some(tokens) = part.get("tokens") {
                    state.usage.input_tokens += as_u64(tokens, "input");
                    state.usage.output_tokens +=
                        as_u64(tokens, "output") + as_u64(tokens, "reasoning");
                    if let Some(cache) = tokens.get("cache") {
                        state.usage.cache_read_tokens += as_u64(cache, "read");
                        state.usage.cache_write_tokens += as_u64(cache, "write");
                    }
                }
                if let Some(cost) = part.get("cost").and_then(Value::as_f64) {
                    state.usage.cost_usd = Some(state.usage.cost_usd.unwrap_or(0.0) + cost);
                }
            }
            "error" => {
                let error = v.get("error").cloned().unwrap_or(Value::Null);
                let message = error
                    .pointer("/data/message")
                    .or_else(|| error.get("message"))
                    .or_else(|| error.get("name"))
                    .map(text_of)
                    .unwrap_or_else(|| line.to_string());
                events.push(state.fail(message));
            }
            _ => return None,
        }
        Some(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_run_is_normalised() {
        let lines = [
            r#"{"type":"step_start","timestamp":1,"sessionID":"ses_1","part":{"type":"step-start"}}"#,
            r#"{"type":"text","timestamp":2,"sessionID":"ses_1","part":{"type":"text","text":"Writing the page"}}"#,
            r#"{"type":"tool_use","timestamp":3,"sessionID":"ses_1","part":{"type":"tool","tool":"write","callID":"call_1","state":{"status":"completed","input":{"filePath":"index.html"},"output":"wrote 12 bytes","title":"index.html"}}}"#,
            r#"{"type":"step_finish","timestamp":4,"sessionID":"ses_1","part":{"type":"step-finish","reason":"tool-calls","cost":0.5,"tokens":{"input":10,"output":5,"reasoning":1,"cache":{"read":2,"write":3}}}}"#,
            r#"{"type":"step_finish","timestamp":5,"sessionID":"ses_1","part":{"type":"step-finish","reason":"stop","cost":0.25,"tokens":{"input":1,"output":1,"reasoning":0,"cache":{"read":0,"write":0}}}}"#,
        ];
        let mut state = RunState::default();
        let events: Vec<AgentEvent> = lines
            .iter()
            .flat_map(|l| OpenCode.parse_line(l, &mut state).unwrap())
            .collect();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0], AgentEvent::Message("Writing the page".into()));
        assert!(matches!(&events[1], AgentEvent::ToolCall { name, .. } if name == "write"));
        assert!(
            matches!(&events[2], AgentEvent::ToolResult { output, is_error: false, .. } if output == "wrote 12 bytes")
        );
        assert_eq!(state.usage.input_tokens, 11);
        assert_eq!(state.usage.output_tokens, 7);
        assert_eq!(state.usage.cache_write_tokens, 3);
        assert_eq!(state.usage.cost_usd, Some(0.75));
    }

    #[test]
    fn a_tool_reported_twice_is_one_call_and_one_result() {
        let mut state = RunState::default();
        let running = r#"{"type":"tool_use","part":{"tool":"bash","callID":"c","state":{"status":"running","input":{"command":"ls"}}}}"#;
        let done = r#"{"type":"tool_use","part":{"tool":"bash","callID":"c","state":{"status":"error","input":{"command":"ls"},"error":"boom"}}}"#;
        let a = OpenCode.parse_line(running, &mut state).unwrap();
        let b = OpenCode.parse_line(done, &mut state).unwrap();
        assert!(matches!(a.as_slice(), [AgentEvent::ToolCall { .. }]));
        assert!(
            matches!(b.as_slice(), [AgentEvent::ToolResult { is_error: true, output, .. }] if output == "boom")
        );
    }

    #[test]
    fn errors_are_failures() {
        let mut state = RunState::default();
        let e = OpenCode
            .parse_line(
                r#"{"type":"error","error":{"name":"APIError","data":{"message":"invalid key"}}}"#,
                &mut state,
            )
            .unwrap();
        assert_eq!(e, vec![AgentEvent::Error("invalid key".into())]);
        assert_eq!(state.failure.as_deref(), Some("invalid key"));
    }

    #[test]
    fn the_prompt_comes_last() {
        let argv = OpenCode.command("do it", Some("anthropic/claude"));
        assert_eq!(argv.last().unwrap(), "do it");
        assert!(argv.contains(&"--model".to_string()));
    }
}
