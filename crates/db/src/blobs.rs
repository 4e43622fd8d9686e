use sqlx::FromRow;

use crate::{Db, DbError};

/// One stored blob: content address and size.
#[derive(Debug, Clone, FromRow)]
pub struct BlobRow {
    /// Lowercase hex SHA-256 of the bytes.
    pub id: String,
    /// Size in bytes.
    pub size: i64,
    /// Where the blob store keeps the bytes.
    pub storage_key: String,
    /// Unix seconds of the first upload.
    pub created_at: i64,
}

impl Db {
    /// Looks a blob up by id.
    pub async fn blob(&self, id: &str) -> Result<Option<BlobRow>, DbError> {
        Ok(
            sqlx::query_as("SELECT id, size, storage_key, created_at FROM blobs WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}
