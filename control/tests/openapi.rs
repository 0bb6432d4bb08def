//! The OpenAPI document is the router: every route it lists answers, every
//! method it leaves out is refused with 405, and the API module registers
//! nothing but through `routes!` (which documents as it registers).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Control, TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::Value;

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

fn concrete(path: &str) -> String {
    path.replace("{id}", "nosuch-sandbox")
        .replace("{task}", "nosuch-task")
}

/// The status and headers of an answer whose body does not end.
async fn head(req: reqwest::RequestBuilder) -> common::Reply {
    let r = req.send().await.unwrap();
    common::Reply {
        status: r.status(),
        headers: r.headers().clone(),
        body: Value::Null,
        text: String::new(),
    }
}

#[tokio::test]
async fn every_documented_route_answers_and_nothing_else_does() {
    let c = Control::start(&[("BERTH_API_TOKENS", &format!("t:{TOKEN}"))]).await;
    // The document needs no token.
    let doc = c.anonymous(Method::GET, "/v1/openapi.json").await;
    assert_eq!(doc.status, StatusCode::OK, "{}", doc.text);
    let doc = doc.body;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 40, "{} paths", paths.len());
    let codes: Vec<String> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let mut operation_ids = std::collections::HashSet::new();
    for (path, item) in paths {
        for method in METHODS {
            let url = concrete(path);
            let m = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            // A body that is not JSON: a documented route refuses it (400)
            // before it does anything, so nothing is created here.
            // The fleet stream stays open: its head is the answer. The
            // root's answer is its redirect, not where it leads.
            let reply = if path == "/v1/fleet/events" && method == "get" {
                head(c.request(m.clone(), &url)).await
            } else if path == "/" {
                head(
                    reqwest::Client::builder()
                        .redirect(reqwest::redirect::Policy::none())
                        .build()
                        .unwrap()
                        .request(m.clone(), format!("{}/", c.base))
                        .body("not json"),
                )
                .await
            } else {
                c.send(c.request(m.clone(), &url).body("not json")).await
            };
            match item.get(method) {
                Some(op) => {
                    let id = op["operationId"].as_str().unwrap();
                    let declared: Vec<&str> = op["parameters"]
                        .as_array()
                        .map(|ps| {
                            ps.iter()
                                .filter(|p| p["in"] == "path")
                                .filter_map(|p| p["name"].as_str())
                                .collect()
                        })
                        .unwrap_or_default();
                    for name in ["id", "task"] {
                        let in_path = path.contains(&format!("{{{name}}}"));
                        assert_eq!(
                            in_path,
                            declared.contains(&name),
                            "{method} {path}: path parameter `{name}`"
                        );
                    }
                    assert!(operation_ids.insert(id.to_string()), "{id} twice");
                    let fallback = reply.status == StatusCode::METHOD_NOT_ALLOWED
                        || (reply.status == StatusCode::NOT_FOUND
                            && reply.body["error"]["message"] == "no such route");
                    assert!(
                        !fallback,
                        "{method} {path} is documented but not routed: {}",
                        reply.text
                    );
                    let documented = op["responses"].get(reply.status.as_str()).is_some();
                    assert!(
                        documented,
                        "{method} {url} answered an undocumented {}: {}",
                        reply.status, reply.text
                    );
                    // Every error answer lists its codes, all known.
                    for (status, response) in op["responses"].as_object().unwrap() {
                        if !status.starts_with('4') && !status.starts_with('5') {
                            continue;
                        }
                        let listed = &response["content"]["application/json"]["schema"]["properties"]
                            ["error"]["properties"]["code"]["enum"];
                        for code in listed
                            .as_array()
                            .unwrap_or_else(|| panic!("{method} {path} {status}: no codes"))
                        {
                            assert!(
                                codes.contains(&code.as_str().unwrap().to_string()),
                                "{code}"
                            );
                        }
                    }
                    if reply.status.is_client_error() || reply.status.is_server_error() {
                        let code = reply.code();
                        let listed = &op["responses"][reply.status.as_str()]["content"]["application/json"]
                            ["schema"]["properties"]["error"]["properties"]["code"]["enum"];
                        assert!(
                            listed.as_array().unwrap().iter().any(|c| c == code),
                            "{method} {url} answered `{code}`, which its {} response does not list",
                            reply.status
                        );
                    }
                }
                None => assert_eq!(
                    reply.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is not documented but answered: {}",
                    reply.text
                ),
            }
        }
    }
    // Aliases of the `sandboxed` API are documented under their own ids.
    assert!(operation_ids.contains("sandboxed_exec"));
    assert!(operation_ids.contains("exec"));
    // Auth is still required where the document says so.
    let anon = c.anonymous(Method::GET, "/v1/sandboxes").await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    // An unknown route is the JSON error shape.
    let unknown = c.get("/v1/nowhere").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.code(), "not_found");
}

#[test]
fn the_api_registers_routes_only_through_routes_macro() {
    let mut dirs = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api")];
    let mut files = Vec::new();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    assert!(files.iter().any(|f| f.ends_with("mcp/mod.rs")), "{files:?}");
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for call in [
            ".route(",
            ".route_service(",
            ".nest_service(",
            "axum::routing::",
        ] {
            assert!(
                !text.contains(call),
                "{} uses `{call}`: a route registered so is served but missing from the OpenAPI document",
                path.display()
            );
        }
    }
}

#[tokio::test]
async fn the_reference_page_works_offline_and_renders_text_as_text() {
    let c = Control::start(&[("BERTH_API_TOKENS", &format!("t:{TOKEN}"))]).await;
    let page = c.anonymous(Method::GET, "/v1/docs").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = &page.text;
    assert!(!html.contains("<script"), "no scripts");
    assert!(!html.contains("src=\"http"), "nothing from the network");
    assert!(!html.contains("href=\"http"), "no links off the host");
    let doc: Value = c.get("/v1/openapi.json").await.body;
    for (path, item) in doc["paths"].as_object().unwrap() {
        assert!(
            html.contains(&format!("<code>{path}</code>")),
            "{path} missing"
        );
        for method in METHODS {
            if let Some(op) = item.get(method) {
                let id = op["operationId"].as_str().unwrap();
                assert!(html.contains(&format!("id=\"op-{id}\"")), "{id} missing");
            }
        }
    }
    assert!(
        html.contains("<code>sandbox_capacity</code>"),
        "error codes listed"
    );
    assert!(html.contains("id=\"schema-SandboxView\""), "schemas listed");
}
