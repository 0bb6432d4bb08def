//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! attributes and the `berth-api` types, and the error answers each route
//! documents: `errors!` names the codes a route can answer, and each
//! becomes a response of its status whose `code` is limited to them.

use std::collections::BTreeMap;

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
    (public $name:ident: $($code:ident),* $(,)?) => {
        errors!(@type $name, true, $($code),*);
    };
    ($name:ident: $($code:ident),* $(,)?) => {
        errors!(@type $name, false, $($code),*);
    };
    (@type $name:ident, $public:expr, $($code:ident),*) => {
        pub struct $name;
        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
            > {
                $crate::api::openapi::error_responses(&[$(berth_api::ErrorCode::$code),*], $public)
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
        berth_api::sandbox::FleetUsage,
    )),
    modifiers(&Bearer),
    tags(
        (name = "sandboxes", description = "The sandbox lifecycle"),
        (name = "exec", description = "Commands in a sandbox"),
        (name = "files", description = "Workspace files"),
        (name = "tasks", description = "Coding-agent tasks"),
        (name = "preview", description = "Preview tokens of private sandboxes"),
        (name = "mcp", description = "Model Context Protocol over Streamable HTTP: berth's tools for any agent (docs/MCP.md)"),
        (name = "dashboard", description = "The web dashboard's page and assets (embedded; nothing from the network)"),
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
    let mut doc = serde_json::to_value(&api).unwrap_or(Value::Null);
    describe_streams(&mut doc);
    doc
}

/// Which operations answer with an event stream, and the events each sends.
const STREAMS: &[(&str, &[(&str, &str)])] = &[
    ("exec_stream", berth_api::events::EXEC_EVENTS),
    ("task_events", berth_api::events::TASK_EVENTS),
    ("fleet_events", berth_api::events::FLEET_EVENTS),
];

/// Gives each `text/event-stream` answer the schema of one event, as
/// OpenAPI 3.1 reads it for a stream: an object with `event`, `data` (JSON
/// text whose schema is `contentSchema`) and, for replayable streams, `id`.
fn describe_streams(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for op in paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
    {
        let name = op["operationId"].as_str().unwrap_or_default();
        let name = name.strip_prefix("sandboxed_").unwrap_or(name);
        let Some((_, events)) = STREAMS.iter().find(|(op_id, _)| *op_id == name) else {
            continue;
        };
        let one_of: Vec<Value> = events
            .iter()
            .map(|(event, schema)| {
                json!({
                    "type": "object",
                    "required": ["event", "data"],
                    "properties": {
                        "event": {"const": event},
                        "data": {
                            "type": "string",
                            "contentMediaType": "application/json",
                            "contentSchema": {"$ref": format!("#/components/schemas/{schema}")},
                        },
                        "id": {"type": "string"},
                        "retry": {"type": "integer"},
                    },
                })
            })
            .collect();
        if let Some(content) = op.pointer_mut("/responses/200/content/text~1event-stream") {
            content["schema"] = json!({"oneOf": one_of});
        }
    }
}

/// The document as this host answers it: [`document`] with the limits
/// its settings put on requests written in, so that a client (or a fuzzer)
/// reading the schema knows what will be refused before sending it.
pub fn for_host(settings: &crate::config::Settings) -> Value {
    use crate::sandbox::request::{MAX_ENV, MAX_IDLE_TIMEOUT_S, MAX_PORTS};
    let mut doc = document();
    let env_names = json!({
        "maxProperties": MAX_ENV,
        "propertyNames": {
            "type": "string",
            "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
            "not": {"anyOf": [{"const": "HOME"}, {"pattern": "^BERTH_"}]},
        },
    });
    let limits = [
        (
            "ExecBody",
            "timeout_s",
            json!({"minimum": 1, "maximum": settings.exec_timeout.as_secs()}),
        ),
        ("ExecBody", "env", env_names.clone()),
        (
            "CreateTask",
            "timeout_s",
            json!({"minimum": 1, "maximum": settings.task_timeout_max.as_secs()}),
        ),
        ("CreateTask", "env", env_names.clone()),
        ("CreateRequest", "env", env_names),
        (
            "CreateRequest",
            "ports",
            json!({"maxItems": MAX_PORTS, "items": {"minimum": 1, "maximum": u16::MAX}}),
        ),
        (
            "CreateRequest",
            "idle_timeout_s",
            json!({"minimum": 1, "maximum": MAX_IDLE_TIMEOUT_S}),
        ),
    ];
    for (schema, field, limit) in limits {
        let pointer = format!("/components/schemas/{schema}/properties/{field}");
        if let Some(property) = doc.pointer_mut(&pointer) {
            merge(property, limit);
        }
    }
    doc
}

/// `patch`'s keys into `target`, objects merged key by key.
fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(target.entry(key).or_insert(Value::Null), value);
            }
        }
        (target, patch) => *target = patch,
    }
}

/// The document, built anew on each call. Control renders it once, on the
/// first request for it ([`super::reference::Reference`] keeps the bytes);
/// the tree itself (a few MiB of maps) is not kept.
pub fn document() -> Value {
    finish(super::routes().split_for_parts().1)
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
errors!(public AssetErrors: NotFound);
errors!(McpErrors: InvalidRequest, NotFound, MethodNotAllowed, TooLarge, Internal);
