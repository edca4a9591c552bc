//! Batch loaders: one query per kind of thing per request, whatever the shape of the query
//! (a project with 10 models x 5 versions would otherwise cost ~70 round trips).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::dataloader::{DataLoader, Loader};
use projections::speckle::query;
use sqlx::PgPool;

use super::project::{LimitedUser, Version};

/// Users by id.
pub struct UserLoader(pub PgPool);

impl Loader<String> for UserLoader {
    type Value = LimitedUser;
    type Error = Arc<sqlx::Error>;

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, LimitedUser>, Self::Error> {
        Ok(query::limited_users(&self.0, keys)
            .await
            .map_err(Arc::new)?
            .into_iter()
            .map(|u| (u.id.clone(), LimitedUser::from(u)))
            .collect())
    }
}

/// The first page (newest `limit` versions) and the version count of models, by
/// `(model id, limit)`.
pub struct ModelVersionsLoader(pub PgPool);

/// One model's first page of versions.
#[derive(Clone)]
pub struct FirstPage {
    /// Versions in the model.
    pub total_count: i64,
    /// The newest `limit`.
    pub items: Vec<Arc<Version>>,
}

impl Loader<(String, i64)> for ModelVersionsLoader {
    type Value = FirstPage;
    type Error = Arc<sqlx::Error>;

