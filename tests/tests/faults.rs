//! The fault suite, short: every fault of `tests::faults` with 2-second outages under a small
//! load, and the checker's verdict (nothing acknowledged lost, nothing done twice, every failure
//! clear, recovery without a hand, read models equal to a fresh fold). The long outages and
//! the table for the notes: `bench faults` (README).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tests::faults::{self, Fault};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} (deploy/dev test sets it)"))
}

/// The suite on this test run's services: 2-second outages under 2 clients.
fn config(faults: Vec<Fault>) -> faults::Config {
    tests::init();
    faults::Config {
        strata: tests::strata_binary(),
        faults,
        outage: Duration::from_secs(2),
        clients: 2,
        ops_around: 6,
        hang_bound: Duration::from_secs(20),
        recover_bound: Duration::from_secs(60),
        s3: faults::S3 {
            endpoint: env("STRATA_TEST_S3_ENDPOINT"),
            access_key: env("STRATA_TEST_S3_ACCESS_KEY_ID"),
            secret_key: env("STRATA_TEST_S3_SECRET_ACCESS_KEY"),
            bucket: std::env::var("STRATA_TEST_S3_BUCKET").unwrap_or_else(|_| "strata".into()),
        },
        smtp: format!(
            "{}:{}",
            tests::mailbox::smtp_host(),
            tests::mailbox::smtp_port()
        ),
        mail_api: env("STRATA_TEST_MAIL_API_URL"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_every_fault_nothing_acknowledged_is_lost_or_done_twice() {
    let config = config(Fault::ALL.to_vec());
    let report = faults::run(&config).await;
    eprintln!("{}", report.table());
    assert!(report.clean(), "{}", report.table());
    let row = |f: Fault| {
        report
            .rows
            .iter()
            .find(|r| r.fault == f.name())
            .unwrap()
            .clone()
    };
    // The faults bit: requests failed (clearly) while the database, the file store or the
    // server itself was gone, and readiness named what was down.
    for f in [
        Fault::PostgresStop,
        Fault::PostgresKill,
        Fault::S3Stop,
        Fault::StrataKill,
        Fault::Overlapping,
    ] {
        assert!(!row(f).failed_clear.is_empty(), "{} was not felt", f.name());
    }
    assert!(row(Fault::PostgresStop).readiness.contains("postgres"));
    assert!(row(Fault::RedisStop).readiness.contains("redis"));
    assert!(row(Fault::StrataKill).readiness.starts_with("no answer"));
    // Each phase acknowledged work before and after its fault, and its live subscriber
    // heard a model created after the fault (`clean` holds it to missing none while open).
    for r in &report.rows {
        assert!(r.acknowledged >= 12, "{}: {}", r.fault, r.acknowledged);
        assert!(r.subscription_back_in.is_some(), "{}: {r:?}", r.fault);
    }
    // Killing the server cut the subscriber's connection, and it connected again.
    assert!(
        row(Fault::StrataKill)
            .subscription_connections
            .values()
            .sum::<usize>()
            >= 2,
        "{:?}",
        row(Fault::StrataKill).subscription_connections
    );
}

/// The soak's machinery, briefly: every sample reads every process and gauge, the load
/// moves the log, and the checker finds the whole history intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_samples_every_process_and_loses_nothing() {
    let options = faults::soak::Options {
        duration: Duration::from_secs(10),
        every: Duration::from_secs(2),
        pause: Duration::from_millis(100),
    };
    let report = faults::soak::soak(&config(Vec::new()), &options).await;
    eprintln!("{}", report.table());
    assert_eq!(report.samples.len(), 5, "{}", report.table());
    for s in &report.samples {
        assert!(s.requests > 0, "{s:?}");
        assert!(s.p99 >= s.p50, "{s:?}");
        assert!(s.strata_rss_kib > 0 && s.redis_rss_kib > 0, "{s:?}");
        // The postmaster and at least its background processes and strata's sessions.
        assert!(
            s.postgres_processes > 3 && s.postgres_private_kib > 0,
            "{s:?}"
        );
        assert!(s.db_connections > 0 && s.redis_clients > 0, "{s:?}");
    }
    let (first, last) = (&report.samples[0], &report.samples[4]);
    assert!(last.events > first.events, "the load appended nothing");
    assert!(report.row.acknowledged > 0);
    // The live subscriber heard the creates (and `clean` holds it to missing none).
    assert!(report.row.subscription_heard > 0, "{}", report.table());
    assert!(report.row.clean(), "{}", report.table());
    assert!(
        report.rebuild_differences.values().all(|d| *d == 0),
        "{}",
        report.table()
    );
}
