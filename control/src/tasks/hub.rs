//! Live fan-out of task events to SSE subscribers.
//!
//! The database is the history; the hub only carries events written while a
//! subscriber is connected. A channel exists from a task's creation to its
//! `done` event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::broadcast;

use crate::store::TaskEvent;

const CAPACITY: usize = 1024;

#[derive(Clone, Default)]
pub struct Hub {
    channels: Arc<Mutex<HashMap<String, broadcast::Sender<TaskEvent>>>>,
}

impl Hub {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, broadcast::Sender<TaskEvent>>> {
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn open(&self, task_id: &str) {
        self.map()
            .entry(task_id.to_string())
            .or_insert_with(|| broadcast::channel(CAPACITY).0);
    }

    pub fn publish(&self, task_id: &str, event: &TaskEvent) {
        if let Some(tx) = self.map().get(task_id) {
            // No subscriber is not an error: the event is in the database.
            let _ = tx.send(event.clone());
        }
    }

    /// A receiver of the task's live events, or `None` when the task is
    /// finished (or unknown): its history is then complete in the database.
    pub fn subscribe(&self, task_id: &str) -> Option<broadcast::Receiver<TaskEvent>> {
        self.map().get(task_id).map(broadcast::Sender::subscribe)
    }

    /// Ends the live stream; subscribers see the channel close after the
    /// events already sent.
    pub fn close(&self, task_id: &str) {
        self.map().remove(task_id);
    }
}
