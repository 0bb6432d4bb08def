//! `GET /v1/openapi.json` and `GET /v1/docs`: the API's generated
//! description, as JSON for tools and as a page for people. The page is
//! rendered here from the same document, with no script and nothing from
//! the network, so it works on a host with no internet access.

use std::fmt::Write;
use std::sync::{Arc, OnceLock};

use axum::Extension;
use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::Value;

use super::openapi::for_host;

#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    operation_id = "openapi",
    tag = "system",
    summary = "This document (OpenAPI 3.1)",
    responses((status = 200, body = serde_json::Value), super::openapi::NoErrors),
    security(())
)]
pub async fn openapi_json(Extension(reference): Extension<Arc<Reference>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        reference.rendered().json.clone(),
    )
}

#[utoipa::path(
    get,
    path = "/v1/docs",
    operation_id = "docs",
    tag = "system",
    summary = "The API reference, as a page",
    responses((status = 200, content_type = "text/html", body = String), super::openapi::NoErrors),
    security(())
)]
pub async fn docs(Extension(reference): Extension<Arc<Reference>>) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            ),
        ],
        reference.rendered().page.clone(),
    )
}

/// This host's document, rendered on its first request and kept as bytes.
/// Not at start: building it passes through a few MiB of maps, and an
/// allocator keeps such a peak resident long after it was freed: control's
/// idle memory would pay for a document most installs never ask for.
pub struct Reference {
    settings: Arc<crate::config::Settings>,
    rendered: OnceLock<Rendered>,
}

struct Rendered {
    json: Bytes,
    page: Bytes,
}

impl Reference {
    pub fn new(settings: Arc<crate::config::Settings>) -> Arc<Self> {
        Arc::new(Self {
            settings,
            rendered: OnceLock::new(),
        })
    }

    fn rendered(&self) -> &Rendered {
        self.rendered.get_or_init(|| {
            let doc = for_host(&self.settings);
            Rendered {
                json: Bytes::from(serde_json::to_vec(&doc).unwrap_or_default()),
                page: Bytes::from(render(&doc)),
            }
        })
    }
}

/// Text for HTML: nothing in the document becomes markup.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Inline `code` in descriptions.
fn prose(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in esc(text).split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

/// A schema in a line: `SandboxView`, `string | null`, `array of Port`.
fn type_of(schema: &Value) -> String {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("<a href=\"#schema-{0}\">{0}</a>", esc(name));
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(list) = schema.get(key).and_then(Value::as_array) {
            return list.iter().map(type_of).collect::<Vec<_>>().join(" | ");
        }
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return values
            .iter()
            .map(|v| format!("<code>{}</code>", esc(&v.to_string())))
            .collect::<Vec<_>>()
            .join(" | ");
    }
    let kind = match schema.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "any".into(),
    };
    if let Some(items) = schema.get("items") {
        return format!("{} of {}", esc(&kind), type_of(items));
    }
    if let Some(extra) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        return format!("map of {}", type_of(extra));
    }
    esc(&kind)
}

fn properties(out: &mut String, schema: &Value) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    out.push_str("<table><tr><th>field</th><th>type</th><th>about</th></tr>");
    for (name, prop) in props {
        let about = prop
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("");
        let req = if required.contains(&name.as_str()) {
            " <span class=req>required</span>"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<tr><td><code>{}</code>{req}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            type_of(prop),
            prose(about)
        );
    }
    out.push_str("</table>");
}

