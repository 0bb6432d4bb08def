//! Running commands in a sandbox, waking it first when it sleeps.

use std::future::Future;

use super::request::ExecBody;
use super::{SandboxError, Sandboxes};
use crate::activity::Busy;
use crate::docker::spec::container_name;
use crate::docker::{DockerError, ExecOutput, ExecRequest, Target};
use crate::store::{DesiredState, SandboxRecord, Status};

/// A validated command for a sandbox that is now marked busy (the reaper
/// cannot stop it under the command while `busy` lives).
pub(super) struct Prepared {
    pub rec: SandboxRecord,
    pub busy: Busy,
    pub req: ExecRequest,
}

impl Sandboxes {
    /// Runs a command to completion (or its timeout) as the sandbox user.
    pub async fn exec(&self, id: &str, body: ExecBody) -> Result<ExecOutput, SandboxError> {
        let limit = self.inner.settings.exec_output_limit;
        let Prepared {
            rec,
            busy: _busy,
            req,
        } = self.prepare_exec(id, body, limit).await?;
        let docker = &self.inner.docker;
        let req = &req;
        let out = self
            .in_container(&rec, |c| {
                let target = self.target(&rec, c);
                async move { docker.exec(&target, req).await }
            })
            .await?;
        self.inner
            .metrics
            .exec_finished(out.duration, out.via_agent);
        Ok(out)
    }

    /// Validates a command and finds its sandbox.
    pub(super) async fn prepare_exec(
        &self,
        id: &str,
        body: ExecBody,
        output_limit: usize,
    ) -> Result<Prepared, SandboxError> {
        let spec = super::request::exec_spec(body, self.inner.settings.exec_timeout)?;
        let rec = self.get(id).await?;
        let busy = self.inner.activity.busy(&rec.id);
        // The sandbox's env first (a claimed warm-pool container was made
        // without it), the exec's own over it.
        let mut env = crate::docker::spec::exec_environment(&rec);
        env.extend(spec.env);
        let req = ExecRequest {
            cmd: spec.argv,
            cwd: Some(spec.cwd),
            env,
            stdin: spec.stdin,
            timeout: spec.timeout,
            output_limit,
            marker: None,
        };
        Ok(Prepared { rec, busy, req })
    }

    /// Where commands for the sandbox run: `container`, through the exec
    /// agent on the sandbox's socket when it answers.
    pub(crate) fn target(&self, rec: &SandboxRecord, container: String) -> Target {
        let identity = crate::uids::identity_dir(&self.inner.settings.data_dir, &rec.id);
        Target {
            container,
            agent: self
                .inner
                .spec
                .execd
                .is_some()
                .then(|| crate::execd::run_dir(&identity).join(crate::execd::SOCKET)),
        }
    }

    /// Runs `op` on the sandbox's running container (waking it if it
    /// sleeps). When Docker says the container stopped or vanished behind
    /// berth's back, the sandbox is converged and `op` tried once more.
    pub(super) async fn in_container<T, F, Fut>(
        &self,
        rec: &SandboxRecord,
        op: F,
    ) -> Result<T, SandboxError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, DockerError>>,
    {
        let container = self.running_container(rec).await?;
        match op(container).await {
            Err(DockerError::Api {
                status: 404 | 409, ..
            }) => {
                let container = self.wake_container(&rec.id).await?;
                Ok(op(container).await?)
            }
            other => Ok(other?),
        }
    }

    /// The id of the sandbox's running container, waking it if it sleeps.
    /// Trusts the record on the fast path; callers retry through
    /// [`Sandboxes::wake_container`] when Docker disagrees.
    pub async fn running_container(&self, rec: &SandboxRecord) -> Result<String, SandboxError> {
        if rec.desired_state == DesiredState::Running && rec.status == Status::Running {
            if let Some(container) = &rec.container_id {
                return Ok(container.clone());
            }
        }
        self.wake_container(&rec.id).await
    }

    /// Where the sandbox's commands run, waking it if it sleeps.
    pub async fn running_target(&self, rec: &SandboxRecord) -> Result<Target, SandboxError> {
        let container = self.running_container(rec).await?;
        Ok(self.target(rec, container))
    }

    /// Wakes the sandbox (a no-op when it runs) and returns its container id.
    pub async fn wake_container(&self, id: &str) -> Result<String, SandboxError> {
        let _guard = self.inner.locks.lock(id).await;
        let rec = self.get(id).await?;
        let rec = self.wake_locked(rec).await?;
        // The name is as good as the id for Docker, and always known.
        Ok(rec.container_id.unwrap_or_else(|| container_name(&rec.id)))
    }
}
