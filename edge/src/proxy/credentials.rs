//! Private previews: the token or cookie check, the token exchanged for a
//! cookie, and berth's credentials removed before a request reaches an app.

use pingora::prelude::*;
use pingora::proxy::Session;
use pingora::{Error, ErrorType};

use super::{Ctx, Edge};
use crate::pages::Page;
use crate::preview_auth::{self, PreviewAuth};

impl Edge {
    /// Private sandboxes: `Ok(true)` when the request was answered here
    /// (refused, or redirected to drop the token from the URL).
    pub(super) async fn authorize(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        id: &str,
    ) -> Result<bool> {
        let req = session.req_header();
        let query = req.uri.query().unwrap_or("").to_string();
        let (query_token, rest) = preview_auth::take_query_token(&query);
        if let Some(token) = query_token {
            let Some(exp) = self.auth.check(&token, id).await else {
                return self
                    .respond(
                        session,
                        Page::new(
                            401,
                            "unauthorized",
                            "Private preview",
                            "This preview link is not valid or has expired.",
                        ),
                    )
                    .await;
            };
            let path = session.req_header().uri.path().to_string();
            let location = if rest.is_empty() {
                path
            } else {
                format!("{path}?{rest}")
            };
            let framed = preview_auth::is_frame(
                session
                    .req_header()
                    .headers
                    .get("sec-fetch-dest")
                    .and_then(|v| v.to_str().ok()),
            );
            let cookie = preview_auth::session_cookie(
                &token,
                PreviewAuth::seconds_left(exp),
                ctx.tls,
                framed,
            );
            let mut header = ResponseHeader::build(302, Some(4))?;
            header.insert_header("location", location)?;
            header.insert_header("set-cookie", cookie)?;
            header.insert_header("cache-control", "no-store")?;
            header.insert_header("content-length", "0")?;
            session
                .write_response_header(Box::new(header), true)
                .await?;
            return Ok(true);
        }
        let cookies = preview_auth::cookie_values(
            req.headers
                .get_all("cookie")
                .iter()
                .filter_map(|v| v.to_str().ok()),
            preview_auth::COOKIE,
        );
        match self.auth.check_any(cookies, id).await {
            Some(_) => Ok(false),
            None => {
                self.respond(
                    session,
                    Page::new(401, "unauthorized", "Private preview", "This sandbox's preview is private: open it with a link that carries a preview token."),
                )
                .await
            }
        }
    }

    /// Removes `?berth_token=` from the request an app will see.
    pub(super) fn strip_query_token(session: &mut Session) -> Result<()> {
        let uri = &session.req_header().uri;
        let Some(query) = uri.query() else {
            return Ok(());
        };
        let (token, rest) = preview_auth::take_query_token(query);
        if token.is_none() {
            return Ok(());
        }
        let path = uri.path();
        let path_and_query = if rest.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{rest}")
        };
        // Scheme and authority (h2, absolute-form) stay as they were.
        let mut parts = uri.clone().into_parts();
        parts.path_and_query = Some(
            http::uri::PathAndQuery::try_from(path_and_query)
                .map_err(|e| Error::explain(ErrorType::InvalidHTTPHeader, e.to_string()))?,
        );
        let stripped = http::Uri::from_parts(parts)
            .map_err(|e| Error::explain(ErrorType::InvalidHTTPHeader, e.to_string()))?;
        session.req_header_mut().set_uri(stripped);
        Ok(())
    }
}
