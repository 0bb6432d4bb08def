//! Which agent CLIs an image has. berth's sandbox image writes the ones its
//! build could not install to `/etc/berth-agents-missing` (the npm registry
//! may be unreachable); the file is read from the image without running it,
//! once per image id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::docker::{Docker, DockerError};

/// Where agent-image/Dockerfile lists the agent CLIs it could not install.
pub const MISSING_LIST: &str = "/etc/berth-agents-missing";

/// Agent CLIs per image id, remembered (an image id never changes content).
#[derive(Debug, Clone, Default)]
pub struct InstalledAgents {
    by_image: Arc<Mutex<HashMap<String, Option<Vec<String>>>>>,
}

impl InstalledAgents {
    /// The agents `image` (whose id is `image_id`) has; `None` when it does
    /// not say (not berth's sandbox image).
    pub async fn of(
        &self,
        docker: &Docker,
        image: &str,
        image_id: &str,
    ) -> Result<Option<Vec<String>>, DockerError> {
        if let Some(known) = self
            .by_image
            .lock()
            .ok()
            .and_then(|m| m.get(image_id).cloned())
        {
            return Ok(known);
        }
        let found = docker
            .read_image_file(image, MISSING_LIST)
            .await?
            .map(|missing| installed(&String::from_utf8_lossy(&missing)));
        if let Ok(mut map) = self.by_image.lock() {
            map.insert(image_id.to_string(), found.clone());
        }
        Ok(found)
    }
}

/// The known agents not named in the missing list.
fn installed(missing: &str) -> Vec<String> {
    let missing: Vec<&str> = missing.split_whitespace().collect();
    super::NAMES
        .iter()
        .filter(|name| !missing.contains(name))
        .map(|name| (*name).to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::installed;

    #[test]
    fn the_missing_list_is_subtracted_from_the_known_agents() {
        assert_eq!(installed("\n"), vec!["claude", "opencode"]);
        assert_eq!(installed(" opencode claude\n"), Vec::<String>::new());
        assert_eq!(installed(" claude\n"), vec!["opencode"]);
    }
}
