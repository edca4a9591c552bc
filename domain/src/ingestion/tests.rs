//! The ingestion lifecycle, transition by transition, as specklepy's integration tests expect
//! it from the original (see `shared/speckle-ingestion-wire.md` §2.6).

use super::*;

const ID: &str = "1111111111";
const PROJECT: &str = "2222222222";
const MODEL: &str = "3333333333";
const USER: &str = "4444444444";
const VERSION: &str = "5555555555";

fn source() -> SourceData {
    SourceData {
        source_application_slug: "pytest".into(),
        source_application_version: "0.0.0".into(),
        file_name: None,
        file_size_bytes: None,
    }
}

fn create(queued: bool) -> IngestionCommand {
    IngestionCommand::Create {
        ingestion_id: ID.into(),
        project_id: PROJECT.into(),
        model_id: MODEL.into(),
        user_id: USER.into(),
        version_id: VERSION.into(),
        queued,
        progress_message: "starting".into(),
        source: source(),
        max_idle_timeout_seconds: 600,
        file: None,
    }
}

/// Runs `commands` from nothing, folding each outcome; returns the state and every answer.
fn run(
    commands: Vec<IngestionCommand>,
) -> (
    IngestionState,
    Vec<Result<Vec<IngestionEvent>, DomainError>>,
) {
    let mut state = IngestionState::default();
    let mut answers = Vec::new();
    for c in commands {
        let answer = decide(&state, c);
        if let Ok(events) = &answer {
            for e in events {
                state = evolve(state, e);
            }
        }
        answers.push(answer);
    }
    (state, answers)
}

fn ingestion(state: &IngestionState) -> &Ingestion {
    match state {
        IngestionState::Active(i) => i,
        IngestionState::Initial => panic!("not created"),
    }
}

fn upload() -> IngestionCommand {
    IngestionCommand::AcceptUpload {
        root_object_id: bundle_reference(PROJECT, MODEL, VERSION),
        total_children_count: 1,
        message: None,
        files: vec![UploadedFile {
            name: format!("{VERSION}.eav.objects.parquet"),
            etag: "\"abc\"".into(),
        }],
    }
}

fn progress(message: &str) -> IngestionCommand {
    IngestionCommand::UpdateProgress {
        progress_message: message.into(),
        progress: Some(0.5),
    }
}

#[test]
fn create_is_processing_or_queued_with_the_reserved_version() {
    for (queued, status) in [
        (false, IngestionStatus::Processing),
        (true, IngestionStatus::Queued),
    ] {
        let (state, answers) = run(vec![create(queued)]);
        assert!(answers[0].is_ok());
        let i = ingestion(&state);
        assert_eq!(i.status, status);
        assert_eq!(i.version_id, VERSION);
        assert!(!i.cancellation_requested);
        assert_eq!(i.events, 1);
    }
}

#[test]
fn queued_and_processing_cycle_without_limit() {
    let (state, answers) = run(vec![
        create(false),
        IngestionCommand::Requeue {
            progress_message: "back".into(),
        },
        IngestionCommand::StartProcessing {
            progress_message: "again".into(),
            source: source(),
        },
        IngestionCommand::Requeue {
            progress_message: "back".into(),
        },
    ]);
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    assert_eq!(ingestion(&state).status, IngestionStatus::Queued);
}

#[test]
fn cancellation_is_a_flag_then_cancel_is_idempotent() {
    let (state, answers) = run(vec![
        create(false),
        IngestionCommand::RequestCancellation { message: None },
        IngestionCommand::RequestCancellation { message: None },
        progress("still going"),
        IngestionCommand::FailWithCancel {
            message: Some("stopped".into()),
        },
        IngestionCommand::FailWithCancel { message: None },
    ]);
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    assert_eq!(
        answers[2].as_ref().map(Vec::len).ok(),
        Some(0),
        "flag set once"
    );
    assert_eq!(
        answers[5].as_ref().map(Vec::len).ok(),
        Some(0),
        "repeat cancel"
    );
    let i = ingestion(&state);
    assert_eq!(i.status, IngestionStatus::Cancelled);
    assert!(i.cancellation_requested);
}

