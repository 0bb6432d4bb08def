//! The real `berth` binary against a real control plane and Docker: login,
//! create, exec (live output, exit code), a task followed to its end with
//! the test agent, `--json` for scripts, files, open, and errors that carry
//! the API's message and a non-zero exit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{AGENT_IMAGE, Control, TOKEN, binary, unique};
use serde_json::Value;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn berth(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Out {
    let out = Command::new(binary("berth"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("berth binary");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn json_of(out: &Out) -> Value {
    assert_eq!(
        out.code, 0,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

struct Home(PathBuf);

impl Drop for Home {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn the_cli_drives_a_sandbox_from_login_to_removal() {
    common::ensure_agent_image();
    let c = Control::start(&[
        ("BERTH_IMAGE", AGENT_IMAGE),
        ("BERTH_API_TOKENS", &format!("t:{TOKEN}")),
    ])
    .await;
    let home = Home(std::env::temp_dir().join(unique("berth-cli-home-")));
    std::fs::create_dir_all(&home.0).unwrap();
    let h = home.0.as_path();

    // A wrong token is refused at login, with the API's message.
    let bad = berth(h, &[], &["login", &c.base, "--token", "wrong"]);
    assert_eq!(bad.code, 4, "{}", bad.stderr);
    assert!(bad.stderr.contains("unauthorized"), "{}", bad.stderr);
    assert!(!h.join(".config/berth/config.toml").exists());

    let login = berth(h, &[], &["login", &c.base, "--token", TOKEN]);
    assert_eq!(login.code, 0, "{}", login.stderr);
    let config = h.join(".config/berth/config.toml");
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the config holds the token");
    assert!(std::fs::read_to_string(&config).unwrap().contains(&c.base));

    let list = json_of(&berth(h, &[], &["--json", "ls"]));
    assert!(list["sandboxes"].as_array().unwrap().is_empty(), "{list}");

    // Create: human output names the sandbox and its preview URL once it runs.
    let made = berth(
        h,
        &[],
        &["create", "--port", "3000", "--env", "FAKE_KEY=from-cli"],
    );
    assert_eq!(made.code, 0, "{}", made.stderr);
    assert!(made.stdout.contains("running"), "{}", made.stdout);
    assert!(made.stdout.contains("port 3000"), "{}", made.stdout);
    let list = json_of(&berth(h, &[], &["--json", "ls"]));
    let first = list["sandboxes"][0]["id"].as_str().unwrap().to_string();
    let quiet = berth(h, &[], &["create", "--quiet"]);
    let id = quiet.stdout.trim().to_string();
    assert_eq!(
        (quiet.code, id.len()),
        (0, 26),
        "only the id: {:?} {}",
        quiet.stdout,
        quiet.stderr
    );
    let rm = berth(h, &[], &["rm", &id]);
    assert_eq!(rm.code, 0, "{}", rm.stderr);
    let id = first;
    let table = berth(h, &[], &["ls"]);
    assert!(table.stdout.starts_with("ID"), "{}", table.stdout);
    assert!(table.stdout.contains(&id));

    // Exec: output on the right streams, the command's exit code.
    let ran = berth(
        h,
        &[],
        &[
            "exec",
            &id,
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 7",
        ],
    );
    assert_eq!(ran.code, 7, "{}", ran.stderr);
    assert_eq!(ran.stdout, "out\n");
    assert_eq!(ran.stderr, "err\n");
    let ran = json_of(&berth(h, &[], &["--json", "exec", &id, "--", "echo", "hi"]));
    assert_eq!(ran["stdout"], "hi\n");

    // A task followed to its end with the test agent.
    let task = berth(
        h,
        &[],
        &[
            "task",
            &id,
            "make a landing page",
            "--agent",
            "claude",
            "--follow",
        ],
    );
    assert_eq!(
        task.code, 0,
        "stdout: {}\nstderr: {}",
        task.stdout, task.stderr
    );
    for want in [
        "I will create index.html (key: from-cli).",
        "→ Write",
        "index.html",
        "task succeeded",
        "files changed",
        "A index.html",
    ] {
        assert!(
            task.stdout.contains(want),
            "no `{want}` in:\n{}",
            task.stdout
        );
    }
    let tasks = c.get(&format!("/v1/sandboxes/{id}/tasks")).await.body;
    let task_id = tasks["tasks"][0]["id"].as_str().unwrap();
    let logs = berth(h, &[], &["--json", "logs", &id, task_id]);
    assert_eq!(logs.code, 0, "{}", logs.stderr);
    let events: Vec<Value> = logs
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.last().unwrap()["event"], "done");
    assert_eq!(events[0]["id"], "1");
    // The task's diff, as git wrote it; a file it did not change is a 404.
    let diff = berth(h, &[], &["diff", &id, task_id]);
    assert_eq!(diff.code, 0, "{}", diff.stderr);
    assert!(
        diff.stdout
            .starts_with("diff --git a/index.html b/index.html\n")
            && diff.stdout.contains("\n+<h1>built by claude</h1>\n"),
        "{}",
        diff.stdout
    );
    let unchanged = berth(h, &[], &["diff", &id, task_id, "nope.txt"]);
    assert_ne!(unchanged.code, 0);
    assert!(
        unchanged.stderr.contains("did not change `nope.txt`"),
        "{}",
        unchanged.stderr
    );

    // Files.
    let local = h.join("notes.txt");
    std::fs::write(&local, "from the host\n").unwrap();
    let put = berth(
        h,
        &[],
        &["files", "put", &id, local.to_str().unwrap(), "notes.txt"],
    );
    assert_eq!(put.code, 0, "{}", put.stderr);
    let got = berth(h, &[], &["files", "get", &id, "notes.txt"]);
    assert_eq!(got.stdout, "from the host\n");
    let ls = berth(h, &[], &["files", "ls", &id]);
    assert!(ls.stdout.contains("notes.txt"), "{}", ls.stdout);

    // Preview link: a private sandbox's carries a token.
    let private = json_of(&berth(
        h,
        &[],
        &[
            "--json",
            "create",
            "--private",
            "--port",
            "8080",
            "--no-wait",
        ],
    ));
    let pid = private["id"].as_str().unwrap();
    let open = berth(h, &[], &["open", pid]);
    assert_eq!(open.code, 0, "{}", open.stderr);
    assert!(open.stdout.contains("berth_token="), "{}", open.stdout);
    assert!(
        open.stdout.contains(&format!("s-{pid}-8080.")),
        "{}",
        open.stdout
    );

    // Errors: the API's code and message, a non-zero exit.
    let missing = berth(h, &[], &["info", "nosuch"]);
    assert_eq!(missing.code, 4);
    assert!(missing.stderr.contains("not_found"), "{}", missing.stderr);
    let wrong = berth(h, &[("BERTH_TOKEN", "wrong")], &["ls"]);
    assert_eq!(wrong.code, 4);
    assert!(wrong.stderr.contains("unauthorized"), "{}", wrong.stderr);
    let away = berth(h, &[("BERTH_URL", "http://127.0.0.1:1")], &["ls"]);
    assert_eq!(away.code, 3, "{}", away.stderr);

    let completions = berth(h, &[], &["completions", "bash"]);
    assert!(
        completions.stdout.contains("berth"),
        "{}",
        completions.stdout
    );

    for sandbox in [id.as_str(), pid] {
        let rm = berth(h, &[], &["purge", sandbox]);
        assert_eq!(rm.code, 0, "{}", rm.stderr);
    }
    let list = json_of(&berth(h, &[], &["--json", "ls"]));
    assert!(list["sandboxes"].as_array().unwrap().is_empty(), "{list}");
}
