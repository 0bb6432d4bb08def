//! One async lock per sandbox: create, wake, stop, delete and the background
//! loops take it, so operations on one sandbox never interleave (and twenty
//! concurrent wakes start the container once).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

#[derive(Debug, Clone, Default)]
pub struct Locks {
    map: Arc<Mutex<HashMap<String, Arc<AsyncMutex<()>>>>>,
}

pub type SandboxGuard = OwnedMutexGuard<()>;

impl Locks {
    fn entry(&self, id: &str) -> Arc<AsyncMutex<()>> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        // Drop locks nobody holds or waits for, so the map does not grow
        // with every sandbox ever seen.
        if map.len() > 1024 {
            map.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        map.entry(id.to_string()).or_default().clone()
    }

    pub async fn lock(&self, id: &str) -> SandboxGuard {
        self.entry(id).lock_owned().await
    }

    pub fn try_lock(&self, id: &str) -> Option<SandboxGuard> {
        self.entry(id).try_lock_owned().ok()
    }
}
