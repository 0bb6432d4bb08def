//! Claude Code: `claude -p --output-format stream-json --verbose` with the
//! prompt on stdin (`--resume <session>` to continue a session).
//!
//! What the real CLI prints (fixtures in `fixtures/claude/`, recorded from
//! Claude Code 2.1.332 against a scripted Messages API), one JSON object a
//! line:
//! - `system`: `init` (session id, model, CLI version, `apiKeySource`),
//!   `api_retry`, sub-agent progress (`task_started`, `task_notification`),
//!   and others;
//! - `assistant`: one content block a line (`text` or `tool_use`; lines of
//!   one API message share `message.id`). A line with `error` set and model
//!   `<synthetic>` is the CLI reporting a failed API call ("Not logged in",
//!   "Prompt is too long");
//! - `user`: `tool_result` blocks, whose content is a string or a list of
//!   `text` and `image` blocks;
//! - `result`: the answer or, on error, `errors[]`; `modelUsage` holds the
//!   session's totals per model, `model_usage_since_last_result` what was
//!   used since the previous `result`. A run with a background sub-agent
//!   prints one `result` per main-loop turn.
//!
//! Lines with `parent_tool_use_id` come from a sub-agent: their events are
//! tagged with that id and never count as the main agent's answer.

use serde_json::Value;

use super::{Agent, AgentEvent, Invocation, RunRequest, RunState, Usage, as_u64, text_of};

pub struct Claude;

/// Usage totals over a run, from the `result` lines.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    /// `modelUsage` and `total_cost_usd` of the last `result`: the whole
    /// session's.
    session: Option<Usage>,
    /// Sum of `model_usage_since_last_result` over the run's `result` lines:
    /// this run's alone (present in CLIs that print it).
    since: Option<Usage>,
    /// The CLI found no credentials (`apiKeySource: "none"`).
    no_credentials: bool,
}

/// What to set when Claude Code has no credentials.
const NO_KEY: &str = "Claude Code found no credentials: set ANTHROPIC_API_KEY (or \
                      CLAUDE_CODE_OAUTH_TOKEN) in the sandbox's or the task's env";

