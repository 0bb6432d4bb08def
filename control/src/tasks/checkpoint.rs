//! Git checkpoints of a sandbox's app directory, taken before an agent runs
//! so that its changes can be listed and reverted. The scripts run inside the
//! sandbox, as the sandbox user, and need `sh` and `git` there.

use std::time::Duration;

use crate::docker::{Docker, DockerError, ExecOutput, ExecRequest, Target};

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

/// How long a script may run, and how much of its output is kept.
struct Limits {
    timeout: Duration,
    output: usize,
}

/// Checkpoints, listings and reverts.
const SCRIPT: Limits = Limits {
    timeout: Duration::from_secs(120),
    output: 1 << 20,
};

/// A whole task's patch.
const PATCH: Limits = Limits {
    timeout: Duration::from_secs(60),
    output: 16 << 20,
};

/// Runs a script in the sandbox (as the sandbox user, in the workspace).
async fn run_script(
    docker: &Docker,
    target: &Target,
    script: String,
    env: Vec<String>,
    limits: Limits,
) -> Result<ExecOutput, DockerError> {
    let request = ExecRequest {
        cmd: vec!["/bin/sh".into(), "-c".into(), script],
        cwd: Some("/home/user/workspace".into()),
        env,
        stdin: None,
        timeout: limits.timeout,
        output_limit: limits.output,
        marker: None,
    };
    docker.exec(target, &request).await
}

/// Why a git script that did not exit 0 failed.
fn git_failure(out: &ExecOutput) -> String {
    match out.exit_code {
        Some(code) => format!("git exited with code {code}: {}", tail(&out.stderr, 5)),
        None if out.timed_out => "git ran past its timeout".into(),
        None => "git's exit code is unknown".into(),
    }
}

/// Creates the app directory, and commits its current state (initialising
/// the repository on first use). Returns the commit id.
pub async fn take(
    docker: &Docker,
    target: &Target,
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
    let out = run_script(docker, target, script, env, SCRIPT).await?;
    Ok(match out.exit_code {
        Some(0) => Checkpoint::Taken(String::from_utf8_lossy(&out.stdout).trim().to_string()),
        Some(NO_GIT) => Checkpoint::NoGit,
        _ => Checkpoint::Failed(tail(&out.stderr, 5)),
    })
}

/// What a task left behind: the files it changed, and the git tree of the
/// app directory as it ended (kept so that its diff can be shown later,
/// whatever happens to the directory after).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    pub files: Vec<FileChange>,
    pub after: Option<String>,
}

/// Files changed in the app directory since `checkpoint`, untracked ones
/// included; the repository's own index, HEAD and refs are left alone (the
/// tree of the end state is written as an object only).
pub async fn changes_since(
    docker: &Docker,
    target: &Target,
    checkpoint: &str,
    task_id: &str,
) -> Result<Changes, String> {
    let script = format!(
        r#"set -e
cd "$APP"
export GIT_INDEX_FILE="/tmp/berth-index-$TASK"
rm -f "$GIT_INDEX_FILE"
{GIT} add -A
TREE=$({GIT} write-tree)
echo "$TREE"
# A ref keeps the end tree from git's garbage collection.
{GIT} update-ref "refs/berth/after/$TASK" "$({GIT} commit-tree "$TREE" -p "$CHECKPOINT" -m "berth: after task $TASK")" || true
{GIT} diff --cached --name-status --no-renames "$CHECKPOINT"
rm -f "$GIT_INDEX_FILE""#
    );
    let env = vec![
        format!("APP={APP_DIR}"),
        format!("TASK={task_id}"),
        format!("CHECKPOINT={checkpoint}"),
    ];
    let out = run_script(docker, target, script, env, SCRIPT)
        .await
        .map_err(|e| e.to_string())?;
    match out.exit_code {
        Some(0) => {
            let text = String::from_utf8_lossy(&out.stdout);
            let (tree, listing) = text.split_once('\n').unwrap_or((&text, ""));
            let tree = tree.trim();
            Ok(Changes {
                files: parse_name_status(listing),
                after: is_object_id(tree).then(|| tree.to_string()),
            })
        }
        _ => Err(git_failure(&out)),
    }
}

