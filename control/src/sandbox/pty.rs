//! Interactive terminals: a login shell on a pseudo-terminal of its own in
//! the sandbox, for `GET /v1/sandboxes/{id}/pty` (a WebSocket). A terminal
//! outlives its WebSocket by `BERTH_PTY_GRACE`: a client that reconnects with
//! its session id gets it back, starting with the last [`BACKLOG`] bytes of
//! output (what a fresh terminal needs to redraw the screen). Past the grace
//! it is killed with everything it started. While it exists its sandbox is
//! busy: never put to sleep.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{broadcast, watch};

use super::{SandboxError, Sandboxes};
use crate::activity::Busy;
use crate::docker::ExecRequest;
use crate::docker::spec::{WORKSPACE, exec_environment};

/// Output kept for a client that reconnects.
pub const BACKLOG: usize = 64 * 1024;
/// Terminals open at once on this host.
const MAX_TERMINALS: usize = 256;

/// bash when the image has it, else sh; a login shell either way.
const SHELL: &str = "if command -v bash >/dev/null 2>&1; then exec bash -l; fi; exec sh -l";

/// One terminal session.
pub struct Terminal {
    pub id: String,
    pub sandbox: String,
    exec_id: String,
    marker: String,
    input: tokio::sync::Mutex<Pin<Box<dyn AsyncWrite + Send>>>,
    /// Output as it comes, and the last [`BACKLOG`] bytes of it: a new
    /// attachment copies the backlog and subscribes under the same lock,
    /// so it misses nothing and sees nothing twice.
    output: broadcast::Sender<Bytes>,
    backlog: Mutex<VecDeque<u8>>,
    /// `Some(exit code)` once the shell ended.
    exited: watch::Receiver<Option<Option<i64>>>,
    /// The latest attachment and whether it is still there.
    attached: watch::Sender<(u64, bool)>,
    _busy: Busy,
}

/// What an attachment starts from.
pub struct Attachment {
    pub generation: u64,
    /// Output the client has not seen (all that is kept, on a reconnect).
    pub backlog: Vec<u8>,
    pub output: broadcast::Receiver<Bytes>,
}

/// Every open terminal, by session id.
#[derive(Default)]
pub struct Terminals {
    open: Mutex<HashMap<String, Arc<Terminal>>>,
}

impl Terminals {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Terminal>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Terminal {
    /// Keystrokes (or pasted text) for the shell.
    pub async fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut input = self.input.lock().await;
        input.write_all(bytes).await?;
        input.flush().await
    }

    /// Takes the terminal over: an earlier attachment lets go.
    pub fn attach(&self) -> Attachment {
        let generation = self.attached.borrow().0 + 1;
        self.attached.send_replace((generation, true));
        let backlog = self.backlog.lock().unwrap_or_else(PoisonError::into_inner);
        Attachment {
            generation,
            backlog: backlog.iter().copied().collect(),
            output: self.output.subscribe(),
        }
    }

    /// Changes of the latest attachment.
    pub fn attachments(&self) -> watch::Receiver<(u64, bool)> {
        self.attached.subscribe()
    }

    /// Ends with `Some(exit code)` when the shell is gone.
    pub fn exited(&self) -> watch::Receiver<Option<Option<i64>>> {
        self.exited.clone()
    }

    fn record(&self, chunk: Bytes) {
        let mut backlog = self.backlog.lock().unwrap_or_else(PoisonError::into_inner);
        backlog.extend(chunk.iter());
        let over = backlog.len().saturating_sub(BACKLOG);
        backlog.drain(..over);
        // No receiver (detached) is fine: the backlog keeps it.
        let _ = self.output.send(chunk);
    }
}