fn operation(out: &mut String, method: &str, path: &str, op: &Value) {
    let id = op.get("operationId").and_then(Value::as_str).unwrap_or("");
    let summary = op.get("summary").and_then(Value::as_str).unwrap_or("");
    let _ = write!(
        out,
        "<section class=op id=\"op-{}\"><h3><span class=\"m m-{method}\">{}</span> <code>{}</code></h3><p>{}</p>",
        esc(id),
        method.to_ascii_uppercase(),
        esc(path),
        prose(summary)
    );
    if let Some(desc) = op.get("description").and_then(Value::as_str) {
        let _ = write!(out, "<p>{}</p>", prose(desc));
    }
    if op.get("security").and_then(Value::as_array).is_some() {
        out.push_str("<p class=note>No token needed.</p>");
    }
    if let Some(params) = op.get("parameters").and_then(Value::as_array) {
        out.push_str("<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>type</th><th>about</th></tr>");
        for p in params {
            let get = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("");
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(get("name")),
                esc(get("in")),
                p.get("schema").map(type_of).unwrap_or_default(),
                prose(get("description"))
            );
        }
        out.push_str("</table>");
    }
    if let Some(content) = op
        .pointer("/requestBody/content")
        .and_then(Value::as_object)
    {
        for (mime, media) in content {
            let _ = write!(
                out,
                "<h4>Body</h4><p><code>{}</code>: {}</p>",
                esc(mime),
                media.get("schema").map(type_of).unwrap_or_default()
            );
        }
    }
    if let Some(responses) = op.get("responses").and_then(Value::as_object) {
        out.push_str("<h4>Answers</h4><table><tr><th>status</th><th>body</th><th>about</th></tr>");
        for (status, resp) in responses {
            let body = resp
                .get("content")
                .and_then(Value::as_object)
                .map(|c| {
                    c.iter()
                        .map(|(mime, media)| {
                            let schema = media.get("schema");
                            let codes = schema
                                .and_then(|s| s.pointer("/properties/error/properties/code/enum"));
                            match (codes, schema) {
                                (Some(_), _) => "error".to_string(),
                                (None, Some(s)) => {
                                    format!("<code>{}</code> {}", esc(mime), type_of(s))
                                }
                                (None, None) => format!("<code>{}</code>", esc(mime)),
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("<br>")
                })
                .unwrap_or_default();
            let about = resp
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("");
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{body}</td><td>{}</td></tr>",
                esc(status),
                prose(about)
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</section>");
}

/// The whole page.
pub fn render(doc: &Value) -> String {
    let title = doc
        .pointer("/info/title")
        .and_then(Value::as_str)
        .unwrap_or("berth");
    let version = doc
        .pointer("/info/version")
        .and_then(Value::as_str)
        .unwrap_or("");
    let about = doc
        .pointer("/info/description")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut out = String::with_capacity(256 * 1024);
    let _ = write!(
        out,
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width, initial-scale=1\">\
<title>{t} API {v}</title><style>{STYLE}</style></head><body><header><h1>{t} API <small>{v}</small></h1><p>{a}</p>\
<p>Machine-readable: <a href=\"/v1/openapi.json\">/v1/openapi.json</a>. Authenticate with <code>Authorization: Bearer &lt;token&gt;</code>. \
Every error is <code>{{\"error\": {{\"code\", \"message\", \"retryable\"}}}}</code>.</p></header><nav>",
        t = esc(title),
        v = esc(version),
        a = prose(about),
    );
    let tags: Vec<(String, String)> = doc
        .get("tags")
        .and_then(Value::as_array)
        .map(|tags| {
            tags.iter()
                .map(|t| {
                    let get = |k: &str| t.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    (get("name"), get("description"))
                })
                .collect()
        })
        .unwrap_or_default();
    for (name, _) in &tags {
        let _ = write!(out, "<a href=\"#tag-{0}\">{0}</a> ", esc(name));
    }
    out.push_str("<a href=\"#errors\">errors</a> <a href=\"#schemas\">schemas</a></nav><main>");
    let paths = doc.get("paths").and_then(Value::as_object);
    for (tag, description) in &tags {
        let _ = write!(
            out,
            "<h2 id=\"tag-{0}\">{0}</h2><p>{1}</p>",
            esc(tag),
            prose(description)
        );
        for (path, item) in paths.into_iter().flatten() {
            for method in ["get", "put", "post", "delete", "patch"] {
                let Some(op) = item.get(method) else { continue };
                let tagged = op
                    .get("tags")
                    .and_then(Value::as_array)
                    .is_some_and(|t| t.iter().any(|t| t.as_str() == Some(tag)));
                if tagged {
                    operation(&mut out, method, path, op);
                }
            }
        }
    }
    out.push_str(
        "<h2 id=errors>Error codes</h2><table><tr><th>code</th><th>status</th><th>about</th></tr>",
    );
    for code in berth_api::ErrorCode::ALL {
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            code.as_str(),
            code.status(),
            prose(code.describe())
        );
    }
    out.push_str("</table><h2 id=schemas>Schemas</h2>");
    if let Some(schemas) = doc
        .pointer("/components/schemas")
        .and_then(Value::as_object)
    {
        for (name, schema) in schemas {
            let _ = write!(
                out,
                "<section class=schema id=\"schema-{0}\"><h3>{0}</h3>",
                esc(name)
            );
            if let Some(d) = schema.get("description").and_then(Value::as_str) {
                let _ = write!(out, "<p>{}</p>", prose(d));
            }
            if schema.get("properties").is_some() {
                properties(&mut out, schema);
            } else {
                let _ = write!(out, "<p>{}</p>", type_of(schema));
            }
            out.push_str("</section>");
        }
    }
    out.push_str("</main></body></html>");
    out
}

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1b1f24;background:#fbfbfc}\
header,main,nav{max-width:980px;margin:0 auto;padding:0 16px}nav{position:sticky;top:0;background:#fbfbfc;padding:8px 16px;border-bottom:1px solid #ddd}\
nav a{margin-right:10px}h2{margin-top:40px;border-bottom:2px solid #ddd}h3{margin:0 0 4px}code{font:13px ui-monospace,monospace;background:#eef0f3;padding:1px 4px;border-radius:3px}\
.op,.schema{background:#fff;border:1px solid #e1e4e8;border-radius:6px;padding:12px 16px;margin:14px 0}\
.m{font:bold 12px ui-monospace,monospace;padding:2px 6px;border-radius:3px;color:#fff;background:#555}.m-get{background:#1f6feb}.m-post{background:#1a7f37}.m-put{background:#9a6700}.m-delete{background:#cf222e}\
table{border-collapse:collapse;width:100%;margin:6px 0}td,th{border-top:1px solid #eee;padding:4px 6px;text-align:left;vertical-align:top}th{font-size:12px;color:#57606a}\
.req{font-size:11px;color:#cf222e}.note{color:#57606a;font-size:13px}@media(max-width:600px){body{font-size:14px}td,th{padding:3px}}";