impl Agent for Claude {
    fn name(&self) -> &'static str {
        "claude"
    }

    fn invocation(&self, run: &RunRequest<'_>) -> Invocation {
        let mut argv: Vec<String> = [
            "claude",
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--dangerously-skip-permissions",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        if let Some(model) = run.model {
            argv.extend(["--model".to_string(), model.to_string()]);
        }
        if let Some(session) = run.resume {
            argv.extend(["--resume".to_string(), session.to_string()]);
        }
        Invocation {
            argv,
            stdin: run.prompt.to_string(),
            env: vec![
                // No update checks or telemetry from inside a sandbox.
                "DISABLE_AUTOUPDATER=1".into(),
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1".into(),
            ],
        }
    }

    fn check_model(&self, model: &str) -> Result<(), String> {
        if model.contains('/') || model.contains(char::is_whitespace) {
            return Err(format!(
                "`{model}` is not a Claude model name: use an alias (`sonnet`, `opus`) or a full \
                 name (`claude-sonnet-4-5`)"
            ));
        }
        Ok(())
    }

    fn parse_line(&self, line: &str, state: &mut RunState) -> Option<Vec<AgentEvent>> {
        let v: Value = serde_json::from_str(line).ok()?;
        let kind = v.get("type")?.as_str()?;
        let parent = v
            .get("parent_tool_use_id")
            .and_then(Value::as_str)
            .map(String::from);
        let events = match kind {
            "system" => system(&v, state)?,
            "assistant" => assistant(&v, parent.is_some(), state)?,
            "user" => tool_results(&v, state)?,
            "result" => result(&v, state),
            "error" => {
                let message = v
                    .pointer("/error/message")
                    .or_else(|| v.get("message"))
                    .map(text_of)
                    .unwrap_or_else(|| line.to_string());
                vec![state.fail(message)]
            }
            _ => return None,
        };
        Some(match parent {
            Some(parent_id) => events
                .into_iter()
                .map(|event| AgentEvent::Sub {
                    parent_id: parent_id.clone(),
                    event: Box::new(event),
                })
                .collect(),
            None => events,
        })
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn system(v: &Value, state: &mut RunState) -> Option<Vec<AgentEvent>> {
    let subtype = str_at(v, "subtype").unwrap_or("");
    let log = |line: String| AgentEvent::Log {
        subtype: subtype.to_string(),
        line,
    };
    Some(match subtype {
        "init" => {
            state.set_session(
                str_at(v, "session_id"),
                str_at(v, "model"),
                str_at(v, "claude_code_version"),
            );
            state.claude.no_credentials = str_at(v, "apiKeySource") == Some("none");
            Vec::new()
        }
        "api_retry" if str_at(v, "error") == Some("authentication_failed") && state.abort => {
            // Reported already; the agent is being stopped.
            Vec::new()
        }
        "api_retry" if str_at(v, "error") == Some("authentication_failed") => {
            // The CLI retries a refused key ten times over minutes; it will
            // not start working.
            let message = format!(
                "the provider refused Claude Code's credentials ({} authentication_failed): \
                 check ANTHROPIC_API_KEY (or CLAUDE_CODE_OAUTH_TOKEN) in the sandbox's or the task's env",
                v.get("error_status").map(text_of).unwrap_or_default()
            );
            state.failure = Some(message.clone());
            state.failure_reason = Some("agent_auth");
            state.abort = true;
            vec![AgentEvent::Error {
                message,
                kind: Some("authentication_failed".into()),
            }]
        }
        "api_retry" => vec![log(format!(
            "API request failed ({} {}); retry {} of {} in {} ms",
            v.get("error_status").map(text_of).unwrap_or_default(),
            str_at(v, "error").unwrap_or("error"),
            as_u64(v, "attempt"),
            as_u64(v, "max_retries"),
            as_u64(v, "retry_delay_ms"),
        ))],
        "task_started" | "task_notification" => {
            let what = match subtype {
                "task_started" => format!(
                    "sub-agent started: {}",
                    str_at(v, "description").unwrap_or("")
                ),
                _ => format!(
                    "sub-agent {}: {}",
                    str_at(v, "status").unwrap_or("ended"),
                    str_at(v, "summary").unwrap_or("")
                ),
            };
            let event = log(what);
            match str_at(v, "tool_use_id") {
                Some(parent) => vec![AgentEvent::Sub {
                    parent_id: parent.to_string(),
                    event: Box::new(event),
                }],
                None => vec![event],
            }
        }
        // `permission_denied` and whatever later CLIs add: kept whole.
        _ => vec![log(v.to_string())],
    })
}

fn assistant(v: &Value, sub_agent: bool, state: &mut RunState) -> Option<Vec<AgentEvent>> {
    let blocks = v.pointer("/message/content")?.as_array()?;
    let synthetic = v.pointer("/message/model").and_then(Value::as_str) == Some("<synthetic>");
    if let Some(error) = str_at(v, "error").filter(|_| synthetic || !sub_agent) {
        // The CLI reporting a failed API call in the assistant's voice.
        let said = text_of(v.pointer("/message/content").unwrap_or(&Value::Null));
        let auth = error == "authentication_failed" || state.claude.no_credentials;
        let message = if auth && state.claude.no_credentials {
            format!("{NO_KEY} (Claude Code said: {said})")
        } else {
            said
        };
        if auth {
            state.failure_reason = Some("agent_auth");
        }
        state.failure = Some(message.clone());
        return Some(vec![AgentEvent::Error {
            message,
            kind: Some(error.to_string()),
        }]);
    }
    let mut events = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                let text = str_at(block, "text").unwrap_or("");
                if !text.trim().is_empty() {
                    state.messages += 1;
                    if !sub_agent {
                        state.final_text = Some(text.to_string());
                    }
                    events.push(AgentEvent::Message(text.to_string()));
                }
            }
            Some("tool_use") => {
                let id = str_at(block, "id").unwrap_or("").to_string();
                if state.tools_seen.insert(id.clone()) {
                    state.tool_calls += 1;
                    events.push(AgentEvent::ToolCall {
                        id,
                        name: str_at(block, "name").unwrap_or("").to_string(),
                        input: block.get("input").cloned().unwrap_or(Value::Null),
                    });
                }
            }
            // Thinking and other blocks are not part of the stream.
            _ => {}
        }
    }
    Some(events)
}

