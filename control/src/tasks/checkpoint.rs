//! Git checkpoints of a sandbox's app directory, taken before an agent runs
//! so that its changes can be listed and reverted. The scripts run inside the
//! sandbox, as the sandbox user, and need `sh` and `git` there.

use std::time::Duration;

use crate::docker::{Docker, DockerError, ExecOutput, ExecRequest};

/// Where agents work.
pub const APP_DIR: &str = "/home/user/workspace/app";

const GIT: &str = "git -c user.name=berth -c user.email=berth@localhost -c init.defaultBranch=main -c core.quotepath=off";

/// Exit code of the checkpoint script when git is not in the image.
const NO_GIT: i64 = 3;

pub use berth_api::FileChange;

#[derive(Debug)]
pub enum Checkpoint {
    Taken(String),
    /// The image has no git: the agent runs without a checkpoint.
    NoGit,
    Failed(String),
}

/// Runs a script in the sandbox (as the sandbox user, in the workspace).
async fn run_script(
    docker: &Docker,
    container: &str,
    script: String,
    env: Vec<String>,
) -> Result<ExecOutput, DockerError> {
    let request = ExecRequest {
        cmd: vec!["/bin/sh".into(), "-c".into(), script],
        cwd: Some("/home/user/workspace".into()),
        env,
        stdin: None,
        timeout: Duration::from_secs(120),
        output_limit: 1 << 20,
        marker: None,
    };
    docker.exec(container, &request).await
}

/// Creates the app directory, and commits its current state (initialising
/// the repository on first use). Returns the commit id.
pub async fn take(
    docker: &Docker,
    container: &str,
    task_id: &str,
) -> Result<Checkpoint, DockerError> {
    let script = format!(
        r#"set -e
mkdir -p "$APP"
cd "$APP"
command -v git >/dev/null 2>&1 || exit {NO_GIT}
if [ ! -d .git ]; then
  {GIT} init -q
  printf 'node_modules/\n.venv/\n__pycache__/\n.cache/\n' >> .git/info/exclude
fi
{GIT} add -A
if ! {GIT} rev-parse -q --verify HEAD >/dev/null || ! {GIT} diff --cached --quiet; then
  {GIT} commit -q --no-verify --allow-empty -m "berth: checkpoint before task $TASK"
fi
{GIT} rev-parse HEAD"#
    );
    let env = vec![format!("APP={APP_DIR}"), format!("TASK={task_id}")];
    let out = run_script(docker, container, script, env).await?;
    Ok(match out.exit_code {
        Some(0) => Checkpoint::Taken(String::from_utf8_lossy(&out.stdout).trim().to_string()),
        Some(NO_GIT) => Checkpoint::NoGit,
        _ => Checkpoint::Failed(tail(&out.stderr, 5)),
    })
}

/// Files changed in the app directory since `checkpoint`, untracked ones
/// included; the repository's own index is left alone.
pub async fn changes_since(
    docker: &Docker,
    container: &str,
    checkpoint: &str,
    task_id: &str,
) -> Result<Vec<FileChange>, String> {
    let script = format!(
        r#"set -e
cd "$APP"
export GIT_INDEX_FILE="/tmp/berth-index-$TASK"
rm -f "$GIT_INDEX_FILE"
{GIT} add -A
{GIT} diff --cached --name-status --no-renames "$CHECKPOINT"
rm -f "$GIT_INDEX_FILE""#
    );
    let env = vec![
        format!("APP={APP_DIR}"),
        format!("TASK={task_id}"),
        format!("CHECKPOINT={checkpoint}"),
    ];
    let out = run_script(docker, container, script, env)
        .await
        .map_err(|e| e.to_string())?;
    match out.exit_code {
        Some(0) => Ok(parse_name_status(&String::from_utf8_lossy(&out.stdout))),
        Some(code) => Err(format!(
            "git exited with code {code}: {}",
            tail(&out.stderr, 5)
        )),
        None if out.timed_out => Err("git ran past its timeout".into()),
        None => Err("git's exit code is unknown".into()),
    }
}

/// Puts the app directory back to `checkpoint`; ignored files stay.
pub async fn revert(
    docker: &Docker,
    container: &str,
    checkpoint: &str,
) -> Result<Result<(), String>, DockerError> {
    let script = format!(
        r#"set -e
cd "$APP"
{GIT} reset -q --hard "$CHECKPOINT"
{GIT} clean -q -f -d"#
    );
    let env = vec![format!("APP={APP_DIR}"), format!("CHECKPOINT={checkpoint}")];
    let out = run_script(docker, container, script, env).await?;
    Ok(match out.exit_code {
        Some(0) => Ok(()),
        _ => Err(tail(&out.stderr, 5)),
    })
}

fn parse_name_status(text: &str) -> Vec<FileChange> {
    text.lines()
        .filter_map(|line| {
            let (code, path) = line.split_once('\t')?;
            let change = match code.chars().next()? {
                'A' => "added",
                'D' => "deleted",
                _ => "modified",
            };
            Some(FileChange {
                path: path.to_string(),
                change: change.to_string(),
            })
        })
        .collect()
}

/// The last `n` lines of some output.
pub fn tail(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_status_lines_become_changes() {
        let changes = parse_name_status("A\tindex.html\nM\tsrc/app.js\nD\told.txt\nT\tlink\n");
        assert_eq!(changes.len(), 4);
        assert_eq!(
            changes[0],
            FileChange {
                path: "index.html".into(),
                change: "added".into()
            }
        );
        assert_eq!(changes[2].change, "deleted");
        assert_eq!(changes[3].change, "modified");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail(b"a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail(b"", 2), "");
    }
}
