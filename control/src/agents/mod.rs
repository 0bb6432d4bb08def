//! Coding-agent adapters: how to start an agent headlessly, and how to read
//! what it prints into berth's normalised events.
//!
//! One file per agent behind the [`Agent`] trait; adding an agent is adding a
//! file and a line in [`by_name`].

mod claude;
mod installed;
mod opencode;

pub use installed::InstalledAgents;

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
    Error(String),
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
}

impl RunState {
    /// Records that the agent reported a failure; the event to emit.
    pub fn fail(&mut self, message: String) -> AgentEvent {
        self.failure = Some(message.clone());
        AgentEvent::Error(message)
    }

    /// Whether the agent said or did anything at all.
    pub fn did_anything(&self) -> bool {
        self.messages > 0 || self.tool_calls > 0
    }
}

pub trait Agent: Send + Sync {
    fn name(&self) -> &'static str;

    /// The argv that runs the agent headlessly on `prompt`.
    fn command(&self, prompt: &str, model: Option<&str>) -> Vec<String>;

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
/// anything else.
pub(crate) fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .map(|b| match b.get("text").and_then(Value::as_str) {
                Some(t) => t.to_string(),
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
