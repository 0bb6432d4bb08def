//! Commands run inside containers through Docker's exec API.
//!
//! Output is read as a stream while the command runs, capped at a size limit,
//! and the command is killed (with every process it started) when it outlives
//! its timeout.

use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{Docker, DockerError};

/// One command to run.
#[derive(Clone, Default)]
pub struct ExecRequest {
    pub cmd: Vec<String>,
    pub cwd: Option<String>,
    /// `KEY=value` pairs (may hold secrets: never printed).
    pub env: Vec<String>,
    pub stdin: Option<Vec<u8>>,
    pub timeout: Duration,
    /// Most bytes kept of stdout, and separately of stderr.
    pub output_limit: usize,
    /// The value of `BERTH_EXEC` in the command's environment, by which
    /// everything it starts is found again to be killed; a fresh ULID when
    /// `None`. A task passes its id, so recovery after a restart finds it.
    pub marker: Option<String>,
}

impl std::fmt::Debug for ExecRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self
            .env
            .iter()
            .map(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k))
            .collect();
        f.debug_struct("ExecRequest")
            .field("cmd", &self.cmd)
            .field("cwd", &self.cwd)
            .field("env", &names)
            .field("stdin_bytes", &self.stdin.as_ref().map(Vec::len))
            .field("timeout", &self.timeout)
            .field("output_limit", &self.output_limit)
            .field("marker", &self.marker)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct ExecOutput {
    /// `None` when the command was killed for its timeout.
    pub exit_code: Option<i64>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub truncated: bool,
    pub timed_out: bool,
    pub duration: Duration,
    /// Run by the sandbox's exec agent (else by Docker's exec).
    pub via_agent: bool,
}

/// Output of a running exec, chunk by chunk.
pub type OutputStream =
    Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;

/// Where a command runs: a container, and the socket of its exec agent
/// when it has one (tried first; Docker's exec when nothing answers).
#[derive(Debug, Clone)]
pub struct Target {
    pub container: String,
    pub agent: Option<PathBuf>,
}

impl Target {
    /// A container reached through Docker's exec only.
    pub fn docker(container: &str) -> Target {
        Target {
            container: container.to_string(),
            agent: None,
        }
    }
}

/// What runs a started command.
pub enum Process {
    /// Docker's exec, by its id.
    Docker(String),
    /// The sandbox's exec agent.
    Agent(crate::execd::Session),
}

impl Process {
    /// Docker's id of the exec; `None` for the agent's commands.
    pub fn exec_id(&self) -> Option<&str> {
        match self {
            Process::Docker(id) => Some(id),
            Process::Agent(_) => None,
        }
    }
}

/// A command that has started and whose output can be read.
pub struct Attached {
    pub process: Process,
    /// The command's `BERTH_EXEC` value: see [`Docker::kill_exec`].
    pub marker: String,
    pub output: OutputStream,
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
}

impl Docker {
    /// Starts `req.cmd` in the target and returns its live output: through
    /// its exec agent when one answers, else through Docker's exec.
    pub async fn exec_attached(
        &self,
        target: &Target,
        req: &ExecRequest,
    ) -> Result<Attached, DockerError> {
        if let Some(socket) = &target.agent {
            let marker = marker_of(req);
            let run = berth_execd::wire::Run {
                argv: req.cmd.clone(),
                cwd: req.cwd.clone(),
                env: req.env.clone(),
                marker: marker.clone(),
                stdin: req.stdin.is_some(),
            };
            match crate::execd::start(socket, &run).await {
                Ok(started) => {
                    let output = futures_util::stream::unfold(started.output, |mut rx| async {
                        rx.recv().await.map(|chunk| (chunk, rx))
                    });
                    return Ok(Attached {
                        process: Process::Agent(started.session),
                        marker,
                        output: Box::pin(output),
                        input: started.input,
                    });
                }
                Err(crate::execd::ExecdError::Unavailable(why)) => {
                    tracing::debug!(container = %target.container, %why, "no exec agent: through Docker's exec");
                }
                Err(e) => return Err(DockerError::Other(e.to_string())),
            }
        }
        self.attach(&target.container, req, false).await
    }

    /// The command's exit code once it has finished.
    pub async fn exit_code(&self, process: &Process) -> Result<Option<i64>, DockerError> {
        match process {
            Process::Docker(exec_id) => self.exec_exit_code(exec_id).await,
            Process::Agent(session) => Ok(session.exit_code().await),
        }
    }

    /// Kills a command and everything it started.
    pub async fn kill(&self, process: &Process, marker: &str) {
        match process {
            Process::Docker(exec_id) => self.kill_exec(exec_id, marker).await,
            Process::Agent(session) => session.kill().await,
        }
    }

    /// Starts `req.cmd` on a pseudo-terminal of its own, its input open:
    /// the output is the terminal's (one stream), [`Docker::resize_exec`]
    /// sets its size.
    pub async fn exec_pty(
        &self,
        container: &str,
        req: &ExecRequest,
    ) -> Result<Attached, DockerError> {
        self.attach(container, req, true).await
    }

