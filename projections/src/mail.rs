//! The `mail` projection: which addresses are verified, which mails were asked for, and the
//! outbox of transactional mail. Each `UserEmailVerificationRequested` or
//! `UserPasswordResetRequested` event enqueues one `email.send` job keyed by its request id,
//! in the same transaction as the checkpoint, so a requested mail is never lost by the
//! projector nor queued twice (a rebuild enqueues nothing: history's mail went out already).
//!
//! The events carry no secret: the code or link a mail contains lives in the credential store
//! (`email_tokens`) under the request id, where the worker finds it.

use domain::user::UserEvent;
use futures::FutureExt;
use schema::RecordedEvent;
use schema::jobs::NewJob;

use crate::projection::{Applied, Batch, Projection, TableDef, sql};

/// The projection.
pub struct MailProjection;

/// Its name, for `wait_for`.
pub const NAME: &str = "mail";

/// The job kind of one transactional mail.
pub const SEND_JOB: &str = "email.send";

/// Attempts one mail gets before it is given up (with the runner's backoff, about a day).
pub const MAX_SEND_ATTEMPTS: i32 = 20;

const TABLES: &[TableDef] = &[
    TableDef {
        name: "email_verifications",
        create: "CREATE TABLE {table} (
            user_id text PRIMARY KEY, email text NOT NULL, verified_at timestamptz NOT NULL)",
        indexes: &[],
    },
    TableDef {
        name: "mail_requests",
        create: "CREATE TABLE {table} (
            request_id text PRIMARY KEY, user_id text NOT NULL, kind text NOT NULL,
            email text NOT NULL, requested_at timestamptz NOT NULL)",
        indexes: &["CREATE INDEX {table}_user ON {table} (user_id, kind, requested_at)"],
    },
];

/// What a mail request asks for; the worker picks the template by it.
pub fn kind_of(event: &UserEvent) -> Option<&'static str> {
    match event {
        UserEvent::UserEmailVerificationRequested { .. } => Some("verify_email"),
        UserEvent::UserPasswordResetRequested { .. } => Some("password_reset"),
        _ => None,
    }
}

impl Projection for MailProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [TableDef] {
        TABLES
    }

    /// 2: a deleted user takes their mail requests (recipient addresses) with them.
    fn version(&self) -> u32 {
        2
    }

    fn categories(&self) -> Option<&'static [&'static str]> {
        Some(&[domain::user::STREAM_CATEGORY])
    }

    fn apply<'a>(&'a self, batch: &'a mut Batch<'_>, events: &'a [RecordedEvent]) -> Applied<'a> {
        async move {
            let verifications = batch.table("email_verifications");
            let requests = batch.table("mail_requests");
            for e in events {
                if e.stream_id.split_once(':').map(|(c, _)| c)
                    != Some(domain::user::STREAM_CATEGORY)
                {
                    continue;
                }
                let event = crate::projection::user_event(e)?;
                match &event {
                    UserEvent::UserEmailVerificationRequested {
                        user_id,
                        email,
                        request_id,
                    }
                    | UserEvent::UserPasswordResetRequested {
                        user_id,
                        email,
                        request_id,
                    } => {
                        let kind = kind_of(&event).unwrap_or_default();
                        sqlx::query(sql(format!(
                            "INSERT INTO {requests} (request_id, user_id, kind, email, requested_at) \
                             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"
                        )))
                        .bind(request_id)
                        .bind(user_id)
                        .bind(kind)
                        .bind(email)
                        .bind(e.recorded_at)
                        .execute(&mut *batch.conn)
                        .await?;
                        batch
                            .enqueue(&NewJob {
                                kind: SEND_JOB.into(),
                                payload: serde_json::json!({
                                    "requestId": request_id,
                                    "kind": kind,
                                }),
                                dedupe_key: Some(format!("email:{request_id}")),
                                max_attempts: MAX_SEND_ATTEMPTS,
                                source_position: Some(e.cursor.position),
                                ordering_key: None,
                                run_at: None,
                            })
                            .await?;
                    }
                    UserEvent::UserEmailVerified { user_id, email } => {
                        sqlx::query(sql(format!(
                            "INSERT INTO {verifications} (user_id, email, verified_at) VALUES ($1, $2, $3) \
                             ON CONFLICT (user_id) DO UPDATE SET email = EXCLUDED.email, verified_at = EXCLUDED.verified_at"
                        )))
                        .bind(user_id)
                        .bind(email)
                        .bind(e.recorded_at)
                        .execute(&mut *batch.conn)
                        .await?;
                    }
                    UserEvent::UserDeleted { user_id } => {
                        sqlx::query(sql(format!("DELETE FROM {verifications} WHERE user_id = $1")))
                            .bind(user_id)
                            .execute(&mut *batch.conn)
                            .await?;
                        sqlx::query(sql(format!("DELETE FROM {requests} WHERE user_id = $1")))
                            .bind(user_id)
                            .execute(&mut *batch.conn)
                            .await?;
                    }
                    _ => {}
                }
            }
            Ok(())
        }
        .boxed()
    }
}
