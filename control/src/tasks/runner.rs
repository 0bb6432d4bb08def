//! Running one task: wake the sandbox, checkpoint the app directory, stream
//! the agent's output into events, list the changed files, run the check,
//! and record the outcome.

use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::Tasks;
use super::checkpoint::{self, APP_DIR, Checkpoint};
use super::lines::LineBuffer;
use crate::agents::{self, AgentEvent, RunState};
use crate::docker::ExecRequest;
use crate::store::{TaskRecord, TaskStatus};

/// Tool output beyond this is cut in events (the agent saw all of it).
const MAX_TOOL_OUTPUT: usize = 64 * 1024;
/// Lines of the check's output kept in the result.
const CHECK_TAIL_LINES: usize = 40;

/// How the agent's process ended.
enum Ending {
    Exited(Option<i64>),
    Cancelled,
    TimedOut,
    /// Control is shutting down.
    Stopped,
}

struct Outcome {
    status: TaskStatus,
    exit_code: Option<i64>,
    result: Value,
}

pub(super) async fn run(tasks: &Tasks, task: &TaskRecord, cancel: &CancellationToken) {
    let began = Instant::now();
    let outcome = match run_phases(tasks, task, cancel, began).await {
        Ok(outcome) => outcome,
        Err(message) => {
            tasks
                .emit(&task.id, "error", json!({"message": message}))
                .await;
            Outcome {
                status: TaskStatus::Failed,
                exit_code: None,
                result: json!({
                    "failure_reason": "sandbox_unavailable",
                    "error": message,
                    "duration_ms": began.elapsed().as_millis() as u64,
                }),
            }
        }
    };
    tasks
        .finish(&task.id, outcome.status, outcome.exit_code, outcome.result)
        .await;
}

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

async fn emit_agent_event(tasks: &Tasks, task_id: &str, event: AgentEvent) {
    let (kind, data) = match event {
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
        AgentEvent::Error(message) => ("error", json!({"message": message})),
    };
    tasks.emit(task_id, kind, data).await;
}

