//! `berth`: the command line for a berth control plane. Human output on a
//! terminal, `--json` for scripts (the API's own answer), the API's error
//! message and a non-zero exit when something is refused.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod client;
mod commands;
mod config;
mod render;
mod sse;
mod tasks;

use clap::{CommandFactory, Parser, Subcommand};

use client::CliError;

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "Drive a berth control plane: sandboxes, commands, coding agents, previews"
)]
pub struct Cli {
    /// Print the API's raw JSON answer (for scripts).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Store the control plane's URL and token in ~/.config/berth/config.toml (0600).
    Login {
        /// e.g. http://127.0.0.1:9090
        url: String,
        /// The API token (or BERTH_TOKEN); none for a loopback install without tokens.
        #[arg(long)]
        token: Option<String>,
    },
    /// List sandboxes.
    Ls,
    /// Create a sandbox and wait until it runs.
    Create {
        #[arg(long)]
        id: Option<String>,
        /// A port the app listens on (repeat for more).
        #[arg(long = "port", short = 'p')]
        ports: Vec<i64>,
        /// The command that starts the app, e.g. "npm run dev".
        #[arg(long)]
        start: Option<String>,
        #[arg(long)]
        image: Option<String>,
        /// KEY=VALUE (repeat for more).
        #[arg(long = "env", short = 'e')]
        env: Vec<String>,
        /// Previews need a token (`berth open` mints one).
        #[arg(long)]
        private: bool,
        /// e.g. 1g
        #[arg(long)]
        memory: Option<String>,
        /// Answer at once rather than waiting for the sandbox to run.
        #[arg(long)]
        no_wait: bool,
        /// Print only the new sandbox's id (once it runs).
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// One sandbox in detail.
    Info { id: String },
    /// Run a command; its output streams live and its exit code is berth's.
    Exec {
        id: String,
        /// Working directory (relative to the workspace).
        #[arg(long)]
        cwd: Option<String>,
        #[arg(long)]
        timeout: Option<u64>,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Hand the sandbox's coding agent a prompt.
    Task {
        id: String,
        prompt: String,
        /// claude or opencode.
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        model: Option<String>,
        /// A command run after the agent; its failure fails the task.
        #[arg(long)]
        check: Option<String>,
        /// Continue the agent's previous session.
        #[arg(long = "continue")]
        resume: bool,
        /// KEY=VALUE for this task (e.g. ANTHROPIC_API_KEY=…).
        #[arg(long = "env", short = 'e')]
        env: Vec<String>,
        /// Follow the agent's events until the task ends.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Also show the agent's log lines.
        #[arg(long, short = 'v')]
        verbose: bool,
    },
    /// A task's events (following it while it runs).
    Logs {
        id: String,
        task: String,
        #[arg(long, short = 'v')]
        verbose: bool,
    },
    /// What a task changed: the unified diff of each file (or of one).
    Diff {
        id: String,
        task: String,
        /// Only this file (relative to the app directory).
        path: Option<String>,
    },
    /// Workspace files.
    Files {
        #[command(subcommand)]
        op: FilesCmd,
    },
    /// Print a preview URL (minting a token for a private sandbox); opens a browser where there is one.
    Open { id: String, port: Option<u16> },
    /// Stop a sandbox (its workspace stays).
    Stop { id: String },
    /// Put a sandbox to light sleep now: frozen, memory kept, woken in milliseconds by any use.
    Sleep { id: String },
    /// Start or wake a sandbox.
    Start { id: String },
    /// Delete a sandbox's container and cancel its tasks; the workspace stays.
    Rm { id: String },
    /// Delete everything of a sandbox, workspace included.
    Purge { id: String },
    /// Shell completions: `berth completions bash > /etc/bash_completion.d/berth`.
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand)]
pub enum FilesCmd {
    /// Print a file (or write it to --output).
    Get {
        id: String,
        path: String,
        #[arg(long, short = 'o')]
        output: Option<std::path::PathBuf>,
    },
    /// Upload a local file.
    Put {
        id: String,
        local: std::path::PathBuf,
        /// Where in the workspace (default: the local file's name).
        remote: Option<String>,
    },
    /// List a directory of the workspace.
    Ls { id: String, path: Option<String> },
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    if let Cmd::Completions { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "berth", &mut std::io::stdout());
        return;
    }
    let code = match commands::run(cli.command, cli.json).await {
        Ok(code) => code,
        Err(e) => {
            let style = render::Style::detect();
            eprintln!("{} {e}", style.red("error:"));
            e.exit_code()
        }
    };
    std::process::exit(code);
}

/// `KEY=VALUE` pairs.
pub fn parse_env(pairs: &[String]) -> Result<std::collections::BTreeMap<String, String>, CliError> {
    pairs
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| CliError::Usage(format!("`{p}` is not KEY=VALUE")))
        })
        .collect()
}
