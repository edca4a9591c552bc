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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_every_fault_nothing_acknowledged_is_lost_or_done_twice() {
    tests::init();
    let config = faults::Config {
        strata: tests::strata_binary(),
        faults: Fault::ALL.to_vec(),
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
    };
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
    // Each phase acknowledged work before and after its fault.
    for r in &report.rows {
        assert!(r.acknowledged >= 12, "{}: {}", r.fault, r.acknowledged);
    }
}