impl Sandboxes {
    /// Opens a terminal in the sandbox (waking it), `cols` × `rows` big.
    pub async fn open_terminal(
        &self,
        id: &str,
        cols: u16,
        rows: u16,
    ) -> Result<Arc<Terminal>, SandboxError> {
        let rec = self.get(id).await?;
        if self.inner.terminals.lock().len() >= MAX_TERMINALS {
            return Err(SandboxError::Invalid(format!(
                "{MAX_TERMINALS} terminals are open on this host: close one first"
            )));
        }
        let busy = self.inner.activity.busy(&rec.id);
        let mut env = exec_environment(&rec);
        env.push("TERM=xterm-256color".into());
        let req = ExecRequest {
            cmd: vec!["/bin/sh".into(), "-c".into(), SHELL.into()],
            cwd: Some(WORKSPACE.into()),
            env,
            ..ExecRequest::default()
        };
        let docker = &self.inner.docker;
        let req = &req;
        let attached = self
            .in_container(&rec, |c| async move { docker.exec_pty(&c, req).await })
            .await?;
        // A terminal is Docker's: the exec agent has no pseudo-terminals.
        let exec_id = attached.process.exec_id().unwrap_or_default().to_string();
        if let Err(e) = docker.resize_exec(&exec_id, cols, rows).await {
            tracing::debug!(sandbox = %rec.id, error = %e, "could not size a new terminal");
        }
        let (exited_tx, exited) = watch::channel(None);
        let terminal = Arc::new(Terminal {
            id: ulid::Ulid::generate().to_string().to_ascii_lowercase(),
            sandbox: rec.id.clone(),
            exec_id,
            marker: attached.marker,
            input: tokio::sync::Mutex::new(attached.input),
            output: broadcast::channel(256).0,
            backlog: Mutex::new(VecDeque::new()),
            exited,
            attached: watch::channel((0, false)).0,
            _busy: busy,
        });
        self.inner
            .terminals
            .lock()
            .insert(terminal.id.clone(), Arc::clone(&terminal));
        tracing::info!(sandbox = %rec.id, session = %terminal.id, "terminal opened");
        // Nobody attached yet: the same grace as a client that left.
        self.detach_terminal(&terminal, 0);
        // The pump: the terminal's output into its backlog and to whoever
        // is attached; at its end, the exit code, and the session goes.
        let mut output = attached.output;
        let (sandboxes, t) = (self.clone(), Arc::clone(&terminal));
        tokio::spawn(async move {
            while let Some(Ok(chunk)) = output.next().await {
                t.record(chunk.into_bytes());
            }
            let code = sandboxes
                .inner
                .docker
                .exec_exit_code(&t.exec_id)
                .await
                .ok()
                .flatten();
            sandboxes.inner.terminals.lock().remove(&t.id);
            let _ = exited_tx.send(Some(code));
            tracing::info!(sandbox = %t.sandbox, session = %t.id, exit_code = ?code, "terminal ended");
        });
        Ok(terminal)
    }

    /// An open terminal of sandbox `id`.
    pub fn terminal(&self, id: &str, session: &str) -> Option<Arc<Terminal>> {
        let found = self
            .inner
            .terminals
            .lock()
            .get(&session.to_ascii_lowercase())
            .cloned()?;
        (found.sandbox == id.to_ascii_lowercase()).then_some(found)
    }

    pub async fn resize_terminal(&self, t: &Terminal, cols: u16, rows: u16) {
        if let Err(e) = self.inner.docker.resize_exec(&t.exec_id, cols, rows).await {
            tracing::debug!(session = %t.id, error = %e, "could not resize a terminal");
        }
    }

    /// The attachment `generation` left. Unless another took the terminal
    /// over meanwhile, it is killed once `BERTH_PTY_GRACE` passes without a
    /// new one.
    pub fn detach_terminal(&self, t: &Arc<Terminal>, generation: u64) {
        if t.attached.borrow().0 != generation {
            return;
        }
        t.attached.send_replace((generation, false));
        let grace: Duration = self.inner.settings.pty_grace;
        let (sandboxes, t) = (self.clone(), Arc::clone(t));
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if *t.attached.borrow() == (generation, false) && t.exited.borrow().is_none() {
                tracing::info!(sandbox = %t.sandbox, session = %t.id, "terminal left past its grace period: killing it");
                sandboxes
                    .inner
                    .docker
                    .kill_exec(&t.exec_id, &t.marker)
                    .await;
            }
        });
    }
}
