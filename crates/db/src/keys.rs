//! The key directory's storage: each device's Olm identity and fallback key, and the one-time
//! keys nobody has claimed yet.

use sqlx::{AssertSqlSafe, FromRow};

use crate::{Backend, Db, DbError, placeholders};

/// A device's published identity and fallback key.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct DeviceKeysRow {
    /// The device's number.
    pub device_id: i64,
    /// Its Olm Curve25519 identity key.
    pub curve25519: String,
    /// Its Olm Ed25519 key.
    pub ed25519: String,
    /// Its login key's signature over the identity.
    pub identity_signature: String,
    /// Its fallback key's id, key and signature, once published.
    pub fallback_key_id: Option<String>,
    /// The fallback key.
    pub fallback_key: Option<String>,
    /// The fallback key's signature.
    pub fallback_signature: Option<String>,
    /// The device's login key (from `devices`).
    pub login_key: Vec<u8>,
}

/// What a device publishes.
#[derive(Debug, Clone, Copy)]
pub struct NewDeviceKeys<'a> {
    /// The account.
    pub account: &'a str,
    /// The device.
    pub device: i64,
    /// The Olm Curve25519 identity key.
    pub curve25519: &'a str,
    /// The Olm Ed25519 key.
    pub ed25519: &'a str,
    /// The login key's signature over the identity.
    pub identity_signature: &'a str,
    /// A new fallback key: id, key, signature.
    pub fallback: Option<(&'a str, &'a str, &'a str)>,
    /// One-time keys to add: id, key.
    pub one_time_keys: &'a [(&'a str, &'a str)],
    /// Now, Unix milliseconds.
    pub now_ms: i64,
    /// Most one-time keys a device may hold.
    pub max_one_time_keys: i64,
}

/// How a publish went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Stored; what the device now holds.
    Stored {
        /// Unclaimed one-time keys.
        one_time_keys: i64,
        /// Whether a fallback key is published.
        fallback_key: bool,
    },
    /// The device published another identity before; nothing was stored.
    IdentityChanged,
    /// The one-time keys would be more than allowed; nothing was stored.
    TooManyKeys {
        /// How many the device holds.
        held: i64,
    },
}

/// One device's keys with a one-time key claimed from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedKeys {
    /// The device's identity and fallback key.
    pub keys: DeviceKeysRow,
    /// The one-time key claimed (id, key); `None` when the device had none left.
    pub one_time_key: Option<(String, String)>,
    /// One-time keys the device has left.
    pub left: i64,
}