/// A full hexadecimal git object id (SHA-1 or SHA-256).
pub fn is_object_id(text: &str) -> bool {
    matches!(text.len(), 40 | 64) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Marks where the listing ends and the patch begins in [`diff`]'s output
/// (no `--name-status` line can look like it).
const PATCH_BEGINS: &str = "@@berth-patch@@";

/// The most of one file's patch that is returned.
pub const FILE_PATCH_LIMIT: usize = 256 * 1024;

/// The unified diff of each file a task changed: from `checkpoint` to the
/// tree it ended with (`after`), or to the directory as it is now when the
/// task recorded no end tree.
pub async fn diff(
    docker: &Docker,
    target: &Target,
    checkpoint: &str,
    after: Option<&str>,
    task_id: &str,
) -> Result<Result<Vec<FilePatch>, String>, DockerError> {
    // Both commands compare the same two trees, so git lists the files in
    // the same order in each.
    let script = format!(
        r#"set -e
cd "$APP"
if [ -n "$AFTER" ]; then
  {GIT} diff --name-status --no-renames "$CHECKPOINT" "$AFTER"
  echo "{PATCH_BEGINS}"
  {GIT} diff --no-color --no-ext-diff --no-renames "$CHECKPOINT" "$AFTER"
else
  GIT_INDEX_FILE=$(mktemp /tmp/berth-index-diff.XXXXXX)
  export GIT_INDEX_FILE
  trap 'rm -f "$GIT_INDEX_FILE"' EXIT
  {GIT} add -A
  {GIT} diff --cached --name-status --no-renames "$CHECKPOINT"
  echo "{PATCH_BEGINS}"
  {GIT} diff --cached --no-color --no-ext-diff --no-renames "$CHECKPOINT"
fi"#
    );
    let env = vec![
        format!("APP={APP_DIR}"),
        format!("TASK={task_id}"),
        format!("CHECKPOINT={checkpoint}"),
        format!("AFTER={}", after.unwrap_or_default()),
    ];
    let out = run_script(docker, target, script, env, PATCH).await?;
    Ok(match out.exit_code {
        Some(0) => Ok(split_patch(
            &String::from_utf8_lossy(&out.stdout),
            out.truncated,
        )),
        _ => Err(git_failure(&out)),
    })
}

/// One changed file's patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePatch {
    pub change: FileChange,
    /// The unified diff (its `diff --git` header included); empty when git
    /// wrote none (the output was cut before it).
    pub patch: String,
    pub binary: bool,
    /// The patch was cut at [`FILE_PATCH_LIMIT`], or the whole output at
    /// its limit before this file's patch ended.
    pub truncated: bool,
}

/// Pairs the listing with the patch's per-file sections, by the path in
/// each section's header (a type change, e.g. a file that became a
/// symlink, is one listing line but two sections: both go to it). Sections
/// whose header names no listed path (git quotes unusual names) go, in
/// order, to the files still without one.
fn split_patch(text: &str, output_cut: bool) -> Vec<FilePatch> {
    let marker = format!("\n{PATCH_BEGINS}\n");
    let (listing, patch) = match text.split_once(&marker) {
        Some((listing, patch)) => (listing, patch),
        None => match text.strip_prefix(&marker[1..]) {
            Some(patch) => ("", patch),
            None => (text, ""),
        },
    };
    let mut sections: Vec<String> = Vec::new();
    for line in patch.split_inclusive('\n') {
        if line.starts_with("diff --git ") || sections.is_empty() {
            sections.push(String::new());
        }
        if let Some(last) = sections.last_mut() {
            last.push_str(line);
        }
    }
    let files = parse_name_status(listing);
    let headers: Vec<String> = files
        .iter()
        .map(|f| format!("diff --git a/{0} b/{0}", f.path))
        .collect();
    let mut patches = vec![String::new(); files.len()];
    let mut unmatched: Vec<String> = Vec::new();
    let mut last_file = None;
    for section in sections {
        let header = section.lines().next().unwrap_or_default().to_string();
        if let Some(i) = headers.iter().position(|h| *h == header) {
            patches[i].push_str(&section);
            last_file = Some(i);
        } else if unmatched
            .last()
            .is_some_and(|u: &String| u.lines().next() == Some(header.as_str()))
        {
            if let Some(u) = unmatched.last_mut() {
                u.push_str(&section);
            }
        } else {
            unmatched.push(section);
        }
    }
    let mut rest = unmatched.into_iter();
    for (i, p) in patches.iter_mut().enumerate() {
        if p.is_empty() {
            if let Some(section) = rest.next() {
                *p = section;
                last_file = Some(i);
            }
        }
    }
    files
        .into_iter()
        .zip(patches)
        .enumerate()
        .map(|(i, (change, mut patch))| {
            // A cut output ends inside the last patch it reached; files
            // after it got none.
            let mut truncated = output_cut && (patch.is_empty() || last_file == Some(i));
            if patch.len() > FILE_PATCH_LIMIT {
                let mut cut = FILE_PATCH_LIMIT;
                while !patch.is_char_boundary(cut) {
                    cut -= 1;
                }
                patch.truncate(cut);
                truncated = true;
            }
            let binary = patch
                .lines()
                .any(|l| l.starts_with("Binary files ") || l == "GIT binary patch");
            FilePatch {
                change,
                patch,
                binary,
                truncated,
            }
        })
        .collect()
}

