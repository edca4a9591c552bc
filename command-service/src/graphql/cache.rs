//! Whole-response cache for read-only queries, exact against the read model.
//!
//! CQRS gives us something the original server does not have: the read model changes only
//! when the `speckle` projector commits a batch, and that same transaction moves its
//! checkpoint. So a query's answer is a function of (caller, request, checkpoint) as long as
//! every field it resolved reads that read model. Each request reads the checkpoint first
//! (one indexed row, shared by the requests that arrive during one read); a stored answer is served only if it was computed after that exact
//! checkpoint was read, so a cached answer is never older than what a fresh execution would
//! have seen. Read-your-writes holds because a mutation returns only once the checkpoint has
//! passed its events, which changes the key every later request looks up.
//!
//! Which fields qualify is an allowlist of (type, field) pairs: a field added later is not
//! cacheable until someone checks where it reads from and lists it. Fields reading anything
//! else (the object store, tokens, apps, webhook deliveries, the mail read model) are absent,
//! and any request that resolves one is executed and answered but not stored. Answers with
//! errors are never stored. The cache is bounded by bytes (`STRATA_GRAPHQL_CACHE_BYTES`;
//! 0 turns it off) and by the size of one answer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextResolve};
use async_graphql::{ServerResult, Value};
use axum::body::Bytes;
use domain::policy::Principal;
use sqlx::PgPool;

use crate::coalesce::SharedRead;

/// Fields of the types in [`READ_MODEL_FIELDS`] that read something else (credentials, the
/// object store, other read models): a request resolving one is answered, never stored. (Only
/// a test reads it: it makes every field of a listed type a decision.)
#[cfg(test)]
const NOT_CACHED: &[(&str, &[&str])] = &[
    (
        "Query",
        &[
            "users",
            "userSearch",
            "app",
            "apps",
            "admin",
            "workspace",
            "projectInvite",
        ],
    ),
    (
        "Project",
        &[
            "webhooks",
            "object",
            "ingestion",
            "pendingImportedModels",
            // The event log, not the read model.
            "history",
            "asOf",
        ],
    ),
    ("Model", &["uploads", "pendingImportedVersions"]),
    // The preview worker's record, not the read model.
    ("Version", &["preview"]),
    ("Stream", &["webhooks", "object"]),
    ("LimitedUser", &["verified"]),
    ("PendingStreamCollaborator", &["token"]),
    (
        "User",
        &[
            "verified",
            "workspaces",
            "createdApps",
            "authorizedApps",
            "hasPendingVerification",
            "projectInvites",
            "apiTokens",
        ],
    ),
];

