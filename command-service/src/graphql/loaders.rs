//! Batch loaders: one query per kind of thing per request, whatever the shape of the query
//! (a project with 10 models x 5 versions would otherwise cost ~70 round trips).

use std::collections::HashMap;
use std::sync::Arc;

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
                            .take(usize::try_from(*l).unwrap_or(0))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                (
                    (id.clone(), *l),
                    FirstPage {
                        total_count: counts.get(id).copied().unwrap_or(0),
                        items,
                    },
                )
            })
            .collect())
    }
}

/// How long a loader waits for more keys before it queries. Zero is enough: the executor
/// resolves sibling fields in one poll, so their keys are queued before the loader's task
/// first runs; async-graphql's default of 1 ms added a whole millisecond per nesting level.
const BATCH_WINDOW: std::time::Duration = std::time::Duration::ZERO;

/// The loaders of one request.
pub fn for_request(
    pool: &PgPool,
) -> (
    Arc<DataLoader<UserLoader>>,
    Arc<DataLoader<ModelVersionsLoader>>,
) {
    (
        Arc::new(DataLoader::new(UserLoader(pool.clone()), tokio::spawn).delay(BATCH_WINDOW)),
        Arc::new(
            DataLoader::new(ModelVersionsLoader(pool.clone()), tokio::spawn).delay(BATCH_WINDOW),
        ),
    )
}