#[test]
fn finished_ingestions_refuse_reports() {
    for finish in [
        IngestionCommand::FailWithError {
            error_reason: "boom".into(),
            error_stacktrace: None,
        },
        IngestionCommand::FailWithCancel { message: None },
    ] {
        let (_, answers) = run(vec![
            create(false),
            finish,
            progress("late"),
            IngestionCommand::StartProcessing {
                progress_message: "late".into(),
                source: source(),
            },
            upload(),
        ]);
        assert!(answers[1].is_ok());
        for late in &answers[2..] {
            assert!(
                matches!(late, Err(DomainError::InvalidTransition { .. })),
                "{late:?}"
            );
        }
    }
}

#[test]
fn upload_then_success_and_repeats_change_nothing() {
    let (state, answers) = run(vec![
        create(false),
        upload(),
        upload(),
        progress("too late: the server owns it"),
        IngestionCommand::Succeed,
        IngestionCommand::Succeed,
        upload(),
        IngestionCommand::AcceptUpload {
            root_object_id: bundle_reference(PROJECT, MODEL, "6666666666"),
            total_children_count: 1,
            message: None,
            files: Vec::new(),
        },
    ]);
    assert!(answers[1].as_ref().is_ok_and(|e| e.len() == 1));
    assert!(answers[2].as_ref().is_ok_and(Vec::is_empty));
    assert!(matches!(
        answers[3],
        Err(DomainError::InvalidTransition {
            status: "completing",
            ..
        })
    ));
    assert!(answers[4].as_ref().is_ok_and(|e| e.len() == 1));
    assert!(answers[5].as_ref().is_ok_and(Vec::is_empty));
    assert!(
        answers[6].as_ref().is_ok_and(Vec::is_empty),
        "the same completion after success: a retry"
    );
    assert!(answers[7].is_err(), "another completion is refused");
    let i = ingestion(&state);
    assert_eq!(i.status, IngestionStatus::Success);
    assert_eq!(
        i.upload.as_ref().map(|u| u.root_object_id.clone()),
        Some(bundle_reference(PROJECT, MODEL, VERSION))
    );
}

#[test]
fn objects_are_recorded_once_after_success_only() {
    let built = || IngestionCommand::RecordObjects {
        outcome: Ok("root".into()),
    };
    let (_, answers) = run(vec![create(false), upload(), built()]);
    assert!(answers[2].is_err(), "not before success");
    let (state, answers) = run(vec![
        create(false),
        upload(),
        IngestionCommand::Succeed,
        IngestionCommand::RecordObjects {
            outcome: Err("malformed".into()),
        },
        built(),
    ]);
    assert!(answers[3].as_ref().is_ok_and(|e| e.len() == 1));
    assert!(
        answers[4].as_ref().is_ok_and(Vec::is_empty),
        "recorded once"
    );
    assert!(ingestion(&state).objects_recorded);
}

#[test]
fn success_needs_an_accepted_upload() {
    let (_, answers) = run(vec![create(false), IngestionCommand::Succeed]);
    assert!(matches!(
        answers[1],
        Err(DomainError::InvalidTransition { .. })
    ));
}

#[test]
fn the_idle_clock_fires_only_if_nothing_happened_since() {
    // Scheduled after event 1, but a report came: nothing.
    let (state, answers) = run(vec![
        create(false),
        progress("alive"),
        IngestionCommand::TimeOut { after_events: 1 },
    ]);
    assert!(answers[2].as_ref().is_ok_and(Vec::is_empty));
    assert_eq!(ingestion(&state).status, IngestionStatus::Processing);
    // Scheduled after the last event: fails, and asks the worker to stop.
    let (state, answers) = run(vec![
        create(false),
        progress("alive"),
        IngestionCommand::TimeOut { after_events: 2 },
        IngestionCommand::TimeOut { after_events: 2 },
    ]);
    assert!(answers[2].as_ref().is_ok_and(|e| e.len() == 1));
    assert!(answers[3].as_ref().is_ok_and(Vec::is_empty), "once");
    let i = ingestion(&state);
    assert_eq!(i.status, IngestionStatus::Failed);
    assert!(i.cancellation_requested);
    // Stopped once the upload is accepted.
    let (state, answers) = run(vec![
        create(false),
        upload(),
        IngestionCommand::TimeOut { after_events: 2 },
    ]);
    assert!(answers[2].as_ref().is_ok_and(Vec::is_empty));
    assert_eq!(ingestion(&state).status, IngestionStatus::Processing);
}

