//! Running a command in a sandbox with its output delivered as it is
//! written, for `POST …/exec/stream`.
//!
//! A pump task reads Docker's exec stream and sends events down a bounded
//! channel: a slow reader slows the command's output, it does not fill
//! control's memory. The command ends with an `Exit` event; it is killed
//! (with every process it started) at its timeout, and as soon as the reader
//! goes away, so a closed stream never leaves a command running.

use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::exec::Prepared;
use super::request::ExecBody;
use super::{SandboxError, Sandboxes};
use crate::activity::Busy;
use crate::docker::{Attached, Docker, DockerError, ExecRequest, feed_stdin};

/// Events a streamed exec produces, in order; `Exit` or `Error` is last.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecEvent {
    Stdout(String),
    Stderr(String),
    Exit {
        /// `None` when the command was killed at its timeout.
        exit_code: Option<i64>,
        timed_out: bool,
        duration: Duration,
    },
    Error(String),
}

/// Room for this many events between the command and a slow reader.
const BACKLOG: usize = 64;

impl Sandboxes {
    /// Starts a command as the sandbox user (waking the sandbox first) and
    /// returns its events. Errors before the command starts are returned
    /// here, so the API can answer them with a status.
    pub async fn exec_stream(
        &self,
        id: &str,
        body: ExecBody,
    ) -> Result<mpsc::Receiver<ExecEvent>, SandboxError> {
        // No output cap: the reader takes the output as it comes.
        let Prepared { rec, busy, req } = self.prepare_exec(id, body, 0).await?;
        let began = Instant::now();
        let docker = &self.inner.docker;
        let request = &req;
        let attached = self
            .in_container(&rec, |c| {
                let target = self.target(&rec, c);
                async move { docker.exec_attached(&target, request).await }
            })
            .await?;
        let (tx, rx) = mpsc::channel(BACKLOG);
        tokio::spawn(pump(
            self.inner.docker.clone(),
            attached,
            req,
            began,
            tx,
            busy,
        ));
        Ok(rx)
    }
}

/// Moves the command's output to the channel until it exits, times out, or
/// the reader leaves. Holding `_busy` keeps the reaper away meanwhile.
async fn pump(
    docker: Docker,
    attached: Attached,
    req: ExecRequest,
    began: Instant,
    tx: mpsc::Sender<ExecEvent>,
    _busy: Busy,
) {
    let Attached {
        process,
        marker,
        mut output,
        input,
    } = attached;
    // Fed while the output is read and the deadline runs.
    let _feeding = feed_stdin(input, req.stdin);

    let (mut out, mut err) = (Utf8Decoder::default(), Utf8Decoder::default());
    let deadline = tokio::time::sleep(req.timeout);
    tokio::pin!(deadline);
    let mut timed_out = false;
    loop {
        let event = tokio::select! {
            chunk = output.next() => match chunk {
                Some(Ok(LogOutput::StdErr { message })) => ExecEvent::Stderr(err.push(&message)),
                Some(Ok(LogOutput::StdOut { message } | LogOutput::Console { message })) => {
                    ExecEvent::Stdout(out.push(&message))
                }
                Some(Ok(LogOutput::StdIn { .. })) => continue,
                Some(Err(e)) => {
                    let _ = tx.send(ExecEvent::Error(DockerError::from(e).to_string())).await;
                    docker.kill(&process, &marker).await;
                    return;
                }
                None => break,
            },
            () = &mut deadline => {
                timed_out = true;
                docker.kill(&process, &marker).await;
                break;
            }
            () = tx.closed() => {
                tracing::info!(marker = %marker, "streamed exec's reader left: killing the command");
                docker.kill(&process, &marker).await;
                return;
            }
        };
        if matches!(&event, ExecEvent::Stdout(t) | ExecEvent::Stderr(t) if t.is_empty()) {
            continue;
        }
        if tx.send(event).await.is_err() {
            docker.kill(&process, &marker).await;
            return;
        }
    }
    for (decoder, stderr) in [(&mut out, false), (&mut err, true)] {
        let rest = decoder.finish();
        if !rest.is_empty() {
            let event = if stderr {
                ExecEvent::Stderr(rest)
            } else {
                ExecEvent::Stdout(rest)
            };
            let _ = tx.send(event).await;
        }
    }
    let exit_code = if timed_out {
        None
    } else {
        match docker.exit_code(&process).await {
            Ok(code) => code,
            Err(e) => {
                let _ = tx.send(ExecEvent::Error(e.to_string())).await;
                return;
            }
        }
    };
    let _ = tx
        .send(ExecEvent::Exit {
            exit_code,
            timed_out,
            duration: began.elapsed(),
        })
        .await;
}

/// Turns chunks of bytes into text without splitting a UTF-8 character that
/// straddles two chunks; bytes that are not UTF-8 become U+FFFD.
#[derive(Debug, Default)]
struct Utf8Decoder {
    pending: Vec<u8>,
}

impl Utf8Decoder {
    fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let cut = self.pending.len() - incomplete_tail(&self.pending);
        let text = String::from_utf8_lossy(&self.pending[..cut]).into_owned();
        self.pending.drain(..cut);
        text
    }

    fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}

/// How many bytes at the end of `buf` begin a UTF-8 character that the next
/// chunk will complete.
fn incomplete_tail(buf: &[u8]) -> usize {
    for back in 1..=buf.len().min(3) {
        let b = buf[buf.len() - back];
        if b & 0b1100_0000 == 0b1000_0000 {
            continue; // a continuation byte: look further back for the lead
        }
        let needed = match b {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => return 0, // ASCII or invalid: nothing to wait for
        };
        return if needed > back { back } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_split_across_chunks_come_out_whole() {
        let text = "héllo → 🚀 done";
        let bytes = text.as_bytes();
        for split in 0..=bytes.len() {
            let mut d = Utf8Decoder::default();
            let mut got = d.push(&bytes[..split]);
            got.push_str(&d.push(&bytes[split..]));
            got.push_str(&d.finish());
            assert_eq!(got, text, "split at {split}");
        }
    }

    #[test]
    fn one_byte_at_a_time_and_invalid_bytes() {
        let mut d = Utf8Decoder::default();
        let mut got = String::new();
        for b in "añ🚀".as_bytes() {
            got.push_str(&d.push(&[*b]));
        }
        assert_eq!(got, "añ🚀");
        assert_eq!(d.push(&[b'a', 0xFF, b'b']), "a\u{FFFD}b");
        // A lead byte at the very end waits; a stream ending there is replaced.
        assert_eq!(d.push(&[b'x', 0xE2]), "x");
        assert_eq!(d.finish(), "\u{FFFD}");
    }
}
