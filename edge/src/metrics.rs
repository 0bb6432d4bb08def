//! Prometheus metrics, served with /healthz on the admin listener.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::routes::RouteTable;

struct Inner {
    registry: Registry,
    requests: IntCounterVec,
    /// The series of `requests` by status (100–599), each resolved on its
    /// first use: `with_label_values` formats, hashes and locks on every
    /// call, which showed in the proxy's per-request profile. A series
    /// appears once it counted something, as before.
    requests_by_status: Box<[OnceLock<IntCounter>]>,
    upstream_seconds: Histogram,
    upstream_connections: IntCounterVec,
    /// `upstream_connections`' two series (new, reused), resolved likewise.
    upstream_by_reuse: [OnceLock<IntCounter>; 2],
    wakes: IntCounterVec,
    wake_seconds: Histogram,
    routes: IntGaugeVec,
    cert_expiry: prometheus::IntGauge,
    renewals: IntCounterVec,
    lookups: IntCounterVec,
}

#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// The statuses whose series are kept resolved.
const STATUSES: std::ops::Range<u16> = 100..600;
const WAKE_BUCKETS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0];

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("berth_edge".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new("requests_total", "Requests answered, by status code"),
            &["status"],
        )?;
        let upstream_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "upstream_seconds",
                "Time from connecting to an app to its response header",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        let upstream_connections = IntCounterVec::new(
            Opts::new(
                "upstream_requests_total",
                "Requests sent to apps, by whether their connection was new or kept alive",
            ),
            &["connection"],
        )?;
        let wakes = IntCounterVec::new(
            Opts::new("wakes_total", "Sandbox wakes, by result"),
            &["result"],
        )?;
        let wake_seconds = Histogram::with_opts(
            HistogramOpts::new("wake_seconds", "Time to wake a sandbox through control")
                .buckets(WAKE_BUCKETS.to_vec()),
        )?;
        let routes = IntGaugeVec::new(Opts::new("routes", "Known routes, by kind"), &["kind"])?;
        let cert_expiry = prometheus::IntGauge::new(
            "certificate_expiry_timestamp_seconds",
            "When the served certificate expires (unix seconds)",
        )?;
        let renewals = IntCounterVec::new(
            Opts::new(
                "certificate_renewals_total",
                "ACME certificate orders, by result",
            ),
            &["result"],
        )?;
        let lookups = IntCounterVec::new(
            Opts::new(
                "lookups_total",
                "Sandboxes the route table did not know, by how the question ended: \
                 asked control (found, unknown, error), answered from the negative \
                 cache (cached) or refused by the look-up rate limit (limited)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(lookups.clone()))?;
        registry.register(Box::new(cert_expiry.clone()))?;
        registry.register(Box::new(renewals.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(upstream_seconds.clone()))?;
        registry.register(Box::new(upstream_connections.clone()))?;
        registry.register(Box::new(wakes.clone()))?;
        registry.register(Box::new(wake_seconds.clone()))?;
        registry.register(Box::new(routes.clone()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                registry,
                requests,
                requests_by_status: (STATUSES).map(|_| OnceLock::new()).collect(),
                upstream_seconds,
                upstream_connections,
                upstream_by_reuse: [OnceLock::new(), OnceLock::new()],
                wakes,
                wake_seconds,
                routes,
                cert_expiry,
                renewals,
                lookups,
            }),
        })
    }

    /// Extra collectors (TLS adds its own).
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub fn request_done(&self, status: u16) {
        let series = || {
            self.inner
                .requests
                .with_label_values(&[&status.to_string()])
        };
        match self
            .inner
            .requests_by_status
            .get(usize::from(status.wrapping_sub(STATUSES.start)))
        {
            Some(slot) => slot.get_or_init(series).inc(),
            None => series().inc(),
        }
    }

    pub fn upstream_answered(&self, elapsed: Duration) {
        self.inner.upstream_seconds.observe(elapsed.as_secs_f64());
    }

    pub fn upstream_connection(&self, reused: bool) {
        self.inner.upstream_by_reuse[usize::from(reused)]
            .get_or_init(|| {
                self.inner
                    .upstream_connections
                    .with_label_values(&[if reused { "reused" } else { "new" }])
            })
            .inc();
    }

    pub fn wake_finished(&self, ok: bool, elapsed: Duration) {
        self.inner
            .wakes
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
        if ok {
            self.inner.wake_seconds.observe(elapsed.as_secs_f64());
        }
    }

    pub fn routes_changed(&self, table: &RouteTable) {
        self.inner
            .routes
            .with_label_values(&["sandboxes"])
            .set(table.sandbox_count() as i64);
        self.inner
            .routes
            .with_label_values(&["traefik_routers"])
            .set(table.router_count() as i64);
    }

    /// A look-up of a sandbox missing from the route table ended: `result`
    /// is found, unknown, error, cached or limited.
    pub fn lookup(&self, result: &str) {
        self.inner.lookups.with_label_values(&[result]).inc();
    }

    pub fn certificate_installed(&self, not_after: i64) {
        self.inner.cert_expiry.set(not_after);
    }

    pub fn renewal_finished(&self, ok: bool) {
        self.inner
            .renewals
            .with_label_values(&[if ok { "ok" } else { "failed" }])
            .inc();
    }

    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.inner.registry.gather(), &mut out);
        out
    }
}

/// The admin listener: `/metrics`, `/healthz`, and `POST /tls/renew`
/// (order a new ACME certificate now).
pub struct Admin {
    pub metrics: Metrics,
    pub renew_now: Option<Arc<tokio::sync::Notify>>,
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let post = session.req_header().method == http::Method::POST;
        let (status, content_type, body) =
            match (session.req_header().uri.path(), post, &self.renew_now) {
                ("/metrics", false, _) => (200, "text/plain; version=0.0.4", self.metrics.render()),
                ("/healthz", false, _) => (200, "text/plain", b"ok".to_vec()),
                ("/tls/renew", true, Some(renew)) => {
                    renew.notify_one();
                    (202, "text/plain", b"renewal started".to_vec())
                }
                ("/tls/renew", true, None) => (409, "text/plain", b"ACME is not in use".to_vec()),
                _ => (404, "text/plain", b"not found".to_vec()),
            };
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .header("content-length", body.len())
            .body(body)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(m: &Metrics) -> String {
        String::from_utf8(m.render()).unwrap()
    }

    #[test]
    fn resolved_series_count_like_labelled_ones() {
        let m = Metrics::new().unwrap();
        assert!(!scrape(&m).contains("berth_edge_requests_total{"));
        for status in [200, 200, 0, 599, 600, 304] {
            m.request_done(status);
        }
        m.upstream_connection(true);
        m.upstream_connection(true);
        m.upstream_connection(false);
        let text = scrape(&m);
        for line in [
            r#"berth_edge_requests_total{status="200"} 2"#,
            r#"berth_edge_requests_total{status="0"} 1"#,
            r#"berth_edge_requests_total{status="599"} 1"#,
            r#"berth_edge_requests_total{status="600"} 1"#,
            r#"berth_edge_requests_total{status="304"} 1"#,
            r#"berth_edge_upstream_requests_total{connection="reused"} 2"#,
            r#"berth_edge_upstream_requests_total{connection="new"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        assert!(
            !text.contains(r#"status="404""#),
            "no series before a count"
        );
    }
}