    /// The size of an exec's terminal, in characters.
    pub async fn resize_exec(
        &self,
        exec_id: &str,
        cols: u16,
        rows: u16,
    ) -> Result<(), DockerError> {
        let size = bollard::exec::ResizeExecOptions {
            height: rows,
            width: cols,
        };
        Ok(self.client().await?.resize_exec(exec_id, size).await?)
    }

    async fn attach(
        &self,
        container: &str,
        req: &ExecRequest,
        tty: bool,
    ) -> Result<Attached, DockerError> {
        let client = self.client().await?;
        let marker = marker_of(req);
        let mut env = req.env.clone();
        env.push(format!("{}={marker}", crate::proctree::MARKER_VAR));
        let created = client
            .create_exec(
                container,
                CreateExecOptions::<String> {
                    cmd: Some(req.cmd.clone()),
                    env: Some(env),
                    working_dir: req.cwd.clone(),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    attach_stdin: Some(tty || req.stdin.is_some()),
                    tty: Some(tty),
                    ..Default::default()
                },
            )
            .await?;
        let started = client
            .start_exec(
                &created.id,
                Some(StartExecOptions {
                    detach: false,
                    tty,
                    ..Default::default()
                }),
            )
            .await?;
        match started {
            StartExecResults::Attached { output, input } => Ok(Attached {
                process: Process::Docker(created.id),
                marker,
                output,
                input,
            }),
            StartExecResults::Detached => Err(DockerError::Other(
                "Docker detached an exec berth asked to attach".into(),
            )),
        }
    }

    /// Starts a command and leaves it running (used for a sandbox's `start`).
    pub async fn exec_detached(
        &self,
        container: &str,
        cmd: Vec<String>,
        cwd: &str,
        env: Vec<String>,
    ) -> Result<(), DockerError> {
        let client = self.client().await?;
        let created = client
            .create_exec(
                container,
                CreateExecOptions::<String> {
                    cmd: Some(cmd),
                    env: Some(env),
                    working_dir: Some(cwd.to_string()),
                    ..Default::default()
                },
            )
            .await?;
        client
            .start_exec(
                &created.id,
                Some(StartExecOptions {
                    detach: true,
                    ..Default::default()
                }),
            )
            .await?;
        self.exec_settled(&created.id).await
    }

