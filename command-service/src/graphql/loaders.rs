//! Batch loaders: one query per kind of thing per request, whatever the shape of the query
//! (a project with 10 models x 5 versions would otherwise cost ~70 round trips).

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};
use sqlx::PgPool;

use super::project::{LimitedUser, Version};

/// Users by id.
pub struct UserLoader(pub PgPool);

impl Loader<String> for UserLoader {
    type Value = LimitedUser;
    type Error = Arc<sqlx::Error>;

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, LimitedUser>, Self::Error> {
        let rows: Vec<LimitedUser> = sqlx::query_as(
            "SELECT id, name, bio, company, avatar, EXISTS (SELECT 1 FROM email_verifications v WHERE v.user_id = users.id) AS verified, role FROM users WHERE id = ANY($1)",
        )
        .bind(keys)
        .fetch_all(&self.0)
        .await
        .map_err(Arc::new)?;
        Ok(rows.into_iter().map(|u| (u.id.clone(), u)).collect())
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
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "SELECT model_id, count(*) FROM versions WHERE model_id = ANY($1) GROUP BY model_id",
        )
        .bind(&ids)
        .fetch_all(&self.0)
        .await
        .map_err(Arc::new)?;
        let counts: HashMap<String, i64> = counts.into_iter().collect();
        let rows: Vec<Version> = sqlx::query_as(
            "SELECT v.id, v.referenced_object, v.message, v.source_application, v.total_children_count, \
                    v.parents, v.author_id, v.model_id, v.project_id, v.created_at \
             FROM unnest($1::text[]) AS m(id) \
             CROSS JOIN LATERAL (SELECT * FROM versions WHERE model_id = m.id \
                                 ORDER BY created_at DESC, id DESC LIMIT $2) v",
        )
        .bind(&ids)
        .bind(limit)
        .fetch_all(&self.0)
        .await
        .map_err(Arc::new)?;
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

/// The loaders of one request.
pub fn for_request(
    pool: &PgPool,
) -> (
    Arc<DataLoader<UserLoader>>,
    Arc<DataLoader<ModelVersionsLoader>>,
) {
    (
        Arc::new(DataLoader::new(UserLoader(pool.clone()), tokio::spawn)),
        Arc::new(DataLoader::new(
            ModelVersionsLoader(pool.clone()),
            tokio::spawn,
        )),
    )
}
