//! Prometheus metrics of the control plane, served at `GET /metrics`.
//!
//! Counters and histograms are recorded where things happen (container
//! starts, stops by reason, execs, HTTP answers); the counts of sandboxes
//! and tasks by status are read from SQLite at scrape time, so they are the
//! truth, not a tally that could drift.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics: {0}")]
    Prometheus(#[from] prometheus::Error),
    #[error("metrics are not valid UTF-8")]
    Encoding,
}

/// Why a sandbox was stopped (or put to light sleep).
#[derive(Debug, Clone, Copy)]
pub enum StopReason {
    Api,
    Idle,
    MemoryPressure,
}

impl StopReason {
    fn as_str(self) -> &'static str {
        match self {
            StopReason::Api => "api",
            StopReason::Idle => "idle",
            StopReason::MemoryPressure => "memory_pressure",
        }
    }
}

struct Inner {
    registry: Registry,
    http: IntCounterVec,
    starts: IntCounterVec,
    start_seconds: Histogram,
    stops: IntCounterVec,
    sleeps: IntCounterVec,
    thaw_seconds: Histogram,
    pool_claims: IntCounterVec,
    pool_ready: IntGauge,
    exec_seconds: HistogramVec,
    sandboxes: IntGaugeVec,
    tasks: IntGaugeVec,
    uptime: IntGauge,
}

/// Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

const START_BUCKETS: [f64; 11] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0];
const THAW_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];
const EXEC_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0,
];

