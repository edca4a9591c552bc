//! The account flows that go through the user's mailbox: email verification by a six-digit
//! code and password reset by a link. Each stores its secret in the credential store
//! (`email_tokens`: a keyed digest, plus the plain value until the mail is sent) and records
//! the request as a user event; the mail projection turns that event into a mail job, so the
//! request is answered without waiting for SMTP, and no mail is lost when a worker dies.

use rand::Rng;

use super::*;

/// What the user is told whenever a verification code does not check out; one message for
/// every cause, so guessing learns nothing.
const BAD_CODE: &str = "The verification code is not valid, or it has expired. Request a new one.";

/// The same for reset links.
const BAD_RESET: &str = "Invalid reset token, it may be expired.";

impl Accounts {
    /// Turns on the mail flows (an SMTP host is configured), with their lifetimes.
    pub fn with_mail(
        mut self,
        enabled: bool,
        verification_code_ttl: Duration,
        password_reset_ttl: Duration,
    ) -> Self {
        self.email_enabled = enabled;
        self.limits.verification_code_ttl = verification_code_ttl;
        self.limits.password_reset_ttl = password_reset_ttl;
        self
    }

    fn require_mail(&self) -> Result<(), AccountError> {
        if self.email_enabled {
            Ok(())
        } else {
            Err(AccountError::Invalid(
                "Email is not enabled on this server.".to_owned(),
            ))
        }
    }

