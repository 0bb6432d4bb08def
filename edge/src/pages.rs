//! What the edge answers itself: small HTML pages for browsers, and the
//! same facts as JSON (`{"error":{"code","message"}}`) for everything else.

use bytes::Bytes;
use pingora::http::ResponseHeader;

#[derive(Debug, Clone)]
pub struct Page {
    pub status: u16,
    pub code: &'static str,
    pub title: &'static str,
    pub message: String,
    /// Seconds after which a browser reloads the page.
    pub refresh: Option<u32>,
    pub retry_after: Option<u32>,
}

impl Page {
    pub fn new(
        status: u16,
        code: &'static str,
        title: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            title,
            message: message.into(),
            refresh: None,
            retry_after: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "not_found", "Nothing here", message)
    }

    /// Nothing listens on the app's port (yet: a dev server takes a few
    /// seconds to bind, a preview frame opens at once): a browser's page
    /// tries again by itself, so it shows the app as soon as it is up.
    pub fn refused(target: &str) -> Self {
        let mut page = Self::new(
            502,
            "connection_refused",
            "The app is not running",
            format!(
                "Nothing accepts connections on {target}: connection refused. This page tries again every {REFUSED_RETRY_S} seconds."
            ),
        );
        page.refresh = Some(REFUSED_RETRY_S);
        page
    }

    /// The page a browser gets while a sandbox wakes: it reloads itself.
    pub fn starting(id: &str) -> Self {
        let mut page = Self::new(
            503,
            "starting",
            "Starting…",
            format!("Sandbox {id} is waking up. This page reloads by itself in a moment."),
        );
        page.refresh = Some(1);
        page.retry_after = Some(1);
        page
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Whether a client wants HTML (a browser navigating).
pub fn wants_html(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("text/html"))
}

/// The response header and body of a page.
pub fn render(page: &Page, html: bool) -> pingora::Result<(ResponseHeader, Bytes)> {
    let body = if html {
        let refresh = page
            .refresh
            .map(|s| format!(r#"<meta http-equiv="refresh" content="{s}">"#))
            .unwrap_or_default();
        format!(
            r#"<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">{refresh}<title>{title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;display:grid;place-items:center;min-height:90vh;margin:0;color:#222;background:#fafafa}}main{{max-width:36em;padding:2em}}h1{{font-size:1.4em;margin:0 0 .5em}}p{{color:#555}}small{{color:#999}}</style></head>
<body><main><h1>{title}</h1><p>{message}</p><small>{status} · berth</small></main></body></html>"#,
            title = escape(page.title),
            message = escape(&page.message),
            status = page.status,
        )
    } else {
        serde_json::json!({"error": {"code": page.code, "message": page.message}}).to_string()
    };
    let mut header = ResponseHeader::build(page.status, Some(4))?;
    header.insert_header(
        "content-type",
        if html {
            "text/html; charset=utf-8"
        } else {
            "application/json"
        },
    )?;
    header.insert_header("content-length", body.len().to_string())?;
    header.insert_header("cache-control", "no-store")?;
    if let Some(s) = page.retry_after {
        header.insert_header("retry-after", s.to_string())?;
    }
    Ok((header, Bytes::from(body)))
}

/// How often a refused page reloads itself.
const REFUSED_RETRY_S: u32 = 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_page_tries_again_by_itself() {
        let page = Page::refused("port 3000");
        let (header, body) = render(&page, true).unwrap();
        assert_eq!(header.status.as_u16(), 502);
        let html = String::from_utf8_lossy(&body);
        assert!(
            html.contains(r#"<meta http-equiv="refresh" content="3">"#),
            "{html}"
        );
        assert!(html.contains("The app is not running"), "{html}");
    }

    #[test]
    fn browsers_get_html_and_clients_json() {
        let page = Page::not_found("no <sandbox>");
        let (h, body) = render(&page, true).unwrap();
        assert_eq!(h.status.as_u16(), 404);
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains("no &lt;sandbox&gt;"));
        let (_, body) = render(&page, false).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"]["code"], "not_found");
        let (h, body) = render(&Page::starting("x"), true).unwrap();
        assert_eq!(h.headers.get("retry-after").unwrap(), "1");
        assert!(String::from_utf8_lossy(&body).contains("http-equiv=\"refresh\""));
    }
}
