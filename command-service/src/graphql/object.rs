//! `project.object(id)` and its `children`, read from the object store.

use async_graphql::{ComplexObject, Context, Scalar, ScalarType, SimpleObject, Value as GqlValue};
use schema::objects::ObjectRow;
use time::OffsetDateTime;

use super::errors::{ErrorCode, gql_error, internal};
use super::services;
use crate::error::{ApiResult, AppError};

/// Speckle's `JSONObject` scalar: any JSON object.
pub struct JsonObject(pub serde_json::Value);

#[Scalar(name = "JSONObject")]
impl ScalarType for JsonObject {
    fn parse(value: GqlValue) -> async_graphql::InputValueResult<Self> {
        Ok(Self(
            value
                .into_json()
                .map_err(async_graphql::InputValueError::custom)?,
        ))
    }

    fn to_value(&self) -> GqlValue {
        // A JSON value always converts; Null is unreachable.
        GqlValue::from_json(self.0.clone()).unwrap_or(GqlValue::Null)
    }
}

/// A stored object.
#[derive(SimpleObject)]
#[graphql(name = "Object", complex, rename_fields = "camelCase")]
pub struct SpeckleObject {
    id: String,
    speckle_type: String,
    total_children_count: Option<i32>,
    created_at: OffsetDateTime,
    #[graphql(skip)]
    project_id: String,
    #[graphql(skip)]
    raw: String,
}

impl From<ObjectRow> for SpeckleObject {
    fn from(r: ObjectRow) -> Self {
        Self {
            id: r.id,
            speckle_type: r.speckle_type,
            total_children_count: r.total_children_count,
            created_at: r.created_at,
            project_id: r.project_id,
            raw: r.data,
        }
    }
}

/// A page of an object's descendants.
#[derive(SimpleObject)]
#[graphql(rename_fields = "camelCase")]
pub struct ObjectCollection {
    total_count: i64,
    cursor: Option<String>,
    objects: Vec<SpeckleObject>,
}

fn project(data: &serde_json::Value, select: &[String]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for path in select {
        let mut here = Some(data);
        for key in path.split('.') {
            here = here.and_then(|v| v.get(key));
        }
        if let Some(found) = here {
            out.insert(path.clone(), found.clone());
        }
    }
    serde_json::Value::Object(out)
}

/// One object of a project (the caller's read access to the project was checked).
pub async fn load(
    ctx: &Context<'_>,
    project_id: &str,
    id: &str,
) -> ApiResult<Option<SpeckleObject>> {
    let row = schema::objects::row(services::pool(ctx)?, project_id, id).await?;
    Ok(row.map(SpeckleObject::from))
}

#[ComplexObject]
impl SpeckleObject {
    /// The object's JSON as sent.
    async fn data(&self) -> ApiResult<JsonObject> {
        serde_json::from_str(&self.raw)
            .map(JsonObject)
            .map_err(AppError::internal)
    }

    /// Descendants from `__closure` closer than `depth`, by id; `select` keeps only those JSON
    /// paths of each child's data.
    async fn children(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] limit: i32,
        #[graphql(default = 50)] depth: i32,
        select: Option<Vec<Option<String>>>,
        cursor: Option<String>,
    ) -> ApiResult<ObjectCollection> {
        if !(0..=1000).contains(&limit) {
            return Err(gql_error(
                ErrorCode::BadRequest,
                "limit must be between 0 and 1000",
            ));
        }
        let mut objects: Vec<SpeckleObject> = schema::objects::descendants_page(
            services::pool(ctx)?,
            &self.project_id,
            &self.id,
            depth,
            cursor.as_deref(),
            i64::from(limit),
        )
        .await?
        .into_iter()
        .map(SpeckleObject::from)
        .collect();
        let select: Option<Vec<String>> = select.map(|s| s.into_iter().flatten().collect());
        if let Some(select) = select.filter(|s| !s.is_empty()) {
            for o in &mut objects {
                let data: serde_json::Value = serde_json::from_str(&o.raw).map_err(internal)?;
                o.raw = project(&data, &select).to_string();
            }
        }
        // The limit is checked to 0..=1000 above.
        let cursor = (objects.len() == usize::try_from(limit).unwrap_or(0))
            .then(|| objects.last().map(|o| o.id.clone()))
            .flatten();
        Ok(ObjectCollection {
            // Not recorded: no children counted.
            total_count: i64::from(self.total_children_count.unwrap_or(0)),
            cursor,
            objects,
        })
    }
}