/// Everything from waking the sandbox to the outcome; `Err` when the
/// sandbox could not be used at all.
async fn run_phases(
    tasks: &Tasks,
    task: &TaskRecord,
    cancel: &CancellationToken,
    began: Instant,
) -> Result<Outcome, String> {
    let inner = tasks.inner();
    let deadline = began + Duration::from_secs(u64::try_from(task.timeout_s).unwrap_or(600));
    let agent =
        agents::by_name(&task.agent).ok_or_else(|| format!("unknown agent `{}`", task.agent))?;

    let sandbox = inner
        .sandboxes
        .get(&task.sandbox_id)
        .await
        .map_err(|e| format!("sandbox unavailable: {e}"))?;
    // Busy for the whole task: the idle reaper leaves the sandbox alone.
    let _busy = inner.sandboxes.activity().busy(&sandbox.id);
    let container = inner
        .sandboxes
        .running_container(&sandbox)
        .await
        .map_err(|e| format!("could not start the sandbox: {e}"))?;

    tasks
        .emit(
            &task.id,
            "status",
            json!({"status": "running", "phase": "checkpoint"}),
        )
        .await;
    let checkpoint = match checkpoint::take(&inner.docker, &container, &task.id).await {
        Ok(Checkpoint::Taken(sha)) => Some(sha),
        Ok(Checkpoint::NoGit) => {
            tasks
                .emit(&task.id, "log", json!({"stream": "berth", "line": "git is not installed in this sandbox: no checkpoint, no file list, no revert"}))
                .await;
            None
        }
        Ok(Checkpoint::Failed(why)) => {
            tasks
                .emit(
                    &task.id,
                    "log",
                    json!({"stream": "berth", "line": format!("checkpoint failed: {why}")}),
                )
                .await;
            None
        }
        Err(e) => return Err(format!("could not run in the sandbox: {e}")),
    };

    tasks
        .emit(
            &task.id,
            "status",
            json!({"status": "running", "phase": "agent"}),
        )
        .await;
    let mut state = RunState::default();
    let request = ExecRequest {
        cmd: agent.command(&task.prompt, task.model.as_deref()),
        cwd: Some(APP_DIR.into()),
        env: task.env.0.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        stdin: None,
        timeout: Duration::ZERO,
        output_limit: 0,
    };
    let mut attached = inner
        .docker
        .exec_attached(&container, &request)
        .await
        .map_err(|e| format!("could not start the agent: {e}"))?;
    let _ = attached.input.shutdown().await;
    let _ = inner
        .store
        .set_task_exec(&task.id, Some(&attached.exec_id))
        .await;

    let (mut out_lines, mut err_lines) = (LineBuffer::default(), LineBuffer::default());
    let ending = loop {
        tokio::select! {
            chunk = attached.output.next() => match chunk {
                Some(Ok(LogOutput::StdErr { message })) => {
                    for line in err_lines.push(&message) {
                        tasks.emit(&task.id, "log", json!({"stream": "stderr", "line": line})).await;
                    }
                }
                Some(Ok(LogOutput::StdOut { message } | LogOutput::Console { message })) => {
                    for line in out_lines.push(&message) {
                        handle_stdout_line(tasks, &task.id, agent, &line, &mut state).await;
                    }
                }
                Some(Ok(LogOutput::StdIn { .. })) => {}
                Some(Err(e)) => {
                    tasks.emit(&task.id, "log", json!({"stream": "berth", "line": format!("reading the agent's output failed: {e}")})).await;
                    break Ending::Exited(inner.docker.exec_exit_code(&attached.exec_id).await.ok().flatten());
                }
                None => break Ending::Exited(inner.docker.exec_exit_code(&attached.exec_id).await.ok().flatten()),
            },
            () = cancel.cancelled() => {
                inner.docker.kill_exec(&attached.exec_id).await;
                break if inner.shutdown.is_cancelled() { Ending::Stopped } else { Ending::Cancelled };
            }
            () = tokio::time::sleep_until(deadline.into()) => {
                inner.docker.kill_exec(&attached.exec_id).await;
                break Ending::TimedOut;
            }
        }
    };
    if let Some(line) = out_lines.finish() {
        handle_stdout_line(tasks, &task.id, agent, &line, &mut state).await;
    }
    if let Some(line) = err_lines.finish() {
        tasks
            .emit(&task.id, "log", json!({"stream": "stderr", "line": line}))
            .await;
    }
    let _ = inner.store.set_task_exec(&task.id, None).await;

    let files_changed = match &checkpoint {
        Some(sha) => checkpoint::changes_since(&inner.docker, &container, sha, &task.id)
            .await
            .unwrap_or_default(),
        None => Vec::new(),
    };

    let exit_code = match ending {
        Ending::Exited(code) => code,
        _ => None,
    };
    let mut failure: Option<(&str, String)> = match (&ending, exit_code) {
        (Ending::Cancelled, _) => Some(("cancelled", "cancelled".to_string())),
        (Ending::TimedOut, _) => Some((
            "agent_timeout",
            format!("the agent ran past its timeout of {} s", task.timeout_s),
        )),
        (Ending::Stopped, _) => Some((
            "control_stopped",
            "the control plane shut down while this task ran".to_string(),
        )),
        (Ending::Exited(_), Some(126 | 127)) if !state.did_anything() => Some((
            "agent_missing",
            format!(
                "the `{}` CLI is not installed in this sandbox's image",
                task.agent
            ),
        )),
        (Ending::Exited(_), _) if state.failure.is_some() => {
            Some(("agent_error", state.failure.clone().unwrap_or_default()))
        }
        (Ending::Exited(_), Some(code)) if code != 0 => {
            Some(("agent_error", format!("the agent exited with code {code}")))
        }
        (Ending::Exited(_), None) => Some((
            "agent_error",
            "the agent's exit code is unknown".to_string(),
        )),
        (Ending::Exited(_), Some(_)) if !state.did_anything() && files_changed.is_empty() => {
            Some((
                "no_output",
                "the agent exited 0 without saying or doing anything".to_string(),
            ))
        }
        _ => None,
    };

    let mut check_result = Value::Null;
    if let (None, Some(check)) = (&failure, &task.check_cmd) {
        tasks
            .emit(
                &task.id,
                "status",
                json!({"status": "running", "phase": "check"}),
            )
            .await;
        let remaining = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        let request = ExecRequest {
            cmd: vec!["/bin/sh".into(), "-lc".into(), check.clone()],
            cwd: Some(APP_DIR.into()),
            env: request.env.clone(),
            stdin: None,
            timeout: remaining,
            output_limit: 1 << 20,
        };
        match inner.docker.exec(&container, &request).await {
            Ok(out) => {
                let mut combined = out.stdout.clone();
                combined.extend_from_slice(&out.stderr);
                let ok = out.exit_code == Some(0);
                check_result = json!({
                    "command": check,
                    "ok": ok,
                    "exit_code": out.exit_code,
                    "timed_out": out.timed_out,
                    "output_tail": checkpoint::tail(&combined, CHECK_TAIL_LINES),
                });
                if !ok {
                    failure = Some(("check_failed", format!("the check `{check}` failed")));
                }
            }
            Err(e) => {
                failure = Some(("check_failed", format!("the check could not run: {e}")));
            }
        }
    }

    let status = match (&ending, &failure) {
        (Ending::Cancelled, _) => TaskStatus::Cancelled,
        (Ending::TimedOut, _) => TaskStatus::TimedOut,
        (_, Some(_)) => TaskStatus::Failed,
        (_, None) => TaskStatus::Succeeded,
    };
    if let Some((_, message)) = &failure {
        if !matches!(ending, Ending::Cancelled)
            && state.failure.as_deref() != Some(message.as_str())
        {
            tasks
                .emit(&task.id, "error", json!({"message": message}))
                .await;
        }
    }
    let mut result = json!({
        "message": state.final_text,
        "files_changed": files_changed,
        "checkpoint": checkpoint,
        "usage": state.usage,
        "duration_ms": began.elapsed().as_millis() as u64,
    });
    if !check_result.is_null() {
        result["check"] = check_result;
    }
    if let Some((reason, message)) = failure {
        result["failure_reason"] = json!(reason);
        result["error"] = json!(message);
    }
    Ok(Outcome {
        status,
        exit_code,
        result,
    })
}

async fn handle_stdout_line(
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
