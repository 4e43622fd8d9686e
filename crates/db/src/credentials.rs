use sqlx::Row;

use crate::{Db, DbError};

impl Db {
    /// Stores a login challenge (by hash) for one device of an account.
    pub async fn insert_challenge(
        &self,
        challenge_hash: &str,
        account_id: &str,
        device_id: i64,
        expires_at: i64,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO challenges (challenge_hash, account_id, device_id, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(challenge_hash)
        .bind(account_id)
        .bind(device_id)
        .bind(expires_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Deletes a challenge and returns `(account_id, device_id, expires_at)`: a challenge is
    /// used at most once.
    pub async fn take_challenge(
        &self,
        challenge_hash: &str,
    ) -> Result<Option<(String, i64, i64)>, DbError> {
        let row = sqlx::query(
            "DELETE FROM challenges WHERE challenge_hash = $1 \
             RETURNING account_id, device_id, expires_at",
        )
        .bind(challenge_hash)
        .fetch_optional(&self.writer)
        .await?;
        Ok(row.map(|r| (r.get("account_id"), r.get("device_id"), r.get("expires_at"))))
    }

    /// Stores a bearer token (by hash) for one device of an account.
    pub async fn insert_token(
        &self,
        token_hash: &str,
        account_id: &str,
        device_id: i64,
        created_at: i64,
        expires_at: i64,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO tokens (token_hash, account_id, device_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(account_id)
        .bind(device_id)
        .bind(created_at)
        .bind(expires_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// The account, device and expiry (Unix seconds) of a live token.
    pub async fn token_device(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<(String, i64, i64)>, DbError> {
        let row = sqlx::query(
            "SELECT account_id, device_id, expires_at FROM tokens \
             WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| (r.get("account_id"), r.get("device_id"), r.get("expires_at"))))
    }

    /// Revokes a token; true when it existed.
    pub async fn delete_token(&self, token_hash: &str) -> Result<bool, DbError> {
        let done = sqlx::query("DELETE FROM tokens WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes expired challenges, tokens and link codes; returns how many rows went.
    pub async fn purge_expired_credentials(&self, now: i64) -> Result<u64, DbError> {
        let a = sqlx::query("DELETE FROM challenges WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.writer)
            .await?;
        let b = sqlx::query("DELETE FROM tokens WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.writer)
            .await?;
        let c = sqlx::query("DELETE FROM link_codes WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.writer)
            .await?;
        Ok(a.rows_affected() + b.rows_affected() + c.rows_affected())
    }
}
