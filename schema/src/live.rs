//! The live-event publisher's progress (`live_publisher`): the last event it published on a
//! channel, kept so a new leader resumes where the previous one stopped.

use sqlx::{PgPool, Row};

use crate::LogCursor;

/// The last event published on `channel`, if a leader ever recorded one.
pub async fn published(pool: &PgPool, channel: &str) -> Result<Option<LogCursor>, sqlx::Error> {
    let row = sqlx::query("SELECT transaction_id, position FROM live_publisher WHERE channel = $1")
        .bind(channel)
        .fetch_optional(pool)
        .await?;
    row.map(|r| -> Result<LogCursor, sqlx::Error> {
        let xid: String = r.try_get("transaction_id")?;
        Ok(LogCursor {
            transaction_id: xid
                .parse()
                .map_err(|e| sqlx::Error::Decode(format!("transaction id {xid:?}: {e}").into()))?,
            position: r.try_get("position")?,
        })
    })
    .transpose()
}

/// Records that everything up to `cursor` was published on `channel`.
pub async fn record(pool: &PgPool, channel: &str, cursor: LogCursor) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO live_publisher (channel, transaction_id, position) VALUES ($1, $2, $3) \
         ON CONFLICT (channel) DO UPDATE SET transaction_id = EXCLUDED.transaction_id, \
         position = EXCLUDED.position, updated_at = now()",
    )
    .bind(channel)
    .bind(cursor.transaction_id.to_string())
    .bind(cursor.position)
    .execute(pool)
    .await?;
    Ok(())
}
