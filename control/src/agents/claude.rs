//! Claude Code: `claude -p <prompt> --output-format stream-json --verbose`.
//!
//! Each stdout line is a JSON object: `system` (init), `assistant` (a message
//! whose content blocks are `text` and `tool_use`), `user` (carrying
//! `tool_result` blocks), and a final `result` with the answer, cost, usage
//! and whether it was an error.

use serde_json::Value;

use super::{Agent, AgentEvent, RunState, as_u64, text_of};

pub struct Claude;

impl Agent for Claude {
    fn name(&self) -> &'static str {
        "claude"
    }

    fn command(&self, prompt: &str, model: Option<&str>) -> Vec<String> {
        let mut argv: Vec<String> = [
            "claude",
            "-p",
            prompt,
            "--output-format",
            "stream-json",
            "--verbose",
            "--dangerously-skip-permissions",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        if let Some(model) = model {
            argv.extend(["--model".to_string(), model.to_string()]);
        }
        argv
    }

    fn parse_line(&self, line: &str, state: &mut RunState) -> Option<Vec<AgentEvent>> {
        let v: Value = serde_json::from_str(line).ok()?;
        let kind = v.get("type")?.as_str()?;
        let mut events = Vec::new();
        match kind {
            "system" => {}
            "assistant" => {
                let blocks = v.pointer("/message/content")?.as_array()?;
                for block in blocks {
                    match block.get("type").and_then(Value::as_str) {
                        Some("text") => {
                            let text = block.get("text").and_then(Value::as_str).unwrap_or("");
                            if !text.trim().is_empty() {
                                state.messages += 1;
                                state.final_text = Some(text.to_string());
                                events.push(AgentEvent::Message(text.to_string()));
                            }
                        }
                        Some("tool_use") => {
                            let id = block
                                .get("id")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string();
                            if state.tools_seen.insert(id.clone()) {
                                state.tool_calls += 1;
                                events.push(AgentEvent::ToolCall {
                                    id,
                                    name: block
                                        .get("name")
                                        .and_then(Value::as_str)
                                        .unwrap_or("")
                                        .to_string(),
                                    input: block.get("input").cloned().unwrap_or(Value::Null),
                                });
                            }
                        }
                        // Thinking and other blocks are not part of the stream.
                        _ => {}
                    }
                }
            }
            "user" => {
                let blocks = v.pointer("/message/content")?.as_array()?;
                for block in blocks {
                    if block.get("type").and_then(Value::as_str) == Some("tool_result") {
                        let id = block
                            .get("tool_use_id")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string();
                        state.tools_finished.insert(id.clone());
                        events.push(AgentEvent::ToolResult {
                            id,
                            output: text_of(block.get("content").unwrap_or(&Value::Null)),
                            is_error: block
                                .get("is_error")
                                .and_then(Value::as_bool)
                                .unwrap_or(false),
                        });
                    }
                }
            }
            "result" => {
                if let Some(text) = v.get("result").and_then(Value::as_str) {
                    if !text.trim().is_empty() {
                        state.final_text = Some(text.to_string());
                    }
                }
                if let Some(usage) = v.get("usage") {
                    state.usage.input_tokens = as_u64(usage, "input_tokens");
                    state.usage.output_tokens = as_u64(usage, "output_tokens");
                    state.usage.cache_read_tokens = as_u64(usage, "cache_read_input_tokens");
                    state.usage.cache_write_tokens = as_u64(usage, "cache_creation_input_tokens");
                }
                state.usage.cost_usd = v.get("total_cost_usd").and_then(Value::as_f64);
                let subtype = v
                    .get("subtype")
                    .and_then(Value::as_str)
                    .unwrap_or("success");
                let is_error = v.get("is_error").and_then(Value::as_bool).unwrap_or(false);
                if is_error || subtype.starts_with("error") {
                    let why = state
                        .final_text
                        .clone()
                        .unwrap_or_else(|| subtype.to_string());
                    events.push(state.fail(why));
                }
            }
            "error" => {
                let message = v
                    .pointer("/error/message")
                    .or_else(|| v.get("message"))
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

    fn parse_all(lines: &[&str]) -> (Vec<AgentEvent>, RunState) {
        let mut state = RunState::default();
        let mut all = Vec::new();
        for line in lines {
            all.extend(Claude.parse_line(line, &mut state).unwrap_or_default());
        }
        (all, state)
    }

    #[test]
    fn a_whole_run_is_normalised() {
        let (events, state) = parse_all(&[
            r#"{"type":"system","subtype":"init","session_id":"s1","model":"claude-sonnet-4-5","tools":["Write"]}"#,
            r#"{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"Creating the page."},{"type":"tool_use","id":"toolu_1","name":"Write","input":{"file_path":"index.html","content":"<h1>hi</h1>"}}]},"session_id":"s1"}"#,
            r#"{"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"File created"}]}]},"session_id":"s1"}"#,
            r#"{"type":"result","subtype":"success","is_error":false,"duration_ms":1200,"num_turns":2,"result":"Done: index.html","session_id":"s1","total_cost_usd":0.0123,"usage":{"input_tokens":100,"output_tokens":50,"cache_read_input_tokens":7,"cache_creation_input_tokens":3}}"#,
        ]);
        assert_eq!(
            events,
            vec![
                AgentEvent::Message("Creating the page.".into()),
                AgentEvent::ToolCall {
                    id: "toolu_1".into(),
                    name: "Write".into(),
                    input: serde_json::json!({"file_path":"index.html","content":"<h1>hi</h1>"}),
                },
                AgentEvent::ToolResult {
                    id: "toolu_1".into(),
                    output: "File created".into(),
                    is_error: false
                },
            ]
        );
        assert_eq!(state.final_text.as_deref(), Some("Done: index.html"));
        assert_eq!(state.usage.input_tokens, 100);
        assert_eq!(state.usage.cache_read_tokens, 7);
        assert_eq!(state.usage.cost_usd, Some(0.0123));
        assert!(state.failure.is_none());
        assert!(state.did_anything());
    }

    #[test]
    fn error_results_are_failures() {
        let (events, state) = parse_all(&[
            r#"{"type":"result","subtype":"error_max_turns","is_error":true,"result":""}"#,
        ]);
        assert_eq!(events, vec![AgentEvent::Error("error_max_turns".into())]);
        assert!(state.failure.is_some());
    }

    #[test]
    fn other_lines_are_not_understood() {
        let mut state = RunState::default();
        assert!(
            Claude
                .parse_line("npm WARN something", &mut state)
                .is_none()
        );
        assert!(
            Claude
                .parse_line(r#"{"type":"mystery"}"#, &mut state)
                .is_none()
        );
    }

    #[test]
    fn the_model_is_passed_when_given() {
        let argv = Claude.command("build it", Some("opus"));
        assert_eq!(&argv[..3], ["claude", "-p", "build it"]);
        assert!(argv.ends_with(&["--model".to_string(), "opus".to_string()]));
    }
}