    /// Waits until a detached exec's process runs (or has ended). Docker
    /// answers a detached start before runc has set the process up, and a
    /// container frozen meanwhile leaves runc stuck in the frozen cgroup
    /// holding the container's lock: every later call on it hangs.
    async fn exec_settled(&self, exec_id: &str) -> Result<(), DockerError> {
        let client = self.client().await?;
        for _ in 0..200 {
            let inspected = client.inspect_exec(exec_id).await?;
            if inspected.running == Some(true)
                || inspected.pid.is_some_and(|p| p > 0)
                || inspected.exit_code.is_some()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Err(DockerError::Other(format!(
            "exec {exec_id} did not start within a second"
        )))
    }

    /// Runs a command to completion (or to its timeout) and collects its
    /// output. Stdin is written while the output is read, and the timeout
    /// covers both: a command that neither reads its input nor exits is
    /// killed on time.
    pub async fn exec(
        &self,
        target: &Target,
        req: &ExecRequest,
    ) -> Result<ExecOutput, DockerError> {
        let began = Instant::now();
        let Attached {
            process,
            marker,
            mut output,
            input,
        } = self.exec_attached(target, req).await?;
        let _feeding = feed_stdin(input, req.stdin.clone());

        let mut out = ExecOutput {
            exit_code: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
            truncated: false,
            timed_out: false,
            duration: Duration::ZERO,
            via_agent: matches!(process, Process::Agent(_)),
        };
        let limit = req.output_limit;
        let collect = async {
            while let Some(chunk) = output.next().await {
                let (buf, bytes) = match chunk? {
                    LogOutput::StdErr { message } => (&mut out.stderr, message),
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        (&mut out.stdout, message)
                    }
                    LogOutput::StdIn { .. } => continue,
                };
                let room = limit.saturating_sub(buf.len());
                if bytes.len() > room {
                    out.truncated = true;
                }
                buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
            Ok::<(), DockerError>(())
        };
        match tokio::time::timeout(req.timeout, collect).await {
            Ok(result) => result?,
            Err(_) => {
                out.timed_out = true;
                self.kill(&process, &marker).await;
            }
        }
        if !out.timed_out {
            out.exit_code = self.exit_code(&process).await?;
        }
        out.duration = began.elapsed();
        Ok(out)
    }

    /// The exit code once the exec has finished (Docker may lag the stream's end).
    pub async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>, DockerError> {
        let client = self.client().await?;
        for _ in 0..200 {
            let inspected = client.inspect_exec(exec_id).await?;
            if inspected.running != Some(true) {
                return Ok(inspected.exit_code);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(None)
    }

    /// Kills everything an exec started: its process tree, and every
    /// process carrying its marker however it detached (`setsid`, double
    /// forks), even when the exec's own process has already ended.
    ///
    /// Docker has no API for this: the exec's host PID comes from Docker and
    /// processes are found in the host's /proc, which works when control
    /// shares the host's PID namespace (run on the host, or `pid: host` in
    /// Compose) and may read other users' environments (root with
    /// CAP_SYS_PTRACE, which Compose grants).
    pub async fn kill_exec(&self, exec_id: &str, marker: &str) {
        let pid = self
            .exec_pid(exec_id)
            .await
            .and_then(|p| i32::try_from(p).ok());
        let killed = kill_processes(pid, Some(marker)).await;
        if pid.is_some() && killed.signalled == 0 {
            tracing::warn!(
                exec_id,
                pid,
                "a killed exec's process is not visible in /proc: run control in the host's PID namespace to kill it"
            );
        }
    }

    /// Kills the attached execs still running in a container: after a
    /// restart of control nobody reads them any more (their clients and
    /// timeouts died with the old process). Detached execs (a sandbox's
    /// `start` command) are left alone. Returns how many were killed.
    pub async fn kill_abandoned_execs(&self, container: &str) -> Result<usize, DockerError> {
        let client = self.client().await?;
        let inspected = match client
            .inspect_container(
                container,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
        {
            Ok(found) => found,
            Err(e) if super::status_of(&e) == Some(404) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let mut killed = 0;
        for exec_id in inspected.exec_ids.unwrap_or_default() {
            let Ok(exec) = client.inspect_exec(&exec_id).await else {
                continue;
            };
            let attached = exec.open_stdout == Some(true) || exec.open_stderr == Some(true);
            let Some(pid) = exec
                .pid
                .filter(|p| *p > 1 && exec.running == Some(true) && attached)
                .and_then(|p| i32::try_from(p).ok())
            else {
                continue;
            };
            // Its marker is in its own environment: the processes that
            // detached from it die too.
            let marker = crate::proctree::marker_of(pid);
            let found = kill_processes(Some(pid), marker.as_deref()).await;
            if found.signalled > 0 {
                killed += 1;
                tracing::info!(
                    container,
                    exec_id,
                    pid,
                    "killed an exec abandoned by a restart of control"
                );
            }
        }
        Ok(killed)
    }

    /// Kills every process carrying `marker` (an exec whose id is unknown,
    /// e.g. a task's agent after a crash).
    pub async fn kill_marked(&self, marker: &str) {
        kill_processes(None, Some(marker)).await;
    }

    /// The host PID of a running exec. Right after an exec starts, Docker
    /// may not report its PID yet: asked again for up to a second. `None`
    /// when it has ended (nothing to kill) or cannot be found.
    async fn exec_pid(&self, exec_id: &str) -> Option<i64> {
        let client = self.client().await.ok()?;
        let mut last_error = None;
        for _ in 0..40 {
            match client.inspect_exec(exec_id).await {
                Ok(inspected) if inspected.running == Some(false) => return None,
                Ok(inspected) => {
                    if let Some(pid) = inspected.pid.filter(|p| *p > 0) {
                        return Some(pid);
                    }
                }
                Err(e) => last_error = Some(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        tracing::warn!(
            exec_id,
            error = last_error.as_deref().unwrap_or("no PID reported"),
            "could not find the process of an exec to kill it"
        );
        None
    }
}

/// The request's `BERTH_EXEC` value: its own, or a fresh one.
fn marker_of(req: &ExecRequest) -> String {
    req.marker
        .clone()
        .unwrap_or_else(|| ulid::Ulid::generate().to_string())
}

/// Kills the tree under `pid` and everything carrying `marker`, off the
/// async threads (it reads all of /proc).
async fn kill_processes(pid: Option<i32>, marker: Option<&str>) -> crate::proctree::Killed {
    let wanted = marker.map(str::to_string);
    let killed =
        tokio::task::spawn_blocking(move || crate::proctree::kill_exec(pid, wanted.as_deref()))
            .await
            .unwrap_or_default();
    if killed.unreadable > 0 {
        tracing::debug!(
            ?marker,
            unreadable = killed.unreadable,
            "some processes' environments could not be read: detached children may survive (control needs CAP_SYS_PTRACE)"
        );
    }
    killed
}

/// Writes `stdin` (if any) to a running exec and closes it, in a task of its
/// own so output is read meanwhile; dropping the guard stops the writing.
pub(crate) fn feed_stdin(
    mut input: Pin<Box<dyn AsyncWrite + Send>>,
    stdin: Option<Vec<u8>>,
) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        if let Some(stdin) = stdin {
            // A command that ignores stdin may close it early: not an error.
            let _ = input.write_all(&stdin).await;
        }
        let _ = input.shutdown().await;
    }))
}

/// Aborts a spawned task when dropped.
pub(crate) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
