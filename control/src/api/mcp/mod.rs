//! `/mcp`: berth as a Model Context Protocol server (Streamable HTTP,
//! through the official Rust SDK), so that any agent can use sandboxes as
//! its tools.
//!
//! Every tool calls the same handler as its HTTP route and hands back that
//! answer: the body as structured content, and a failure as a tool error
//! carrying berth's own `{"error":{"code","message"}}`, never as a protocol
//! failure. Authentication is the API's: `/mcp` sits behind the same token
//! check, so a request without a valid token is refused before any tool
//! runs. Resources are read-only views of workspace files and task logs.

mod args;
mod resources;

use std::sync::Arc;

use axum::Json;
use axum::body::to_bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation,
    ListResourceTemplatesResult, ListResourcesResult, PaginatedRequestParams,
    ProgressNotificationParam, ReadResourceRequestParams, ReadResourceResponse, RequestMetaObject,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use serde::Serialize;
use serde_json::{Value, json};

use super::extract::{JsonBody, QueryParams};
use super::{ApiError, AppState, exec, files, preview, sandboxes, tasks};

/// The service `/mcp` forwards to.
pub type Service = StreamableHttpService<Berth, LocalSessionManager>;

/// How much longer than the longest call an idle session is kept.
const SESSION_SLACK: std::time::Duration = std::time::Duration::from_secs(600);

/// Largest answer a tool hands back (the API's own limits come first).
const ANSWER_LIMIT: usize = 64 << 20;

/// Builds the MCP service over the API's state.
pub fn service(state: AppState) -> Service {
    let config = StreamableHttpServerConfig::default()
        // berth's own guard runs first: tokens, or a loopback Host and a
        // same-origin browser when there are none.
        .disable_allowed_hosts()
        .with_max_request_body_bytes(
            state
                .sandboxes
                .settings()
                .max_file_size
                .saturating_mul(2)
                .saturating_add(1 << 20),
        );
    // A session outlives its longest call: the SDK ends one that sends
    // nothing for `keep_alive`, and a task (or a command) may be silent for
    // as long as it may run.
    let settings = state.sandboxes.settings();
    let longest = settings.task_timeout_max.max(settings.exec_timeout);
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(longest + SESSION_SLACK);
    StreamableHttpService::new(
        move || Ok(Berth::new(state.clone())),
        Arc::new(sessions),
        config,
    )
}

/// One MCP session's handler.
#[derive(Clone)]
pub struct Berth {
    state: AppState,
    tool_router: ToolRouter<Self>,
}

/// A handler's answer as a tool result: its JSON body (or `{}` for 204),
/// and an error answer as a tool error with berth's code and message.
async fn answer<R: IntoResponse>(result: Result<R, ApiError>) -> CallToolResult {
    let response: Response = match result {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    };
    let ok = response.status().is_success();
    let body = match to_bytes(response.into_body(), ANSWER_LIMIT).await {
        Ok(body) => body,
        Err(e) => return failure(ApiError::internal(&e)),
    };
    let value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| json!({"text": String::from_utf8_lossy(&body)}))
    };
    if ok {
        CallToolResult::structured(value)
    } else {
        CallToolResult::structured_error(value)
    }
}

/// An error before any handler ran (arguments that make no request).
fn failure(e: ApiError) -> CallToolResult {
    CallToolResult::structured_error(serde_json::to_value(e.body()).unwrap_or_default())
}

/// The tool's arguments as the API's request body.
fn body<T: serde::de::DeserializeOwned>(args: &impl Serialize) -> Result<T, CallToolResult> {
    serde_json::to_value(args)
        .and_then(serde_json::from_value)
        .map_err(|e| failure(ApiError::invalid(format!("invalid arguments: {e}"))))
}

/// A tool whose arguments become an API handler's JSON body: the body is
/// made (or refused) first, then the handler's answer is the tool's.
async fn with_body<B, R, F>(
    req: &impl Serialize,
    handler: impl FnOnce(JsonBody<B>) -> F,
) -> CallToolResult
where
    B: serde::de::DeserializeOwned,
    R: IntoResponse,
    F: std::future::Future<Output = Result<R, ApiError>>,
{
    match body(req) {
        Ok(req) => answer(handler(JsonBody(req)).await).await,
        Err(e) => e,
    }
}

#[tool_router]
impl Berth {
    fn new(state: AppState) -> Self {
        Self {
            state,
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "Create an isolated Linux dev sandbox (a real shell, toolchains, a coding agent) and start it. Returns the sandbox: its `id` (pass it to every other tool), `status` and `preview_urls` (port → URL of the running app)."
    )]
    async fn create_sandbox(
        &self,
        Parameters(args): Parameters<args::CreateSandbox>,
    ) -> CallToolResult {
        with_body(&args, |b| sandboxes::create(State(self.state.clone()), b)).await
    }