impl Db {
    /// Publishes a device's keys: its identity (fixed once published), a new fallback key if
    /// given, and more one-time keys (an id the device holds already is kept as it was).
    pub async fn publish_keys(&self, keys: NewDeviceKeys<'_>) -> Result<Published, DbError> {
        let mut tx = self.begin().await?;
        let published: Option<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT curve25519, ed25519, fallback_key FROM device_keys \
             WHERE account_id = $1 AND device_id = $2",
        )
        .bind(keys.account)
        .bind(keys.device)
        .fetch_optional(&mut *tx)
        .await?;
        let (fallback_id, fallback_key, fallback_signature) = match keys.fallback {
            Some((id, key, signature)) => (Some(id), Some(key), Some(signature)),
            None => (None, None, None),
        };
        let fallback_before = published.as_ref().is_some_and(|(_, _, f)| f.is_some());
        match published {
            Some((curve25519, ed25519, _))
                if (curve25519.as_str(), ed25519.as_str()) != (keys.curve25519, keys.ed25519) =>
            {
                return Ok(Published::IdentityChanged);
            }
            Some(_) => {
                sqlx::query(
                    "UPDATE device_keys SET \
                     fallback_key_id = COALESCE($3, fallback_key_id), \
                     fallback_key = COALESCE($4, fallback_key), \
                     fallback_signature = COALESCE($5, fallback_signature), updated_at = $6 \
                     WHERE account_id = $1 AND device_id = $2",
                )
                .bind(keys.account)
                .bind(keys.device)
                .bind(fallback_id)
                .bind(fallback_key)
                .bind(fallback_signature)
                .bind(keys.now_ms)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query(
                    "INSERT INTO device_keys (account_id, device_id, curve25519, ed25519, \
                     identity_signature, fallback_key_id, fallback_key, fallback_signature, \
                     updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(keys.account)
                .bind(keys.device)
                .bind(keys.curve25519)
                .bind(keys.ed25519)
                .bind(keys.identity_signature)
                .bind(fallback_id)
                .bind(fallback_key)
                .bind(fallback_signature)
                .bind(keys.now_ms)
                .execute(&mut *tx)
                .await?;
            }
        }
        if !keys.one_time_keys.is_empty() {
            let sql = format!(
                "INSERT INTO one_time_keys (account_id, device_id, key_id, key, created_at) \
                 VALUES {} ON CONFLICT (account_id, device_id, key_id) DO NOTHING",
                placeholders(keys.one_time_keys.len(), 5)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql)).persistent(false);
            for (key_id, key) in keys.one_time_keys {
                query = query
                    .bind(keys.account)
                    .bind(keys.device)
                    .bind(*key_id)
                    .bind(*key)
                    .bind(keys.now_ms);
            }
            query.execute(&mut *tx).await?;
        }
        let held = count_one_time_keys(&mut tx, keys.account, keys.device).await?;
        if held > keys.max_one_time_keys {
            return Ok(Published::TooManyKeys {
                held: held - i64::try_from(keys.one_time_keys.len()).unwrap_or(0),
            });
        }
        tx.commit().await?;
        Ok(Published::Stored {
            one_time_keys: held,
            fallback_key: fallback_before || keys.fallback.is_some(),
        })
    }

    /// The keys of every active device of `account` that published keys, by number, each
    /// with one of its one-time keys claimed if `claim`: removed as it is handed out, so no
    /// two senders get the same one.
    pub async fn claim_keys(
        &self,
        account: &str,
        claim: bool,
    ) -> Result<Vec<ClaimedKeys>, DbError> {
        let mut tx = self.begin().await?;
        let devices: Vec<DeviceKeysRow> = sqlx::query_as(
            "SELECT k.device_id, k.curve25519, k.ed25519, k.identity_signature, \
             k.fallback_key_id, k.fallback_key, k.fallback_signature, d.identity_key AS login_key \
             FROM device_keys k JOIN devices d \
             ON d.account_id = k.account_id AND d.device_id = k.device_id AND d.removed_at IS NULL \
             WHERE k.account_id = $1 ORDER BY k.device_id",
        )
        .bind(account)
        .fetch_all(&mut *tx)
        .await?;
        // PostgreSQL: a concurrent claim skips the key this one holds instead of both taking
        // it; SQLite writers are serial.
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let take = format!(
            "DELETE FROM one_time_keys WHERE account_id = $1 AND device_id = $2 AND key_id = \
             (SELECT key_id FROM one_time_keys WHERE account_id = $1 AND device_id = $2 \
             ORDER BY created_at, key_id LIMIT 1{lock}) RETURNING key_id, key"
        );
        let mut claimed = Vec::with_capacity(devices.len());
        for keys in devices {
            let one_time_key: Option<(String, String)> = if claim {
                sqlx::query_as(AssertSqlSafe(take.clone()))
                    .bind(account)
                    .bind(keys.device_id)
                    .fetch_optional(&mut *tx)
                    .await?
            } else {
                None
            };
            let left = count_one_time_keys(&mut tx, account, keys.device_id).await?;
            claimed.push(ClaimedKeys {
                keys,
                one_time_key,
                left,
            });
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// How many one-time keys a device holds; `None` if it has published no keys.
    pub async fn one_time_key_count(
        &self,
        account: &str,
        device: i64,
    ) -> Result<Option<i64>, DbError> {
        let count: Option<(i64,)> = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM one_time_keys o \
             WHERE o.account_id = k.account_id AND o.device_id = k.device_id) \
             FROM device_keys k WHERE k.account_id = $1 AND k.device_id = $2",
        )
        .bind(account)
        .bind(device)
        .fetch_optional(&self.pool)
        .await?;
        Ok(count.map(|(count,)| count))
    }
}

async fn count_one_time_keys(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    account: &str,
    device: i64,
) -> Result<i64, DbError> {
    let (count,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM one_time_keys WHERE account_id = $1 AND device_id = $2",
    )
    .bind(account)
    .bind(device)
    .fetch_one(&mut **tx)
    .await?;
    Ok(count)
}
