//! One function per command. Each returns the process exit code.

use std::io::Write;
use std::time::{Duration, Instant};

use base64::Engine;
use berth_api::files::{FileRead, WriteBody, Written};
use berth_api::preview::PreviewToken;
use berth_api::{CreateRequest, ExecBody, SandboxList, SandboxView};
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{CliError, Client};
use crate::render::{Spinner, Style, short, table};
use crate::{Cmd, FilesCmd, config, parse_env, sse, tasks};

const NO_BODY: Option<&Value> = None;

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn sandbox_path(id: &str) -> String {
    format!("/v1/sandboxes/{}", enc(id))
}

pub async fn run(cmd: Cmd, json: bool) -> Result<i32, CliError> {
    let style = Style::detect();
    let config = config::load().map_err(CliError::Other)?;
    if let Cmd::Login { url, token } = cmd {
        return login(url, token.or(config.token), json, &style).await;
    }
    let client = Client::new(&config)?;
    match cmd {
        Cmd::Login { .. } | Cmd::Completions { .. } => Ok(0),
        Cmd::Ls => {
            let (raw, list): (Value, SandboxList) =
                client.call(Method::GET, "/v1/sandboxes", NO_BODY).await?;
            if json {
                print_json(&raw);
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = list
                .sandboxes
                .iter()
                .map(|s| {
                    vec![
                        s.id.clone(),
                        style.status(s.status.as_str()),
                        s.image.clone(),
                        s.memory.clone(),
                        s.ports
                            .iter()
                            .map(u16::to_string)
                            .collect::<Vec<_>>()
                            .join(","),
                        if s.public {
                            "public".into()
                        } else {
                            "private".into()
                        },
                        s.last_active_at.clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &[
                        "ID",
                        "STATUS",
                        "IMAGE",
                        "MEMORY",
                        "PORTS",
                        "PREVIEW",
                        "LAST ACTIVE"
                    ],
                    &rows,
                    &style
                )
            );
            Ok(0)
        }
        Cmd::Create {
            id,
            ports,
            start,
            image,
            env,
            private,
            memory,
            no_wait,
            quiet,
        } => {
            let req = CreateRequest {
                id,
                ports,
                env: parse_env(&env)?,
                image,
                memory: memory.map(berth_api::sandbox::SizeOrNumber::Text),
                start,
                public: private.then_some(false),
                ..Default::default()
            };
            let mut spinner = if quiet {
                Spinner::hidden()
            } else {
                Spinner::new()
            };
            spinner.tick("creating");
            let result: Result<(Value, SandboxView), CliError> =
                client.call(Method::POST, "/v1/sandboxes", Some(&req)).await;
            spinner.clear();
            let (raw, mut sandbox) = result?;
            if json {
                print_json(&raw);
                return Ok(0);
            }
            if !no_wait {
                sandbox = wait_running(&client, &sandbox.id, &mut spinner).await?;
            }
            if quiet {
                println!("{}", sandbox.id);
            } else {
                show(&sandbox, &style);
            }
            Ok(0)
        }
        Cmd::Info { id } => {
            let (raw, sandbox): (Value, SandboxView) = client
                .call(Method::GET, &sandbox_path(&id), NO_BODY)
                .await?;
            if json {
                print_json(&raw);
            } else {
                show(&sandbox, &style);
            }
            Ok(0)
        }
        Cmd::Exec {
            id,
            cwd,
            timeout,
            cmd,
        } => {
            exec(
                &client,
                &id,
                ExecBody {
                    cmd: berth_api::Command::Argv(cmd),
                    cwd,
                    env: Default::default(),
                    timeout_s: timeout,
                    stdin: None,
                },
                json,
            )
            .await
        }
        Cmd::Task {
            id,
            prompt,
            agent,
            model,
            check,
            resume,
            env,
            follow,
            verbose,
        } => {
            let req = berth_api::CreateTask {
                prompt,
                agent,
                model,
                check,
                resume,
                env: parse_env(&env)?,
                timeout_s: None,
            };
            let path = format!("{}/tasks", sandbox_path(&id));
            let (raw, task): (Value, berth_api::TaskView) =
                client.call(Method::POST, &path, Some(&req)).await?;
            if !follow {
                if json {
                    print_json(&raw);
                } else {
                    println!(
                        "{} {} ({})",
                        style.bold("task"),
                        task.id,
                        style.status(task.status.as_str())
                    );
                    println!("follow it: berth logs {} {}", task.sandbox_id, task.id);
                }
                return Ok(0);
            }
            if !json {
                println!(
                    "{} {} · {}",
                    style.bold("task"),
                    task.id,
                    style.dim(&task.agent)
                );
            }
            tasks::follow(&client, &task.events_url, json, verbose, &style).await
        }
        Cmd::Logs { id, task, verbose } => {
            let url = format!("{}/tasks/{}/events", sandbox_path(&id), enc(&task));
            tasks::follow(&client, &url, json, verbose, &style).await
        }
        Cmd::Diff { id, task, path } => {
            let mut url = format!("{}/tasks/{}/diff", sandbox_path(&id), enc(&task));
            if let Some(path) = path {
                url.push_str(&format!("?path={}", enc(&path)));
            }
            let (raw, diff): (Value, berth_api::tasks::TaskDiff) =
                client.call(Method::GET, &url, NO_BODY).await?;
            if json {
                print_json(&raw);
            } else {
                for file in &diff.files {
                    if file.binary {
                        println!("{} {} (binary)", file.change, file.path);
                    } else {
                        print!("{}", file.patch);
                    }
                    if file.truncated {
                        println!("… ({} was cut: its diff is longer)", file.path);
                    }
                }
                if diff.files.is_empty() {
                    println!("no files changed");
                }
            }
            Ok(0)
        }
        Cmd::Files { op } => files(&client, op, json, &style).await,
        Cmd::Open { id, port } => open(&client, &id, port, json).await,
        Cmd::Stop { id } => {
            lifecycle(
                &client,
                Method::POST,
                &format!("{}/stop", sandbox_path(&id)),
                json,
                &style,
            )
            .await
        }
        Cmd::Sleep { id } => {
            lifecycle(
                &client,
                Method::POST,
                &format!("{}/sleep", sandbox_path(&id)),
                json,
                &style,
            )
            .await
        }
        Cmd::Start { id } => {
            let mut spinner = Spinner::new();
            spinner.tick("starting");
            let out = lifecycle(
                &client,
                Method::POST,
                &format!("{}/start", sandbox_path(&id)),
                json,
                &style,
            )
            .await;
            spinner.clear();
            out
        }
        Cmd::Rm { id } => {
            removal(
                &client,
                Method::DELETE,
                &sandbox_path(&id),
                &id,
                "deleted",
                json,
            )
            .await
        }
        Cmd::Purge { id } => {
            removal(
                &client,
                Method::POST,
                &format!("{}/purge", sandbox_path(&id)),
                &id,
                "purged",
                json,
            )
            .await
        }
    }
}

async fn login(
    url: String,
    token: Option<String>,
    json: bool,
    style: &Style,
) -> Result<i32, CliError> {
    let config = config::Config {
        url: Some(url.trim_end_matches('/').to_string()),
        token,
    };
    let client = Client::new(&config)?;
    // A token is checked on a route that needs one.
    let (info, _): (Value, Value) = client.call(Method::GET, "/v1/info", NO_BODY).await?;
    let path = config::save(&config).map_err(CliError::Other)?;
    if json {
        print_json(&info);
    } else {
        println!(
            "{} logged in to {} (berth {}); settings in {}",
            style.green("✓"),
            client.base(),
            info["version"].as_str().unwrap_or("?"),
            path.display()
        );
    }
    Ok(0)
}

async fn wait_running(
    client: &Client,
    id: &str,
    spinner: &mut Spinner,
) -> Result<SandboxView, CliError> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, s): (Value, SandboxView) =
            client.call(Method::GET, &sandbox_path(id), NO_BODY).await?;
        let status = s.status.as_str();
        if status != "creating" || Instant::now() > deadline {
            spinner.clear();
            return Ok(s);
        }
        spinner.tick(&format!("starting {id}"));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

fn show(s: &SandboxView, style: &Style) {
    let rows = [
        ("id", s.id.clone()),
        ("status", style.status(s.status.as_str())),
        ("image", s.image.clone()),
        ("memory", s.memory.clone()),
        ("cpus", s.cpus.to_string()),
        (
            "preview",
            if s.public {
                "public".into()
            } else {
                "private (berth open mints a link)".into()
            },
        ),
        ("egress", s.egress.as_str().to_string()),
        ("start", s.start.clone().unwrap_or_else(|| "-".into())),
        ("last active", s.last_active_at.clone()),
    ];
    for (k, v) in rows {
        println!("{:<12} {v}", style.bold(k));
    }
    if let Some(detail) = &s.status_detail {
        println!("{:<12} {}", style.bold("detail"), style.red(detail));
    }
    for (port, url) in &s.preview_urls {
        println!(
            "{:<12} {}",
            style.bold(&format!("port {port}")),
            style.cyan(url)
        );
    }
}

async fn exec(client: &Client, id: &str, body: ExecBody, json: bool) -> Result<i32, CliError> {
    if json {
        let (raw, out): (Value, berth_api::ExecResponse) = client
            .call(
                Method::POST,
                &format!("{}/exec", sandbox_path(id)),
                Some(&body),
            )
            .await?;
        print_json(&raw);
        return Ok(exit_of(out.exit_code, out.timed_out));
    }
    let req = client
        .request(Method::POST, &format!("{}/exec/stream", sandbox_path(id)))
        .json(&body);
    let response = client.send(req).await?;
    let mut events = sse::Reader::new(response.bytes_stream());
    let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
    loop {
        let Some(event) = events
            .next()
            .await
            .map_err(|e| CliError::Other(format!("the output stream broke: {e}")))?
        else {
            return Err(CliError::Other(
                "the output stream ended before the command did".into(),
            ));
        };
        let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
        match event.event.as_str() {
            "stdout" => {
                let _ = stdout.write_all(data["text"].as_str().unwrap_or("").as_bytes());
                let _ = stdout.flush();
            }
            "stderr" => {
                let _ = stderr.write_all(data["text"].as_str().unwrap_or("").as_bytes());
                let _ = stderr.flush();
            }
            "exit" => {
                let exit: berth_api::events::ExecExitEvent = serde_json::from_value(data)
                    .map_err(|e| CliError::Other(format!("unexpected exit event: {e}")))?;
                if exit.timed_out {
                    eprintln!("berth: the command was killed at its timeout");
                }
                return Ok(exit_of(exit.exit_code, exit.timed_out));
            }
            "error" => {
                return Err(CliError::Other(
                    data["message"]
                        .as_str()
                        .unwrap_or("the command failed")
                        .to_string(),
                ));
            }
            _ => {}
        }
    }
}

/// The command's exit code; 124 when it was killed at its timeout (as `timeout(1)`).
fn exit_of(code: Option<i64>, timed_out: bool) -> i32 {
    match code {
        _ if timed_out => 124,
        Some(c) => i32::try_from(c).unwrap_or(1),
        None => 1,
    }
}

async fn lifecycle(
    client: &Client,
    method: Method,
    path: &str,
    json: bool,
    style: &Style,
) -> Result<i32, CliError> {
    let (raw, s): (Value, SandboxView) = client.call(method, path, NO_BODY).await?;
    if json {
        print_json(&raw);
    } else {
        println!("{} {}", s.id, style.status(s.status.as_str()));
    }
    Ok(0)
}

async fn removal(
    client: &Client,
    method: Method,
    path: &str,
    id: &str,
    what: &str,
    json: bool,
) -> Result<i32, CliError> {
    client.send(client.request(method, path)).await?;
    if json {
        print_json(&json!({"id": id, what: true}));
    } else {
        println!("{id} {what}");
    }
    Ok(0)
}

async fn files(client: &Client, op: FilesCmd, json: bool, style: &Style) -> Result<i32, CliError> {
    match op {
        FilesCmd::Get { id, path, output } => {
            let url = format!("{}/files?path={}&raw=true", sandbox_path(&id), enc(&path));
            let bytes = client
                .send(client.request(Method::GET, &url))
                .await?
                .bytes()
                .await
                .map_err(|e| CliError::Other(e.to_string()))?;
            match output {
                Some(out) => std::fs::write(&out, &bytes)
                    .map_err(|e| CliError::Other(format!("{}: {e}", out.display())))?,
                None => {
                    let _ = std::io::stdout().write_all(&bytes);
                }
            }
            Ok(0)
        }
        FilesCmd::Put { id, local, remote } => {
            let bytes = std::fs::read(&local)
                .map_err(|e| CliError::Usage(format!("{}: {e}", local.display())))?;
            let remote = match remote {
                Some(r) => r,
                None => local
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .ok_or_else(|| {
                        CliError::Usage("name the file's place in the workspace".into())
                    })?,
            };
            let body = WriteBody {
                path: remote,
                content: base64::engine::general_purpose::STANDARD.encode(bytes),
                append: false,
                encoding: Some("base64".into()),
            };
            let (raw, written): (Value, Written) = client
                .call(
                    Method::PUT,
                    &format!("{}/files", sandbox_path(&id)),
                    Some(&body),
                )
                .await?;
            if json {
                print_json(&raw);
            } else {
                println!("{} ({} bytes)", written.path, written.size);
            }
            Ok(0)
        }
        FilesCmd::Ls { id, path } => {
            let url = format!(
                "{}/files?path={}",
                sandbox_path(&id),
                enc(path.as_deref().unwrap_or(""))
            );
            let (raw, read): (Value, FileRead) = client.call(Method::GET, &url, NO_BODY).await?;
            if json {
                print_json(&raw);
                return Ok(0);
            }
            match read {
                FileRead::Dir { entries, .. } => {
                    let rows: Vec<Vec<String>> = entries
                        .iter()
                        .map(|e| {
                            let name = if e.kind == "dir" {
                                style.cyan(&format!("{}/", e.name))
                            } else {
                                e.name.clone()
                            };
                            vec![e.kind.clone(), e.size.to_string(), name]
                        })
                        .collect();
                    print!("{}", table(&["TYPE", "SIZE", "NAME"], &rows, style));
                }
                FileRead::File { path, size, .. } => println!("file {} {size}", short(&path, 200)),
            }
            Ok(0)
        }
    }
}

async fn open(client: &Client, id: &str, port: Option<u16>, json: bool) -> Result<i32, CliError> {
    let (_, s): (Value, SandboxView) = client.call(Method::GET, &sandbox_path(id), NO_BODY).await?;
    let port = match port.or_else(|| s.ports.first().copied()) {
        Some(p) => p,
        None => return Err(CliError::Usage(format!("sandbox {id} has no ports"))),
    };
    if !s.ports.contains(&port) {
        return Err(CliError::Usage(format!(
            "sandbox {id} does not publish port {port}"
        )));
    }
    let (raw, url) = if s.public {
        let url = s
            .preview_urls
            .get(&port.to_string())
            .cloned()
            .unwrap_or_default();
        (json!({"url": url}), url)
    } else {
        let (raw, token): (Value, PreviewToken) = client
            .call(
                Method::POST,
                &format!("{}/preview-token", sandbox_path(id)),
                Some(&json!({})),
            )
            .await?;
        let url = token
            .urls
            .get(&port.to_string())
            .cloned()
            .unwrap_or_default();
        (raw, url)
    };
    if json {
        print_json(&raw);
        return Ok(0);
    }
    println!("{url}");
    let graphical =
        std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if graphical {
        let opener = if cfg!(target_os = "macos") {
            "open"
        } else {
            "xdg-open"
        };
        let _ = std::process::Command::new(opener)
            .arg(&url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
    Ok(0)
}
