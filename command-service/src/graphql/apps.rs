//! Third-party apps over GraphQL, with the original's names: `app`, `apps`,
//! `activeUser.createdApps/authorizedApps`, `appCreate`, `appUpdate`, `appDelete`,
//! `appRevokeAccess`.

use async_graphql::{ComplexObject, Context, InputObject, SimpleObject};
use domain::policy::{self, Principal, Scope};
use projections::speckle::query;
use time::OffsetDateTime;

use super::errors::{ErrorCode, gql_error};
use super::services;
use crate::accounts::{AppFields, AppInfo};
use crate::error::{ApiResult, AppError};

/// Who registered an app.
#[derive(SimpleObject)]
pub struct AppAuthor {
    id: Option<String>,
    name: Option<String>,
    avatar: Option<String>,
}

/// An app in full (`app(id)`, `createdApps`); `secret` only to its author and admins.
#[derive(SimpleObject)]
#[graphql(complex, rename_fields = "camelCase")]
pub struct ServerApp {
    id: String,
    name: String,
    description: Option<String>,
    terms_and_conditions_link: Option<String>,
    logo: Option<String>,
    public: Option<bool>,
    trust_by_default: Option<bool>,
    created_at: OffsetDateTime,
    redirect_url: String,
    scopes: Vec<super::server::ScopeInfo>,
    #[graphql(skip)]
    info: AppInfo,
}

/// An app as listed (`apps`, `authorizedApps`).
#[derive(SimpleObject)]
#[graphql(complex, rename_fields = "camelCase")]
pub struct ServerAppListItem {
    id: String,
    name: String,
    description: Option<String>,
    redirect_url: String,
    terms_and_conditions_link: Option<String>,
    trust_by_default: Option<bool>,
    logo: Option<String>,
    #[graphql(skip)]
    author_id: Option<String>,
}

async fn author(ctx: &Context<'_>, id: &Option<String>) -> ApiResult<Option<AppAuthor>> {
    let Some(id) = id else {
        return Ok(None);
    };
    let row = query::limited_user(services::pool(ctx)?, id).await?;
    Ok(row.map(|u| AppAuthor {
        id: Some(u.id),
        name: Some(u.name),
        avatar: u.avatar,
    }))
}

#[ComplexObject]
impl ServerApp {
    /// The secret the app exchanges codes with: its author's and admins' business only.
    async fn secret(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        let p = ctx.data::<Principal>()?;
        Ok(
            policy::can_read_app_secret(p, self.info.author_id.as_deref())
                .is_ok()
                .then(|| self.info.secret.clone()),
        )
    }

    /// Who registered it.
    async fn author(&self, ctx: &Context<'_>) -> ApiResult<Option<AppAuthor>> {
        author(ctx, &self.info.author_id).await
    }
}

#[ComplexObject]
impl ServerAppListItem {
    /// Who registered it.
    async fn author(&self, ctx: &Context<'_>) -> ApiResult<Option<AppAuthor>> {
        author(ctx, &self.author_id).await
    }
}

fn full(info: AppInfo) -> ServerApp {
    ServerApp {
        id: info.id.clone(),
        name: info.name.clone(),
        description: Some(info.description.clone()),
        terms_and_conditions_link: info.terms_and_conditions_link.clone(),
        logo: info.logo.clone(),
        public: Some(info.public),
        trust_by_default: Some(info.default_app),
        created_at: info.created_at,
        redirect_url: info.redirect_url.clone(),
        scopes: info
            .scopes
            .iter()
            .map(|s| super::server::ScopeInfo {
                name: s.clone(),
                description: String::new(),
            })
            .collect(),
        info,
    }
}

fn listed(info: AppInfo) -> ServerAppListItem {
    ServerAppListItem {
        id: info.id,
        name: info.name,
        description: Some(info.description),
        redirect_url: info.redirect_url,
        terms_and_conditions_link: info.terms_and_conditions_link,
        trust_by_default: Some(info.default_app),
        logo: info.logo,
        author_id: info.author_id,
    }
}

/// `appCreate` input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct AppCreateInput {
    name: String,
    description: String,
    terms_and_conditions_link: Option<String>,
    logo: Option<String>,
    public: Option<bool>,
    redirect_url: String,
    scopes: Vec<Option<String>>,
}

/// `appUpdate` input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct AppUpdateInput {
    id: String,
    name: String,
    description: String,
    terms_and_conditions_link: Option<String>,
    logo: Option<String>,
    public: Option<bool>,
    redirect_url: String,
    scopes: Vec<Option<String>>,
}

