//! OpenCode: `opencode run --format json` with the prompt on stdin
//! (`opencode run` quotes every argument holding a space before the model
//! sees it, and reads a prompt starting with `-` as a flag) and every
//! permission granted through `OPENCODE_PERMISSION`, which all versions
//! read (the flag for it was renamed twice). `--session <id>` continues a
//! session.
//!
//! Each stdout line is an event with a `type` and the `sessionID`:
//! `step_start`, `text` (a text part), `tool_use` (a tool part, printed once
//! when it completed or failed), `step_finish` (tokens and cost of a step)
//! and `error`. The binary is not on a registry reachable here, so these
//! shapes are taken from its source (`packages/opencode/src/cli/cmd/run.ts`
//! upstream), not recorded.

use serde_json::Value;

use super::{Agent, AgentEvent, Invocation, RunRequest, RunState, as_u64, text_of};

pub struct OpenCode;

impl Agent for OpenCode {
    fn name(&self) -> &'static str {
        "opencode"
    }

    fn invocation(&self, run: &RunRequest<'_>) -> Invocation {
        let mut argv: Vec<String> = ["opencode", "run", "--format", "json"]
            .into_iter()
            .map(String::from)
            .collect();
        if let Some(model) = run.model {
            argv.extend(["--model".to_string(), model.to_string()]);
        }
        if let Some(session) = run.resume {
            argv.extend(["--session".to_string(), session.to_string()]);
        }
        Invocation {
            argv,
            stdin: run.prompt.to_string(),
            env: vec![r#"OPENCODE_PERMISSION={"*":"allow"}"#.to_string()],
        }
    }

    fn check_model(&self, model: &str) -> Result<(), String> {
        match model.split_once('/') {
            Some((provider, name))
                if !provider.is_empty()
                    && !name.is_empty()
                    && !model.contains(char::is_whitespace) =>
            {
                Ok(())
            }
            _ => Err(format!(
                "`{model}` is not an OpenCode model: use provider/model \
                 (`anthropic/claude-sonnet-4-5`)"
            )),
        }
    }

    fn parse_line(&self, line: &str, state: &mut RunState) -> Option<Vec<AgentEvent>> {
        let v: Value = serde_json::from_str(line).ok()?;
        let kind = v.get("type")?.as_str()?;
        if let Some(session) = v.get("sessionID").and_then(Value::as_str) {
            state.set_session(Some(session), None, None);
        }
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
    fn errors_are_failures() {
        let mut state = RunState::default();
        let e = OpenCode
            .parse_line(
                r#"{"type":"error","error":{"name":"APIError","data":{"message":"invalid key"}}}"#,
                &mut state,
            )
            .unwrap();
        assert_eq!(e, vec![AgentEvent::error("invalid key")]);
        assert_eq!(state.failure.as_deref(), Some("invalid key"));
    }

    #[test]
    fn the_prompt_goes_on_stdin_and_models_are_provider_slash_model() {
        let run = OpenCode.invocation(&RunRequest {
            prompt: "--help me, please",
            model: Some("anthropic/claude"),
            resume: Some("ses_1"),
        });
        assert_eq!(run.stdin, "--help me, please");
        assert!(!run.argv.iter().any(|a| a.contains("please")));
        assert!(run.argv.windows(2).any(|w| w == ["--session", "ses_1"]));
        assert!(
            run.env
                .iter()
                .any(|e| e.starts_with("OPENCODE_PERMISSION="))
        );
        assert!(OpenCode.check_model("anthropic/claude-sonnet-4-5").is_ok());
        assert!(OpenCode.check_model("sonnet").is_err());
        assert!(OpenCode.check_model("/x").is_err());
    }

    #[test]
    fn the_session_is_read_from_any_line() {
        let mut state = RunState::default();
        OpenCode.parse_line(
            r#"{"type":"step_start","timestamp":1,"sessionID":"ses_9","part":{"type":"step-start"}}"#,
            &mut state,
        );
        assert_eq!(state.session.id.as_deref(), Some("ses_9"));
        assert!(state.session_changed);
    }
}
