//! The soak: the fault suite's load, paced to a moderate rate, for a long time with nothing
//! broken, sampled at a fixed interval. Each sample holds what an operator watches for
//! unbounded growth: the memory of every process (strata's resident set, PostgreSQL's private
//! memory summed over the postmaster and its backends, Redis's resident set), connection
//! counts (strata's database pool as its `/metrics` reports it, Redis clients), the job queue
//! and projection lag (from `/metrics`, as an operator scrapes them), the size of the log, and
//! the clients' p50/p99 latency over the interval. At the end, the fault suite's checker runs
//! over the whole history and every read model is rebuilt in verify mode.
//!
//! The verdict on growth compares the last third of the samples with the middle third (the
//! first third is warm-up: pools fill, caches load): a measure grew when its mean rose by more
//! than a fifth and by more than its slack. A leak of steady growth shows as such; a level
//! reached after warm-up does not.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Config, Ended, Phase, Row, Stack, World, check, spawn_clients, verify_read_models};

/// How long, how often and how hard.
#[derive(Clone, Debug)]
pub struct Options {
    /// How long the load runs.
    pub duration: Duration,
    /// How often it is sampled.
    pub every: Duration,
    /// Each client's rest between rounds.
    pub pause: Duration,
}

/// The system at one moment, and the load's latency since the moment before.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// Since the load started.
    pub at: Duration,
    /// Requests answered in the interval.
    pub requests: usize,
    /// Their median time to answer.
    pub p50: Duration,
    /// Their 99th percentile time to answer.
    pub p99: Duration,
    /// The strata process's resident set.
    pub strata_rss_kib: u64,
    /// PostgreSQL's private (anonymous) memory, summed over the postmaster and its children;
    /// shared buffers are left out, being counted once per process that touched them.
    pub postgres_private_kib: u64,
    /// PostgreSQL's processes: the postmaster and its children.
    pub postgres_processes: usize,
    /// The Redis server's resident set.
    pub redis_rss_kib: u64,
    /// strata's database connections (`strata_db_connections`, all states).
    pub db_connections: u64,
    /// Redis's `connected_clients`.
    pub redis_clients: u64,
    /// Jobs waiting (`strata_jobs{measure="queued"}`, all kinds).
    pub jobs_queued: u64,
    /// The furthest behind projection (`strata_projection{measure="behind_events"}`).
    pub projection_behind: u64,
    /// Events in the log.
    pub events: u64,
}

/// The samples, the checker's row over the whole run and the rebuild's differences.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// One an interval.
    pub samples: Vec<Sample>,
    /// The checker over the whole history.
    pub row: Row,
    /// Each read model's differences from a fresh fold.
    pub rebuild_differences: BTreeMap<String, i64>,
}

