//! Judging a finished agent run: which failure (if any) and which status.

use super::agent::Ending;
use crate::agents::RunState;
use crate::store::TaskStatus;

/// The failure reason and message of a run, or `None` when it succeeded.
/// `files_changed`: how many files the agent changed, `None` when unknown
/// (an unknown list never makes a run `no_output`).
pub(super) fn judge(
    ending: &Ending,
    state: &RunState,
    agent: &str,
    timeout_s: i64,
    files_changed: Option<usize>,
) -> Option<(&'static str, String)> {
    let exit_code = match ending {
        Ending::Exited(code) => *code,
        _ => None,
    };
    match (ending, exit_code) {
        (Ending::Cancelled, _) => Some(("cancelled", "cancelled".to_string())),
        (Ending::TimedOut, _) => Some((
            "agent_timeout",
            format!("the agent ran past its timeout of {timeout_s} s"),
        )),
        (Ending::Stopped, _) => Some((
            "control_stopped",
            "the control plane shut down while this task ran".to_string(),
        )),
        (Ending::Exited(_), Some(126 | 127)) if !state.did_anything() => Some((
            "agent_missing",
            format!("the `{agent}` CLI is not installed in this sandbox's image"),
        )),
        (Ending::Exited(_), _) if state.failure.is_some() => Some((
            state.failure_reason.unwrap_or("agent_error"),
            state.failure.clone().unwrap_or_default(),
        )),
        (Ending::Exited(_), Some(code)) if code != 0 => {
            Some(("agent_error", format!("the agent exited with code {code}")))
        }
        (Ending::Exited(_), None) => Some((
            "agent_error",
            "the agent's exit code is unknown".to_string(),
        )),
        (Ending::Exited(_), Some(_)) if !state.did_anything() && files_changed == Some(0) => {
            Some((
                "no_output",
                "the agent exited 0 without saying or doing anything".to_string(),
            ))
        }
        _ => None,
    }
}

/// The task's final status.
pub(super) fn status(ending: &Ending, failed: bool) -> TaskStatus {
    match (ending, failed) {
        (Ending::Cancelled, _) => TaskStatus::Cancelled,
        (Ending::TimedOut, _) => TaskStatus::TimedOut,
        (_, true) => TaskStatus::Failed,
        (_, false) => TaskStatus::Succeeded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_run_is_no_output_only_when_the_file_list_is_known_empty() {
        let quiet = RunState::default();
        let ended = Ending::Exited(Some(0));
        assert_eq!(
            judge(&ended, &quiet, "claude", 60, Some(0)).map(|f| f.0),
            Some("no_output")
        );
        assert_eq!(judge(&ended, &quiet, "claude", 60, Some(2)), None);
        assert_eq!(judge(&ended, &quiet, "claude", 60, None), None);
    }

    #[test]
    fn endings_map_to_reasons_and_statuses() {
        let quiet = RunState::default();
        let reason = |e: &Ending| judge(e, &quiet, "claude", 60, Some(1)).map(|f| f.0);
        assert_eq!(reason(&Ending::Cancelled), Some("cancelled"));
        assert_eq!(reason(&Ending::TimedOut), Some("agent_timeout"));
        assert_eq!(reason(&Ending::Stopped), Some("control_stopped"));
        assert_eq!(reason(&Ending::Exited(Some(127))), Some("agent_missing"));
        assert_eq!(reason(&Ending::Exited(None)), Some("agent_error"));
        assert_eq!(status(&Ending::TimedOut, true), TaskStatus::TimedOut);
        assert_eq!(
            status(&Ending::Exited(Some(0)), false),
            TaskStatus::Succeeded
        );
        assert_eq!(status(&Ending::Exited(Some(1)), true), TaskStatus::Failed);
    }
}
