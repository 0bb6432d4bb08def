//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! attributes and the `berth-api` types, and the error answers each route
//! documents: `errors!` names the codes a route can answer, and each
//! becomes a response of its status whose `code` is limited to them.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use berth_api::ErrorCode;
use serde_json::{Value, json};
use utoipa::OpenApi;
use utoipa::openapi::RefOr;
use utoipa::openapi::response::Response;

/// Codes every authenticated route can answer.
pub const AUTH: &[ErrorCode] = &[
    ErrorCode::Unauthorized,
    ErrorCode::Forbidden,
    ErrorCode::Internal,
];

/// The error responses of a route that can answer `codes` (and [`AUTH`]
/// unless `public`).
pub fn error_responses(codes: &[ErrorCode], public: bool) -> BTreeMap<String, RefOr<Response>> {
    let mut by_status: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
    let all = codes
        .iter()
        .chain(if public { &[][..] } else { AUTH })
        .copied();
    for code in all {
        let list = by_status.entry(code.status()).or_default();
        if !list.contains(&code) {
            list.push(code);
        }
    }
    by_status
        .into_iter()
        .filter_map(|(status, codes)| {
            let description = codes
                .iter()
                .map(|c| format!("`{}`: {}", c.as_str(), c.describe()))
                .collect::<Vec<_>>()
                .join(" ");
            let names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
            let response = json!({
                "description": description,
                "content": {"application/json": {"schema": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {
                        "type": "object",
                        "required": ["code", "message", "retryable"],
                        "properties": {
                            "code": {"type": "string", "enum": names},
                            "message": {"type": "string"},
                            "retryable": {"type": "boolean"},
                        },
                    }},
                }}},
            });
            let response: Response = serde_json::from_value(response).ok()?;
            Some((status.to_string(), RefOr::T(response)))
        })
        .collect()
}

/// `errors!(Name: Code, …)` declares a type whose OpenAPI responses are
/// those codes' errors (plus the [`AUTH`] ones); use it in a handler's
/// `responses(…)`. `errors!(public Name: …)` leaves out [`AUTH`].
macro_rules! errors {
    ($name:ident: $($code:ident),* $(,)?) => {
        pub struct $name;
        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
            > {
                $crate::api::openapi::error_responses(&[$(berth_api::ErrorCode::$code),*], false)
            }
        }
    };
    (public $name:ident: $($code:ident),* $(,)?) => {
        pub struct $name;
        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
            > {
                $crate::api::openapi::error_responses(&[$(berth_api::ErrorCode::$code),*], true)
            }
        }
    };
}

/// What the generated paths are merged into: the document's head, the
/// bearer scheme, and the event payloads the SSE routes send.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "berth",
        description = "Isolated dev sandboxes on one Docker host: create a sandbox, run commands and coding agents in it, open its preview URLs. The narrative guide is docs/API.md; this document is generated from the code.",
        license(name = "MIT"),
    ),
    components(schemas(
        berth_api::ErrorBody,
        berth_api::events::StatusEvent,
        berth_api::events::MessageEvent,
        berth_api::events::ToolCallEvent,
        berth_api::events::ToolResultEvent,
        berth_api::events::LogEvent,
        berth_api::events::ErrorEvent,
        berth_api::events::DoneEvent,
        berth_api::events::ExecOutputEvent,
        berth_api::events::ExecExitEvent,
        berth_api::events::ExecErrorEvent,
    )),
    modifiers(&Bearer),
    tags(
        (name = "sandboxes", description = "The sandbox lifecycle"),
        (name = "exec", description = "Commands in a sandbox"),
        (name = "files", description = "Workspace files"),
        (name = "tasks", description = "Coding-agent tasks"),
        (name = "preview", description = "Preview tokens of private sandboxes"),
        (name = "system", description = "Health, facts, metrics and this document"),
        (name = "edge", description = "Routes berth-edge uses (its scoped token opens only these)"),
        (name = "sandboxed", description = "Aliases kept for clients of the `sandboxed` API"),
    )
)]
pub struct Head;

struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token from BERTH_API_TOKENS (or the install's .env). With no tokens configured, control listens on loopback only and asks for none.",
                    ))
                    .build(),
            ),
        );
        api.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// Paths kept for `sandboxed` clients: the same operations under other
/// paths, so their operation ids get a prefix and their own tag.
fn is_alias(path: &str) -> bool {
    path == "/sandbox"
        || path == "/sandboxes"
        || path.starts_with("/sandbox/")
        || path == "/v1/activity"
}

/// The finished document as JSON.
pub fn finish(mut api: utoipa::openapi::OpenApi) -> Value {
    api.info.version = env!("CARGO_PKG_VERSION").to_string();
    for (path, item) in api.paths.paths.iter_mut() {
        if !is_alias(path) {
            continue;
        }
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            op.operation_id = op.operation_id.take().map(|id| format!("sandboxed_{id}"));
            op.tags = Some(vec!["sandboxed".to_string()]);
        }
    }
    serde_json::to_value(&api).unwrap_or(Value::Null)
}

/// The document, built once.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| finish(super::routes().split_for_parts().1))
}

/// `{id}` of the sandbox routes.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct SandboxPath {
    /// The sandbox id.
    id: String,
}

/// `{id}` and `{task}` of the task routes.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct TaskPath {
    /// The sandbox id.
    id: String,
    /// The task id.
    task: String,
}

errors!(CreateErrors: InvalidRequest, TooLarge, InvalidImage, ImageNotFound, RuntimeUnavailable, InvalidPath,
    Conflict, SandboxCapacity, FirewallUnavailable, DockerUnavailable, DockerError, InsufficientStorage);
errors!(ListErrors:);
errors!(ReadErrors: InvalidRequest, NotFound);
errors!(StartErrors: InvalidRequest, NotFound, Conflict, ImageNotFound, InvalidPath, SandboxCapacity,
    FirewallUnavailable, DockerUnavailable, DockerError, InsufficientStorage);
errors!(StopErrors: InvalidRequest, NotFound, Conflict, TaskInProgress, DockerUnavailable, DockerError,
    InsufficientStorage);
errors!(RemoveErrors: InvalidRequest, NotFound, Conflict, DockerUnavailable, DockerError, InsufficientStorage);
errors!(KeepaliveErrors: InvalidRequest, NotFound, TooLarge, InsufficientStorage);
errors!(ExecErrors: InvalidRequest, NotFound, TooLarge, Conflict, ImageNotFound, InvalidPath, SandboxCapacity,
    FirewallUnavailable, DockerUnavailable, DockerError, InsufficientStorage);
errors!(FileReadErrors: InvalidRequest, InvalidPath, NotFound, TooLarge);
errors!(FileWriteErrors: InvalidRequest, InvalidPath, NotFound, TooLarge, InsufficientStorage);
errors!(TaskCreateErrors: InvalidRequest, NotFound, TooLarge, Conflict, AgentMissing, ExecFailed, ImageNotFound,
    InvalidPath, SandboxCapacity, FirewallUnavailable, DockerUnavailable, DockerError, InsufficientStorage);
errors!(TaskChangeErrors: InvalidRequest, NotFound, Conflict, ExecFailed, DockerUnavailable, DockerError,
    InsufficientStorage);
errors!(TokenErrors: InvalidRequest, NotFound, TooLarge, InsufficientStorage);
errors!(ActivityErrors: InvalidRequest, TooLarge, InsufficientStorage);
errors!(public ReadyErrors: NotReady);
errors!(public NoErrors:);