/// A measure the verdict watches: its name, how to read it, and the rise it tolerates.
type Measure = (&'static str, fn(&Sample) -> f64, f64);

const WATCHED: [Measure; 7] = [
    ("strata RSS (KiB)", |s| s.strata_rss_kib as f64, 16_384.0),
    (
        "PostgreSQL private (KiB)",
        |s| s.postgres_private_kib as f64,
        32_768.0,
    ),
    ("Redis RSS (KiB)", |s| s.redis_rss_kib as f64, 8_192.0),
    ("database connections", |s| s.db_connections as f64, 2.0),
    ("Redis clients", |s| s.redis_clients as f64, 2.0),
    ("jobs queued", |s| s.jobs_queued as f64, 20.0),
    (
        "projection lag (events)",
        |s| s.projection_behind as f64,
        20.0,
    ),
];

impl Report {
    /// The measures that kept growing, each with its middle-third and last-third means; empty
    /// when there are too few samples to tell (fewer than 6).
    pub fn growing(&self) -> Vec<String> {
        let n = self.samples.len();
        if n < 6 {
            return Vec::new();
        }
        let mean = |range: &[Sample], read: fn(&Sample) -> f64| {
            range.iter().map(read).sum::<f64>() / range.len() as f64
        };
        let middle = &self.samples[n / 3..2 * n / 3];
        let last = &self.samples[2 * n / 3..];
        WATCHED
            .iter()
            .filter_map(|(name, read, slack)| {
                let (m, l) = (mean(middle, *read), mean(last, *read));
                (l > m * 1.2 && l - m > *slack).then(|| format!("{name}: {m:.0} → {l:.0}"))
            })
            .collect()
    }

    /// Nothing lost, doubled or unclear, read models equal a fresh fold, nothing growing.
    pub fn clean(&self) -> bool {
        self.row.clean()
            && self.rebuild_differences.values().all(|d| *d == 0)
            && self.growing().is_empty()
    }

    /// One line a sample, then the checker's verdict and the growth verdict.
    pub fn table(&self) -> String {
        let mib = |kib: u64| kib as f64 / 1024.0;
        let mut out = String::from(
            "| min | requests | p50 ms | p99 ms | strata RSS MiB | PostgreSQL private MiB (processes) | Redis RSS MiB | db connections | Redis clients | jobs queued | projection lag | events |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for s in &self.samples {
            let _ = writeln!(
                out,
                "| {:.1} | {} | {:.1} | {:.1} | {:.1} | {:.1} ({}) | {:.1} | {} | {} | {} | {} | {} |",
                s.at.as_secs_f64() / 60.0,
                s.requests,
                s.p50.as_secs_f64() * 1e3,
                s.p99.as_secs_f64() * 1e3,
                mib(s.strata_rss_kib),
                mib(s.postgres_private_kib),
                s.postgres_processes,
                mib(s.redis_rss_kib),
                s.db_connections,
                s.redis_clients,
                s.jobs_queued,
                s.projection_behind,
                s.events,
            );
        }
        let r = &self.row;
        let _ = writeln!(
            out,
            "\nchecker: {} attempted, {} acknowledged, {} lost, {} duplicated, {} unclear, {} mail copies, {} webhook deliveries out of order, the live subscriber heard {} models and missed {} (connections: {:?}); rebuild --verify differences: {}",
            r.attempted,
            r.acknowledged,
            r.lost.len(),
            r.duplicated.len(),
            r.failed_unclear.len(),
            r.mail_copies,
            r.webhook_out_of_order,
            r.subscription_heard,
            r.subscription_missed.len(),
            r.subscription_connections,
            self.rebuild_differences.values().sum::<i64>(),
        );
        for what in r
            .lost
            .iter()
            .chain(&r.duplicated)
            .chain(&r.failed_unclear)
            .chain(&r.subscription_missed)
        {
            let _ = writeln!(out, "  {what}");
        }
        let growing = self.growing();
        if self.samples.len() < 6 {
            out.push_str("growth: too few samples to tell\n");
        } else if growing.is_empty() {
            out.push_str("growth: none (last third of the samples against the middle third)\n");
        } else {
            let _ = writeln!(out, "growth: {}", growing.join("; "));
        }
        out
    }
}

/// Runs the soak on a stack of its own.
pub async fn soak(config: &Config, options: &Options) -> Report {
    let stack = Stack::start(config).await;
    let world = Arc::new(World::create(&stack, config).await);
    let phase = Arc::new(Phase::new(options.pause));
    let clients = spawn_clients(&phase, &stack, &world, config, 0);
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut seen = 0;
    let mut next = started + options.every;
    while next <= started + options.duration {
        tokio::time::sleep_until(next.into()).await;
        next += options.every;
        let latencies = {
            let history = phase.history.lock().unwrap();
            let new = history.latencies[seen..].to_vec();
            seen = history.latencies.len();
            new
        };
        let sample = sample(&stack, started.elapsed(), latencies).await;
        eprintln!(
            "soak: {:.1} min, {} requests, p99 {:.1} ms, strata {} KiB",
            sample.at.as_secs_f64() / 60.0,
            sample.requests,
            sample.p99.as_secs_f64() * 1e3,
            sample.strata_rss_kib
        );
        samples.push(sample);
    }
    phase.stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.expect("a client task");
    }
    let history = std::mem::take(&mut *phase.history.lock().unwrap());
    let ended = Ended {
        name: "soak",
        readiness: stack.readiness().await,
        recovered_in: Duration::ZERO,
        at: Instant::now(),
    };
    let row = check(&stack, &world, config, history, &phase.subscriber, ended).await;
    let rebuild_differences = verify_read_models(&stack.db, config.recover_bound).await;
    Report {
        samples,
        row,
        rebuild_differences,
    }
}

