//! One trace from the HTTP request to the webhook delivery: the command records its span in
//! the events' metadata, the projection batch that applies them and the job they cause
//! continue it, and the delivery carries it to the receiver. Exported over OTLP/HTTP to a
//! receiver this test runs, decoded with the OTLP protobuf types.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::json;
use tests::receiver::WebhookReceiver;
use tests::{TestDb, test_settings};
use tokio_util::sync::CancellationToken;

/// A span as exported.
#[derive(Clone, Debug)]
struct Span {
    name: String,
    trace: String,
    id: String,
    parent: String,
    attributes: HashMap<String, String>,
}

type Spans = Arc<Mutex<Vec<Span>>>;

async fn collect(
    State(spans): State<Spans>,
    body: Bytes,
) -> ([(&'static str, &'static str); 1], Vec<u8>) {
    let request = ExportTraceServiceRequest::decode(body).unwrap();
    let mut got = spans.lock().unwrap();
    for resource in request.resource_spans {
        for scope in resource.scope_spans {
            for s in scope.spans {
                let attributes = s
                    .attributes
                    .into_iter()
                    .map(|kv| {
                        let value = match kv.value.and_then(|v| v.value) {
                            Some(AnyValue::StringValue(v)) => v,
                            Some(AnyValue::IntValue(v)) => v.to_string(),
                            Some(other) => format!("{other:?}"),
                            None => String::new(),
                        };
                        (kv.key, value)
                    })
                    .collect();
                got.push(Span {
                    name: s.name,
                    trace: hex::encode(s.trace_id),
                    id: hex::encode(s.span_id),
                    parent: hex::encode(s.parent_span_id),
                    attributes,
                });
            }
        }
    }
    ([("content-type", "application/x-protobuf")], Vec::new())
}

#[tokio::test]
async fn a_version_create_is_one_trace_from_the_request_to_the_webhook_delivery() {
    let spans: Spans = Arc::default();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let collector = Router::new()
        .route("/v1/traces", post(collect))
        .with_state(spans.clone());
    tokio::spawn(async move { axum::serve(listener, collector).await });

    let db = TestDb::new().await;
    let settings = command_service::config::Settings {
        otlp_endpoint: Some(format!("http://127.0.0.1:{port}/v1/traces")),
        log_level: "info".into(),
        webhook_allow_private_targets: true,
        ..test_settings(&db)
    };
    // This test runs in a process of its own (nextest), so it may install the global exporter.
    let telemetry = command_service::telemetry::init(&settings).unwrap();
    let (app, stack) = tests::spawn_stack(&db, settings.clone()).await;
    let runner = command_service::app::job_runner(&settings, db.pool.clone()).unwrap();
    let stop = CancellationToken::new();
    let worker = tokio::spawn(runner.run(stop.clone()));
    let receiver = WebhookReceiver::start().await;

    let token = tests::register(&app.base_url, "tracer@example.com").await;
    let (project, model) = app.project_with_model(&token, "traced").await;
    app.gql_data(
        &token,
        "mutation($w: WebhookCreateInput!) { webhookCreate(webhook: $w) }",
        json!({"w": {"streamId": project, "url": receiver.url, "triggers": ["commit_create"]}}),
    )
    .await;
    app.version_on(&token, (&project, &model), tests::OBJECT, json!({}))
        .await;
    let delivered = receiver.wait_for(1, Duration::from_secs(30)).await;
    let traceparent = delivered[0].header("traceparent").to_owned();
    // The worker finishes its job (closing its spans) before it stops; then every span is
    // flushed to the collector.
    stop.cancel();
    worker.await.unwrap();
    drop(stack);
    tokio::task::spawn_blocking(move || drop(telemetry))
        .await
        .unwrap();

    let spans = spans.lock().unwrap().clone();
    let by_id: HashMap<&str, &Span> = spans.iter().map(|s| (s.id.as_str(), s)).collect();
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent:?}");
    let (trace, delivery_span) = (parts[1], parts[2]);
    let parent_of = |s: &Span| -> &Span {
        by_id
            .get(s.parent.as_str())
            .copied()
            .unwrap_or_else(|| panic!("the parent of {s:?} was not exported"))
    };

    // The receiver was told the delivery's own span; it sits in a job span of the delivery.
    let post = by_id[delivery_span];
    assert_eq!(post.name, "webhook.post");
    assert_eq!(post.trace, trace);
    let job = parent_of(post);
    assert_eq!(job.name, "job", "{job:?}");
    assert_eq!(job.attributes["kind"], "webhook.deliver");
    // The job's parent is the command that appended the version's event…
    let command = parent_of(job);
    assert_eq!(command.name, "command", "{command:?}");
    assert_eq!(command.attributes["stream"], format!("project:{project}"));
    assert_eq!(command.trace, trace);
    // …which ran inside the HTTP request.
    let mut top = command;
    while !top.parent.is_empty() && top.parent != "0000000000000000" {
        top = parent_of(top);
        assert_eq!(top.trace, trace);
    }
    assert_eq!(top.name, "http", "{top:?}");
    assert!(top.attributes["uri"].contains("/graphql"), "{top:?}");
    // Each read model that applied the event did so as a child of the same command.
    for projection in ["speckle", "webhooks"] {
        let applied = spans
            .iter()
            .find(|s| {
                s.name == "projection.apply"
                    && s.attributes["projection"] == projection
                    && s.attributes["event_type"] == "VersionCreated"
            })
            .unwrap_or_else(|| panic!("no {projection} span: {spans:#?}"));
        assert_eq!(applied.parent, command.id, "{applied:?}");
        assert_eq!(applied.trace, trace);
    }
}