    #[tool(
        description = "List every sandbox with its status, image, ports, preview URLs and last activity."
    )]
    async fn list_sandboxes(&self) -> CallToolResult {
        answer(sandboxes::list(State(self.state.clone())).await).await
    }

    #[tool(
        description = "Run a shell command in a sandbox and wait for it. Returns `exit_code` (null when killed for its timeout), `stdout`, `stderr`, `timed_out`, `truncated` (output past the limit was cut) and `duration_ms`. A stopped sandbox is started first."
    )]
    async fn exec(&self, Parameters(args): Parameters<args::Exec>) -> CallToolResult {
        let req = json!({"cmd": args.command, "cwd": args.cwd, "timeout_s": args.timeout_s});
        with_body(&req, |b| {
            exec::exec(State(self.state.clone()), Path(args.sandbox_id), b)
        })
        .await
    }

    #[tool(
        description = "Write a file in the sandbox's workspace (parent folders are created; an existing file is replaced). Returns the path and its size in bytes."
    )]
    async fn write_file(&self, Parameters(args): Parameters<args::WriteFile>) -> CallToolResult {
        let req = json!({"path": args.path, "content": args.content, "encoding": args.encoding});
        with_body(&req, |b| {
            files::write(State(self.state.clone()), Path(args.sandbox_id), b)
        })
        .await
    }

    #[tool(
        description = "Read a file of the sandbox's workspace. Returns `content` (UTF-8 text, or base64 when `encoding` is `base64`) and `size`."
    )]
    async fn read_file(&self, Parameters(args): Parameters<args::FilePath>) -> CallToolResult {
        self.read(args).await
    }

    #[tool(
        description = "List a folder of the sandbox's workspace (`.` for the workspace itself). Returns `entries`, each with `name`, `type` (file, dir, symlink) and `size`."
    )]
    async fn list_files(&self, Parameters(args): Parameters<args::FilePath>) -> CallToolResult {
        self.read(args).await
    }

    #[tool(
        description = "Hand the sandbox's coding agent (Claude Code or OpenCode) a prompt and wait until it ends. Progress notifications carry each event (messages, tool calls, status). Returns `status` (succeeded, failed, cancelled, timed_out), the agent's final `message`, `files_changed`, `cost_usd`, `error` when it failed, and the `task_id` (for task_status)."
    )]
    async fn run_task(
        &self,
        Parameters(args): Parameters<args::RunTask>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
    ) -> CallToolResult {
        let req = json!({"prompt": args.prompt, "agent": args.agent, "model": args.model, "check": args.check, "timeout_s": args.timeout_s});
        let req = match body(&req) {
            Ok(req) => req,
            Err(e) => return e,
        };
        let task = match self.state.tasks.create(&args.sandbox_id, req).await {
            Ok(task) => task,
            Err(e) => return failure(e.into()),
        };
        let progress = meta.get_progress_token();
        let mut events = std::pin::pin!(self.state.tasks.event_stream(task.id.clone(), 0));
        while let Some(event) = events.next().await {
            if let Some(token) = &progress {
                let note = ProgressNotificationParam::new(token.clone(), event.seq as f64)
                    .with_message(describe(&event.kind, &event.data.0));
                // A client that stopped listening does not stop the task.
                let _ = peer.notify_progress(note).await;
            }
            if event.kind == "done" {
                break;
            }
        }
        match self.state.tasks.get(&args.sandbox_id, &task.id).await {
            Ok(done) => {
                let view = tasks::view(done);
                let result = view.result.clone().unwrap_or(Value::Null);
                CallToolResult::structured(json!({
                    "task_id": view.id,
                    "status": view.status,
                    "message": result.get("message"),
                    "files_changed": result.get("files_changed"),
                    "cost_usd": view.cost_usd,
                    "error": result.get("error"),
                    "failure_reason": result.get("failure_reason"),
                    "duration_ms": result.get("duration_ms"),
                }))
            }
            Err(e) => failure(e.into()),
        }
    }

    #[tool(
        description = "One task's state: status, prompt, result (message, files changed, usage, cost) and timing."
    )]
    async fn task_status(&self, Parameters(args): Parameters<args::Task>) -> CallToolResult {
        answer(
            tasks::get(
                State(self.state.clone()),
                Path((args.sandbox_id, args.task_id)),
            )
            .await,
        )
        .await
    }

    #[tool(
        description = "The URL where a sandbox's app can be opened in a browser, per port. For a private sandbox a token is minted (valid one hour) and carried in the URL."
    )]
    async fn preview_url(&self, Parameters(args): Parameters<args::Preview>) -> CallToolResult {
        let rec = match self.state.sandboxes.get(&args.sandbox_id).await {
            Ok(rec) => rec,
            Err(e) => return failure(e.into()),
        };
        let mut urls = if rec.public {
            sandboxes::view(&self.state.sandboxes, rec.clone(), None).preview_urls
        } else {
            match preview::mint(
                State(self.state.clone()),
                Path(rec.id.clone()),
                JsonBody(Default::default()),
            )
            .await
            {
                Ok(Json(t)) => t.urls,
                Err(e) => return failure(e),
            }
        };
        if let Some(port) = args.port {
            urls.retain(|p, _| *p == port.to_string());
            if urls.is_empty() {
                return failure(ApiError::invalid(format!(
                    "sandbox `{}` has no port {port}",
                    rec.id
                )));
            }
        }
        CallToolResult::structured(
            json!({"sandbox_id": rec.id, "public": rec.public, "urls": urls}),
        )
    }

    #[tool(
        description = "Put a sandbox to light sleep now: its processes are frozen where they are and its memory kept; any later exec, task or preview request thaws it in milliseconds. Refused while a task runs in it."
    )]
    async fn sleep_sandbox(&self, Parameters(args): Parameters<args::Sandbox>) -> CallToolResult {
        answer(sandboxes::sleep(State(self.state.clone()), Path(args.sandbox_id)).await).await
    }

    #[tool(
        description = "Stop a sandbox; its workspace stays, and any later exec, task or preview request starts it again."
    )]
    async fn stop_sandbox(&self, Parameters(args): Parameters<args::Sandbox>) -> CallToolResult {
        answer(sandboxes::stop(State(self.state.clone()), Path(args.sandbox_id)).await).await
    }

    #[tool(
        description = "Delete a sandbox's container and cancel its tasks. The workspace folder stays on the host."
    )]
    async fn delete_sandbox(&self, Parameters(args): Parameters<args::Sandbox>) -> CallToolResult {
        answer(sandboxes::delete(State(self.state.clone()), Path(args.sandbox_id)).await).await
    }
}