impl Metrics {
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new_custom(Some("berth_control".into()), None)?;
        let http = IntCounterVec::new(
            Opts::new("http_requests_total", "API answers, by status code"),
            &["status"],
        )?;
        let starts = IntCounterVec::new(
            Opts::new(
                "container_starts_total",
                "Sandbox containers started (creates and wakes), by result",
            ),
            &["result"],
        )?;
        let start_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "container_start_seconds",
                "Docker start plus the sandbox's start command being launched",
            )
            .buckets(START_BUCKETS.to_vec()),
        )?;
        let stops = IntCounterVec::new(
            Opts::new("sandbox_stops_total", "Sandboxes stopped, by reason"),
            &["reason"],
        )?;
        let sleeps = IntCounterVec::new(
            Opts::new(
                "sandbox_sleeps_total",
                "Sandboxes put to light sleep (frozen), by reason",
            ),
            &["reason"],
        )?;
        let thaw_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "container_thaw_seconds",
                "Light-sleeping sandbox containers thawed (docker unpause)",
            )
            .buckets(THAW_BUCKETS.to_vec()),
        )?;
        let pool_claims = IntCounterVec::new(
            Opts::new(
                "warm_pool_creates_total",
                "Creates that fit the warm pool, by how they were served (warm: claimed; cold: the pool was empty)",
            ),
            &["result"],
        )?;
        let pool_ready =
            IntGauge::new("warm_pool_ready", "Warm pool sandboxes ready to be claimed")?;
        let exec_seconds = HistogramVec::new(
            HistogramOpts::new(
                "exec_seconds",
                "Buffered execs, start to exit, by what ran them (agent: the sandbox's exec agent; docker: Docker's exec)",
            )
            .buckets(EXEC_BUCKETS.to_vec()),
            &["via"],
        )?;
        let sandboxes = IntGaugeVec::new(
            Opts::new("sandboxes", "Sandboxes in the database, by status"),
            &["status"],
        )?;
        let tasks = IntGaugeVec::new(
            Opts::new("tasks", "Tasks in the database, by status"),
            &["status"],
        )?;
        let uptime = IntGauge::new("uptime_seconds", "Seconds since control started")?;
        for metric in [
            Box::new(http.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(starts.clone()),
            Box::new(start_seconds.clone()),
            Box::new(stops.clone()),
            Box::new(sleeps.clone()),
            Box::new(thaw_seconds.clone()),
            Box::new(pool_claims.clone()),
            Box::new(pool_ready.clone()),
            Box::new(exec_seconds.clone()),
            Box::new(sandboxes.clone()),
            Box::new(tasks.clone()),
            Box::new(uptime.clone()),
        ] {
            registry.register(metric)?;
        }
        // Series that exist from the start, so rates work from the first scrape.
        for reason in [
            StopReason::Api,
            StopReason::Idle,
            StopReason::MemoryPressure,
        ] {
            stops.with_label_values(&[reason.as_str()]);
        }
        for reason in [StopReason::Api, StopReason::Idle] {
            sleeps.with_label_values(&[reason.as_str()]);
        }
        for result in ["warm", "cold"] {
            pool_claims.with_label_values(&[result]);
        }
        for result in ["ok", "error"] {
            starts.with_label_values(&[result]);
        }
        for via in ["agent", "docker"] {
            exec_seconds.with_label_values(&[via]);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                registry,
                http,
                starts,
                start_seconds,
                stops,
                sleeps,
                thaw_seconds,
                pool_claims,
                pool_ready,
                exec_seconds,
                sandboxes,
                tasks,
                uptime,
            }),
        })
    }

    pub fn http_answered(&self, status: u16) {
        self.inner
            .http
            .with_label_values(&[status.to_string().as_str()])
            .inc();
    }

    pub fn container_started(&self, ok: bool, took: Duration) {
        let result = if ok { "ok" } else { "error" };
        self.inner.starts.with_label_values(&[result]).inc();
        if ok {
            self.inner.start_seconds.observe(took.as_secs_f64());
        }
    }

    pub fn sandbox_stopped(&self, reason: StopReason) {
        self.inner.stops.with_label_values(&[reason.as_str()]).inc();
    }

    pub fn sandbox_slept(&self, reason: StopReason) {
        self.inner
            .sleeps
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    pub fn container_thawed(&self, took: Duration) {
        self.inner.thaw_seconds.observe(took.as_secs_f64());
    }

    pub fn pool_claimed(&self, warm: bool) {
        let result = if warm { "warm" } else { "cold" };
        self.inner.pool_claims.with_label_values(&[result]).inc();
    }

    pub fn pool_ready(&self, ready: usize) {
        self.inner
            .pool_ready
            .set(i64::try_from(ready).unwrap_or(i64::MAX));
    }

    pub fn exec_finished(&self, took: Duration, via_agent: bool) {
        let via = if via_agent { "agent" } else { "docker" };
        self.inner
            .exec_seconds
            .with_label_values(&[via])
            .observe(took.as_secs_f64());
    }

    /// The Prometheus text exposition, with the scrape-time gauges set from
    /// the counts given.
    pub fn render(
        &self,
        sandboxes: &[(&'static str, i64)],
        tasks: &[(String, i64)],
        uptime: Duration,
    ) -> Result<String, MetricsError> {
        self.inner.sandboxes.reset();
        for (status, n) in sandboxes {
            self.inner.sandboxes.with_label_values(&[*status]).set(*n);
        }
        self.inner.tasks.reset();
        for (status, n) in tasks {
            self.inner
                .tasks
                .with_label_values(&[status.as_str()])
                .set(*n);
        }
        self.inner.uptime.set(uptime.as_secs() as i64);
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.inner.registry.gather(), &mut out)?;
        String::from_utf8(out).map_err(|_| MetricsError::Encoding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_scrape_time_gauges() {
        let m = Metrics::new().unwrap();
        m.http_answered(201);
        m.container_started(true, Duration::from_millis(300));
        m.sandbox_stopped(StopReason::Idle);
        let text = m
            .render(
                &[("running", 2), ("stopped", 1)],
                &[("succeeded".to_string(), 4)],
                Duration::from_secs(9),
            )
            .unwrap();
        for line in [
            "berth_control_http_requests_total{status=\"201\"} 1",
            "berth_control_container_starts_total{result=\"ok\"} 1",
            "berth_control_container_start_seconds_count 1",
            "berth_control_sandbox_stops_total{reason=\"idle\"} 1",
            "berth_control_sandbox_stops_total{reason=\"api\"} 0",
            "berth_control_sandboxes{status=\"running\"} 2",
            "berth_control_tasks{status=\"succeeded\"} 4",
            "berth_control_uptime_seconds 9",
        ] {
            assert!(text.contains(line), "missing `{line}` in:\n{text}");
        }
        // A status that emptied disappears at the next scrape.
        let text = m.render(&[("running", 3)], &[], Duration::ZERO).unwrap();
        assert!(!text.contains("status=\"stopped\""), "{text}");
    }
}
