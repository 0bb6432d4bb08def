//! The check phase: the task's own command (e.g. `pnpm build`) run after the
//! agent; its failure fails the task.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::docker::{ExecRequest, Target};
use crate::store::TaskRecord;
use crate::tasks::Tasks;
use crate::tasks::checkpoint::{self, APP_DIR};

/// Lines of the check's output kept in the result.
const CHECK_TAIL_LINES: usize = 40;

/// Runs `command` until the task's deadline; returns the `check` result and
/// the failure, if any.
pub(super) async fn run(
    tasks: &Tasks,
    task: &TaskRecord,
    (target, sandbox_env): (&Target, &[String]),
    command: &str,
    deadline: Instant,
) -> (Value, Option<(&'static str, String)>) {
    let remaining = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    let request = ExecRequest {
        cmd: vec!["/bin/sh".into(), "-lc".into(), command.to_string()],
        cwd: Some(APP_DIR.into()),
        env: [sandbox_env, &super::task_env(task)].concat(),
        stdin: None,
        timeout: remaining,
        output_limit: 1 << 20,
        marker: None,
    };
    match tasks.inner().docker.exec(target, &request).await {
        Ok(out) => {
            let mut combined = out.stdout.clone();
            combined.extend_from_slice(&out.stderr);
            let ok = out.exit_code == Some(0);
            let result = json!({
                "command": command,
                "ok": ok,
                "exit_code": out.exit_code,
                "timed_out": out.timed_out,
                "output_tail": checkpoint::tail(&combined, CHECK_TAIL_LINES),
            });
            let failure = (!ok).then(|| ("check_failed", format!("the check `{command}` failed")));
            (result, failure)
        }
        Err(e) => (
            Value::Null,
            Some(("check_failed", format!("the check could not run: {e}"))),
        ),
    }
}
