//! Routing a preview host `s-<id>-<port>`: the sandbox, its port, its
//! credentials, then the upstream.

use pingora::prelude::*;
use pingora::proxy::Session;

use super::lookup::Described;
use super::{Ctx, Edge};
use crate::pages::{self, Page};

impl Edge {
    /// Routes a preview host: `Ok(true)` when the request was answered here.
    pub(super) async fn preview(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        id: String,
        port: u16,
    ) -> Result<bool> {
        let (ports, public) = match self.describe(&id).await {
            Ok(Described::Found(ports, public)) => (ports, public),
            Ok(Described::Unknown) => {
                return self
                    .respond(
                        session,
                        Page::not_found(format!("There is no sandbox `{id}` here.")),
                    )
                    .await;
            }
            Ok(Described::Limited) => {
                let mut page = Page::new(
                    503,
                    "lookup_limited",
                    "Too many requests for unknown sandboxes",
                    format!("Sandbox `{id}` could not be looked up right now. Try again."),
                );
                page.retry_after = Some(1);
                return self.respond(session, page).await;
            }
            Err(e) => {
                return self
                    .respond(
                        session,
                        Page::new(
                            502,
                            "control_unreachable",
                            "berth is not answering",
                            format!("The control plane could not be asked about this sandbox: {e}"),
                        ),
                    )
                    .await;
            }
        };
        if !ports.contains(&port) {
            return self
                .respond(
                    session,
                    Page::not_found(format!("Sandbox `{id}` does not serve port {port}.")),
                )
                .await;
        }
        if !public && self.authorize(session, ctx, &id).await? {
            return Ok(true);
        }
        // berth's credentials never reach an app, public or private.
        ctx.strip_cookie = true;
        Self::strip_query_token(session)?;
        ctx._open = Some(self.activity.open(id.clone()));
        ctx.sandbox = Some(id.clone());
        ctx.port = port;
        ctx.html = session.req_header().method == http::Method::GET
            && pages::wants_html(
                session
                    .req_header()
                    .headers
                    .get("accept")
                    .and_then(|v| v.to_str().ok()),
            );
        match self.reach(&id, port, ctx.html).await {
            Ok(addr) => {
                ctx.upstream = Some(addr);
                Ok(false)
            }
            Err(page) => self.respond(session, page).await,
        }
    }
}