impl Berth {
    async fn read(&self, args: args::FilePath) -> CallToolResult {
        let query = berth_api::files::PathQuery {
            path: args.path,
            raw: false,
        };
        answer(
            files::read(
                State(self.state.clone()),
                Path(args.sandbox_id),
                QueryParams(query),
            )
            .await,
        )
        .await
    }
}

/// One task event as a progress message.
fn describe(kind: &str, data: &Value) -> String {
    let text = |k: &str| data.get(k).and_then(Value::as_str).unwrap_or_default();
    match kind {
        "message" => text("text").to_string(),
        "tool_call" => format!("tool {}", text("name")),
        "tool_result" if data.get("is_error") == Some(&Value::Bool(true)) => "tool failed".into(),
        "tool_result" => "tool done".into(),
        "status" => match data.get("phase").and_then(Value::as_str) {
            Some(phase) => format!("{} · {phase}", text("status")),
            None => text("status").to_string(),
        },
        "error" => format!("error: {}", text("message")),
        "done" => format!("done: {}", text("status")),
        other => other.to_string(),
    }
}

#[tool_handler]
impl ServerHandler for Berth {
    /// Arguments that do not fit a tool's schema are the model's mistake
    /// to correct: a tool error in berth's shape (`invalid_request`, with
    /// the reason). The SDK answers them as a bare text error; every berth
    /// tool answers with structured content, so a result without it is
    /// the SDK's. An unknown tool stays a protocol error.
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let known = self.tool_router.has_route(&request.name);
        let call = ToolCallContext::new(self, request, context);
        let refused = |why: String| failure(ApiError::invalid(format!("invalid arguments: {why}")));
        match self.tool_router.call(call).await {
            Ok(CallToolResponse::Complete(r))
                if r.is_error == Some(true) && r.structured_content.is_none() =>
            {
                let why = r
                    .content
                    .iter()
                    .filter_map(|c| c.as_text().map(|t| t.text.clone()))
                    .collect::<Vec<_>>()
                    .join("; ");
                Ok(refused(why).into())
            }
            Err(e) if known && e.code == rmcp::model::ErrorCode::INVALID_PARAMS => {
                Ok(refused(e.message.to_string()).into())
            }
            other => other,
        }
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new("berth", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "berth runs isolated Linux dev sandboxes. create_sandbox, then exec commands, write and read files, run_task to have a coding agent build something, and preview_url to open the app. Files are also resources: berth://sandboxes/{id}/files/{path}.",
        )
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        resources::list(&self.state).await
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(resources::templates())
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        resources::read(&self.state, &request.uri)
            .await
            .map(Into::into)
    }
}
