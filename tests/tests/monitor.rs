//! The database monitor on `/metrics`: every gauge present, and the ones a write changes move.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use tests::{TestDb, test_settings};

/// The value of the sample `name{labels}` in a Prometheus text exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test]
async fn database_gauges_are_exported_and_move() {
    let db = TestDb::new().await;
    let (app, _stack) = tests::spawn_stack(&db, test_settings(&db)).await;
    let before = app.get("/metrics").await.text().await.unwrap();
    for series in [
        "strata_db_table_bytes{table=\"events\"}",
        "strata_db_table_rows{table=\"events\"}",
        "strata_db_table_bytes{table=\"objects\"}",
        "strata_db_table_bytes{table=\"jobs\"}",
        "strata_db{measure=\"longest_transaction_seconds\"}",
        "strata_db{measure=\"replication_lag_seconds\"}",
        "strata_db{measure=\"events_appended_per_second\"}",
        "strata_db{measure=\"webhook_failure_ratio_1h\"}",
        "strata_projection{measure=\"behind_events\",projection=\"speckle\"}",
    ] {
        assert!(
            sample(&before, series).is_some(),
            "{series} missing:\n{before}"
        );
    }
    assert!(
        before
            .lines()
            .any(|l| l.starts_with("strata_db_connections{state=")),
        "{before}"
    );
    assert_eq!(
        sample(&before, "strata_db{measure=\"events_appended_per_second\"}"),
        Some(0.0)
    );
    assert!(
        sample(
            &before,
            "strata_jobs{kind=\"preview.render\",measure=\"queued\"}"
        )
        .is_none()
    );

    // A project with a version: events appended, a preview job queued (no worker runs here).
    let token = tests::register(&app.base_url, "monitor@example.com").await;
    let (project, model) = app.project_with_model(&token, "main").await;
    app.version_on(&token, (&project, &model), tests::OBJECT, json!({}))
        .await;
    let after = app.get("/metrics").await.text().await.unwrap();
    assert!(
        sample(&after, "strata_db{measure=\"events_appended_per_second\"}").unwrap() > 0.0,
        "{after}"
    );
    // The command bus keeps the project's and the user's states, weighed against its budget.
    let cache = |measure: &str| {
        sample(
            &after,
            &format!("strata_command_state_cache{{measure=\"{measure}\"}}"),
        )
        .unwrap_or_else(|| panic!("{measure} missing:\n{after}"))
    };
    assert!(cache("streams") >= 1.0, "{after}");
    assert!(cache("bytes") >= 512.0, "{after}");
    assert!(cache("bytes") <= cache("budget_bytes"), "{after}");
    assert_eq!(
        cache("budget_bytes"),
        test_settings(&db).command_state_cache_bytes as f64
    );
    assert_eq!(
        sample(
            &after,
            "strata_jobs{kind=\"preview.render\",measure=\"queued\"}"
        ),
        Some(1.0),
        "{after}"
    );
    assert!(
        sample(
            &after,
            "strata_jobs{kind=\"preview.render\",measure=\"oldest_queued_seconds\"}"
        )
        .unwrap()
            >= 0.0
    );
}
