//! `serverInfo`.

use async_graphql::SimpleObject;
use domain::policy::{Scope, ServerRole};

use crate::config::Settings;

/// What clients learn about the server before signing in.
#[derive(SimpleObject)]
#[graphql(rename_fields = "camelCase")]
pub struct ServerInfo {
    name: String,
    company: Option<String>,
    description: Option<String>,
    admin_contact: Option<String>,
    canonical_url: Option<String>,
    terms_of_service: Option<String>,
    invite_only: Option<bool>,
    guest_mode_enabled: bool,
    /// The Speckle server version whose API this server speaks (clients gate features on it).
    version: Option<String>,
    scopes: Vec<ScopeInfo>,
    server_roles: Vec<ServerRoleItem>,
    auth_strategies: Vec<AuthStrategy>,
    configuration: ServerConfiguration,
    blob_size_limit_bytes: i64,
    workspaces: ServerWorkspacesInfo,
    automate_url: Option<String>,
    enable_new_web_ui_messaging: Option<bool>,
}

/// A token scope.
#[derive(SimpleObject)]
#[graphql(name = "Scope")]
pub struct ScopeInfo {
    pub(crate) name: String,
    pub(crate) description: String,
}

/// A server role.
#[derive(SimpleObject)]
pub struct ServerRoleItem {
    id: String,
    title: String,
}

/// A way to sign in.
#[derive(SimpleObject)]
pub struct AuthStrategy {
    id: String,
    name: String,
    icon: String,
    url: String,
    color: Option<String>,
}

/// The configured limits.
#[derive(SimpleObject)]
#[graphql(rename_fields = "camelCase")]
pub struct ServerConfiguration {
    object_size_limit_bytes: i64,
    object_multipart_upload_size_limit_bytes: i64,
    is_email_enabled: bool,
    email_verification_timeout_minutes: i32,
    blob_size_limit_bytes: i64,
}

/// Workspaces are not offered.
#[derive(SimpleObject)]
#[graphql(rename_fields = "camelCase")]
pub struct ServerWorkspacesInfo {
    workspaces_enabled: bool,
}

fn scope_description(scope: &Scope) -> &'static str {
    match scope.as_str() {
        "streams:read" => "Read your projects and their models, versions and objects.",
        "streams:write" => "Create, change and delete your projects, models and versions.",
        "profile:read" => "Read your profile (not your email).",
        "profile:write" => "Change your profile.",
        "profile:email" => "Read your email address.",
        "profile:delete" => "Delete your account.",
        "users:read" => "Read other users' public profiles.",
        "users:email" => "Read other users' email addresses.",
        "users:invite" => "Invite people to the server and to projects.",
        "server:stats" => "Read server statistics.",
        "server:setup" => "Change the server's settings.",
        "tokens:read" => "List your access tokens.",
        "tokens:write" => "Create and revoke access tokens.",
        "apps:read" => "List your applications.",
        "apps:write" => "Create and change applications.",
        _ => "A scope of the Speckle API.",
    }
}

fn i64_of(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX) // saturates; never reached
}

impl ServerInfo {
    /// From the process settings.
    pub fn from_settings(s: &Settings) -> Self {
        let url = s
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}:{}", s.bind_address, s.port));
        Self {
            name: s.server_name.clone(),
            company: s.server_company.clone(),
            description: s.server_description.clone(),
            admin_contact: s.admin_contact.clone(),
            canonical_url: Some(url.clone()),
            terms_of_service: None,
            invite_only: Some(s.invite_only),
            guest_mode_enabled: false,
            version: Some(s.speckle_version.clone()),
            scopes: Scope::KNOWN
                .iter()
                .map(|scope| ScopeInfo {
                    name: scope.as_str().to_owned(),
                    description: scope_description(scope).to_owned(),
                })
                .collect(),
            server_roles: [
                ServerRole::Admin,
                ServerRole::User,
                ServerRole::Guest,
                ServerRole::ArchivedUser,
            ]
            .iter()
            .map(|r| ServerRoleItem {
                id: r.as_str().to_owned(),
                title: r.as_str().to_owned(),
            })
            .collect(),
            auth_strategies: vec![AuthStrategy {
                id: "local".into(),
                name: "Local".into(),
                icon: "TODO".into(),
                url: "/auth/local".into(),
                color: Some("accent".into()),
            }],
            configuration: ServerConfiguration {
                object_size_limit_bytes: i64_of(s.object_size_limit_bytes),
                object_multipart_upload_size_limit_bytes: i64_of(
                    s.object_multipart_upload_size_limit_bytes,
                ),
                is_email_enabled: s.smtp_host.is_some(),
                email_verification_timeout_minutes: i32::try_from(
                    s.email_verification_timeout_minutes,
                )
                .unwrap_or(i32::MAX), // saturates at GraphQL's Int
                blob_size_limit_bytes: i64_of(s.blob_size_limit_bytes),
            },
            blob_size_limit_bytes: i64_of(s.blob_size_limit_bytes),
            workspaces: ServerWorkspacesInfo {
                workspaces_enabled: false,
            },
            automate_url: None,
            enable_new_web_ui_messaging: Some(false),
        }
    }
}
