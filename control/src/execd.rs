//! The client of berth-execd, the exec agent in every sandbox (see the
//! `berth-execd` crate): a command over its unix socket costs a connect and
//! a few frames, where Docker's exec costs a create, a start, an attach and
//! inspects, each a round trip through dockerd and containerd.
//!
//! The agent's executable is embedded in control, written once to
//! `<data>/bin/berth-execd` and bind-mounted read-only into every sandbox;
//! its socket lives in the sandbox's own host directory
//! (`<data>/identity/<id>/run/`, owned by the sandbox's uid, mode 0700),
//! mounted at [`wire::RUN_DIR`]. When nothing answers there (the agent not
//! up yet, a container made before it existed, gVisor, a user who killed
//! it) the caller falls back to Docker's exec.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use berth_execd::wire::{self, Exit, Run};
use bollard::container::LogOutput;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Mutex, mpsc, watch};

pub use berth_execd::wire::{BIN, RUN_DIR, SOCKET};

/// The agent, built by control's build script as a static executable.
const EXECUTABLE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/berth-execd"));
/// Its length and hash, written beside an installed copy.
const EXECUTABLE_ID: &str = include_str!(concat!(env!("OUT_DIR"), "/berth-execd.id"));

/// How long a kill waits for the agent to report the command's end
/// before control kills by the marker itself.
const KILL_WAIT: Duration = Duration::from_secs(2);
/// Output chunks buffered between the agent and a slow reader.
const BACKLOG: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ExecdError {
    /// Nothing ran: no agent answers, or it refused the request. The
    /// caller runs the command through Docker instead.
    #[error("the sandbox's exec agent is not answering: {0}")]
    Unavailable(String),
    #[error("the exec agent's connection failed: {0}")]
    Io(#[from] io::Error),
}

/// Where the agent's executable is written.
pub fn executable_path(data_dir: &Path) -> PathBuf {
    data_dir.join("bin").join("berth-execd")
}

/// Writes the agent's executable (root's, 0755) unless it is already
/// there; returns its path. A running sandbox keeps the file it was given
/// (the bind mount holds the old inode), a new container gets this one.
pub fn install(data_dir: &Path) -> io::Result<PathBuf> {
    let path = executable_path(data_dir);
    let id_path = data_dir.join("bin").join("berth-execd.id");
    let size_matches = std::fs::metadata(&path)
        .is_ok_and(|m| usize::try_from(m.len()).is_ok_and(|l| l == EXECUTABLE.len()));
    if size_matches && std::fs::read_to_string(&id_path).is_ok_and(|id| id == EXECUTABLE_ID) {
        return Ok(path);
    }
    let dir = data_dir.join("bin");
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    let tmp = dir.join(".berth-execd.tmp");
    std::fs::write(&tmp, EXECUTABLE)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&tmp, &path)?;
    std::fs::write(&id_path, EXECUTABLE_ID)?;
    Ok(path)
}

/// The sandbox's socket directory on the host, inside its identity
/// directory (removed with it).
pub fn run_dir(identity_dir: &Path) -> PathBuf {
    identity_dir.join("run")
}

/// Makes the socket directory, owned by the sandbox's uid, owner-only.
pub fn prepare_run_dir(identity_dir: &Path, uid: u32) -> io::Result<()> {
    let dir = run_dir(identity_dir);
    std::fs::create_dir_all(&dir)?;
    std::os::unix::fs::chown(&dir, Some(uid), Some(uid))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
}

/// The command that starts the agent in a container (as its user).
pub fn serve_command() -> Vec<String> {
    vec![
        BIN.to_string(),
        "serve".to_string(),
        format!("{RUN_DIR}/{SOCKET}"),
    ]
}

/// A command the agent is running.
pub struct Session {
    writer: Arc<Mutex<OwnedWriteHalf>>,
    exit: watch::Receiver<Option<Ended>>,
    marker: String,
}

/// How the agent's side of a session ended.
#[derive(Debug, Clone, Copy)]
enum Ended {
    Exited(Exit),
    /// The connection broke before the command's exit was told.
    Broken,
}

/// The output, as Docker's exec stream has it.
pub type Output = mpsc::Receiver<Result<LogOutput, bollard::errors::Error>>;

/// A started command: its session, its output, and its stdin.
pub struct Started {
    pub session: Session,
    pub output: Output,
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
}

/// Runs `run` through the agent listening on `socket`. Returns once the
/// agent has started it (or told why it could not: that is output and an
/// exit, as with Docker).
pub async fn start(socket: &Path, run: &Run) -> Result<Started, ExecdError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|e| ExecdError::Unavailable(e.to_string()))?;
    let (mut reader, mut writer) = stream.into_split();
    let payload = run.encode()?;
    write_frame(&mut writer, wire::RUN, &payload)
        .await
        .map_err(|e| ExecdError::Unavailable(e.to_string()))?;
    let (tx, output) = mpsc::channel(BACKLOG);
    // The run frame is delivered: past this point nothing may fall back to
    // Docker (the command could run twice), except on a clear refusal.
    let first = match tokio::time::timeout(KILL_WAIT, read_frame(&mut reader)).await {
        Ok(Ok(Some(frame))) => frame,
        Ok(Ok(None)) => return Err(ExecdError::Unavailable("it hung up".into())),
        Ok(Err(e)) => return Err(ExecdError::Unavailable(e.to_string())),
        Err(_) => {
            return Err(ExecdError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                "the sandbox's exec agent did not answer in time (is the sandbox frozen or its agent stopped?)",
            )));
        }
    };
    let (exit_tx, exit) = watch::channel(None);
    match first {
        (wire::REFUSED, why) => {
            return Err(ExecdError::Unavailable(
                String::from_utf8_lossy(&why).into_owned(),
            ));
        }
        (wire::STARTED, _) => {}
        // It could not start the command: its message and exit follow.
        other => {
            if !deliver(other, &tx, &exit_tx).await {
                return Ok(finished(writer, output, exit, run));
            }
        }
    }
    tokio::spawn(read_output(reader, tx, exit_tx));
    let writer = Arc::new(Mutex::new(writer));
    let input: Pin<Box<dyn AsyncWrite + Send>> = if run.stdin {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        tokio::spawn(forward_stdin(theirs, writer.clone()));
        Box::pin(ours)
    } else {
        Box::pin(tokio::io::sink())
    };
    Ok(Started {
        session: Session {
            writer,
            exit,
            marker: run.marker.clone(),
        },
        output,
        input,
    })
}

