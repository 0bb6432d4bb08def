//! Coding-agent tasks: a prompt handed to an agent in a sandbox, run
//! headlessly, with its progress stored as events and streamed live.
//!
//! One task runs at a time per sandbox; later ones wait in a FIFO queue
//! (status `queued`). A worker per busy sandbox takes tasks from the queue
//! until it is empty. Every event is written to SQLite before it is sent.

mod checkpoint;
mod hub;
mod lines;
mod runner;
mod stream;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use serde_json::json;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::agents;
use crate::docker::{Docker, DockerError};
use crate::sandbox::{SandboxError, Sandboxes, request::validate_env};
use crate::store::{NewTask, Store, StoreError, TaskRecord, TaskStatus};

pub use checkpoint::APP_DIR;
pub use hub::Hub;

/// Most tasks that may wait behind a running one, per sandbox.
const MAX_QUEUED: i64 = 32;

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("{0}")]
    Invalid(String),
    #[error("no task `{0}` in this sandbox")]
    NotFound(String),
    /// A diff was asked for a file the task did not change.
    #[error("{0}")]
    Unchanged(String),
    #[error("{0}")]
    Conflict(String),
    /// The sandbox's image lacks the agent's CLI.
    #[error("{0}")]
    AgentMissing(String),
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub use berth_api::CreateTask;

struct Worker {
    task_id: String,
    cancel: CancellationToken,
}

pub(crate) struct Inner {
    pub sandboxes: Sandboxes,
    pub store: Store,
    pub docker: Docker,
    pub hub: Hub,
    pub agents: agents::InstalledAgents,
    workers: Mutex<HashMap<String, Worker>>,
    default_timeout: Duration,
    max_timeout: Duration,
    shutdown: CancellationToken,
}

#[derive(Clone)]
pub struct Tasks {
    inner: Arc<Inner>,
}