/// Fields whose values come only from the `speckle` read model, the caller, or the settings.
const READ_MODEL_FIELDS: &[(&str, &[&str])] = &[
    (
        "Query",
        &[
            "project",
            "activeUser",
            "otherUser",
            "serverInfo",
            "stream",
            "streams",
            "user",
        ],
    ),
    (
        "Project",
        &[
            "id",
            "name",
            "description",
            "allowPublicComments",
            "role",
            "createdAt",
            "updatedAt",
            "visibility",
            "sourceApps",
            "permissions",
            "workspaceId",
            "invitedTeam",
            "team",
            "models",
            "model",
            "modelByName",
            "versions",
            "version",
        ],
    ),
    ("ModelCollection", &["totalCount", "cursor", "items"]),
    (
        "Model",
        &[
            "id",
            "name",
            "description",
            "createdAt",
            "updatedAt",
            "displayName",
            "author",
            "previewUrl",
            "versions",
            "projectId",
            "permissions",
        ],
    ),
    (
        "ModelPermissionChecks",
        &[
            "canUpdate",
            "canDelete",
            "canCreateVersion",
            "canCreateIngestion",
        ],
    ),
    ("VersionCollection", &["totalCount", "cursor", "items"]),
    (
        "Version",
        &[
            "id",
            "referencedObject",
            "message",
            "sourceApplication",
            "totalChildrenCount",
            "parents",
            "createdAt",
            "previewUrl",
            "authorUser",
            "model",
            "permissions",
        ],
    ),
    ("VersionPermissionChecks", &["canUpdate", "canReceive"]),
    // Not `verified`: it comes from the mail read model, whose checkpoint is another.
    (
        "LimitedUser",
        &["id", "name", "bio", "company", "avatar", "role"],
    ),
    ("ProjectCollaborator", &["id", "role", "user"]),
    // Not `token`: a credential.
    (
        "PendingStreamCollaborator",
        &[
            "id",
            "inviteId",
            "projectId",
            "projectName",
            "title",
            "role",
            "user",
            "invitedBy",
        ],
    ),
    (
        "ProjectPermissionChecks",
        &[
            "canCreateModel",
            "canRead",
            "canUpdate",
            "canDelete",
            "canPublish",
            "canLoad",
            "canInvite",
            "canReadWebhooks",
            "canLeave",
        ],
    ),
    (
        "PermissionCheckResult",
        &["authorized", "code", "message", "payload", "errorMessage"],
    ),
    // Not `verified`, `hasPendingVerification`, `apiTokens`, `createdApps`,
    // `authorizedApps` or `projectInvites`: other stores.
    (
        "User",
        &[
            "id",
            "name",
            "bio",
            "company",
            "avatar",
            "role",
            "createdAt",
            "email",
            "streams",
            "projects",
            "activity",
            "permissions",
            "activeWorkspace",
        ],
    ),
    (
        "RootPermissionChecks",
        &["canCreatePersonalProject", "canCreateWorkspace"],
    ),
    ("UserProjectCollection", &["totalCount", "cursor", "items"]),
    ("UserStreamCollection", &["totalCount", "cursor", "items"]),
    (
        "Stream",
        &[
            "id",
            "name",
            "description",
            "isPublic",
            "allowPublicComments",
            "role",
            "createdAt",
            "updatedAt",
            "isDiscoverable",
            "collaborators",
            "favoritesCount",
            "favoritedDate",
            "branches",
            "branch",
            "commits",
            "commit",
            "activity",
        ],
    ),
    (
        "StreamCollaborator",
        &["id", "name", "role", "company", "avatar", "serverRole"],
    ),
    ("BranchCollection", &["totalCount", "cursor", "items"]),
    (
        "Branch",
        &[
            "id",
            "name",
            "description",
            "createdAt",
            "author",
            "commits",
            "activity",
        ],
    ),
    ("CommitCollection", &["totalCount", "cursor", "items"]),
    (
        "Commit",
        &[
            "id",
            "referencedObject",
            "message",
            "sourceApplication",
            "totalChildrenCount",
            "parents",
            "branchName",
            "authorId",
            "authorName",
            "authorAvatar",
            "streamId",
            "streamName",
            "createdAt",
            "branch",
            "stream",
            "activity",
        ],
    ),
    ("ActivityCollection", &["totalCount", "cursor", "items"]),
    (
        "Activity",
        &[
            "id",
            "actionType",
            "userId",
            "streamId",
            "resourceId",
            "resourceType",
            "time",
            "message",
            "info",
        ],
    ),
    // Settings only.
    (
        "ServerInfo",
        &[
            "name",
            "company",
            "description",
            "adminContact",
            "canonicalUrl",
            "termsOfService",
            "inviteOnly",
            "guestModeEnabled",
            "version",
            "scopes",
            "serverRoles",
            "authStrategies",
            "configuration",
            "blobSizeLimitBytes",
            "workspaces",
            "automateUrl",
            "enableNewWebUiMessaging",
        ],
    ),
    (
        "ServerConfiguration",
        &[
            "objectSizeLimitBytes",
            "objectMultipartUploadSizeLimitBytes",
            "isEmailEnabled",
            "emailVerificationTimeoutMinutes",
            "blobSizeLimitBytes",
        ],
    ),
    ("ServerWorkspacesInfo", &["workspacesEnabled"]),
    ("AuthStrategy", &["id", "name", "icon", "url", "color"]),
    ("Scope", &["name", "description"]),
    ("ServerRoleItem", &["id", "title"]),
];

/// Whether `parent.field` reads only what the checkpoint versions. The executor also reports
/// each element of a list, with the list type (`[Model!]`) as the parent: the list's own
/// field was checked already.
fn is_read_model_field(parent: &str, field: &str) -> bool {
    field == "__typename"
        || parent.starts_with('[')
        || READ_MODEL_FIELDS
            .iter()
            .any(|(t, fields)| *t == parent && fields.contains(&field))
}

/// The state of the read model a response was computed from: the `speckle` checkpoint row.
pub type ReadVersion = projections::status::Checkpoint;

/// Reads the current `speckle` checkpoint (one primary-key row).
async fn read_version(pool: &PgPool) -> Result<ReadVersion, sqlx::Error> {
    projections::status::checkpoint(pool, projections::speckle::NAME).await
}

/// What identifies one answer: the whole caller and the whole request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey {
    principal: Principal,
    query: String,
    operation_name: Option<String>,
    variables: String,
    extensions: String,
}

impl CacheKey {
    /// The key of `request` asked by `principal`; `None` for requests that never qualify
    /// (file uploads).
    pub fn new(principal: &Principal, request: &async_graphql::Request) -> Option<Self> {
        if !request.uploads.is_empty() {
            return None;
        }
        Some(Self {
            principal: principal.clone(),
            query: request.query.clone(),
            operation_name: request.operation_name.clone(),
            variables: serde_json::to_string(&request.variables).ok()?,
            extensions: serde_json::to_string(&request.extensions).ok()?,
        })
    }