impl AppUpdateInput {
    /// The app's id, and the fields it sets (the same as a creation's).
    fn split(self) -> (String, AppCreateInput) {
        (
            self.id,
            AppCreateInput {
                name: self.name,
                description: self.description,
                terms_and_conditions_link: self.terms_and_conditions_link,
                logo: self.logo,
                public: self.public,
                redirect_url: self.redirect_url,
                scopes: self.scopes,
            },
        )
    }
}

/// Checks the scopes an app asks for: known ones the author holds.
fn fields(p: &Principal, input: AppCreateInput) -> ApiResult<AppFields> {
    let mut parsed = Vec::new();
    for raw in input.scopes.into_iter().flatten() {
        let scope =
            Scope::parse(&raw).map_err(|e| gql_error(ErrorCode::BadRequest, e.to_string()))?;
        if !Scope::KNOWN.contains(&scope) {
            return Err(gql_error(
                ErrorCode::BadRequest,
                format!("Unknown scope {raw}."),
            ));
        }
        policy::can_grant_scope(p, &scope)?;
        parsed.push(scope);
    }
    Ok(AppFields {
        name: input.name,
        description: input.description,
        terms_and_conditions_link: input.terms_and_conditions_link,
        logo: input.logo,
        public: input.public.unwrap_or(false), // not asked for: unlisted
        redirect_url: input.redirect_url,
        scopes: parsed,
    })
}

/// `app(id)`.
pub async fn app(ctx: &Context<'_>, id: &str) -> ApiResult<Option<ServerApp>> {
    Ok(services::accounts(ctx)?.app_by_id(id).await?.map(full))
}

/// `apps`: the publicly listed ones.
pub async fn apps(ctx: &Context<'_>) -> ApiResult<Vec<ServerAppListItem>> {
    Ok(services::accounts(ctx)?
        .public_apps()
        .await?
        .into_iter()
        .map(listed)
        .collect())
}

/// `activeUser.createdApps`.
pub async fn created(ctx: &Context<'_>, user_id: &str) -> ApiResult<Vec<ServerApp>> {
    let p = ctx.data::<Principal>()?;
    policy::can_read_own_apps(p)?;
    Ok(services::accounts(ctx)?
        .apps_created_by(user_id)
        .await?
        .into_iter()
        .map(full)
        .collect())
}

/// `activeUser.authorizedApps`.
pub async fn authorized(ctx: &Context<'_>, user_id: &str) -> ApiResult<Vec<ServerAppListItem>> {
    let p = ctx.data::<Principal>()?;
    policy::can_read_own_apps(p)?;
    Ok(services::accounts(ctx)?
        .apps_authorized_by(user_id)
        .await?
        .into_iter()
        .map(listed)
        .collect())
}

/// `appCreate`: returns the new app's id.
pub async fn create(ctx: &Context<'_>, input: AppCreateInput) -> ApiResult<String> {
    // A new app and secret each time, outside the log.
    crate::commands::refuse_keyed()?;
    let p = ctx.data::<Principal>()?;
    policy::can_write_apps(p)?;
    let f = fields(p, input)?;
    services::accounts(ctx)?
        .create_app(p.user_id.as_deref().unwrap_or_default(), &f)
        .await
        .map_err(AppError::from)
}

/// `appUpdate`.
pub async fn update(ctx: &Context<'_>, input: AppUpdateInput) -> ApiResult<bool> {
    let p = ctx.data::<Principal>()?;
    policy::can_write_apps(p)?;
    let (id, input) = input.split();
    let f = fields(p, input)?;
    services::accounts(ctx)?.update_app(p, &id, &f).await?;
    Ok(true)
}

/// `appDelete`.
pub async fn delete(ctx: &Context<'_>, app_id: &str) -> ApiResult<bool> {
    let p = ctx.data::<Principal>()?;
    policy::can_write_apps(p)?;
    services::accounts(ctx)?.delete_app(p, app_id).await?;
    Ok(true)
}

/// `appRevokeAccess`: ends what the caller granted the app.
pub async fn revoke_access(ctx: &Context<'_>, app_id: &str) -> ApiResult<bool> {
    let p = ctx.data::<Principal>()?;
    policy::can_write_apps(p)?;
    services::accounts(ctx)?
        .revoke_app_access(p.user_id.as_deref().unwrap_or_default(), app_id)
        .await
        .map_err(AppError::from)
}