impl Tasks {
    pub fn new(
        sandboxes: Sandboxes,
        store: Store,
        docker: Docker,
        default_timeout: Duration,
        max_timeout: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                sandboxes,
                store,
                docker,
                hub: Hub::default(),
                agents: agents::InstalledAgents::default(),
                workers: Mutex::new(HashMap::new()),
                default_timeout: default_timeout.min(max_timeout),
                max_timeout,
                shutdown,
            }),
        }
    }

    /// Validates and queues a task; it starts at once when the sandbox runs
    /// no other task.
    pub async fn create(&self, sandbox_id: &str, req: CreateTask) -> Result<TaskRecord, TaskError> {
        let prompt = req.prompt.trim().to_string();
        if prompt.is_empty() {
            return Err(TaskError::Invalid("prompt must not be empty".into()));
        }
        if prompt.contains('\0') {
            return Err(TaskError::Invalid("prompt must not hold NUL bytes".into()));
        }
        if prompt.len() > 256 * 1024 {
            return Err(TaskError::Invalid("prompt must be at most 256 KiB".into()));
        }
        if let Some(agent) = req.agent.as_deref() {
            self.check_agent_and_model(agent, req.model.as_deref())?;
        }
        let timeout = match req.timeout_s {
            None => self.inner.default_timeout,
            Some(0) => return Err(TaskError::Invalid("timeout_s must be at least 1".into())),
            Some(s) if Duration::from_secs(s) > self.inner.max_timeout => {
                return Err(TaskError::Invalid(format!(
                    "timeout_s {s} is above this host's limit of {} (BERTH_TASK_TIMEOUT_MAX)",
                    self.inner.max_timeout.as_secs()
                )));
            }
            Some(s) => Duration::from_secs(s),
        };
        validate_env(&req.env)?;
        let check_cmd = match req.check {
            Some(c) if c.trim().is_empty() => None,
            Some(c) if c.len() > 8192 => {
                return Err(TaskError::Invalid("check must be at most 8 KiB".into()));
            }
            other => other,
        };
        let sandbox = self.inner.sandboxes.get(sandbox_id).await?;
        let installed = self.installed_in(&sandbox.image).await;
        // Without a choice: OpenCode where the image has it (or does not
        // say), else Claude Code, which berth's image always has.
        let agent = match req.agent.as_deref() {
            Some(agent) => agent,
            None => {
                let has = |name: &str| {
                    installed
                        .as_ref()
                        .is_none_or(|list| list.iter().any(|a| a.name == name))
                };
                let agent = if has("opencode") || !has("claude") {
                    "opencode"
                } else {
                    "claude"
                };
                self.check_agent_and_model(agent, req.model.as_deref())?;
                agent
            }
        };
        if let Some(list) = installed
            .as_ref()
            .filter(|l| !l.iter().any(|a| a.name == agent))
        {
            return Err(TaskError::AgentMissing(format!(
                "the `{agent}` CLI is not installed in this sandbox's image ({}); it has: {}",
                sandbox.image,
                if list.is_empty() {
                    "no agent CLIs".to_string()
                } else {
                    list.iter()
                        .map(|a| a.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )));
        }
        if req.resume
            && !self
                .inner
                .store
                .has_task_of_agent(&sandbox.id, agent)
                .await?
        {
            return Err(TaskError::Invalid(format!(
                "continue: this sandbox has no earlier `{agent}` task to continue"
            )));
        }
        if self.inner.store.count_queued_tasks(&sandbox.id).await? >= MAX_QUEUED {
            return Err(TaskError::Conflict(format!(
                "{MAX_QUEUED} tasks are already queued on this sandbox; wait or cancel some"
            )));
        }
        let new = NewTask {
            id: ulid::Ulid::generate().to_string().to_ascii_lowercase(),
            sandbox_id: sandbox.id.clone(),
            agent: agent.to_string(),
            prompt,
            model: req.model,
            env: req.env,
            check_cmd,
            timeout_s: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            resume: req.resume,
        };
        let (task, _) = self.inner.store.insert_task(&new).await?;
        self.inner.hub.open(&task.id);
        tracing::info!(task = %task.id, sandbox = %task.sandbox_id, agent = %task.agent, "task queued");
        self.start_worker_if_idle(&sandbox.id).await?;
        Ok(self.inner.store.task(&task.id).await?)
    }

    /// An agent name berth knows, and a model that agent takes.
    fn check_agent_and_model(&self, agent: &str, model: Option<&str>) -> Result<(), TaskError> {
        let Some(adapter) = agents::by_name(agent) else {
            return Err(TaskError::Invalid(format!(
                "unknown agent `{agent}`: use one of {}",
                agents::NAMES.join(", ")
            )));
        };
        if let Some(model) = model {
            if model.trim().is_empty() || model.len() > 200 {
                return Err(TaskError::Invalid(
                    "model must be 1 to 200 characters".into(),
                ));
            }
            adapter.check_model(model).map_err(TaskError::Invalid)?;
        }
        Ok(())
    }

    /// The agent CLIs `image` says it has; `None` when it does not say or
    /// cannot be asked (the run then fails with `agent_missing` if the CLI
    /// is not there).
    async fn installed_in(&self, image: &str) -> Option<Vec<agents::AgentInfo>> {
        let docker = &self.inner.docker;
        let facts = match docker.image(image).await {
            Ok(Some(facts)) => facts,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(image, error = %e, "could not inspect the sandbox's image");
                return None;
            }
        };
        self.inner
            .agents
            .of(docker, image, &facts.id)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(image, error = %e, "could not read which agents the image has");
                None
            })
    }

    /// Which agent CLIs images have (shared with `/v1/info`).
    pub fn installed_agents(&self) -> &agents::InstalledAgents {
        &self.inner.agents
    }

    /// Starts a worker on the sandbox's queue unless one is running.
    async fn start_worker_if_idle(&self, sandbox_id: &str) -> Result<(), TaskError> {
        let mut workers = self.inner.workers.lock().await;
        if workers.contains_key(sandbox_id) {
            return Ok(());
        }
        let Some(task) = self.inner.store.next_queued_task(sandbox_id).await? else {
            return Ok(());
        };
        let cancel = self.inner.shutdown.child_token();
        self.mark_running(&task).await?;
        workers.insert(
            sandbox_id.to_string(),
            Worker {
                task_id: task.id.clone(),
                cancel: cancel.clone(),
            },
        );
        drop(workers);
        let tasks = self.clone();
        tokio::spawn(async move { tasks.work(task, cancel).await });
        Ok(())
    }

    async fn mark_running(&self, task: &TaskRecord) -> Result<(), TaskError> {
        self.inner.store.set_task_running(&task.id).await?;
        self.emit(&task.id, "status", json!({"status": "running"}))
            .await;
        Ok(())
    }

    /// Runs tasks of one sandbox until its queue is empty.
    async fn work(self, first: TaskRecord, cancel: CancellationToken) {
        let sandbox_id = first.sandbox_id.clone();
        let (mut task, mut cancel) = (first, cancel);
        loop {
            // A panic in one task fails that task; the queue goes on.
            let ran = AssertUnwindSafe(runner::run(&self, &task, &cancel))
                .catch_unwind()
                .await;
            if let Err(panic) = ran {
                let why = crate::supervise::panic_message(&panic);
                tracing::error!(task = %task.id, panic = %why, "a task's run panicked");
                self.finish(
                    &task.id,
                    TaskStatus::Failed,
                    None,
                    json!({"failure_reason": "internal", "error": format!("berth failed while running this task: {why}")}),
                )
                .await;
            }
            let mut workers = self.inner.workers.lock().await;
            let next = if self.inner.shutdown.is_cancelled() {
                None
            } else {
                self.next_queued(&sandbox_id).await
            };
            let Some(next) = next else {
                workers.remove(&sandbox_id);
                return;
            };
            cancel = self.inner.shutdown.child_token();
            if let Err(e) = self.mark_running(&next).await {
                tracing::warn!(task = %next.id, error = %e, "could not start a queued task");
                workers.remove(&sandbox_id);
                return;
            }
            workers.insert(
                sandbox_id.clone(),
                Worker {
                    task_id: next.id.clone(),
                    cancel: cancel.clone(),
                },
            );
            task = next;
        }
    }

    /// The next queued task of a sandbox. A database error does not end the
    /// worker (its queue would wait until a restart): it is logged and the
    /// read retried, with backoff, until it succeeds or control shuts down.
    async fn next_queued(&self, sandbox_id: &str) -> Option<TaskRecord> {
        let mut wait = Duration::from_millis(100);
        loop {
            match self.inner.store.next_queued_task(sandbox_id).await {
                Ok(next) => return next,
                Err(e) => {
                    tracing::error!(sandbox = sandbox_id, error = %e, retry_in = ?wait, "could not read the task queue");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = self.inner.shutdown.cancelled() => return None,
                    }
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Writes an event, then sends it to live subscribers.
    pub(crate) async fn emit(&self, task_id: &str, kind: &str, data: serde_json::Value) {
        match self
            .inner
            .store
            .append_task_event(task_id, kind, &data)
            .await
        {
            Ok(event) => self.inner.hub.publish(task_id, &event),
            Err(e) => tracing::error!(task = task_id, error = %e, "could not store a task event"),
        }
    }

    /// Records a task's end: the row, a terminal `status` event and `done`.
    pub(crate) async fn finish(
        &self,
        task_id: &str,
        status: TaskStatus,
        exit_code: Option<i64>,
        result: serde_json::Value,
    ) {
        if let Err(e) = self
            .inner
            .store
            .finish_task(task_id, status, exit_code, &result)
            .await
        {
            tracing::error!(task = task_id, error = %e, "could not record a task's end");
        }
        self.emit(task_id, "status", json!({"status": status.as_str()}))
            .await;
        self.emit(
            task_id,
            "done",
            json!({"status": status.as_str(), "exit_code": exit_code, "result": result}),
        )
        .await;
        self.inner.hub.close(task_id);
        tracing::info!(task = task_id, status = status.as_str(), "task finished");
    }

    /// A task of the sandbox.
    pub async fn get(&self, sandbox_id: &str, task_id: &str) -> Result<TaskRecord, TaskError> {
        let sandbox = self.inner.sandboxes.get(sandbox_id).await?;
        match self
            .inner
            .store
            .find_task(&task_id.to_ascii_lowercase())
            .await?
        {
            Some(t) if t.sandbox_id == sandbox.id => Ok(t),
            _ => Err(TaskError::NotFound(task_id.to_string())),
        }
    }

    /// The sandbox's tasks, newest first.
    pub async fn list(&self, sandbox_id: &str) -> Result<Vec<TaskRecord>, TaskError> {
        let sandbox = self.inner.sandboxes.get(sandbox_id).await?;
        Ok(self.inner.store.tasks_of(&sandbox.id).await?)
    }

    /// Whether a task runs on the sandbox now.
    pub async fn is_running_on(&self, sandbox_id: &str) -> bool {
        self.inner.workers.lock().await.contains_key(sandbox_id)
    }

    /// Cancels a queued or running task; a running agent is killed with its
    /// whole process tree. Returns the task once it has ended.
    pub async fn cancel(&self, sandbox_id: &str, task_id: &str) -> Result<TaskRecord, TaskError> {
        let task = self.get(sandbox_id, task_id).await?;
        self.end(&task, ("cancelled", "cancelled before it started"))
            .await
    }

    /// Ends a task that has not ended: a running one through its worker's
    /// cancel token (its agent is killed), a queued one at once with
    /// `queued_why` (failure reason, message). `Conflict` when it had ended.
    async fn end(
        &self,
        task: &TaskRecord,
        (reason, message): (&str, &str),
    ) -> Result<TaskRecord, TaskError> {
        let workers = self.inner.workers.lock().await;
        let running = workers
            .get(&task.sandbox_id)
            .filter(|w| w.task_id == task.id)
            .map(|w| w.cancel.clone());
        // Re-read under the workers lock: a queued task cannot start meanwhile.
        let task = self.inner.store.task(&task.id).await?;
        if task.status.is_terminal() {
            return Err(TaskError::Conflict(format!(
                "task `{}` has already ended ({})",
                task.id,
                task.status.as_str()
            )));
        }
        match running {
            Some(cancel) => {
                drop(workers);
                cancel.cancel();
                self.wait_terminal(&task.id).await
            }
            None => {
                self.finish(
                    &task.id,
                    TaskStatus::Cancelled,
                    None,
                    json!({"failure_reason": reason, "error": message}),
                )
                .await;
                drop(workers);
                Ok(self.inner.store.task(&task.id).await?)
            }
        }
    }

    async fn wait_terminal(&self, task_id: &str) -> Result<TaskRecord, TaskError> {
        for _ in 0..300 {
            let task = self.inner.store.task(task_id).await?;
            if task.status.is_terminal() {
                return Ok(task);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(self.inner.store.task(task_id).await?)
    }

    /// Cancels every queued and running task of a sandbox (before it is
    /// deleted or purged, and once more after, for a task queued meanwhile).
    /// Queued tasks go first, so the worker does not start one of them when
    /// the running task ends.
    pub async fn cancel_all(&self, sandbox_id: &str) -> Result<(), TaskError> {
        let Ok(id) = crate::sandbox::request::normalize_id(sandbox_id) else {
            return Ok(());
        };
        let mut open: Vec<TaskRecord> = self
            .inner
            .store
            .tasks_of(&id)
            .await?
            .into_iter()
            .filter(|t| !t.status.is_terminal())
            .collect();
        open.sort_by_key(|t| t.status == TaskStatus::Running);
        for task in open {
            match self
                .end(&task, ("sandbox_deleted", "the sandbox was deleted"))
                .await
            {
                Ok(_) | Err(TaskError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Restores the sandbox's app directory to the checkpoint taken before
    /// the task ran.
    pub async fn revert(
        &self,
        sandbox_id: &str,
        task_id: &str,
    ) -> Result<serde_json::Value, TaskError> {
        let task = self.get(sandbox_id, task_id).await?;
        if self.is_running_on(&task.sandbox_id).await {
            return Err(TaskError::Conflict(
                "a task is running on this sandbox; cancel it or wait before reverting".into(),
            ));
        }
        let checkpoint = task
            .result
            .as_ref()
            .and_then(|r| r.0.get("checkpoint"))
            .and_then(|c| c.as_str())
            .map(String::from)
            .ok_or_else(|| {
                TaskError::Conflict(format!("task `{}` has no checkpoint to revert to", task.id))
            })?;
        let sandbox = self.inner.sandboxes.get(&task.sandbox_id).await?;
        let _busy = self.inner.sandboxes.activity().busy(&sandbox.id);
        let target = self.inner.sandboxes.running_target(&sandbox).await?;
        checkpoint::revert(&self.inner.docker, &target, &checkpoint)
            .await?
            .map_err(|e| TaskError::Failed(format!("git could not revert to {checkpoint}: {e}")))?;
        tracing::info!(task = %task.id, checkpoint, "workspace reverted");
        Ok(json!({"task_id": task.id, "checkpoint": checkpoint, "reverted": true}))
    }

    /// The unified diff of each file the task changed (only `path`, when
    /// given): checkpoint to the tree the task ended with.
    pub async fn diff(
        &self,
        sandbox_id: &str,
        task_id: &str,
        path: Option<&str>,
    ) -> Result<berth_api::tasks::TaskDiff, TaskError> {
        let task = self.get(sandbox_id, task_id).await?;
        if !task.status.is_terminal() {
            return Err(TaskError::Conflict(format!(
                "task `{}` is {}: its diff is there once it ends",
                task.id,
                task.status.as_str()
            )));
        }
        let result = task.result.as_ref().map(|r| &r.0);
        let field = |name: &str| {
            result
                .and_then(|r| r.get(name))
                .and_then(|c| c.as_str())
                .filter(|c| checkpoint::is_object_id(c))
                .map(String::from)
        };
        let checkpoint = field("checkpoint").ok_or_else(|| {
            TaskError::Conflict(format!(
                "task `{}` has no checkpoint: nothing to compare with",
                task.id
            ))
        })?;
        let after = field("after");
        let sandbox = self.inner.sandboxes.get(&task.sandbox_id).await?;
        let _busy = self.inner.sandboxes.activity().busy(&sandbox.id);
        let target = self.inner.sandboxes.running_target(&sandbox).await?;
        let patches = checkpoint::diff(
            &self.inner.docker,
            &target,
            &checkpoint,
            after.as_deref(),
            &task.id,
        )
        .await?
        .map_err(|e| TaskError::Failed(format!("git could not diff against {checkpoint}: {e}")))?;
        let wanted = path.map(|p| p.trim_start_matches("./"));
        let files = patches
            .into_iter()
            .filter(|f| wanted.is_none_or(|w| w == f.change.path))
            .map(|f| berth_api::tasks::FileDiff {
                path: f.change.path,
                change: f.change.change,
                patch: f.patch,
                binary: f.binary,
                truncated: f.truncated,
            })
            .collect::<Vec<_>>();
        if let (Some(wanted), true) = (wanted, files.is_empty()) {
            return Err(TaskError::Unchanged(format!(
                "task `{}` did not change `{wanted}`",
                task.id
            )));
        }
        Ok(berth_api::tasks::TaskDiff {
            task_id: task.id,
            checkpoint,
            after,
            files,
        })
    }

    /// After a restart: tasks that were running are failed (and their agent
    /// processes killed: their output cannot be re-attached); queued ones
    /// start.
    pub async fn recover(&self) -> Result<(), TaskError> {
        for task in self
            .inner
            .store
            .tasks_with_status(TaskStatus::Running)
            .await?
        {
            // The agent carries the task's id as its marker: found even
            // when its exec id was never recorded.
            match &task.exec_id {
                Some(exec_id) => self.inner.docker.kill_exec(exec_id, &task.id).await,
                None => self.inner.docker.kill_marked(&task.id).await,
            }
            self.inner.hub.open(&task.id);
            let message = "the control plane restarted while this task ran; its agent was stopped";
            self.emit(&task.id, "error", json!({"message": message}))
                .await;
            self.finish(
                &task.id,
                TaskStatus::Failed,
                None,
                json!({"failure_reason": "control_restarted", "error": message}),
            )
            .await;
        }
        let queued = self
            .inner
            .store
            .tasks_with_status(TaskStatus::Queued)
            .await?;
        let sandboxes: std::collections::BTreeSet<String> =
            queued.iter().map(|t| t.sandbox_id.clone()).collect();
        for task in &queued {
            self.inner.hub.open(&task.id);
        }
        for sandbox in sandboxes {
            self.start_worker_if_idle(&sandbox).await?;
        }
        Ok(())
    }

    /// On shutdown: running agents are stopped and their tasks failed, so
    /// that nothing is left `running`.
    pub async fn shutdown(&self) {
        // The shutdown token already cancelled every worker; wait for them.
        for _ in 0..200 {
            if self.inner.workers.lock().await.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::warn!("some tasks did not stop in time; they are failed on the next start");
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }
}