/// A session whose command already ended in its first frames.
fn finished(
    writer: OwnedWriteHalf,
    output: Output,
    exit: watch::Receiver<Option<Ended>>,
    run: &Run,
) -> Started {
    Started {
        session: Session {
            writer: Arc::new(Mutex::new(writer)),
            exit,
            marker: run.marker.clone(),
        },
        output,
        input: Box::pin(tokio::io::sink()),
    }
}

impl Session {
    /// The command's exit code once it has ended (its output read to the
    /// end); `None` when the agent's connection broke first.
    pub async fn exit_code(&self) -> Option<i64> {
        let mut exit = self.exit.clone();
        match exit.wait_for(Option::is_some).await.ok()?.as_ref()? {
            Ended::Exited(e) => Some(e.code()),
            Ended::Broken => None,
        }
    }

    /// Kills the command and everything it started; waits (briefly) for
    /// the agent to see it end. An agent that does not answer has its
    /// command killed by its marker from the host.
    pub async fn kill(&self) {
        let exited = |e: &Option<Ended>| matches!(e, Some(Ended::Exited(_)));
        if exited(&self.exit.borrow()) {
            // It ended by itself: what it left running in the background stays.
            return;
        }
        // Bounded: an agent that stopped reading (frozen, stopped by the
        // user) must not hold the kill up.
        let sent = tokio::time::timeout(KILL_WAIT, async {
            let mut writer = self.writer.lock().await;
            write_frame(&mut writer, wire::KILL, &[]).await
        })
        .await
        .is_ok_and(|r| r.is_ok());
        let mut exit = self.exit.clone();
        let ended = sent
            && tokio::time::timeout(KILL_WAIT, exit.wait_for(Option::is_some))
                .await
                .is_ok_and(|r| r.is_ok());
        if !ended && !exited(&self.exit.borrow()) {
            tracing::warn!(
                marker = %self.marker,
                "the exec agent did not confirm a kill: killing by the marker from the host"
            );
            let marker = self.marker.clone();
            let _ = tokio::task::spawn_blocking(move || {
                crate::proctree::kill_exec(None, Some(&marker))
            })
            .await;
        }
    }
}

/// Passes one frame on; `false` once the command's end was delivered.
async fn deliver(
    (kind, payload): (u8, Vec<u8>),
    tx: &mpsc::Sender<Result<LogOutput, bollard::errors::Error>>,
    exit_tx: &watch::Sender<Option<Ended>>,
) -> bool {
    let message = Bytes::from(payload);
    let chunk = match kind {
        wire::STDOUT => LogOutput::StdOut { message },
        wire::STDERR => LogOutput::StdErr { message },
        wire::EXIT => {
            let ended = Exit::decode(&message).map_or(Ended::Broken, Ended::Exited);
            let _ = exit_tx.send(Some(ended));
            return false;
        }
        _ => return true,
    };
    // A reader that left: the session's owner kills the command.
    let _ = tx.send(Ok(chunk)).await;
    true
}

/// Moves the agent's frames to the output channel until the command's
/// exit, a broken connection, or the reader leaving.
async fn read_output(
    mut reader: OwnedReadHalf,
    tx: mpsc::Sender<Result<LogOutput, bollard::errors::Error>>,
    exit_tx: watch::Sender<Option<Ended>>,
) {
    loop {
        let frame = tokio::select! {
            frame = read_frame(&mut reader) => frame,
            () = tx.closed() => break,
        };
        match frame {
            Ok(Some(frame)) => {
                if !deliver(frame, &tx, &exit_tx).await {
                    return;
                }
            }
            Ok(None) => {
                let broke = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the exec agent hung up before the command's end",
                );
                let _ = tx
                    .send(Err(bollard::errors::Error::IOError { err: broke }))
                    .await;
                break;
            }
            Err(err) => {
                let _ = tx.send(Err(bollard::errors::Error::IOError { err })).await;
                break;
            }
        }
    }
    let _ = exit_tx.send(Some(Ended::Broken));
}

/// Copies what the caller writes to stdin into frames, then ends stdin.
async fn forward_stdin(mut from: impl AsyncRead + Unpin, writer: Arc<Mutex<OwnedWriteHalf>>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut w = writer.lock().await;
        if write_frame(&mut w, wire::STDIN, &buf[..n]).await.is_err() {
            return;
        }
    }
    let mut w = writer.lock().await;
    let _ = write_frame(&mut w, wire::STDIN_END, &[]).await;
}

async fn write_frame(w: &mut OwnedWriteHalf, kind: u8, payload: &[u8]) -> io::Result<()> {
    w.write_all(&wire::frame(kind, payload)?).await
}

async fn read_frame(r: &mut OwnedReadHalf) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut h = [0u8; wire::HEADER];
    match r.read_exact(&mut h).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let (kind, len) = wire::parse_header(h)?;
    let mut payload = vec![0; len];
    r.read_exact(&mut payload).await?;
    Ok(Some((kind, payload)))
}