/// Puts the app directory back to `checkpoint`; ignored files stay.
pub async fn revert(
    docker: &Docker,
    target: &Target,
    checkpoint: &str,
) -> Result<Result<(), String>, DockerError> {
    let script = format!(
        r#"set -e
cd "$APP"
{GIT} reset -q --hard "$CHECKPOINT"
{GIT} clean -q -f -d"#
    );
    let env = vec![format!("APP={APP_DIR}"), format!("CHECKPOINT={checkpoint}")];
    let out = run_script(docker, target, script, env, SCRIPT).await?;
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
    fn a_patch_is_split_per_file_in_listing_order() {
        let text = "A\tindex.html\nM\tsrc/a b.js\nA\tlogo.png\n@@berth-patch@@\n\
diff --git a/index.html b/index.html\nnew file mode 100644\n--- /dev/null\n+++ b/index.html\n@@ -0,0 +1 @@\n+<h1>hi</h1>\n\
diff --git a/src/a b.js b/src/a b.js\n--- a/src/a b.js\n+++ b/src/a b.js\n@@ -1 +1 @@\n-old\n+diff --git not a header\n\
diff --git a/logo.png b/logo.png\nnew file mode 100644\nBinary files /dev/null and b/logo.png differ\n";
        let files = split_patch(text, false);
        assert_eq!(files.len(), 3);
        assert_eq!(files[0].change.path, "index.html");
        assert!(
            files[0].patch.ends_with("+<h1>hi</h1>\n"),
            "{}",
            files[0].patch
        );
        assert_eq!(files[1].change.path, "src/a b.js");
        assert!(files[1].patch.contains("+diff --git not a header"));
        assert!(!files[1].binary && files[2].binary);
        assert!(files.iter().all(|f| !f.truncated));
    }

    #[test]
    fn a_type_change_keeps_both_its_sections_and_the_pairing() {
        // As git writes it for `ln -sf a link` (was a file) and an edit of z.
        let text = "T\tlink\nM\tz\n@@berth-patch@@\n\
diff --git a/link b/link\ndeleted file mode 100644\n--- a/link\n+++ /dev/null\n@@ -1 +0,0 @@\n-old\n\
diff --git a/link b/link\nnew file mode 120000\n--- /dev/null\n+++ b/link\n@@ -0,0 +1 @@\n+a\n\
diff --git a/z b/z\n--- a/z\n+++ b/z\n@@ -1 +1 @@\n-1\n+2\n";
        let files = split_patch(text, false);
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].change.path, "link");
        assert!(
            files[0].patch.contains("deleted file mode")
                && files[0].patch.contains("new file mode 120000")
        );
        assert_eq!(files[1].change.path, "z");
        assert!(files[1].patch.ends_with("-1\n+2\n"), "{}", files[1].patch);
    }

    #[test]
    fn a_cut_output_marks_the_last_file_it_reached() {
        let text = "M\ta\nM\tb\n@@berth-patch@@\ndiff --git a/a b/a\n--- a/a\n+++ b/a\n@@ -1 +1 @@\n-x\n+y";
        let files = split_patch(text, true);
        assert!(files[0].truncated, "{files:?}");
        assert!(files[1].truncated && files[1].patch.is_empty());
        let clean = split_patch("@@berth-patch@@\n", false);
        assert!(clean.is_empty());
    }

    #[test]
    fn object_ids_are_full_hex() {
        assert!(is_object_id("4b825dc642cb6eb9a060e54bf8d69288fbee4904"));
        assert!(!is_object_id("4b825dc6"));
        assert!(!is_object_id("fatal: not a git repository (or any)..."));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail(b"a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail(b"", 2), "");
    }
}
