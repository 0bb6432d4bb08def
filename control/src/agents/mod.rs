//! Coding-agent adapters: how to start an agent headlessly, and how to read
//! what it prints into berth's normalised events.
//!
//! One file per agent behind the [`Agent`] trait; adding an agent is adding a
//! file and a line in [`by_name`].

mod claude;
mod installed;
mod opencode;

pub use installed::{AgentInfo, InstalledAgents};

use std::collections::HashSet;

use serde::Serialize;
use serde_json::Value;

/// What an agent did, normalised across agents.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    /// Assistant text.
    Message(String),
    ToolCall {
        id: String,
        name: String,
        input: Value,
    },
    ToolResult {
        id: String,
        output: String,
        is_error: bool,
    },
    /// The agent failed; `kind` is the agent's own name for the failure
    /// (`authentication_failed`, `error_max_turns`, …) when it gives one.
    Error {
        message: String,
        kind: Option<String>,
    },
    /// A note about the agent's own workings (an API retry, a permission
    /// refused, a sub-agent starting): a `log` event with `subtype`.
    Log { subtype: String, line: String },
    /// An event of a sub-agent, started by the main agent's tool call
    /// `parent_id`: the inner event, tagged with `parent_id`.
    Sub {
        parent_id: String,
        event: Box<AgentEvent>,
    },
}

impl AgentEvent {
    pub fn error(message: impl Into<String>) -> Self {
        AgentEvent::Error {
            message: message.into(),
            kind: None,
        }
    }
}

/// The agent's session: what it reported about itself when it started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Session {
    pub id: Option<String>,
    /// The model the agent really uses.
    pub model: Option<String>,
    /// The agent CLI's version.
    pub version: Option<String>,
}

/// How to run one task's agent.
#[derive(Debug, Clone, Copy)]
pub struct RunRequest<'a> {
    pub prompt: &'a str,
    pub model: Option<&'a str>,
    /// The agent session to resume (`"continue": true`).
    pub resume: Option<&'a str>,
}

/// The process that runs the agent: the prompt goes on stdin, never in
/// argv (no quoting by the CLI, no prompt read as a flag).
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub argv: Vec<String>,
    pub stdin: String,
    /// `KEY=value` pairs the adapter needs (before the task's own env).
    pub env: Vec<String>,
}

/// Tokens and cost, when the agent reports them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

/// What a parser learns over a whole run.
#[derive(Debug, Default)]
pub struct RunState {
    /// The agent's final answer, or its last text.
    pub final_text: Option<String>,
    pub usage: Usage,
    /// The agent said the run failed.
    pub failure: Option<String>,
    /// Tool calls already reported (agents may report one several times).
    pub tools_seen: HashSet<String>,
    pub tools_finished: HashSet<String>,
    pub messages: usize,
    pub tool_calls: usize,
    /// What the agent said about its session; `session_changed` is set
    /// when it changed, for the runner to record it and clear the flag.
    pub session: Session,
    pub session_changed: bool,
    /// The failure reason when it is more precise than `agent_error`
    /// (`agent_auth`).
    pub failure_reason: Option<&'static str>,
    /// The run resumes an earlier session: usage the agent reports for the
    /// whole session includes earlier tasks'.
    pub resumed: bool,
    /// The run cannot succeed (the provider refused the credentials): the
    /// runner kills the agent instead of letting it retry.
    pub abort: bool,
    /// Claude Code's running totals (see `claude.rs`).
    pub(crate) claude: claude::Totals,
}

impl RunState {
    /// Records that the agent reported a failure; the event to emit.
    pub fn fail(&mut self, message: String) -> AgentEvent {
        self.failure = Some(message.clone());
        AgentEvent::error(message)
    }

    /// Records the session facts that are given; flags a change.
    pub fn set_session(&mut self, id: Option<&str>, model: Option<&str>, version: Option<&str>) {
        let next = Session {
            id: id.map(String::from).or_else(|| self.session.id.clone()),
            model: model
                .map(String::from)
                .or_else(|| self.session.model.clone()),
            version: version
                .map(String::from)
                .or_else(|| self.session.version.clone()),
        };
        if next != self.session {
            self.session = next;
            self.session_changed = true;
        }
    }

    /// Whether the agent said or did anything at all.
    pub fn did_anything(&self) -> bool {
        self.messages > 0 || self.tool_calls > 0
    }
}

pub trait Agent: Send + Sync {
    fn name(&self) -> &'static str;

    /// How to run the agent headlessly.
    fn invocation(&self, run: &RunRequest<'_>) -> Invocation;

    /// Whether `model` is a model name this agent takes; the message says
    /// what it expects.
    fn check_model(&self, model: &str) -> Result<(), String> {
        let _ = model;
        Ok(())
    }

    /// Reads one line of the agent's stdout; `None` when it is not a line
    /// this adapter understands (it is then kept as a `log` event).
    fn parse_line(&self, line: &str, state: &mut RunState) -> Option<Vec<AgentEvent>>;
}

/// The adapter for an agent name.
pub fn by_name(name: &str) -> Option<&'static dyn Agent> {
    match name {
        "claude" => Some(&claude::Claude),
        "opencode" => Some(&opencode::OpenCode),
        _ => None,
    }
}

pub const NAMES: [&str; 2] = ["claude", "opencode"];

/// Text of a tool result that may be a string, a list of content blocks, or
/// anything else. An image block is named, never inlined (its base64 data
/// is no use in a text log).
pub(crate) fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .map(|b| match b.get("text").and_then(Value::as_str) {
                Some(t) => t.to_string(),
                None if b.get("type").and_then(Value::as_str) == Some("image") => {
                    let media = b
                        .pointer("/source/media_type")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown type");
                    format!("[image: {media}]")
                }
                None => text_of(b),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn as_u64(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}