    fn weight(&self, body: &Bytes) -> usize {
        body.len()
            + self.query.len()
            + self.variables.len()
            + self.extensions.len()
            + self.operation_name.as_ref().map_or(0, String::len)
            + 256
    }
}

struct Entry {
    version: ReadVersion,
    body: Bytes,
    weight: usize,
}

#[derive(Default)]
struct Entries {
    map: HashMap<CacheKey, Entry>,
    bytes: usize,
}

/// The cache of one API process.
pub struct ResponseCache {
    versions: Arc<SharedRead<Result<ReadVersion, Arc<sqlx::Error>>>>,
    max_bytes: usize,
    max_entry_bytes: usize,
    entries: Mutex<Entries>,
}

impl ResponseCache {
    /// A cache holding at most `max_bytes`, none of whose answers exceeds `max_entry_bytes`;
    /// `None` when `max_bytes` is 0 (off).
    pub fn new(pool: PgPool, max_bytes: usize, max_entry_bytes: usize) -> Option<Self> {
        (max_bytes > 0).then(|| Self {
            versions: SharedRead::new(move || {
                let pool = pool.clone();
                Box::pin(async move { read_version(&pool).await.map_err(Arc::new) })
            }),
            max_bytes,
            max_entry_bytes,
            entries: Mutex::new(Entries::default()),
        })
    }

    /// The read model's version, read after this call began (one read serves every request
    /// waiting for it: [`SharedRead`]).
    pub async fn version(&self) -> Result<ReadVersion, Arc<sqlx::Error>> {
        self.versions.get().await
    }

    /// The stored answer to `key`, if it was computed at `version`.
    pub fn get(&self, key: &CacheKey, version: &ReadVersion) -> Option<Bytes> {
        let entries = self.entries.lock().ok()?;
        entries
            .map
            .get(key)
            .filter(|e| e.version == *version)
            .map(|e| e.body.clone())
    }

    /// Stores an answer computed after `version` was read. When full, answers computed at
    /// other versions go first (no request can hit them again), then everything.
    pub fn put(&self, key: CacheKey, version: ReadVersion, body: Bytes) {
        let weight = key.weight(&body);
        if body.len() > self.max_entry_bytes || weight > self.max_bytes {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.bytes + weight > self.max_bytes {
            entries.map.retain(|_, e| e.version == version);
            entries.bytes = entries.map.values().map(|e| e.weight).sum();
            if entries.bytes + weight > self.max_bytes {
                entries.map.clear();
                entries.bytes = 0;
            }
        }
        let entry = Entry {
            version,
            body,
            weight,
        };
        entries.bytes += weight;
        if let Some(old) = entries.map.insert(key, entry) {
            entries.bytes -= old.weight;
        }
    }

    /// Bytes held (for tests and metrics).
    pub fn bytes(&self) -> usize {
        // A poisoned lock reads as empty (tests and metrics only).
        self.entries.lock().map(|e| e.bytes).unwrap_or(0)
    }
}

/// Put into a request's data: records whether it resolved a field outside the allowlist.
#[derive(Default)]
pub struct CacheProbe {
    outside_read_model: AtomicBool,
}

impl CacheProbe {
    /// True when every field the execution resolved is in the allowlist.
    pub fn cacheable(&self) -> bool {
        !self.outside_read_model.load(Ordering::Relaxed)
    }
}

/// The schema extension that feeds a request's [`CacheProbe`].
pub struct CacheProbeExtension;

impl ExtensionFactory for CacheProbeExtension {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ProbeOfRequest::default())
    }
}

#[derive(Default)]
struct ProbeOfRequest {
    probe: OnceLock<Option<Arc<CacheProbe>>>,
}

#[async_trait::async_trait]
impl Extension for ProbeOfRequest {
    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: async_graphql::extensions::ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        if let Some(probe) = self
            .probe
            .get_or_init(|| ctx.data_opt::<Arc<CacheProbe>>().cloned())
            && !info.is_for_introspection
            && !is_read_model_field(info.parent_type, info.name)
        {
            probe.outside_read_model.store(true, Ordering::Relaxed);
        }
        next.run(ctx, info).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(events: i64) -> ReadVersion {
        ReadVersion {
            generation: 1,
            events_applied: events,
            xid: "1".into(),
            position: events,
        }
    }

    fn key(query: &str) -> CacheKey {
        CacheKey::new(
            &Principal::user("u1", domain::policy::ServerRole::User),
            &async_graphql::Request::new(query),
        )
        .expect("no uploads")
    }

