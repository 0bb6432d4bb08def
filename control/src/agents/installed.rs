//! Which agent CLIs an image has. berth's sandbox image lists the ones it
//! installed, with their versions, in `/etc/berth-agents` (`name version` a
//! line); images built before that list only the ones missing, in
//! `/etc/berth-agents-missing`. The files are read from the image without
//! running it, once per image id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::docker::{Docker, DockerError};

/// Where agent-image/Dockerfile lists the agent CLIs it installed.
pub const INSTALLED_LIST: &str = "/etc/berth-agents";
/// Where older images listed the agent CLIs they could not install.
pub const MISSING_LIST: &str = "/etc/berth-agents-missing";

/// One agent CLI in an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentInfo {
    pub name: String,
    /// `None` where the image did not record it.
    pub version: Option<String>,
}

/// Agent CLIs per image id, remembered (an image id never changes content).
#[derive(Debug, Clone, Default)]
pub struct InstalledAgents {
    by_image: Arc<Mutex<HashMap<String, Option<Vec<AgentInfo>>>>>,
}

impl InstalledAgents {
    /// The agents `image` (whose id is `image_id`) has; `None` when it does
    /// not say (not berth's sandbox image).
    pub async fn of(
        &self,
        docker: &Docker,
        image: &str,
        image_id: &str,
    ) -> Result<Option<Vec<AgentInfo>>, DockerError> {
        if let Some(known) = self
            .by_image
            .lock()
            .ok()
            .and_then(|m| m.get(image_id).cloned())
        {
            return Ok(known);
        }
        let found = match docker.read_image_file(image, INSTALLED_LIST).await? {
            Some(list) => Some(listed(&String::from_utf8_lossy(&list))),
            None => docker
                .read_image_file(image, MISSING_LIST)
                .await?
                .map(|missing| installed(&String::from_utf8_lossy(&missing))),
        };
        if let Ok(mut map) = self.by_image.lock() {
            map.insert(image_id.to_string(), found.clone());
        }
        Ok(found)
    }
}

/// The known agents named in the installed list, with their versions.
fn listed(list: &str) -> Vec<AgentInfo> {
    list.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?;
            super::NAMES.contains(&name).then(|| AgentInfo {
                name: name.to_string(),
                version: words.next().map(String::from),
            })
        })
        .collect()
}

/// The known agents not named in the missing list.
fn installed(missing: &str) -> Vec<AgentInfo> {
    let missing: Vec<&str> = missing.split_whitespace().collect();
    super::NAMES
        .iter()
        .filter(|name| !missing.contains(name))
        .map(|name| AgentInfo {
            name: (*name).to_string(),
            version: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{installed, listed};

    fn names(agents: Vec<super::AgentInfo>) -> Vec<String> {
        agents.into_iter().map(|a| a.name).collect()
    }

    #[test]
    fn the_missing_list_is_subtracted_from_the_known_agents() {
        assert_eq!(names(installed("\n")), vec!["claude", "opencode"]);
        assert_eq!(names(installed(" opencode claude\n")), Vec::<String>::new());
        assert_eq!(names(installed(" claude\n")), vec!["opencode"]);
    }

    #[test]
    fn the_installed_list_names_versions() {
        let agents = listed("claude 2.1.332\nmystery 1\n\nopencode\n");
        assert_eq!(names(agents.clone()), vec!["claude", "opencode"]);
        assert_eq!(agents[0].version.as_deref(), Some("2.1.332"));
        assert_eq!(agents[1].version, None);
    }
}
