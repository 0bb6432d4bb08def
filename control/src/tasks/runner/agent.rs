//! The agent phase: the agent's CLI runs in the sandbox, its output becomes
//! events as it is written, and it is killed (with everything it started)
//! when the task is cancelled or runs past its deadline.

use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use futures_util::StreamExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::events::handle_stdout_line;
use super::note;
use crate::agents::{Agent, RunRequest, RunState};
use crate::docker::{ExecRequest, Target, feed_stdin};
use crate::store::TaskRecord;
use crate::tasks::Tasks;
use crate::tasks::checkpoint::APP_DIR;
use crate::tasks::lines::LineBuffer;

/// How the agent's process ended.
pub(super) enum Ending {
    Exited(Option<i64>),
    Cancelled,
    TimedOut,
    /// Control is shutting down.
    Stopped,
}

/// Runs the agent to its end (resuming `resume`, a session of an earlier
/// task). The exec carries the task's id as its marker, so recovery after a
/// crash finds and kills the agent even if recording the exec's id failed.
pub(super) async fn run(
    tasks: &Tasks,
    task: &TaskRecord,
    agent: &dyn Agent,
    resume: Option<&str>,
    (target, sandbox_env): (&Target, &[String]),
    cancel: &CancellationToken,
    deadline: Instant,
) -> Result<(Ending, RunState), String> {
    let inner = tasks.inner();
    let mut state = RunState {
        resumed: resume.is_some(),
        ..RunState::default()
    };
    let invocation = agent.invocation(&RunRequest {
        prompt: &task.prompt,
        model: task.model.as_deref(),
        resume,
    });
    // The sandbox's env, then the adapter's settings, then the task's env:
    // each may override the one before.
    let mut env = sandbox_env.to_vec();
    env.extend(invocation.env);
    env.extend(super::task_env(task));
    let request = ExecRequest {
        cmd: invocation.argv,
        cwd: Some(APP_DIR.into()),
        env,
        stdin: Some(invocation.stdin.into_bytes()),
        timeout: Duration::ZERO,
        output_limit: 0,
        marker: Some(task.id.clone()),
    };
    let mut attached = inner
        .docker
        .exec_attached(target, &request)
        .await
        .map_err(|e| format!("could not start the agent: {e}"))?;
    // The prompt on stdin, then end of input, beside the output reader
    // (writing may wait until the agent reads).
    let _feeding = feed_stdin(attached.input, request.stdin.clone());
    if let Err(e) = inner
        .store
        .set_task_exec(&task.id, attached.process.exec_id())
        .await
    {
        tracing::warn!(task = %task.id, error = %e, "could not record the agent's exec id (recovery finds the agent by its marker)");
    }

    let process = &attached.process;
    let exit_code = |why: &'static str| async move {
        match inner.docker.exit_code(process).await {
            Ok(code) => code,
            Err(e) => {
                tracing::warn!(task = %task.id, error = %e, why, "could not read the agent's exit code");
                note(
                    tasks,
                    &task.id,
                    format!("could not read the agent's exit code: {e}"),
                )
                .await;
                None
            }
        }
    };

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
                    record_session(tasks, &task.id, &mut state).await;
                    if state.abort {
                        // The adapter saw the run cannot succeed.
                        inner.docker.kill(&attached.process, &attached.marker).await;
                        break Ending::Exited(None);
                    }
                }
                Some(Ok(LogOutput::StdIn { .. })) => {}
                Some(Err(e)) => {
                    note(tasks, &task.id, format!("reading the agent's output failed: {e}")).await;
                    break Ending::Exited(exit_code("output failed").await);
                }
                None => break Ending::Exited(exit_code("output ended").await),
            },
            () = cancel.cancelled() => {
                inner.docker.kill(&attached.process, &attached.marker).await;
                break if inner.shutdown.is_cancelled() { Ending::Stopped } else { Ending::Cancelled };
            }
            () = tokio::time::sleep_until(deadline.into()) => {
                inner.docker.kill(&attached.process, &attached.marker).await;
                break Ending::TimedOut;
            }
        }
    };
    if let Some(line) = out_lines.finish() {
        handle_stdout_line(tasks, &task.id, agent, &line, &mut state).await;
        record_session(tasks, &task.id, &mut state).await;
    }
    if let Some(line) = err_lines.finish() {
        tasks
            .emit(&task.id, "log", json!({"stream": "stderr", "line": line}))
            .await;
    }
    if let Err(e) = inner.store.set_task_exec(&task.id, None).await {
        tracing::warn!(task = %task.id, error = %e, "could not clear the agent's exec id");
    }
    Ok((ending, state))
}

/// Stores the agent's session facts when they changed.
async fn record_session(tasks: &Tasks, task_id: &str, state: &mut RunState) {
    if !state.session_changed {
        return;
    }
    state.session_changed = false;
    let session = &state.session;
    if let Err(e) = tasks
        .inner()
        .store
        .set_task_session(
            task_id,
            session.id.as_deref(),
            session.model.as_deref(),
            session.version.as_deref(),
        )
        .await
    {
        tracing::warn!(task = %task_id, error = %e, "could not record the agent's session");
    }
}