#[test]
fn bad_input_is_refused() {
    let mut bad_timeout = create(false);
    if let IngestionCommand::Create {
        max_idle_timeout_seconds,
        ..
    } = &mut bad_timeout
    {
        *max_idle_timeout_seconds = 0;
    }
    let (_, answers) = run(vec![bad_timeout]);
    assert!(matches!(
        answers[0],
        Err(DomainError::Invalid {
            field: "maxIdleTimeoutSeconds",
            ..
        })
    ));
    let (_, answers) = run(vec![
        create(false),
        IngestionCommand::UpdateProgress {
            progress_message: "x".into(),
            progress: Some(f64::NAN),
        },
        IngestionCommand::AcceptUpload {
            root_object_id: "r".into(),
            total_children_count: 0,
            message: None,
            files: vec![UploadedFile {
                name: "../escape".into(),
                etag: "\"e\"".into(),
            }],
        },
        create(false),
    ]);
    assert!(answers[1].is_err());
    assert!(answers[2].is_err());
    assert!(matches!(answers[3], Err(DomainError::AlreadyExists { .. })));
    let (_, answers) = run(vec![progress("before create")]);
    assert!(matches!(answers[0], Err(DomainError::NotFound { .. })));
}

#[test]
fn bare_names() {
    for good in ["a.parquet", "abc123def4.eav.objects.parquet", "x"] {
        assert!(is_bare_file_name(good), "{good}");
    }
    for bad in ["", ".", "..", "a/b", "a\\b", "c:d", "a\nb"] {
        assert!(!is_bare_file_name(bad), "{bad:?}");
    }
}

#[test]
fn every_event_round_trips_through_the_decoder() {
    let (_, answers) = run(vec![
        create(false),
        IngestionCommand::Requeue {
            progress_message: "q".into(),
        },
        IngestionCommand::StartProcessing {
            progress_message: "p".into(),
            source: source(),
        },
        progress("r"),
        IngestionCommand::RequestCancellation { message: None },
        upload(),
        IngestionCommand::Succeed,
        IngestionCommand::RecordObjects {
            outcome: Ok(bundle_reference(PROJECT, MODEL, VERSION)),
        },
    ]);
    let mut events: Vec<IngestionEvent> = answers
        .into_iter()
        .flat_map(|a| a.unwrap_or_default())
        .collect();
    events.push(IngestionEvent::IngestionFailed {
        ingestion_id: ID.into(),
        project_id: PROJECT.into(),
        error_reason: "r".into(),
        error_stacktrace: None,
        timed_out: true,
    });
    events.push(IngestionEvent::IngestionObjectsFailed {
        ingestion_id: ID.into(),
        project_id: PROJECT.into(),
        reason: "no objects table".into(),
    });
    events.push(IngestionEvent::IngestionCancelled {
        ingestion_id: ID.into(),
        project_id: PROJECT.into(),
        message: None,
    });
    let mut seen = std::collections::BTreeSet::new();
    for e in &events {
        let stored = e.to_new_event().map_err(|e| e.to_string());
        let Ok(stored) = stored else {
            panic!("{stored:?}");
        };
        seen.insert(stored.event_type.clone());
        let back = IngestionEvent::decode(
            &stored.event_type,
            stored.schema_version,
            stored.payload.clone(),
        );
        assert_eq!(back.ok().as_ref(), Some(e));
        assert_eq!(e.project_id(), PROJECT);
        assert_eq!(e.ingestion_id(), ID);
    }
    let all: std::collections::BTreeSet<String> = IngestionEvent::EVENT_TYPES
        .iter()
        .map(|t| (*t).to_owned())
        .collect();
    assert_eq!(seen, all, "every event type is exercised");
}
