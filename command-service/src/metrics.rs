//! Prometheus metrics, rendered as text on `/metrics`.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// The process's metrics. Gauges about the database are refreshed at scrape time, so they
/// cost nothing when nobody scrapes.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests by method, matched route and status.
    pub http_requests: IntCounterVec,
    /// Request latency by method and matched route.
    pub http_duration: HistogramVec,
    /// Event-log horizon gauges (`held_back_events`, `oldest_open_transaction_seconds`, `max_position`).
    pub event_log: GaugeVec,
    /// Per projection: `behind_events`, `behind_seconds`, `halted` (1 while stopped on an event).
    pub projections: GaugeVec,
    /// Requests let through because the limiter failed.
    pub rate_limit_failures: prometheus::IntCounter,
    /// Previews by status, the render queue and render times (`measure`; set at scrape time
    /// from the database, so every process reports the fleet's figures).
    pub previews: GaugeVec,
    /// The database monitor (set at scrape time): `strata_db_table_bytes{table}`,
    /// `strata_db_table_rows{table}`, `strata_db_connections{state}`, `strata_db{measure}`
    /// (longest_transaction_seconds, replication_lag_seconds, events_appended_per_second,
    /// webhook_failure_ratio_1h), `strata_jobs{kind, measure}` (queued, oldest_queued_seconds,
    /// failed).
    pub db_table_bytes: GaugeVec,
    /// See [`Self::db_table_bytes`].
    pub db_table_rows: GaugeVec,
    /// See [`Self::db_table_bytes`].
    pub db_connections: GaugeVec,
    /// See [`Self::db_table_bytes`].
    pub db: GaugeVec,
    /// See [`Self::db_table_bytes`].
    pub jobs: GaugeVec,
    /// Live subscriptions on this process (set at scrape time).
    pub live_subscriptions: prometheus::IntGauge,
    /// The command bus's state cache on this process (set at scrape time): `streams`,
    /// `bytes` (estimated) and `budget_bytes`.
    pub command_state_cache: GaugeVec,
    /// GraphQL requests answered from the response cache.
    graphql_cache_hits: prometheus::IntCounter,
    /// GraphQL requests that looked in the response cache and executed.
    graphql_cache_misses: prometheus::IntCounter,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("strata".into()), None)?;
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests served"),
            &["method", "route", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency"),
            &["method", "route"],
        )?;
        let event_log = GaugeVec::new(
            Opts::new(
                "event_log",
                "Event log read horizon: held_back_events are stored but invisible to \
                 subscribers because an older transaction is open; and this process's \
                 one-event appends since it started, onto a head it knew or looked up",
            ),
            &["measure"],
        )?;
        let projections = GaugeVec::new(
            Opts::new("projection", "Projection lag and health"),
            &["projection", "measure"],
        )?;
        let previews = GaugeVec::new(
            Opts::new(
                "previews",
                "Preview images: rendering/done/empty/failed counts, queued jobs, \
                 oldest_queued_seconds, render_seconds_p50_1h/p99_1h",
            ),
            &["measure"],
        )?;
        registry.register(Box::new(previews.clone()))?;
        let gauge_vec =
            |name: &str, help: &str, labels: &[&str]| -> Result<GaugeVec, prometheus::Error> {
                let g = GaugeVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(g.clone()))?;
                Ok(g)
            };
        let db_table_bytes = gauge_vec(
            "db_table_bytes",
            "Size of each table of strata's schema with its indexes and TOAST, bytes",
            &["table"],
        )?;
        let db_table_rows = gauge_vec(
            "db_table_rows",
            "Estimated live rows of each table of strata's schema (the planner's statistics)",
            &["table"],
        )?;
        let db_connections = gauge_vec(
            "db_connections",
            "Connections to strata's database by state",
            &["state"],
        )?;
        let db = gauge_vec(
            "db",
            "Database health: longest_transaction_seconds, replication_lag_seconds, \
             events_appended_per_second (last minute), webhook_failure_ratio_1h",
            &["measure"],
        )?;
        let jobs = gauge_vec(
            "jobs",
            "Reaction jobs by kind: queued, oldest_queued_seconds, failed (for good)",
            &["kind", "measure"],
        )?;
        let command_state_cache = gauge_vec(
            "command_state_cache",
            "Aggregate states the command bus keeps on this process: streams, bytes \
             (estimated), budget_bytes (STRATA_COMMAND_STATE_CACHE_BYTES)",
            &["measure"],
        )?;
        let live_subscriptions = prometheus::IntGauge::new(
            "live_subscriptions",
            "GraphQL subscriptions receiving live events on this process",
        )?;
        registry.register(Box::new(live_subscriptions.clone()))?;
        let rate_limit_failures = prometheus::IntCounter::new(
            "rate_limit_failures_total",
            "Requests let through unchecked because the rate limiter (Redis) failed",
        )?;
        registry.register(Box::new(rate_limit_failures.clone()))?;
        let graphql_cache = IntCounterVec::new(
            Opts::new(
                "graphql_cache_total",
                "GraphQL requests that looked in the response cache, by outcome (hit, miss)",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(graphql_cache.clone()))?;
        registry.register(Box::new(projections.clone()))?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(event_log.clone()))?;
        Ok(Self {
            graphql_cache_hits: graphql_cache.with_label_values(&["hit"]),
            graphql_cache_misses: graphql_cache.with_label_values(&["miss"]),
            rate_limit_failures,
            live_subscriptions,
            command_state_cache,
            registry,
            http_requests,
            http_duration,
            event_log,
            projections,
            previews,
            db_table_bytes,
            db_table_rows,
            db_connections,
            db,
            jobs,
        })
    }

    /// Counts one look in the GraphQL response cache.
    pub fn graphql_cache(&self, hit: bool) {
        if hit {
            self.graphql_cache_hits.inc();
        } else {
            self.graphql_cache_misses.inc();
        }
    }

    /// Sets the database monitor's gauges from a sample (labels no longer present are dropped).
    pub fn set_db(&self, s: &schema::monitor::DbSample) {
        for v in [
            &self.db_table_bytes,
            &self.db_table_rows,
            &self.db_connections,
            &self.jobs,
        ] {
            v.reset();
        }
        for (table, bytes, rows) in &s.tables {
            self.db_table_bytes.with_label_values(&[table]).set(*bytes);
            self.db_table_rows.with_label_values(&[table]).set(*rows);
        }
        for (state, n) in &s.connections {
            self.db_connections.with_label_values(&[state]).set(*n);
        }
        for (measure, v) in [
            ("longest_transaction_seconds", s.longest_transaction_seconds),
            ("replication_lag_seconds", s.replication_lag_seconds),
            ("events_appended_per_second", s.events_per_second),
            ("webhook_failure_ratio_1h", s.webhook_failure_ratio),
        ] {
            self.db.with_label_values(&[measure]).set(v);
        }
        for (kind, queued, oldest, failed) in &s.jobs {
            self.jobs.with_label_values(&[kind, "queued"]).set(*queued);
            self.jobs
                .with_label_values(&[kind, "oldest_queued_seconds"])
                .set(*oldest);
            self.jobs.with_label_values(&[kind, "failed"]).set(*failed);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}