    async fn email_of(&self, user_id: &str) -> Result<Option<String>, AccountError> {
        Ok(
            sqlx::query_scalar("SELECT email FROM user_emails WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn user_of_email(&self, email: &str) -> Result<Option<(String, String)>, AccountError> {
        let email = email.trim().to_lowercase();
        Ok(
            sqlx::query_as("SELECT user_id, email FROM user_emails WHERE email = $1")
                .bind(&email)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Stores a new secret for `purpose`, retiring the user's earlier unused ones (only the
    /// newest code or link works). Returns the row id.
    async fn store_mail_secret(&self, mail: &MailSecret<'_>) -> Result<String, AccountError> {
        let MailSecret {
            purpose,
            user_id,
            email,
            secret,
            ttl,
        } = *mail;
        let id = new_id();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE email_tokens SET used_at = now() WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL",
        )
        .bind(user_id)
        .bind(purpose)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO email_tokens (id, purpose, user_id, email, digest, secret, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))",
        )
        .bind(&id)
        .bind(purpose)
        .bind(user_id)
        .bind(email)
        .bind(self.digest(secret)?)
        .bind(secret)
        .bind(ttl.as_secs_f64())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn forget_mail_secret(&self, id: &str) -> Result<(), AccountError> {
        sqlx::query("DELETE FROM email_tokens WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Mails `user_id` a new verification code (`requestVerification`). Refused when the
    /// address is verified already.
    pub async fn request_email_verification(
        &self,
        user_id: &str,
        metadata: &EventMetadata,
    ) -> Result<(), AccountError> {
        self.require_mail()?;
        let email = self
            .email_of(user_id)
            .await?
            .ok_or_else(|| AccountError::Invalid("The user has no email address.".to_owned()))?;
        let code = format!("{:06}", rand::rng().random_range(0..1_000_000u32));
        let mail = MailSecret {
            purpose: "verify_email",
            user_id,
            email: &email,
            secret: &code,
            ttl: self.limits.verification_code_ttl,
        };
        self.request_mail(mail, metadata, |request_id| {
            UserCommand::RequestEmailVerification { request_id }
        })
        .await
    }

    /// Stores `secret` and records the request with the command `record` makes from its id;
    /// a refused command takes the stored secret back, so nothing is left half-written.
    async fn request_mail(
        &self,
        mail: MailSecret<'_>,
        metadata: &EventMetadata,
        record: impl Fn(String) -> UserCommand + Send + Sync,
    ) -> Result<(), AccountError> {
        let user_id = mail.user_id;
        let id = self.store_mail_secret(&mail).await?;
        let result = self
            .bus
            .execute::<UserAggregate, _>(user_id, metadata, |_| Ok(record(id.clone())))
            .await;
        if let Err(e) = result {
            if !matches!(e, CommandError::Lag(_)) {
                self.forget_mail_secret(&id).await?;
            }
            return Err(e.into());
        }
        Ok(())
    }

    /// `requestVerificationByEmail`: the same for the account that owns `email`. An address
    /// nobody owns gets the same answer, so the call cannot be used to probe for accounts.
    pub async fn request_email_verification_by_email(
        &self,
        email: &str,
        metadata: &EventMetadata,
    ) -> Result<(), AccountError> {
        self.require_mail()?;
        match self.user_of_email(email).await? {
            Some((user_id, _)) => {
                match self.request_email_verification(&user_id, metadata).await {
                    // Saying "already verified" would tell a stranger the account exists.
                    Err(AccountError::Command(CommandError::Domain(_))) => Ok(()),
                    other => other,
                }
            }
            None => Ok(()),
        }
    }

    /// Checks `code` against `user_id`'s newest code for `email` and records the address as
    /// verified. A code works once, within its lifetime, and survives only a few wrong
    /// guesses.
    pub async fn verify_email(
        &self,
        user_id: &str,
        email: &str,
        code: &str,
        metadata: &EventMetadata,
    ) -> Result<(), AccountError> {
        let bad = || AccountError::Invalid(BAD_CODE.to_owned());
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT id, email, digest, attempts, expires_at > now() AS live FROM email_tokens \
             WHERE user_id = $1 AND purpose = 'verify_email' AND used_at IS NULL \
             ORDER BY created_at DESC LIMIT 1 FOR UPDATE",
        )
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(bad)?;
        let id: String = row.try_get("id")?;
        let stored_email: String = row.try_get("email")?;
        let digest: Vec<u8> = row.try_get("digest")?;
        let attempts: i32 = row.try_get("attempts")?;
        let live: bool = row.try_get("live")?;
        if !live
            || attempts >= self.limits.verification_code_attempts
            || stored_email != email.trim().to_lowercase()
        {
            return Err(bad());
        }
        if !self.verify_digest(code.trim(), &digest) {
            sqlx::query("UPDATE email_tokens SET attempts = attempts + 1 WHERE id = $1")
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Err(bad());
        }
        sqlx::query("UPDATE email_tokens SET used_at = now(), secret = NULL WHERE id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.bus
            .execute::<UserAggregate, _>(user_id, metadata, |_| Ok(UserCommand::MarkEmailVerified))
            .await?;
        Ok(())
    }

    /// `POST /auth/pwdreset/request`: mails a reset link to the account owning `email`. An
    /// unknown address gets the same answer (the original says "No user with that e-mail
    /// address found", which lets anyone test for accounts).
    pub async fn request_password_reset(
        &self,
        email: &str,
        metadata: &EventMetadata,
    ) -> Result<(), AccountError> {
        self.require_mail()?;
        if email.trim().is_empty() {
            return Err(AccountError::Invalid("E-mail address is empty".to_owned()));
        }
        let Some((user_id, email)) = self.user_of_email(email).await? else {
            return Ok(());
        };
        let secret = random_hex(16);
        let mail = MailSecret {
            purpose: "password_reset",
            user_id: &user_id,
            email: &email,
            secret: &secret,
            ttl: self.limits.password_reset_ttl,
        };
        self.request_mail(mail, metadata, |request_id| {
            UserCommand::RequestPasswordReset { request_id }
        })
        .await
    }

    /// `POST /auth/pwdreset/finalize`: sets `password` for the account the reset `token`
    /// (the link's `t`, 42 hex characters) was made for. The token then stops working, and so
    /// does every token and refresh token of the account, on every replica at once.
    pub async fn finalize_password_reset(
        &self,
        token: &str,
        password: &str,
        metadata: &EventMetadata,
    ) -> Result<(), AccountError> {
        let bad = || AccountError::Invalid(BAD_RESET.to_owned());
        let (id, secret) = split_token(token).ok_or_else(bad)?;
        self.check_password(password)?;
        let hash = hash_password(password.to_owned()).await?;
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT user_id, digest FROM email_tokens WHERE id = $1 AND purpose = 'password_reset' \
             AND used_at IS NULL AND expires_at > now() FOR UPDATE",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(bad)?;
        let user_id: String = row.try_get("user_id")?;
        let digest: Vec<u8> = row.try_get("digest")?;
        if !self.verify_digest(secret, &digest) {
            return Err(bad());
        }
        sqlx::query(
            "UPDATE user_passwords SET password_hash = $2, updated_at = now() WHERE user_id = $1",
        )
        .bind(&user_id)
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE email_tokens SET used_at = now(), secret = NULL \
             WHERE user_id = $1 AND purpose = 'password_reset' AND used_at IS NULL",
        )
        .bind(&user_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE api_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind(&user_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE refresh_tokens SET used_at = now() WHERE user_id = $1 AND used_at IS NULL",
        )
        .bind(&user_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM auth_access_codes WHERE user_id = $1")
            .bind(&user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.invalidate_tokens().await;
        let request_id = id.to_owned();
        self.bus
            .execute::<UserAggregate, _>(&user_id, metadata, |_| {
                Ok(UserCommand::RecordPasswordReset {
                    request_id: request_id.clone(),
                })
            })
            .await?;
        Ok(())
    }

    /// Whether `user_id` has an unused, unexpired verification code (`hasPendingVerification`).
    pub async fn has_pending_verification(&self, user_id: &str) -> Result<bool, AccountError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM email_tokens WHERE user_id = $1 AND purpose = 'verify_email' \
             AND used_at IS NULL AND expires_at > now())",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?)
    }
}

/// A secret to mail: a verification code or a reset link's token, for one purpose, address and
/// lifetime.
#[derive(Clone, Copy)]
struct MailSecret<'a> {
    purpose: &'a str,
    user_id: &'a str,
    email: &'a str,
    secret: &'a str,
    ttl: Duration,
}
