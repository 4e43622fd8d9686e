use sqlx::FromRow;

use crate::{Db, DbError};

/// One account as stored.
#[derive(Debug, Clone, FromRow)]
pub struct AccountRow {
    /// Immutable account id.
    pub id: String,
    /// E.164 phone number.
    pub phone: String,
    /// Display name.
    pub name: String,
    /// Raw 32-byte Ed25519 public key of the first device.
    pub identity_key: Vec<u8>,
    /// Unix seconds.
    pub created_at: i64,
}

impl Db {
    /// Inserts an account and its first device (number 1, "primary");
    /// [`DbError::Conflict`] when the phone number is taken.
    pub async fn insert_account(&self, row: &AccountRow) -> Result<(), DbError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO accounts (id, phone, name, identity_key, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&row.id)
        .bind(&row.phone)
        .bind(&row.name)
        .bind(&row.identity_key)
        .bind(row.created_at)
        .execute(&mut *tx)
        .await?;
        crate::devices::insert_device(
            &mut tx,
            &row.id,
            1,
            "primary",
            &row.identity_key,
            row.created_at,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Looks an account up by phone number.
    pub async fn account_by_phone(&self, phone: &str) -> Result<Option<AccountRow>, DbError> {
        Ok(sqlx::query_as(
            "SELECT id, phone, name, identity_key, created_at FROM accounts WHERE phone = $1",
        )
        .bind(phone)
        .fetch_optional(&self.pool)
        .await?)
    }
}
