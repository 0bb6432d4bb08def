//! Running one task: wake the sandbox, checkpoint the app directory, run
//! the agent ([`agent`]), list the changed files, judge the run
//! ([`verdict`]), run the check ([`check`]), and record the outcome.

mod agent;
mod check;
mod events;
mod verdict;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Tasks;
use super::checkpoint::{self, Checkpoint};
use crate::agents;
use crate::docker::Target;
use crate::docker::spec::exec_environment;
use crate::store::{TaskRecord, TaskStatus};

use agent::Ending;

struct Outcome {
    status: TaskStatus,
    exit_code: Option<i64>,
    result: Value,
}

pub(super) async fn run(tasks: &Tasks, task: &TaskRecord, cancel: &CancellationToken) {
    let began = Instant::now();
    let outcome = match run_phases(tasks, task, cancel, began).await {
        Ok(outcome) => outcome,
        Err(message) => refused(tasks, task, began, None, "sandbox_unavailable", message).await,
    };
    tasks
        .finish(&task.id, outcome.status, outcome.exit_code, outcome.result)
        .await;
}

/// The task's `env` as `KEY=value` pairs, for its execs (over the
/// sandbox's own: a claimed warm-pool container was made without it).
fn task_env(task: &TaskRecord) -> Vec<String> {
    task.env.0.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// A `log` event from berth itself.
async fn note(tasks: &Tasks, task_id: &str, line: impl Into<String>) {
    tasks
        .emit(
            task_id,
            "log",
            json!({"stream": "berth", "line": line.into()}),
        )
        .await;
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
    let target = inner
        .sandboxes
        .running_target(&sandbox)
        .await
        .map_err(|e| format!("could not start the sandbox: {e}"))?;

    let sandbox_env = exec_environment(&sandbox);

    phase(tasks, &task.id, "checkpoint").await;
    let checkpoint = take_checkpoint(tasks, task, &target).await?;

    let resume = if task.resume {
        match inner.store.previous_session(task).await {
            Ok(Some(session)) => Some(session),
            Ok(None) => {
                return Ok(refused(
                    tasks,
                    task,
                    began,
                    checkpoint,
                    "no_session",
                    format!(
                        "continue: no earlier `{}` task in this sandbox recorded a session",
                        task.agent
                    ),
                )
                .await);
            }
            Err(e) => return Err(format!("could not look up the session to continue: {e}")),
        }
    } else {
        None
    };

    phase(tasks, &task.id, "agent").await;
    let (ending, state) = agent::run(
        tasks,
        task,
        agent,
        resume.as_deref(),
        (&target, &sandbox_env),
        cancel,
        deadline,
    )
    .await?;

    let changes = match &checkpoint {
        Some(sha) => changed_files(tasks, task, &target, sha).await,
        None => None,
    };
    let after = changes.as_ref().and_then(|c| c.after.clone());
    let files_changed = changes.map(|c| c.files);

    let exit_code = match ending {
        Ending::Exited(code) => code,
        _ => None,
    };
    let mut failure = verdict::judge(
        &ending,
        &state,
        &task.agent,
        task.timeout_s,
        files_changed.as_ref().map(Vec::len),
    );

    let mut check_result = Value::Null;
    if let (None, Some(command)) = (&failure, &task.check_cmd) {
        phase(tasks, &task.id, "check").await;
        let (result, failed) =
            check::run(tasks, task, (&target, &sandbox_env), command, deadline).await;
        check_result = result;
        failure = failed;
    }

    let status = verdict::status(&ending, failure.is_some());
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
        "files_changed": files_changed.unwrap_or_default(),
        "checkpoint": checkpoint,
        "after": after,
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

/// The git checkpoint of the app directory before the agent runs (`None`
/// when there is no git or it failed, which the task's log tells).
async fn take_checkpoint(
    tasks: &Tasks,
    task: &TaskRecord,
    target: &Target,
) -> Result<Option<String>, String> {
    match checkpoint::take(&tasks.inner().docker, target, &task.id).await {
        Ok(Checkpoint::Taken(sha)) => Ok(Some(sha)),
        Ok(Checkpoint::NoGit) => {
            note(
                tasks,
                &task.id,
                "git is not installed in this sandbox: no checkpoint, no file list, no revert",
            )
            .await;
            Ok(None)
        }
        Ok(Checkpoint::Failed(why)) => {
            note(tasks, &task.id, format!("checkpoint failed: {why}")).await;
            Ok(None)
        }
        Err(e) => Err(format!("could not run in the sandbox: {e}")),
    }
}

/// The files changed since the checkpoint, with the end tree; `None` when
/// the listing failed (the task's log tells).
async fn changed_files(
    tasks: &Tasks,
    task: &TaskRecord,
    target: &Target,
    checkpoint: &str,
) -> Option<checkpoint::Changes> {
    match checkpoint::changes_since(&tasks.inner().docker, target, checkpoint, &task.id).await {
        Ok(changes) => Some(changes),
        Err(why) => {
            tracing::warn!(task = %task.id, error = %why, "could not list the files the agent changed");
            note(
                tasks,
                &task.id,
                format!("could not list the changed files: {why}"),
            )
            .await;
            None
        }
    }
}

/// A task that fails before its agent starts: the error event and the
/// outcome (`checkpoint` when one was taken).
async fn refused(
    tasks: &Tasks,
    task: &TaskRecord,
    began: Instant,
    checkpoint: Option<String>,
    reason: &str,
    message: String,
) -> Outcome {
    tasks
        .emit(&task.id, "error", json!({"message": message}))
        .await;
    Outcome {
        status: TaskStatus::Failed,
        exit_code: None,
        result: json!({
            "failure_reason": reason,
            "error": message,
            "checkpoint": checkpoint,
            "duration_ms": began.elapsed().as_millis() as u64,
        }),
    }
}

async fn phase(tasks: &Tasks, task_id: &str, phase: &str) {
    tasks
        .emit(
            task_id,
            "status",
            json!({"status": "running", "phase": phase}),
        )
        .await;
}