    #[test]
    fn every_field_of_a_listed_type_is_classified() {
        // A new field on a type the cache serves must be put on one of the two lists: on
        // `READ_MODEL_FIELDS` only if it reads nothing but the `speckle` tables, the caller or
        // the settings; on `NOT_CACHED` otherwise.
        let sdl = crate::graphql::sdl();
        let mut unclassified = Vec::new();
        for (ty, listed) in READ_MODEL_FIELDS {
            let start = sdl
                .find(&format!("type {ty} {{"))
                .unwrap_or_else(|| panic!("no type {ty} in the schema"));
            let body = &sdl[start..start + sdl[start..].find("\n}").expect("type ends")];
            let not_cached = NOT_CACHED
                .iter()
                .find(|(t, _)| t == ty)
                .map_or(&[][..], |(_, f)| *f);
            let mut in_description = false;
            for line in body.lines().skip(1) {
                let text = line.trim();
                if let Some(rest) = text.strip_prefix("\"\"\"") {
                    // `"""one line"""` stays outside; a lone `"""` opens or closes a block.
                    if !rest.ends_with("\"\"\"") {
                        in_description = !in_description;
                    }
                    continue;
                }
                if in_description || !line.starts_with('\t') || line.starts_with("\t\t") {
                    continue;
                }
                let Some(field) = text.split(['(', ':']).next().filter(|f| !f.is_empty()) else {
                    continue;
                };
                if !listed.contains(&field) && !not_cached.contains(&field) {
                    unclassified.push(format!("{ty}.{field}"));
                }
            }
        }
        assert!(
            unclassified.is_empty(),
            "classify these fields in graphql::cache: {unclassified:?}"
        );
    }

    #[test]
    fn every_listed_field_exists_in_the_schema() {
        let sdl = crate::graphql::sdl();
        for (ty, fields) in READ_MODEL_FIELDS {
            let start = sdl
                .find(&format!("type {ty} {{"))
                .unwrap_or_else(|| panic!("no type {ty} in the schema"));
            let body = &sdl[start..start + sdl[start..].find("\n}").expect("type ends")];
            for field in *fields {
                assert!(
                    body.contains(&format!("\t{field}:")) || body.contains(&format!("\t{field}(")),
                    "{ty}.{field} is not in the schema"
                );
            }
        }
    }

    /// A pool that never connects: these tests exercise the store, not the reader.
    fn no_pool() -> PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .expect("lazy pool")
    }

    #[tokio::test]
    async fn answers_only_at_the_version_they_were_computed_at() {
        let cache = ResponseCache::new(no_pool(), 1 << 20, 1 << 16).expect("on");
        cache.put(key("{a}"), version(1), Bytes::from_static(b"one"));
        assert_eq!(
            cache.get(&key("{a}"), &version(1)).as_deref(),
            Some(&b"one"[..])
        );
        assert_eq!(cache.get(&key("{a}"), &version(2)), None);
        assert_eq!(cache.get(&key("{b}"), &version(1)), None);
        let other_caller = CacheKey::new(
            &Principal::user("u2", domain::policy::ServerRole::User),
            &async_graphql::Request::new("{a}"),
        )
        .expect("no uploads");
        assert_eq!(cache.get(&other_caller, &version(1)), None);
    }

    #[tokio::test]
    async fn stays_within_its_byte_budget() {
        let cache = ResponseCache::new(no_pool(), 4_000, 1_000).expect("on");
        cache.put(key("{big}"), version(1), Bytes::from(vec![b'x'; 1_001]));
        assert_eq!(
            cache.get(&key("{big}"), &version(1)),
            None,
            "over the entry limit"
        );
        for i in 0..50 {
            cache.put(
                key(&format!("{{f{i}}}")),
                version(1),
                Bytes::from(vec![b'x'; 500]),
            );
            assert!(cache.bytes() <= 4_000, "{} bytes held", cache.bytes());
        }
        assert!(
            cache.get(&key("{f49}"), &version(1)).is_some(),
            "the newest is kept"
        );
        cache.put(key("{new}"), version(2), Bytes::from(vec![b'x'; 500]));
        assert!(cache.bytes() <= 4_000);
        assert!(cache.get(&key("{new}"), &version(2)).is_some());
    }

    #[tokio::test]
    async fn off_at_zero_bytes() {
        assert!(ResponseCache::new(no_pool(), 0, 1_000).is_none());
    }

    #[test]
    fn fields_outside_the_read_model_are_not_listed() {
        for (ty, field) in [
            ("Project", "object"),
            ("Project", "webhooks"),
            ("User", "apiTokens"),
            ("User", "verified"),
            ("LimitedUser", "verified"),
            ("PendingStreamCollaborator", "token"),
            ("Mutation", "projectMutations"),
        ] {
            assert!(!is_read_model_field(ty, field), "{ty}.{field}");
        }
        assert!(is_read_model_field("Version", "__typename"));
        assert!(is_read_model_field("[Model!]", "items"));
    }
}
