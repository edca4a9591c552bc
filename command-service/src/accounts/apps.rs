//! Applications that trade access codes for tokens: the default apps the code defines (their
//! secret is their id, as in the original) and third-party apps users register
//! (`server_apps`). Changing or deleting an app ends every token, refresh token and access
//! code it holds, on every replica, as the original documents for `appUpdate`.

use super::*;

/// An app as the token exchange sees it.
#[derive(Clone, Debug)]
pub struct ResolvedApp {
    /// Id.
    pub id: String,
    /// Name; tokens are called `<name>-token`.
    pub name: String,
    /// The scopes its tokens carry.
    pub scopes: Vec<Scope>,
    /// Where `GET /auth/accesscode` sends the user back; none for the default apps.
    pub redirect_url: Option<String>,
}

/// An app as its readers see it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AppInfo {
    /// Id.
    pub id: String,
    /// Secret (only to its author and admins).
    pub secret: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Terms link.
    pub terms_and_conditions_link: Option<String>,
    /// Logo.
    pub logo: Option<String>,
    /// Listed in `apps`.
    pub public: bool,
    /// Where users are sent with their access code.
    pub redirect_url: String,
    /// Scopes its tokens carry.
    pub scopes: Vec<String>,
    /// Who registered it; none for the default apps.
    pub author_id: Option<String>,
    /// When.
    pub created_at: OffsetDateTime,
    /// Whether it is one of the defaults (which nobody may change).
    #[sqlx(default)]
    pub default_app: bool,
}

/// What `appCreate` and `appUpdate` set.
#[derive(Clone, Debug)]
pub struct AppFields {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Terms link.
    pub terms_and_conditions_link: Option<String>,
    /// Logo.
    pub logo: Option<String>,
    /// Listed in `apps`.
    pub public: bool,
    /// Redirect URL.
    pub redirect_url: String,
    /// Scopes its tokens carry.
    pub scopes: Vec<Scope>,
}

/// The columns an [`AppInfo`] is read from.
macro_rules! app_columns {
    () => {
        "id, secret, name, description, terms_and_conditions_link, logo, public, redirect_url, \
         scopes, author_id, created_at"
    };
}

fn default_info(app: &App, origin: &str) -> AppInfo {
    AppInfo {
        id: app.id.to_owned(),
        secret: app.id.to_owned(),
        name: app.name.to_owned(),
        description: String::new(),
        terms_and_conditions_link: None,
        logo: None,
        public: true,
        // No redirect URL: this server's own address.
        redirect_url: app.redirect_url.unwrap_or(origin).to_owned(),
        scopes: app.scopes().iter().map(|s| s.as_str().to_owned()).collect(),
        author_id: None,
        created_at: OffsetDateTime::UNIX_EPOCH,
        default_app: true,
    }
}

fn check_fields(f: &AppFields) -> Result<(), AccountError> {
    let invalid = |m: &str| Err(AccountError::Invalid(m.to_owned()));
    if f.name.trim().is_empty() || f.name.chars().count() > 256 {
        return invalid("An app needs a name of at most 256 characters.");
    }
    if f.description.chars().count() > 1024 {
        return invalid("An app's description is at most 1,024 characters.");
    }
    if !(f.redirect_url.starts_with("http://") || f.redirect_url.starts_with("https://")) {
        return invalid("The redirect URL must be an http(s) URL.");
    }
    if f.scopes.is_empty() {
        return invalid("An app needs at least one scope.");
    }
    Ok(())
}

/// `query` with `f` bound to its next parameters, in the order name, description,
/// terms_and_conditions_link, logo, public, redirect_url, scopes.
fn bind_fields<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    f: &'q AppFields,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let scopes: Vec<&str> = f.scopes.iter().map(Scope::as_str).collect();
    query
        .bind(f.name.trim())
        .bind(&f.description)
        .bind(&f.terms_and_conditions_link)
        .bind(&f.logo)
        .bind(f.public)
        .bind(&f.redirect_url)
        .bind(scopes)
}

