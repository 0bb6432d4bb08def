//! The agent's output lines as task events.

use serde_json::json;

use crate::agents::{self, AgentEvent, RunState};
use crate::tasks::Tasks;

/// Tool output beyond this is cut in events (the agent saw all of it).
const MAX_TOOL_OUTPUT: usize = 64 * 1024;

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("\n[… cut by berth]");
    }
    s
}

/// The event's type and data; a sub-agent's event is its inner event with
/// `parent_id` added.
fn event_data(event: AgentEvent) -> (&'static str, serde_json::Value) {
    match event {
        AgentEvent::Message(text) => ("message", json!({"text": text})),
        AgentEvent::ToolCall { id, name, input } => {
            ("tool_call", json!({"id": id, "name": name, "input": input}))
        }
        AgentEvent::ToolResult {
            id,
            output,
            is_error,
        } => (
            "tool_result",
            json!({"id": id, "output": truncate(output, MAX_TOOL_OUTPUT), "is_error": is_error}),
        ),
        AgentEvent::Error {
            message,
            kind: None,
        } => ("error", json!({"message": message})),
        AgentEvent::Error {
            message,
            kind: Some(kind),
        } => ("error", json!({"message": message, "kind": kind})),
        AgentEvent::Log { subtype, line } => (
            "log",
            json!({"stream": "agent", "subtype": subtype, "line": line}),
        ),
        AgentEvent::Sub { parent_id, event } => {
            let (kind, mut data) = event_data(*event);
            data["parent_id"] = json!(parent_id);
            (kind, data)
        }
    }
}

async fn emit_agent_event(tasks: &Tasks, task_id: &str, event: AgentEvent) {
    let (kind, data) = event_data(event);
    tasks.emit(task_id, kind, data).await;
}

/// One line of the agent's stdout: its parsed events, or a `log` event for
/// a line the agent's parser does not know.
pub(super) async fn handle_stdout_line(
    tasks: &Tasks,
    task_id: &str,
    agent: &dyn agents::Agent,
    line: &str,
    state: &mut RunState,
) {
    if line.trim().is_empty() {
        return;
    }
    match agent.parse_line(line, state) {
        Some(events) => {
            for event in events {
                emit_agent_event(tasks, task_id, event).await;
            }
        }
        None => {
            tasks
                .emit(task_id, "log", json!({"stream": "stdout", "line": line}))
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{AgentEvent, event_data, truncate};

    #[test]
    fn a_sub_agents_event_carries_its_parent() {
        let (kind, data) = event_data(AgentEvent::Sub {
            parent_id: "toolu_1".into(),
            event: Box::new(AgentEvent::Message("hi".into())),
        });
        assert_eq!(kind, "message");
        assert_eq!(
            data,
            serde_json::json!({"text": "hi", "parent_id": "toolu_1"})
        );
    }

    #[test]
    fn truncation_never_cuts_a_character() {
        let s = "é".repeat(10);
        let cut = truncate(s, 5);
        assert!(cut.starts_with("éé"));
        assert!(cut.ends_with("[… cut by berth]"));
    }
}
