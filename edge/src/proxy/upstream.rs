//! Reaching an app through Pingora's proxy: the forwarded fields, waking a
//! sandbox and waiting for its port.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pingora::prelude::*;
use pingora::proxy::Session;
use pingora::{Error, ErrorType};

use super::{Ctx, Edge};
use crate::control::ControlError;
use crate::pages::Page;
use crate::relay::request::{self, Field, Origin};
use crate::wake;

impl Edge {
    /// The fields the edge sets on a request for an app (see
    /// `relay::request::forwarded`).
    pub(super) fn forwarded<'a>(session: &'a Session, ctx: &'a Ctx) -> Vec<Field<'a>> {
        let req = session.req_header();
        let cookies: Vec<&str> = if ctx.strip_cookie {
            req.headers
                .get_all("cookie")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect()
        } else {
            Vec::new()
        };
        request::forwarded(&Origin {
            client: session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip()),
            forwarded_for: req
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok()),
            tls: ctx.tls,
            host: &ctx.host,
            cookies: ctx.strip_cookie.then_some(cookies.as_slice()),
        })
    }

    /// The address of a sandbox's port once it accepts connections: at once
    /// when the sandbox runs, else after waking it (holding the request). A
    /// browser that would wait long gets a page that reloads itself.
    pub(super) async fn reach(
        &self,
        id: &str,
        port: u16,
        html: bool,
    ) -> std::result::Result<SocketAddr, Page> {
        let budget = if html {
            self.settings
                .starting_page_after
                .min(self.settings.wake_timeout)
        } else {
            self.settings.wake_timeout
        };
        let deadline = Instant::now() + budget;
        if let Some(addr) = self.routes.sandbox_upstream(id, port) {
            if self.waker.is_warming(id, port) {
                return self.wait_for_app(id, addr, deadline, html, budget).await;
            }
            return Ok(addr);
        }

        // Stopped: wake it, holding the request.
        match tokio::time::timeout(budget, self.waker.wake(id)).await {
            Ok(Ok(())) => {}
            Ok(Err(ControlError::NotFound)) => {
                return Err(Page::not_found(format!("There is no sandbox `{id}` here.")));
            }
            Ok(Err(ControlError::Refused {
                status: 503,
                code,
                message,
            })) => {
                // Control's reason, as control named it: out of room (try
                // again later), or Docker or the firewall not ready.
                let (code, title, retry) = match code.as_str() {
                    "firewall_unavailable" => (
                        "firewall_unavailable",
                        "The sandbox cannot start right now",
                        5,
                    ),
                    "docker_unavailable" => (
                        "docker_unavailable",
                        "The sandbox cannot start right now",
                        5,
                    ),
                    _ => ("sandbox_capacity", "Not enough room right now", 30),
                };
                let mut page = Page::new(503, code, title, message);
                page.retry_after = Some(retry);
                return Err(page);
            }
            Ok(Err(e)) => {
                return Err(Page::new(
                    502,
                    "wake_failed",
                    "The sandbox could not start",
                    e.to_string(),
                ));
            }
            Err(_) if html => return Err(Page::starting(id)),
            Err(_) => return Err(Self::wake_timeout_page(id, budget)),
        }
        let Some(addr) = self.routes.sandbox_upstream(id, port) else {
            return Err(Page::new(
                502,
                "no_address",
                "The sandbox has no address",
                "It started, but Docker reports no address for it yet. Try again.",
            ));
        };
        if !self.waker.is_warming(id, port) {
            // Docker said it ran already (the route table had lagged its
            // start): nothing was woken, so the connection decides at once;
            // waiting for a port nothing listens on would turn a prompt 502
            // into a 504 after the whole wake budget.
            return Ok(addr);
        }
        self.wait_for_app(id, addr, deadline, html, budget).await
    }

    /// Holds a request until a freshly woken app accepts connections.
    pub(super) async fn wait_for_app(
        &self,
        id: &str,
        addr: SocketAddr,
        deadline: Instant,
        html: bool,
        budget: Duration,
    ) -> std::result::Result<SocketAddr, Page> {
        let waiting = Instant::now();
        if !wake::wait_for_port(addr, deadline).await {
            if html {
                return Err(Page::starting(id));
            }
            let message = format!(
                "Sandbox `{id}` woke up, but nothing accepted connections on port {} within {} s.",
                addr.port(),
                budget.as_secs()
            );
            return Err(Page::new(
                504,
                "app_not_listening",
                "The app is not answering",
                message,
            ));
        }
        tracing::debug!(sandbox = %id, port = addr.port(), ms = waiting.elapsed().as_millis() as u64, "the app accepts connections");
        self.waker.port_ready(id, addr.port());
        Ok(addr)
    }

    /// After a failed connection: is the sandbox still running? Docker is
    /// asked (not the route table, which may lag), and a sandbox that
    /// stopped is woken. `Err` carries what to answer.
    pub(super) async fn reach_again(
        &self,
        ctx: &mut Ctx,
        failure: ErrorType,
    ) -> Result<SocketAddr> {
        let (Some(id), Some(failed)) = (ctx.sandbox.clone(), ctx.upstream) else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "no sandbox to recheck",
            ));
        };
        let container = self
            .routes
            .load()
            .sandbox(&id)
            .map(|e| e.container_id.clone());
        if let Some(container) = container {
            if let Err(e) = self.waker.refresh(&container).await {
                // Docker is away (a restart): the app cannot be judged, and
                // its container may be gone with it. Try again soon.
                tracing::warn!(sandbox = %id, error = %e, "could not recheck a sandbox with Docker");
                let mut page = Page::new(
                    503,
                    "docker_unavailable",
                    "The sandbox cannot be reached right now",
                    format!(
                        "Sandbox `{id}` refused the connection and Docker does not answer; retry in a few seconds."
                    ),
                );
                page.retry_after = Some(5);
                ctx.page = Some(page);
                return Err(Error::explain(
                    ErrorType::Custom("answered"),
                    "a page was chosen",
                ));
            }
        }
        if self.routes.sandbox_upstream(&id, ctx.port) == Some(failed) {
            // It runs where we knocked: the app itself refused, or did not
            // answer; that is the answer.
            return Err(Error::explain(failure, "the sandbox runs where we knocked"));
        }
        tracing::info!(sandbox = %id, "the sandbox stopped or moved under a request: waking it");
        match self.reach(&id, ctx.port, ctx.html).await {
            Ok(addr) => Ok(addr),
            Err(page) => {
                ctx.page = Some(page);
                Err(Error::explain(
                    ErrorType::Custom("answered"),
                    "a page was chosen",
                ))
            }
        }
    }

    pub(super) fn wake_timeout_page(id: &str, budget: Duration) -> Page {
        Page::new(
            504,
            "wake_timeout",
            "The sandbox is taking too long",
            format!(
                "Sandbox `{id}` did not start within {} s.",
                budget.as_secs()
            ),
        )
    }
}