impl Accounts {
    /// The app presenting `app_id` and `app_secret`, if they check out.
    pub(super) async fn resolve_app(
        &self,
        app_id: &str,
        app_secret: &str,
    ) -> Result<ResolvedApp, AccountError> {
        let refused = || AccountError::Unauthorized("Invalid app credentials.".into());
        if let Some(app) = DEFAULT_APPS.iter().find(|a| a.id == app_id) {
            return if app.id == app_secret {
                Ok(ResolvedApp {
                    id: app.id.to_owned(),
                    name: app.name.to_owned(),
                    scopes: app.scopes(),
                    redirect_url: None,
                })
            } else {
                Err(refused())
            };
        }
        let app = self.app_by_id(app_id).await?.ok_or_else(refused)?;
        let matches: bool = app.secret.len() == app_secret.len()
            && app
                .secret
                .bytes()
                .zip(app_secret.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !matches {
            return Err(refused());
        }
        Ok(ResolvedApp {
            id: app.id,
            name: app.name,
            scopes: app
                .scopes
                .iter()
                .filter_map(|s| Scope::parse(s).ok())
                .collect(),
            redirect_url: Some(app.redirect_url),
        })
    }

    /// The app with `id`, default or registered.
    pub async fn app_by_id(&self, id: &str) -> Result<Option<AppInfo>, AccountError> {
        if let Some(app) = DEFAULT_APPS.iter().find(|a| a.id == id) {
            return Ok(Some(default_info(app, &self.origin)));
        }
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            app_columns!(),
            " FROM server_apps WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The apps listed publicly: the defaults, then registered public ones.
    pub async fn public_apps(&self) -> Result<Vec<AppInfo>, AccountError> {
        let mut apps: Vec<AppInfo> = DEFAULT_APPS
            .iter()
            .map(|a| default_info(a, &self.origin))
            .collect();
        apps.extend(
            sqlx::query_as::<_, AppInfo>(concat!(
                "SELECT ",
                app_columns!(),
                " FROM server_apps WHERE public ORDER BY created_at"
            ))
            .fetch_all(&self.pool)
            .await?,
        );
        Ok(apps)
    }

    /// The apps `user_id` registered.
    pub async fn apps_created_by(&self, user_id: &str) -> Result<Vec<AppInfo>, AccountError> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            app_columns!(),
            " FROM server_apps WHERE author_id = $1 ORDER BY created_at"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The apps holding a live token of `user_id`.
    pub async fn apps_authorized_by(&self, user_id: &str) -> Result<Vec<AppInfo>, AccountError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT app_id FROM api_tokens WHERE user_id = $1 AND app_id IS NOT NULL \
             AND revoked_at IS NULL AND expires_at > now() ORDER BY app_id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        let mut apps = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(app) = self.app_by_id(&id).await? {
                apps.push(app);
            }
        }
        Ok(apps)
    }

    /// Registers an app for `author_id`; returns its id.
    pub async fn create_app(&self, author_id: &str, f: &AppFields) -> Result<String, AccountError> {
        check_fields(f)?;
        let id = random_hex(5);
        let insert = sqlx::query(
            "INSERT INTO server_apps (id, secret, name, description, terms_and_conditions_link, logo, \
             public, redirect_url, scopes, author_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&id)
        .bind(random_hex(5));
        bind_fields(insert, f)
            .bind(author_id)
            .execute(&self.pool)
            .await?;
        Ok(id)
    }

    /// Whether `principal` may change or delete app `id` (its author or an admin; never a
    /// default app).
    async fn may_manage(&self, principal: &Principal, id: &str) -> Result<(), AccountError> {
        let app = self
            .app_by_id(id)
            .await?
            .ok_or_else(|| AccountError::NotFound("App not found.".into()))?;
        domain::policy::can_manage_app(principal, app.author_id.as_deref(), app.default_app)
            .map_err(|d| AccountError::Forbidden(d.message))
    }

    /// Changes an app; every token, refresh token and access code it holds stops working.
    pub async fn update_app(
        &self,
        principal: &Principal,
        id: &str,
        f: &AppFields,
    ) -> Result<(), AccountError> {
        check_fields(f)?;
        self.may_manage(principal, id).await?;
        let mut tx = self.pool.begin().await?;
        let update = sqlx::query(
            "UPDATE server_apps SET name = $2, description = $3, terms_and_conditions_link = $4, \
             logo = $5, public = $6, redirect_url = $7, scopes = $8 WHERE id = $1",
        )
        .bind(id);
        bind_fields(update, f).execute(&mut *tx).await?;
        Self::revoke_app_grants(&mut tx, id, None).await?;
        tx.commit().await?;
        self.invalidate_tokens().await;
        Ok(())
    }

    /// Deletes an app and everything it was granted.
    pub async fn delete_app(&self, principal: &Principal, id: &str) -> Result<(), AccountError> {
        self.may_manage(principal, id).await?;
        let mut tx = self.pool.begin().await?;
        Self::revoke_app_grants(&mut tx, id, None).await?;
        sqlx::query("DELETE FROM server_apps WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.invalidate_tokens().await;
        Ok(())
    }

    /// `appRevokeAccess`: ends what `user_id` granted app `id`.
    pub async fn revoke_app_access(&self, user_id: &str, id: &str) -> Result<bool, AccountError> {
        let mut tx = self.pool.begin().await?;
        let revoked = Self::revoke_app_grants(&mut tx, id, Some(user_id)).await?;
        tx.commit().await?;
        self.invalidate_tokens().await;
        Ok(revoked > 0)
    }

    async fn revoke_app_grants(
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        app_id: &str,
        user_id: Option<&str>,
    ) -> Result<u64, AccountError> {
        let tokens = sqlx::query(
            "UPDATE api_tokens SET revoked_at = now() WHERE app_id = $1 \
             AND ($2::text IS NULL OR user_id = $2) AND revoked_at IS NULL",
        )
        .bind(app_id)
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "UPDATE refresh_tokens SET used_at = now() WHERE app_id = $1 \
             AND ($2::text IS NULL OR user_id = $2) AND used_at IS NULL",
        )
        .bind(app_id)
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "DELETE FROM auth_access_codes WHERE app_id = $1 AND ($2::text IS NULL OR user_id = $2)",
        )
        .bind(app_id)
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
        Ok(tokens.rows_affected())
    }
}
