//! berth-execd: runs control's commands in the sandbox it lives in (see the
//! library's docs). `berth-execd serve <socket>` listens until the
//! container stops; a second agent finding the first one listening leaves.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{ChildStdin, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use berth_execd::proctree::{self, MARKER_VAR};
use berth_execd::wire::{self, Exit, Run};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["serve", socket] => match serve(Path::new(socket)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("berth-execd: {e}");
                ExitCode::FAILURE
            }
        },
        ["--version"] => {
            println!("berth-execd {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: berth-execd serve <socket>");
            ExitCode::from(2)
        }
    }
}

fn serve(path: &Path) -> io::Result<()> {
    if UnixStream::connect(path).is_ok() {
        // Another agent serves this container already.
        return Ok(());
    }
    // A socket left by an earlier run of the container: nobody listens.
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let spawned = thread::Builder::new()
                    .name("command".into())
                    .spawn(move || {
                        if let Err(e) = serve_one(stream) {
                            eprintln!("berth-execd: a command's connection failed: {e}");
                        }
                    });
                if let Err(e) = spawned {
                    eprintln!("berth-execd: no thread for a command: {e}");
                }
            }
            Err(e) => {
                // Out of descriptors, say: refuse for a moment, not forever.
                eprintln!("berth-execd: accept failed: {e}");
                thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
    Ok(())
}

/// The write side of a connection, shared by the output pumps and the
/// waiter; a frame is written whole under the lock.
#[derive(Clone)]
struct Sender(Arc<Mutex<UnixStream>>);

impl Sender {
    fn send(&self, kind: u8, payload: &[u8]) -> io::Result<()> {
        let mut stream = self
            .0
            .lock()
            .map_err(|_| io::Error::other("a writer panicked"))?;
        wire::write_frame(&mut *stream, kind, payload)
    }
}

/// One connection: one command, from its run frame to its exit frame.
fn serve_one(stream: UnixStream) -> io::Result<()> {
    let mut from_control = stream.try_clone()?;
    let Some((kind, payload)) = wire::read_frame(&mut from_control)? else {
        return Ok(()); // a probe: connected and left
    };
    let to_control = Sender(Arc::new(Mutex::new(stream)));
    let run = match (kind, Run::decode(&payload)) {
        (wire::RUN, Ok(run)) => run,
        (wire::RUN, Err(e)) => return to_control.send(wire::REFUSED, e.as_bytes()),
        (other, _) => {
            let why = format!("frame {other} before a run");
            return to_control.send(wire::REFUSED, why.as_bytes());
        }
    };
    let mut cmd = Command::new(&run.argv[0]);
    cmd.args(&run.argv[1..])
        .process_group(0)
        .stdin(if run.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for kv in &run.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        cmd.env(k, v);
    }
    // Last, so that no variable of the request can replace it.
    cmd.env(MARKER_VAR, &run.marker);
    if let Some(cwd) = &run.cwd {
        if !Path::new(cwd).is_dir() {
            // Else the spawn's error would name the program, not the cwd.
            let why = format!(
                "berth-execd: cannot enter the working directory `{cwd}`: not a directory here\n"
            );
            to_control.send(wire::STDERR, why.as_bytes())?;
            return to_control.send(wire::EXIT, &Exit::Code(126).encode());
        }
        cmd.current_dir(cwd);
    }
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            // Docker's codes for an exec that cannot start.
            let code = if e.kind() == io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            let why = format!("berth-execd: cannot run `{}`: {e}\n", run.argv[0]);
            to_control.send(wire::STDERR, why.as_bytes())?;
            return to_control.send(wire::EXIT, &Exit::Code(code).encode());
        }
    };
    let pid = child.id();
    if let Err(e) = to_control.send(wire::STARTED, pid.to_string().as_bytes()) {
        // Control left at once: nobody will read or stop the command.
        kill(pid, &run.marker, &AtomicBool::new(false));
        let _ = child.wait();
        return Err(e);
    }

    let pumps: Vec<_> = [
        (
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            wire::STDOUT,
        ),
        (
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            wire::STDERR,
        ),
    ]
    .into_iter()
    .filter_map(|(pipe, kind)| {
        let pipe = pipe?;
        let out = to_control.clone();
        thread::Builder::new()
            .name("output".into())
            .spawn(move || pump(pipe, kind, &out))
            .ok()
    })
    .collect();

    let reaped = Arc::new(AtomicBool::new(false));
    let exit_sent = Arc::new(AtomicBool::new(false));
    let listening = {
        let stdin = child.stdin.take();
        let (reaped, exit_sent) = (reaped.clone(), exit_sent.clone());
        let marker = run.marker.clone();
        thread::Builder::new()
            .name("control".into())
            .spawn(move || listen(from_control, stdin, pid, &marker, (&reaped, &exit_sent)))?
    };

    let status = child.wait()?;
    reaped.store(true, Ordering::SeqCst);
    // Output ends when the last holder of the pipes closes them (as with
    // Docker's exec): a background child that kept them waits to be killed.
    for p in pumps {
        let _ = p.join();
    }
    let exit = status
        .code()
        .map(Exit::Code)
        .or_else(|| status.signal().map(Exit::Signal))
        .unwrap_or(Exit::Code(-1));
    let sent = to_control.send(wire::EXIT, &exit.encode());
    exit_sent.store(true, Ordering::SeqCst);
    if let Ok(stream) = to_control.0.lock() {
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }
    let _ = listening.join();
    sent
}

/// Copies one of the command's pipes to control until it closes.
fn pump(mut pipe: Box<dyn Read + Send>, kind: u8, to_control: &Sender) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if to_control.send(kind, &buf[..n]).is_err() {
                    // Control left: the command is being killed.
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Control's frames while the command runs: stdin (written by a thread of
/// its own, so that a command not reading it never holds up a kill), its
/// end, and kill. Control leaving before it was told the command's end
/// kills it (also when the command exited but a background child still
/// holds its output open).
fn listen(
    mut from_control: UnixStream,
    stdin: Option<ChildStdin>,
    pid: u32,
    marker: &str,
    (reaped, exit_sent): (&AtomicBool, &AtomicBool),
) {
    let mut feed = stdin.and_then(|mut pipe| {
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                for chunk in rx {
                    if pipe.write_all(&chunk).is_err() {
                        return;
                    }
                }
            })
            .ok()
            .map(|_| tx)
    });
    loop {
        match wire::read_frame(&mut from_control) {
            Ok(Some((wire::STDIN, bytes))) => {
                if feed.as_ref().is_some_and(|tx| tx.send(bytes).is_err()) {
                    feed = None;
                }
            }
            Ok(Some((wire::STDIN_END, _))) => feed = None,
            Ok(Some((wire::KILL, _))) => kill(pid, marker, reaped),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                if !exit_sent.load(Ordering::SeqCst) {
                    kill(pid, marker, reaped);
                }
                return;
            }
        }
    }
}

/// Kills the command's group, its tree and everything carrying its marker.
/// Once it is reaped its pid may be reused: then only the marker counts.
fn kill(pid: u32, marker: &str, reaped: &AtomicBool) {
    let root = i32::try_from(pid)
        .ok()
        .filter(|_| !reaped.load(Ordering::SeqCst));
    if let Some(root) = root {
        let _ = killpg(Pid::from_raw(root), Signal::SIGKILL);
    }
    proctree::kill_exec(root, Some(marker));
}