    async fn load(
        &self,
        keys: &[(String, i64)],
    ) -> Result<HashMap<(String, i64), FirstPage>, Self::Error> {
        let ids: Vec<&str> = keys.iter().map(|(id, _)| id.as_str()).collect();
        // No keys: nothing to load.
        let limit = keys.iter().map(|(_, l)| *l).max().unwrap_or(0);
        // Pages and counts in one round trip; a model without versions has no row and a
        // count of 0.
        let rows = query::first_versions_of_models(&self.0, &ids, limit)
            .await
            .map_err(Arc::new)?;
        let mut counts: HashMap<String, i64> = HashMap::new();
        let rows: Vec<Version> = rows
            .into_iter()
            .map(|r| {
                counts.insert(r.version.model_id.clone(), r.total_count);
                Version::from(r.version)
            })
            .collect();
        let mut by_model: HashMap<String, Vec<Arc<Version>>> = HashMap::new();
        for v in rows {
            by_model
                .entry(v.model_id().to_owned())
                .or_default()
                .push(Arc::new(v));
        }
        Ok(keys
            .iter()
            .map(|(id, l)| {
                let items = by_model
                    .get(id)
                    .map(|vs| {
                        vs.iter()
                            // Limits are checked non-negative before loading.
                            .take(usize::try_from(*l).unwrap_or(0))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                (
                    (id.clone(), *l),
                    FirstPage {
                        total_count: counts.get(id).copied().unwrap_or(0), // no row: no versions
                        items,
                    },
                )
            })
            .collect())
    }
}

/// The first page (newest `limit`) of each project's unfiltered model list and its count, by
/// `(project id, limit)`: what a list of projects asks of each (`models(limit: 1) {
/// totalCount }`) in at most two round trips for the whole list. Used by [`Prefetched`] only:
/// for one project, `query::models_page` answers in one round trip.
pub struct ProjectModelsLoader(pub PgPool);

impl Loader<(String, i64)> for ProjectModelsLoader {
    type Value = Arc<query::ModelsPage>;
    type Error = Arc<sqlx::Error>;

    async fn load(
        &self,
        keys: &[(String, i64)],
    ) -> Result<HashMap<(String, i64), Arc<query::ModelsPage>>, Self::Error> {
        let ids: Vec<&str> = keys.iter().map(|(id, _)| id.as_str()).collect();
        // No keys: nothing to load.
        let limit = keys.iter().map(|(_, l)| *l).max().unwrap_or(0);
        let pages = query::first_models_of_projects(&self.0, &ids, limit)
            .await
            .map_err(Arc::new)?;
        Ok(keys
            .iter()
            .filter_map(|(id, l)| {
                let page = pages.get(id)?;
                let page = query::ModelsPage {
                    total_count: page.total_count,
                    // Limits are checked non-negative before loading.
                    items: page
                        .items
                        .iter()
                        .take(usize::try_from(*l).unwrap_or(0))
                        .cloned()
                        .collect(),
                };
                Some(((id.clone(), *l), Arc::new(page)))
            })
            .collect())
    }
}

/// First pages a list fetched for all its items at once, each taken (once) by its item.
///
/// A loader alone does not batch reliably here: its fetch task is spawned on the first key
/// and, on a multi-threaded runtime, may run on the other worker before the list's later
/// items have queued theirs (measured: 21 version queries for one 50-model page). A list that
/// knows its items fetches their first pages itself, in one query, when the document asks for
/// them ([`first_page_limits`]); an item that finds nothing here falls back to the loader.
#[derive(Default)]
pub struct Prefetched {
    versions: Mutex<HashMap<(String, i64), FirstPage>>,
    models: Mutex<HashMap<(String, i64), Arc<query::ModelsPage>>>,
}

impl Prefetched {
    /// Model `id`'s first `limit` versions, when its list fetched them.
    pub fn take_versions(&self, id: &str, limit: i64) -> Option<FirstPage> {
        self.versions.lock().ok()?.remove(&(id.to_owned(), limit))
    }

    /// Project `id`'s first `limit` models, when its list fetched them.
    pub fn take_models(&self, id: &str, limit: i64) -> Option<Arc<query::ModelsPage>> {
        self.models.lock().ok()?.remove(&(id.to_owned(), limit))
    }

    /// Fetches the first versions of `model_ids` for each of `limits`.
    pub async fn versions_of(
        &self,
        pool: &PgPool,
        model_ids: &[String],
        limits: &[i64],
    ) -> Result<(), Arc<sqlx::Error>> {
        fill(
            ModelVersionsLoader(pool.clone()),
            &self.versions,
            model_ids,
            limits,
        )
        .await
    }

    /// Fetches the first models of `project_ids` for each of `limits`.
    pub async fn models_of(
        &self,
        pool: &PgPool,
        project_ids: &[String],
        limits: &[i64],
    ) -> Result<(), Arc<sqlx::Error>> {
        fill(
            ProjectModelsLoader(pool.clone()),
            &self.models,
            project_ids,
            limits,
        )
        .await
    }
}

/// Loads `(id, limit)` for every id and limit with `loader` (one batch a limit) into `into`.
async fn fill<L>(
    loader: L,
    into: &Mutex<HashMap<(String, i64), L::Value>>,
    ids: &[String],
    limits: &[i64],
) -> Result<(), L::Error>
where
    L: Loader<(String, i64)>,
{
    for &limit in limits {
        let keys: Vec<(String, i64)> = ids.iter().map(|id| (id.clone(), limit)).collect();
        let pages = loader.load(&keys).await?;
        if let Ok(mut map) = into.lock() {
            map.extend(pages);
        }
    }
    Ok(())
}

/// The limits of the plain first pages (no `cursor`, no `filter`) the selections of `field`
/// ask for, each through `page_limit` (a refused limit is left to the field to refuse); empty
/// when any selection asks for more than a plain first page, or none asks at all.
pub fn first_page_limits(
    field: async_graphql::Lookahead<'_>,
    page_limit: impl Fn(Option<i32>) -> Option<i64>,
) -> Vec<i64> {
    let mut limits = Vec::new();
    for selection in field.selection_fields() {
        let Ok(arguments) = selection.arguments() else {
            return Vec::new();
        };
        let mut limit = None;
        for (name, value) in arguments {
            match (name.as_str(), value) {
                (_, async_graphql::Value::Null) => {}
                ("limit", async_graphql::Value::Number(n)) => {
                    limit = n.as_i64().and_then(|n| i32::try_from(n).ok());
                }
                _ => return Vec::new(),
            }
        }
        match page_limit(limit) {
            Some(l) if !limits.contains(&l) => limits.push(l),
            Some(_) => {}
            None => return Vec::new(),
        }
    }
    limits
}

/// How long a loader waits for more keys before it queries. Zero: the lists that know their
/// items prefetch for them ([`Prefetched`]), so the loader only serves the rest.
const BATCH_WINDOW: std::time::Duration = std::time::Duration::ZERO;

/// The loaders of one request.
pub struct Loaders {
    users: Arc<DataLoader<UserLoader>>,
    versions: Arc<DataLoader<ModelVersionsLoader>>,
    prefetched: Arc<Prefetched>,
}

impl Loaders {
    /// New loaders over `pool`, for one request.
    pub fn new(pool: &PgPool) -> Self {
        Self {
            users: Arc::new(
                DataLoader::new(UserLoader(pool.clone()), tokio::spawn).delay(BATCH_WINDOW),
            ),
            versions: Arc::new(
                DataLoader::new(ModelVersionsLoader(pool.clone()), tokio::spawn)
                    .delay(BATCH_WINDOW),
            ),
            prefetched: Arc::default(),
        }
    }

    /// Adds them to a request's (or a connection's) data.
    pub fn insert_into(self, data: &mut async_graphql::Data) {
        data.insert(self.users);
        data.insert(self.versions);
        data.insert(self.prefetched);
    }
}
