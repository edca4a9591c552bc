//! Transactional mail: the `email.send` jobs the mail projection enqueues (account email
//! verification codes and password reset links), sent over SMTP with lettre.
//!
//! The secret a mail carries (the code, the link's token) waits in the credential store
//! (`email_tokens.secret`) until the mail is accepted by the SMTP server; then the row is
//! marked sent and the plain secret is erased, so only its keyed digest stays. A job that runs
//! again after that (a retry after a crash, a duplicate) finds the row sent and does nothing:
//! a mail is sent once unless the worker dies between the server's acceptance and the mark,
//! the one window SMTP leaves open. A failed send is retried with the runner's backoff.

use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use schema::jobs::ClaimedJob;
use sqlx::{PgPool, Row};

use crate::runner::{JobError, JobHandler};

/// The job kind this handles (the mail projection's `SEND_JOB`).
pub const KIND: &str = "email.send";

/// How the SMTP connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain SMTP (a local relay or a dev mail catcher).
    None,
    /// Upgrade with STARTTLS, required (the usual port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
}

impl std::str::FromStr for SmtpSecurity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Self::None),
            "starttls" => Ok(Self::StartTls),
            "tls" => Ok(Self::Tls),
            other => Err(format!("`{other}` is not one of none, starttls, tls")),
        }
    }
}

/// Mail settings; every value explicit and configurable.
#[derive(Clone, Debug)]
pub struct MailOptions {
    /// SMTP host.
    pub host: String,
    /// SMTP port.
    pub port: u16,
    /// How the connection is secured.
    pub security: SmtpSecurity,
    /// SMTP user and password, if the server wants them.
    pub credentials: Option<(String, String)>,
    /// Sender address.
    pub from: String,
    /// How long one SMTP exchange may take.
    pub timeout: Duration,
    /// The public origin links point at.
    pub public_url: String,
    /// The server's name in subjects and greetings.
    pub server_name: String,
    /// How long a verification code is valid, for the mail's text.
    pub verification_minutes: u64,
    /// How long a reset link is valid, for the mail's text.
    pub reset_minutes: u64,
}

/// Why the mailer could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MailSetupError {
    /// The sender is not an address.
    #[error("the sender address is not valid: {0}")]
    From(String),
    /// The transport could not be made (e.g. TLS setup).
    #[error("the SMTP transport: {0}")]
    Transport(String),
}

/// Sends `email.send` jobs.
pub struct Mailer {
    pool: PgPool,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    options: MailOptions,
}