async fn sample(stack: &Stack, at: Duration, mut latencies: Vec<Duration>) -> Sample {
    latencies.sort();
    let quantile = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let postmaster = stack.pg.postmaster_pid();
    let postgres: Vec<u32> = std::iter::once(postmaster)
        .chain(children_of(postmaster))
        .collect();
    let metrics = stack
        .http
        .get(format!("{}/metrics", stack.base))
        .send()
        .await
        .expect("scraping /metrics")
        .text()
        .await
        .expect("the metrics");
    let events: i64 = sqlx::query_scalar("SELECT coalesce(max(position), 0) FROM events")
        .fetch_one(&stack.db.pool)
        .await
        .expect("the log's head");
    Sample {
        at,
        requests: latencies.len(),
        p50: quantile(0.5),
        p99: quantile(0.99),
        strata_rss_kib: stack
            .strata
            .pid()
            .map(|p| status_kib(p, "VmRSS"))
            .unwrap_or(0),
        postgres_private_kib: postgres.iter().map(|p| status_kib(*p, "RssAnon")).sum(),
        postgres_processes: postgres.len(),
        redis_rss_kib: stack
            .redis
            .pid()
            .map(|p| status_kib(p, "VmRSS"))
            .unwrap_or(0),
        db_connections: metric(&metrics, "strata_db_connections", "").sum::<f64>() as u64,
        redis_clients: stack.redis.info_field("connected_clients").await,
        jobs_queued: metric(&metrics, "strata_jobs", "measure=\"queued\"").sum::<f64>() as u64,
        projection_behind: metric(&metrics, "strata_projection", "measure=\"behind_events\"")
            .fold(0.0, f64::max) as u64,
        events: events as u64,
    }
}

/// The values of `name`'s series whose labels contain `label` (Prometheus text format).
fn metric<'a>(text: &'a str, name: &'a str, label: &'a str) -> impl Iterator<Item = f64> + 'a {
    text.lines()
        .filter(move |l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') && rest.contains(label))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// A `kB` field of `/proc/<pid>/status` (0 once the process is gone).
/// A `/proc/PID/status` field in KiB (0 when the process or the field is gone).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|l| {
                l.strip_prefix(field)?
                    .strip_prefix(':')?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

/// The processes whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // The parent is the second field after the command name, which is in parentheses
            // and may itself hold spaces.
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let after = stat.rsplit_once(')')?.1;
                    after.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_of(strata_rss_kib: impl Fn(u64) -> u64) -> Report {
        Report {
            samples: (0..9)
                .map(|i| Sample {
                    strata_rss_kib: strata_rss_kib(i),
                    postgres_private_kib: 100_000,
                    db_connections: 5,
                    ..Sample::default()
                })
                .collect(),
            ..Report::default()
        }
    }

    #[test]
    fn steady_growth_is_named_and_a_level_after_warm_up_is_not() {
        // 64 MiB more every sample: a leak.
        let leaking = run_of(|i| 100_000 + i * 65_536);
        assert_eq!(leaking.growing().len(), 1, "{:?}", leaking.growing());
        assert!(leaking.growing()[0].starts_with("strata RSS"));
        assert!(!leaking.clean());
        // Doubling during warm-up, then flat.
        let warmed = run_of(|i| if i < 3 { 50_000 * (i + 1) } else { 200_000 });
        assert!(warmed.growing().is_empty(), "{:?}", warmed.growing());
        // Jitter within the slack.
        let jittery = run_of(|i| 100_000 + (i % 2) * 8_000);
        assert!(jittery.growing().is_empty(), "{:?}", jittery.growing());
        // Too few samples: no verdict either way.
        let short = Report {
            samples: leaking.samples[..5].to_vec(),
            ..Report::default()
        };
        assert!(short.growing().is_empty());
    }
}
