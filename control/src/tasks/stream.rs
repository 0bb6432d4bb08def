//! A task's events as a stream: the stored history after a given sequence
//! number, then live events, ending with `done`.
//!
//! Subscribe first, read the database second, then follow the live channel
//! and drop what was already sent: no event is lost between the two, none
//! is sent twice. A subscriber that falls behind re-reads the database.

use futures_util::Stream;
use tokio::sync::{broadcast, mpsc};

use super::Tasks;
use crate::store::TaskEvent;

impl Tasks {
    /// Events of `task_id` with a sequence number above `after`. The stream
    /// ends after `done`, or when control shuts down.
    pub fn event_stream(
        &self,
        task_id: String,
        after: i64,
    ) -> impl Stream<Item = TaskEvent> + use<> {
        let (tx, rx) = mpsc::channel::<TaskEvent>(64);
        let tasks = self.clone();
        tokio::spawn(async move {
            let shutdown = tasks.inner.shutdown.clone();
            tokio::select! {
                () = produce(&tasks, &task_id, after, &tx) => {}
                () = shutdown.cancelled() => {}
                () = tx.closed() => {}
            }
        });
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) })
    }
}

/// Sends stored events after `last`; returns the new last sequence number
/// and whether `done` was among them.
async fn replay(
    tasks: &Tasks,
    task_id: &str,
    mut last: i64,
    tx: &mpsc::Sender<TaskEvent>,
) -> Option<(i64, bool)> {
    let events = match tasks.inner.store.task_events_after(task_id, last).await {
        Ok(events) => events,
        Err(e) => {
            tracing::warn!(task = task_id, error = %e, "could not read task events");
            return None;
        }
    };
    for event in events {
        last = event.seq;
        let done = event.kind == "done";
        tx.send(event).await.ok()?;
        if done {
            return Some((last, true));
        }
    }
    Some((last, false))
}

async fn produce(tasks: &Tasks, task_id: &str, after: i64, tx: &mpsc::Sender<TaskEvent>) {
    let live = tasks.inner.hub.subscribe(task_id);
    let Some((mut last, done)) = replay(tasks, task_id, after, tx).await else {
        return;
    };
    if done {
        return;
    }
    let Some(mut live) = live else {
        // Finished, or never existed: the history above is all there is,
        // unless it finished between the subscription and the read.
        let _ = replay(tasks, task_id, last, tx).await;
        return;
    };
    loop {
        match live.recv().await {
            Ok(event) if event.seq <= last => {}
            Ok(event) => {
                last = event.seq;
                let done = event.kind == "done";
                if tx.send(event).await.is_err() || done {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                match replay(tasks, task_id, last, tx).await {
                    Some((_, true)) | None => return,
                    Some((seq, false)) => last = seq,
                }
            }
            Err(broadcast::error::RecvError::Closed) => {
                let _ = replay(tasks, task_id, last, tx).await;
                return;
            }
        }
    }
}
