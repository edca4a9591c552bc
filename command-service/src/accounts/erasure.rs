//! Deleting an account and erasing the person (`userDelete`, `adminDeleteUser`).
//!
//! As the original's user deletion: the last admin cannot go; every project the person alone
//! owns is deleted (its other members with it); from the others they are removed; invites
//! addressed to them are cancelled; then the account is deleted. Each step is a command, so the
//! log says what happened and why. Then the person is erased: their credentials go from the
//! credential store and their data keys are destroyed ([`schema::personal::forget`]), so every
//! personal field the log holds about them (sealed on append) reads as erased from then on, in
//! read models, replays, history, exports and rebuilds alike, while chains and seals still
//! verify. Copies outside the log that carried their data (frozen webhook bodies, as-of
//! snapshots) are scrubbed in the same transaction.

use domain::ProjectState;
use domain::project::ProjectCommand;
use projections::speckle::query;

use super::*;
use crate::commands::ProjectAggregate;

/// What a deletion did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deletion {
    /// Projects deleted because the person was their only owner.
    pub projects_deleted: Vec<String>,
    /// Projects the person was removed from.
    pub memberships_ended: Vec<String>,
    /// Invites to them that were cancelled.
    pub invites_cancelled: usize,
    /// Data keys destroyed.
    pub keys_destroyed: u64,
}

impl Accounts {
    /// The account holding `email`, if any (the credential store's claim on the address).
    pub async fn user_id_by_email(&self, email: &str) -> Result<Option<String>, AccountError> {
        Ok(
            sqlx::query_scalar("SELECT user_id FROM user_emails WHERE email = $1")
                .bind(email.trim().to_lowercase())
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Whether `password` is `user_id`'s password.
    pub async fn check_user_password(
        &self,
        user_id: &str,
        password: &str,
    ) -> Result<bool, AccountError> {
        let hash: Option<String> =
            sqlx::query_scalar("SELECT password_hash FROM user_passwords WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
        match hash {
            Some(hash) => verify_password(password.to_owned(), hash).await,
            None => Ok(false),
        }
    }

    /// Deletes `user_id`'s account and erases their personal data (see the module docs).
    /// Refused for the server's last admin before anything changes.
    pub async fn delete_user(
        &self,
        user_id: &str,
        metadata: &EventMetadata,
    ) -> Result<Deletion, AccountError> {
        let user = self
            .bus
            .read::<UserAggregate, _>(user_id, |s| s.user().cloned())
            .await?
            .ok_or_else(|| AccountError::NotFound("User not found.".to_owned()))?;
        let admins: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE role = $1")
            .bind(ServerRole::Admin.as_str())
            .fetch_one(&self.pool)
            .await?;
        // count(*) is never negative; saturating keeps the last-admin check right.
        let admin_count = u32::try_from(admins).unwrap_or(u32::MAX);
        if user.server_role == ServerRole::Admin && admin_count <= 1 {
            return Err(CommandError::from(domain::DomainError::LastAdmin).into());
        }
        let mut done = Deletion::default();
        for project_id in query::member_project_ids(&self.pool, user_id).await? {
            let outcome = self
                .bus
                .execute::<ProjectAggregate, _>(&project_id, metadata, |state| match state {
                    ProjectState::Active(p) => p.on_account_deleted(user_id).ok_or_else(|| {
                        domain::DomainError::not_found(domain::Entity::Member, user_id).into()
                    }),
                    _ => Err(domain::DomainError::not_found(domain::Entity::Project, "").into()),
                })
                .await;
            match outcome {
                Ok(o) if o.events.iter().any(|e| e.event_type() == "ProjectDeleted") => {
                    done.projects_deleted.push(project_id);
                }
                Ok(_) => done.memberships_ended.push(project_id),
                // Gone or left meanwhile: nothing of theirs is left there.
                Err(CommandError::Domain(
                    domain::DomainError::NotFound { .. } | domain::DomainError::Deleted(_),
                )) => {}
                Err(e) => return Err(e.into()),
            }
        }
        for invite in query::invites_addressed_to(&self.pool, user_id, &user.email).await? {
            let invite_id = invite.id.clone();
            let outcome = self
                .bus
                .execute::<ProjectAggregate, _>(&invite.project_id, metadata, |_| {
                    Ok(ProjectCommand::CancelInvite {
                        invite_id: invite_id.clone(),
                    })
                })
                .await;
            match outcome {
                Ok(_) => done.invites_cancelled += 1,
                Err(CommandError::Domain(
                    domain::DomainError::NotFound { .. } | domain::DomainError::Deleted(_),
                )) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.bus
            .execute::<UserAggregate, _>(user_id, metadata, |_| {
                Ok(UserCommand::Delete { admin_count })
            })
            .await?;
        done.keys_destroyed = self.erase(user_id, &user.email).await?;
        self.invalidate_tokens().await;
        Ok(done)
    }

    /// Erases what is kept of a deleted person outside the log, and destroys their data keys,
    /// in one transaction. Idempotent.
    async fn erase(&self, user_id: &str, email: &str) -> Result<u64, AccountError> {
        let mut tx = self.pool.begin().await?;
        for table in [
            "user_emails",
            "user_passwords",
            "api_tokens",
            "auth_access_codes",
            "refresh_tokens",
            "email_tokens",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE user_id = $1"
            )))
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        }
        let keys = schema::personal::forget(
            &mut tx,
            &[
                schema::personal::subject_key(&domain::personal::Subject::User(user_id.to_owned())),
                schema::personal::email_subject(email),
            ],
        )
        .await?;
        schema::personal::scrub_copies(&mut tx, user_id, email).await?;
        tx.commit().await?;
        Ok(keys)
    }
}