fn tool_results(v: &Value, state: &mut RunState) -> Option<Vec<AgentEvent>> {
    let blocks = v.pointer("/message/content")?.as_array()?;
    let mut events = Vec::new();
    for block in blocks {
        if str_at(block, "type") == Some("tool_result") {
            let id = str_at(block, "tool_use_id").unwrap_or("").to_string();
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
    Some(events)
}

/// Tokens and cost summed over the models of a `modelUsage` map.
fn model_usage(map: &Value) -> Usage {
    let mut usage = Usage {
        cost_usd: Some(0.0),
        ..Usage::default()
    };
    for model in map.as_object().into_iter().flat_map(|m| m.values()) {
        usage.input_tokens += as_u64(model, "inputTokens");
        usage.output_tokens += as_u64(model, "outputTokens");
        usage.cache_read_tokens += as_u64(model, "cacheReadInputTokens");
        usage.cache_write_tokens += as_u64(model, "cacheCreationInputTokens");
        usage.cost_usd = Some(
            usage.cost_usd.unwrap_or(0.0)
                + model.get("costUSD").and_then(Value::as_f64).unwrap_or(0.0),
        );
    }
    usage
}

fn add(into: &mut Usage, more: &Usage) {
    into.input_tokens += more.input_tokens;
    into.output_tokens += more.output_tokens;
    into.cache_read_tokens += more.cache_read_tokens;
    into.cache_write_tokens += more.cache_write_tokens;
    into.cost_usd = Some(into.cost_usd.unwrap_or(0.0) + more.cost_usd.unwrap_or(0.0));
}

fn result(v: &Value, state: &mut RunState) -> Vec<AgentEvent> {
    let totals = &mut state.claude;
    if let Some(map) = v.get("modelUsage") {
        let mut session = model_usage(map);
        // The CLI's own total, not a sum of rounded parts.
        session.cost_usd = v
            .get("total_cost_usd")
            .and_then(Value::as_f64)
            .or(session.cost_usd);
        totals.session = Some(session);
    }
    if let Some(map) = v.get("model_usage_since_last_result") {
        add(
            totals.since.get_or_insert_with(Usage::default),
            &model_usage(map),
        );
    }
    // A fresh session's totals are this run's; a resumed one's include
    // earlier tasks, so only what was used since counts.
    let usage = match (state.resumed, &totals.since, &totals.session) {
        (true, Some(since), _) => Some(since.clone()),
        (_, _, Some(session)) => Some(session.clone()),
        (_, since, None) => since.clone(),
    };
    if let Some(usage) = usage {
        state.usage = usage;
    }

    // Tool calls the CLI refused (none with permissions skipped; kept in
    // view should a setting deny some).
    let mut events: Vec<AgentEvent> = v
        .get("permission_denials")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|denial| AgentEvent::Log {
            subtype: "permission_denied".into(),
            line: denial.to_string(),
        })
        .collect();
    let is_error = v.get("is_error").and_then(Value::as_bool).unwrap_or(false);
    let subtype = str_at(v, "subtype").unwrap_or("success");
    if !is_error && !subtype.starts_with("error") {
        if let Some(text) = str_at(v, "result").filter(|t| !t.trim().is_empty()) {
            state.final_text = Some(text.to_string());
        }
        return events;
    }
    let errors: Vec<String> = v
        .get("errors")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(text_of).collect())
        .unwrap_or_default();
    let message = if errors.is_empty() {
        str_at(v, "result")
            .filter(|t| !t.trim().is_empty())
            .unwrap_or(subtype)
            .to_string()
    } else {
        errors.join("; ")
    };
    if state.failure.is_some() && v.get("errors").is_none() {
        // Already reported, by the synthetic message this result repeats.
        return events;
    }
    if state.claude.no_credentials {
        state.failure_reason = Some("agent_auth");
    }
    state.failure = Some(message.clone());
    events.push(AgentEvent::Error {
        message,
        kind: Some(subtype.to_string()),
    });
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line of a fixture recorded from the real CLI.
    fn parse_fixture(text: &str, resumed: bool) -> (Vec<AgentEvent>, RunState, Vec<String>) {
        let mut state = RunState {
            resumed,
            ..RunState::default()
        };
        let (mut all, mut unknown) = (Vec::new(), Vec::new());
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match Claude.parse_line(line, &mut state) {
                Some(events) => all.extend(events),
                None => unknown.push(line.to_string()),
            }
        }
        (all, state, unknown)
    }

    fn last_result(text: &str) -> Value {
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .rfind(|v| v["type"] == "result")
            .unwrap()
    }

    #[test]
    fn a_tool_using_run_is_normalised() {
        let text = include_str!("fixtures/claude/write.jsonl");
        let (events, state, unknown) = parse_fixture(text, false);
        assert!(unknown.is_empty(), "{unknown:?}");
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| match e {
                AgentEvent::Message(_) => "message",
                AgentEvent::ToolCall { .. } => "tool_call",
                AgentEvent::ToolResult { .. } => "tool_result",
                _ => "other",
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "message",
                "tool_call",
                "tool_call",
                "tool_result",
                "tool_result",
                "message"
            ]
        );
        assert!(matches!(&events[1], AgentEvent::ToolCall { name, .. } if name == "Write"));
        assert!(
            matches!(&events[4], AgentEvent::ToolResult { output, is_error: false, .. } if output == "line1\nline2")
        );
        assert_eq!(state.final_text.as_deref(), Some("Written both."));
        assert!(state.failure.is_none());
        assert_eq!(state.session.version.as_deref(), Some("2.1.332"));
        assert_eq!(state.session.model.as_deref(), Some("claude-opus-5-5"));
        assert!(state.session.id.is_some());
        // Usage: the sum of modelUsage; cost: total_cost_usd.
        let result = last_result(text);
        assert_eq!(state.usage.input_tokens, 200);
        assert_eq!(state.usage.output_tokens, 40);
        assert_eq!(state.usage.cost_usd, result["total_cost_usd"].as_f64());
    }

    #[test]
    fn a_sub_agent_is_tagged_and_never_the_answer() {
        let text = include_str!("fixtures/claude/sub.jsonl");
        let (events, state, _) = parse_fixture(text, false);
        let sub: Vec<&AgentEvent> = events
            .iter()
            .filter_map(|e| match e {
                AgentEvent::Sub { parent_id, event } if parent_id == "toolu_mock0001" => {
                    Some(event.as_ref())
                }
                _ => None,
            })
            .collect();
        assert!(sub.contains(&&AgentEvent::Message(
            "SUBDONE: the sub-agent looked.".into()
        )));
        assert!(
            sub.iter()
                .any(|e| matches!(e, AgentEvent::Log { subtype, .. } if subtype == "task_started"))
        );
        // Two result lines; the last main-agent answer wins, tokens are the
        // session's (main and sub-agent), not a sum over result lines.
        assert_eq!(
            state.final_text.as_deref(),
            Some("Main: the sub-agent finished.")
        );
        assert_eq!(state.usage.input_tokens, 350);
        assert_eq!(state.usage.output_tokens, 65);
        assert_eq!(state.usage.cost_usd, Some(0.0027));
        assert!(state.failure.is_none());
    }

    #[test]
    fn no_credentials_is_one_auth_error_naming_the_variable() {
        let (events, state, _) = parse_fixture(include_str!("fixtures/claude/nokey.jsonl"), false);
        let errors: Vec<&AgentEvent> = events
            .iter()
            .filter(|e| matches!(e, AgentEvent::Error { .. }))
            .collect();
        assert_eq!(errors.len(), 1, "{events:?}");
        assert!(
            matches!(errors[0], AgentEvent::Error { message, kind: Some(k) }
                if message.contains("ANTHROPIC_API_KEY") && k == "authentication_failed")
        );
        assert!(!events.iter().any(|e| matches!(e, AgentEvent::Message(_))));
        assert_eq!(state.failure_reason, Some("agent_auth"));
    }

    #[test]
    fn an_api_error_is_one_error_event_with_its_kind() {
        let (events, state, _) =
            parse_fixture(include_str!("fixtures/claude/error400.jsonl"), false);
        assert!(
            matches!(events.as_slice(), [AgentEvent::Error { message, kind: Some(k) }]
                if message.starts_with("Prompt is too long") && k == "invalid_request"),
            "{events:?}"
        );
        assert!(state.failure.is_some());
        assert_eq!(state.failure_reason, None);
    }

    #[test]
    fn error_results_carry_their_errors() {
        let (events, state, _) =
            parse_fixture(include_str!("fixtures/claude/maxturns.jsonl"), false);
        assert!(
            matches!(events.last(), Some(AgentEvent::Error { message, kind: Some(k) })
            if message == "Reached maximum number of turns (2)" && k == "error_max_turns")
        );
        assert_eq!(
            state.failure.as_deref(),
            Some("Reached maximum number of turns (2)")
        );
    }

    #[test]
    fn an_image_result_is_named_not_inlined() {
        let (events, _, _) = parse_fixture(include_str!("fixtures/claude/image.jsonl"), false);
        let output = events
            .iter()
            .find_map(|e| match e {
                AgentEvent::ToolResult { output, .. } => Some(output.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(output, "[image: image/png]");
    }

    #[test]
    fn a_refused_key_ends_the_run_at_its_first_retry() {
        let (events, state, _) = parse_fixture(include_str!("fixtures/claude/badkey.jsonl"), false);
        assert!(state.abort);
        assert_eq!(state.failure_reason, Some("agent_auth"));
        let errors: Vec<&AgentEvent> = events
            .iter()
            .filter(|e| matches!(e, AgentEvent::Error { .. }))
            .collect();
        assert!(
            matches!(errors.as_slice(), [AgentEvent::Error { message, .. }] if message.contains("ANTHROPIC_API_KEY"))
        );
    }

    #[test]
    fn refused_tool_calls_are_logged() {
        // The real result line, with a denial as the CLI lists them when a
        // setting refuses a tool.
        let mut result = last_result(include_str!("fixtures/claude/write.jsonl"));
        result["permission_denials"] =
            serde_json::json!([{"tool_name": "Bash", "tool_use_id": "toolu_9", "tool_input": {}}]);
        let mut state = RunState::default();
        let events = Claude.parse_line(&result.to_string(), &mut state).unwrap();
        assert!(
            matches!(events.as_slice(), [AgentEvent::Log { subtype, line }]
                if subtype == "permission_denied" && line.contains("toolu_9")),
            "{events:?}"
        );
        assert!(state.failure.is_none());
    }

    #[test]
    fn retries_are_logged() {
        let (events, state, _) = parse_fixture(include_str!("fixtures/claude/retry.jsonl"), false);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, AgentEvent::Log { subtype, line }
            if subtype == "api_retry" && line.contains("529")))
        );
        assert_eq!(
            state.final_text.as_deref(),
            Some("Recovered after a retry.")
        );
    }

    #[test]
    fn a_resumed_run_counts_only_its_own_usage() {
        let text = include_str!("fixtures/claude/resume.jsonl");
        let (_, state, _) = parse_fixture(text, true);
        // The session's totals include the earlier run (300 tokens).
        assert_eq!(
            last_result(text)["modelUsage"]["claude-opus-5-5"]["inputTokens"],
            300
        );
        assert_eq!(state.usage.input_tokens, 100);
        assert_eq!(state.usage.cost_usd, Some(0.0008));
    }

    #[test]
    fn the_prompt_goes_on_stdin_and_a_session_is_resumed() {
        let run = Claude.invocation(&RunRequest {
            prompt: "-rf everything",
            model: Some("opus"),
            resume: Some("abc"),
        });
        assert_eq!(run.stdin, "-rf everything");
        assert!(!run.argv.iter().any(|a| a.contains("everything")));
        assert!(run.argv.windows(2).any(|w| w == ["--model", "opus"]));
        assert!(run.argv.windows(2).any(|w| w == ["--resume", "abc"]));
        assert!(Claude.check_model("anthropic/claude").is_err());
        assert!(Claude.check_model("claude-sonnet-4-5").is_ok());
    }
}
