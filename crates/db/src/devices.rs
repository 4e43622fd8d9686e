use sqlx::FromRow;

use crate::{Db, DbError};

/// One device of an account.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct DeviceRow {
    /// The account.
    pub account_id: String,
    /// Its number within the account: 1 for the device the account registered with.
    pub device_id: i64,
    /// A name its owner gave it.
    pub name: String,
    /// Raw 32-byte Ed25519 public key.
    pub identity_key: Vec<u8>,
    /// Unix seconds.
    pub created_at: i64,
}

const DEVICE_COLUMNS: &str = "account_id, device_id, name, identity_key, created_at";

impl Db {
    /// An active device.
    pub async fn device(
        &self,
        account_id: &str,
        device_id: i64,
    ) -> Result<Option<DeviceRow>, DbError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {DEVICE_COLUMNS} FROM devices \
             WHERE account_id = $1 AND device_id = $2 AND removed_at IS NULL"
        )))
        .bind(account_id)
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// An account's active devices, by number.
    pub async fn devices(&self, account_id: &str) -> Result<Vec<DeviceRow>, DbError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {DEVICE_COLUMNS} FROM devices \
             WHERE account_id = $1 AND removed_at IS NULL ORDER BY device_id"
        )))
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Adds a device to an account under the next number never used there, unless it has
    /// `max_devices` active devices already (`None`).
    pub async fn add_device(
        &self,
        account_id: &str,
        name: &str,
        identity_key: &[u8],
        now: i64,
        max_devices: i64,
    ) -> Result<Option<i64>, DbError> {
        let mut tx = self.begin().await?;
        // Serialises concurrent links of one account (PostgreSQL); SQLite writers are serial.
        sqlx::query("UPDATE accounts SET name = name WHERE id = $1")
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        let (active, highest): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*) FILTER (WHERE removed_at IS NULL), COALESCE(MAX(device_id), 0) \
             FROM devices WHERE account_id = $1",
        )
        .bind(account_id)
        .fetch_one(&mut *tx)
        .await?;
        if active >= max_devices {
            return Ok(None);
        }
        let device_id = highest + 1;
        insert_device(&mut tx, account_id, device_id, name, identity_key, now).await?;
        tx.commit().await?;
        Ok(Some(device_id))
    }

    /// Removes an active device, revokes its tokens and forgets its published keys; false if
    /// there was none.
    pub async fn remove_device(
        &self,
        account_id: &str,
        device_id: i64,
        now: i64,
    ) -> Result<bool, DbError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE devices SET removed_at = $3 \
             WHERE account_id = $1 AND device_id = $2 AND removed_at IS NULL",
        )
        .bind(account_id)
        .bind(device_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // Its inbox too: nobody can read or acknowledge it any more, and its waiting messages
        // would count against the account's inbox cap.
        for table in [
            "tokens",
            "device_keys",
            "one_time_keys",
            "inbox",
            "inbox_cursors",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE account_id = $1 AND device_id = $2"
            )))
            .bind(account_id)
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Stores a device-link code (by hash) for an account.
    pub async fn insert_link_code(
        &self,
        code_hash: &str,
        account_id: &str,
        expires_at: i64,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO link_codes (code_hash, account_id, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(code_hash)
        .bind(account_id)
        .bind(expires_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Deletes a link code and returns `(account_id, expires_at)`: a code is used at most once.
    pub async fn take_link_code(&self, code_hash: &str) -> Result<Option<(String, i64)>, DbError> {
        Ok(sqlx::query_as(
            "DELETE FROM link_codes WHERE code_hash = $1 RETURNING account_id, expires_at",
        )
        .bind(code_hash)
        .fetch_optional(&self.writer)
        .await?)
    }
}

/// Inserts a device row inside a transaction.
pub(crate) async fn insert_device(
    conn: &mut sqlx::AnyConnection,
    account_id: &str,
    device_id: i64,
    name: &str,
    identity_key: &[u8],
    now: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO devices (account_id, device_id, name, identity_key, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(account_id)
    .bind(device_id)
    .bind(name)
    .bind(identity_key)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
