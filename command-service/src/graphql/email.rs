//! Email verification over GraphQL: `requestVerification`, `requestVerificationByEmail` and
//! `activeUserMutations.emailMutations.verify`, with the original's names.

use async_graphql::{Context, InputObject, Object};

use super::mutations::{metadata, signed_in};
use super::services;
use crate::error::ApiResult;

/// `emailMutations.verify` input: the address and the code mailed to it.
#[derive(InputObject)]
pub struct VerifyUserEmailInput {
    email: String,
    code: String,
}

/// The signed-in user's email mutations.
pub struct ActiveUserEmailMutations;

#[Object(name = "UserEmailMutations")]
impl ActiveUserEmailMutations {
    /// Checks the code mailed to `email` and marks the address verified.
    async fn verify(&self, ctx: &Context<'_>, input: VerifyUserEmailInput) -> ApiResult<bool> {
        let (_, user_id) = signed_in(ctx)?;
        services::accounts(ctx)?
            .verify_email(
                &user_id,
                &input.email,
                &input.code,
                &metadata(ctx, &user_id),
            )
            .await?;
        Ok(true)
    }
}

/// (Re-)sends the signed-in user's verification code.
pub async fn request_verification(ctx: &Context<'_>) -> ApiResult<bool> {
    let (_, user_id) = signed_in(ctx)?;
    services::accounts(ctx)?
        .request_email_verification(&user_id, &metadata(ctx, &user_id))
        .await?;
    Ok(true)
}

/// Sends a verification code to the account owning `email`, if any (the answer is the same
/// either way).
pub async fn request_verification_by_email(ctx: &Context<'_>, email: &str) -> ApiResult<bool> {
    let principal = ctx.data::<domain::policy::Principal>()?;
    let actor = principal.user_id.clone().unwrap_or_default();
    services::accounts(ctx)?
        .request_email_verification_by_email(email, &metadata(ctx, &actor))
        .await?;
    Ok(true)
}