impl Mailer {
    /// A mailer over `pool` with `options`.
    pub fn new(pool: PgPool, options: MailOptions) -> Result<Self, MailSetupError> {
        let from: Mailbox = options
            .from
            .parse()
            .map_err(|e: lettre::address::AddressError| MailSetupError::From(e.to_string()))?;
        let builder = match options.security {
            SmtpSecurity::None => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&options.host)
            }
            SmtpSecurity::StartTls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&options.host)
                    .map_err(|e| MailSetupError::Transport(e.to_string()))?
            }
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&options.host)
                .map_err(|e| MailSetupError::Transport(e.to_string()))?,
        };
        let mut builder = builder.port(options.port).timeout(Some(options.timeout));
        if let Some((user, password)) = &options.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Self {
            pool,
            transport: builder.build(),
            from,
            options,
        })
    }

    async fn send(&self, job: &ClaimedJob) -> Result<(), JobError> {
        let request_id = job
            .payload
            .get("requestId")
            .and_then(|v| v.as_str())
            .ok_or_else(|| JobError::permanent("the job has no requestId"))?;
        let row = sqlx::query(
            "SELECT purpose, email, secret, sent_at IS NOT NULL AS sent FROM email_tokens WHERE id = $1",
        )
        .bind(request_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| JobError::retry(e.to_string()))?
        .ok_or_else(|| JobError::permanent(format!("no stored mail request {request_id}")))?;
        let sent: bool = row.try_get("sent").map_err(db)?;
        let secret: Option<String> = row.try_get("secret").map_err(db)?;
        let Some(secret) = secret.filter(|_| !sent) else {
            return Ok(());
        };
        let purpose: String = row.try_get("purpose").map_err(db)?;
        let email: String = row.try_get("email").map_err(db)?;
        let to: Mailbox = email
            .parse()
            .map_err(|e: lettre::address::AddressError| JobError::permanent(e.to_string()))?;
        let content = match purpose.as_str() {
            "verify_email" => self.verification_mail(&secret),
            "password_reset" => self.reset_mail(request_id, &secret),
            other => return Err(JobError::permanent(format!("unknown mail purpose {other}"))),
        };
        // One Message-ID per request, the same on every attempt: a mail the SMTP server took
        // but whose `sent_at` the database could not record (it went away in between) is sent
        // again, and a receiving server or client recognises the copy by this id. Sending at
        // most once instead would lose the mail whenever SMTP itself failed.
        let message = Message::builder()
            .message_id(Some(format!("<{request_id}@{}>", self.from.email.domain())))
            .from(self.from.clone())
            .to(to)
            .subject(content.subject)
            .multipart(MultiPart::alternative_plain_html(
                content.text,
                content.html,
            ))
            .map_err(|e| JobError::permanent(e.to_string()))?;
        self.transport.send(message).await.map_err(|e| {
            if e.is_permanent() {
                JobError::permanent(format!("the SMTP server refused the mail: {e}"))
            } else {
                JobError::retry(format!("sending failed: {e}"))
            }
        })?;
        sqlx::query("UPDATE email_tokens SET sent_at = now(), secret = NULL WHERE id = $1")
            .bind(request_id)
            .execute(&self.pool)
            .await
            .map_err(|e| JobError::retry(e.to_string()))?;
        tracing::info!(request_id, %purpose, "mail sent");
        Ok(())
    }

    fn verification_mail(&self, code: &str) -> MailContent {
        let minutes = self.options.verification_minutes;
        let server = &self.options.server_name;
        MailContent {
            subject: "Speckle account email verification".to_owned(),
            text: format!(
                "Hello,\n\nYour verification code for {server} is:\n\n{code}\n\n\
                 It is valid for {minutes} minutes. If you did not ask for it, ignore this \
                 email.\n"
            ),
            html: format!(
                "<p>Hello,</p><p>Your verification code for {server} is:</p>\
                 <p style=\"font-size:24px;font-weight:bold;letter-spacing:4px\">{code}</p>\
                 <p>It is valid for {minutes} minutes. If you did not ask for it, ignore this \
                 email.</p>",
                server = html_escape(server),
            ),
        }
    }

    fn reset_mail(&self, request_id: &str, secret: &str) -> MailContent {
        let minutes = self.options.reset_minutes;
        let link = format!(
            "{}/authn/reset-password?token={request_id}{secret}",
            self.options.public_url.trim_end_matches('/')
        );
        MailContent {
            subject: "Speckle Account Password Reset".to_owned(),
            text: format!(
                "Hello,\n\nYou asked to reset the password of your {} account. Use this link \
                 to choose a new one:\n\n{link}\n\nIt is valid for {minutes} minutes. If you \
                 did not ask for it, ignore this email: nothing changes.\n",
                self.options.server_name
            ),
            html: format!(
                "<p>Hello,</p><p>You asked to reset the password of your {} account.</p>\
                 <p><a href=\"{link}\">Reset your password</a></p><p>The link is valid for \
                 {minutes} minutes. If you did not ask for it, ignore this email: nothing \
                 changes.</p>",
                html_escape(&self.options.server_name)
            ),
        }
    }
}

struct MailContent {
    subject: String,
    text: String,
    html: String,
}

fn db(e: sqlx::Error) -> JobError {
    JobError::retry(e.to_string())
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl JobHandler for Mailer {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn run<'a>(&'a self, job: &'a ClaimedJob) -> BoxFuture<'a, Result<(), JobError>> {
        self.send(job).boxed()
    }
}
