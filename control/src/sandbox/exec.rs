//! Running commands in a sandbox, waking it first when it sleeps.

use super::request::ExecBody;
use super::{SandboxError, Sandboxes};
use crate::docker::spec::container_name;
use crate::docker::{DockerError, ExecOutput, ExecRequest};
use crate::store::{DesiredState, SandboxRecord, Status};

impl Sandboxes {
    /// Runs a command to completion (or its timeout) as the sandbox user.
    pub async fn exec(&self, id: &str, body: ExecBody) -> Result<ExecOutput, SandboxError> {
        let spec = body.validate(self.inner.settings.exec_timeout)?;
        let rec = self.get(id).await?;
        // Busy from here: the reaper cannot stop the sandbox under the command.
        let _busy = self.inner.activity.busy(&rec.id);
        let req = ExecRequest {
            cmd: spec.argv,
            cwd: Some(spec.cwd),
            env: spec.env,
            stdin: spec.stdin,
            timeout: spec.timeout,
            output_limit: self.inner.settings.exec_output_limit,
        };
        let container = self.running_container(&rec).await?;
        let out = match self.inner.docker.exec(&container, &req).await {
            // The container stopped or vanished behind berth's back: converge, retry once.
            Err(DockerError::Api {
                status: 404 | 409, ..
            }) => {
                let container = self.wake_container(&rec.id).await?;
                self.inner.docker.exec(&container, &req).await?
            }
            other => other?,
        };
        self.inner.metrics.exec_finished(out.duration);
        Ok(out)
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

    /// Wakes the sandbox (a no-op when it runs) and returns its container id.
    pub async fn wake_container(&self, id: &str) -> Result<String, SandboxError> {
        let _guard = self.inner.locks.lock(id).await;
        let rec = self.get(id).await?;
        let rec = self.wake_locked(rec).await?;
        // The name is as good as the id for Docker, and always known.
        Ok(rec.container_id.unwrap_or_else(|| container_name(&rec.id)))
    }
}
