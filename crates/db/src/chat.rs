use sqlx::FromRow;

use crate::{Db, DbError};

/// A send as recorded under the sender's own id.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct SendRecord {
    /// The message's id.
    pub server_id: String,
    /// When the server accepted it, Unix milliseconds.
    pub created_at: i64,
    /// Whether it reached the bus.
    pub published: bool,
    /// What was (or is to be) published, until a delivery worker stored it.
    pub payload: Vec<u8>,
    /// What the send said (a digest the chat server makes), to recognise a reused id.
    pub digest: String,
}

/// A send to record under the sender's own id.
#[derive(Debug, Clone, Copy)]
pub struct NewSend<'a> {
    /// The sending account.
    pub account: &'a str,
    /// The sending device.
    pub device: i64,
    /// The client's id for it.
    pub client_id: &'a str,
    /// The message's id, if this is the first time.
    pub server_id: &'a str,
    /// Now, Unix milliseconds.
    pub now_ms: i64,
    /// What to publish.
    pub payload: &'a [u8],
    /// What the send said.
    pub digest: &'a str,
}

/// A message to store in its devices' inboxes.
#[derive(Debug, Clone, Copy)]
pub struct NewInboxMessage<'a> {
    /// The message's id.
    pub server_id: &'a str,
    /// The sender's account.
    pub sender_account: &'a str,
    /// The sending device.
    pub sender_device: i64,
    /// When the server accepted it, Unix milliseconds.
    pub sent_at: i64,
    /// `message`, `receipt` or `group` (a change of a group).
    pub kind: &'a str,
    /// The group it was sent to.
    pub group: Option<&'a str>,
}

/// One device's copy of a message.
#[derive(Debug, Clone, Copy)]
pub struct InboxCopy<'a> {
    /// The device's account.
    pub account: &'a str,
    /// The device.
    pub device: i64,
    /// The ciphertext for this device (a receipt or group change: its JSON).
    pub body: &'a [u8],
}

/// One message in a device's inbox.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct InboxRow {
    /// Its place in the device's inbox.
    pub seq: i64,
    /// `message`, `receipt` or `group`.
    pub kind: String,
    /// The group it was sent to; empty for a message to the account.
    pub group_id: String,
    /// The message's id.
    pub server_id: String,
    /// The sender's account.
    pub sender_account: String,
    /// The sending device.
    pub sender_device: i64,
    /// When the server accepted it, Unix milliseconds.
    pub sent_at: i64,
    /// The ciphertext for this device.
    pub body: Vec<u8>,
}

impl Db {
    /// Records a send under `(account, device, client_id)`, unless one is recorded there
    /// already; returns the record that stands.
    pub async fn record_send(&self, send: NewSend<'_>) -> Result<SendRecord, DbError> {
        sqlx::query(
            "INSERT INTO chat_sends \
             (account_id, device_id, client_id, server_id, created_at, published, payload, digest) \
             VALUES ($1, $2, $3, $4, $5, 0, $6, $7) \
             ON CONFLICT (account_id, device_id, client_id) DO NOTHING",
        )
        .bind(send.account)
        .bind(send.device)
        .bind(send.client_id)
        .bind(send.server_id)
        .bind(send.now_ms)
        .bind(send.payload)
        .bind(send.digest)
        .execute(&self.pool)
        .await?;
        let (server_id, created_at, published, payload, digest): (
            String,
            i64,
            i64,
            Option<Vec<u8>>,
            String,
        ) = sqlx::query_as(
            "SELECT server_id, created_at, published, payload, digest FROM chat_sends \
             WHERE account_id = $1 AND device_id = $2 AND client_id = $3",
        )
        .bind(send.account)
        .bind(send.device)
        .bind(send.client_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(SendRecord {
            server_id,
            created_at,
            published: published != 0,
            payload: payload.unwrap_or_default(),
            digest,
        })
    }

    /// Sends no delivery worker has stored (the bus lost them, or publishing failed and the
    /// client did not retry) recorded after `after_ms` and before `before_ms`, at most
    /// `limit`, oldest first, with their record times.
    pub async fn undelivered_sends(
        &self,
        after_ms: i64,
        before_ms: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Vec<u8>)>, DbError> {
        Ok(sqlx::query_as(
            "SELECT created_at, payload FROM chat_sends WHERE delivered = 0 \
             AND created_at > $1 AND created_at < $2 AND payload IS NOT NULL \
             ORDER BY created_at LIMIT $3",
        )
        .bind(after_ms)
        .bind(before_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Forgets delivered sends recorded before `cutoff_ms`; returns how many.
    pub async fn purge_sends(&self, cutoff_ms: i64) -> Result<u64, DbError> {
        Ok(
            sqlx::query("DELETE FROM chat_sends WHERE delivered = 1 AND created_at < $1")
                .bind(cutoff_ms)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    /// Records that a send reached the bus.
    pub async fn mark_send_published(
        &self,
        account: &str,
        device: i64,
        client_id: &str,
    ) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE chat_sends SET published = 1 \
             WHERE account_id = $1 AND device_id = $2 AND client_id = $3",
        )
        .bind(account)
        .bind(device)
        .bind(client_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores messages, in order, each in the inbox of every device of its copies under the
    /// device's next sequence number, and records their sends delivered, all in one
    /// transaction. Returns each copy's sequence number, in the order given: `None` where the
    /// device has that `server_id` already (a redelivery). A message's devices are taken in
    /// (account, device) order; two batches that still lock devices in opposite orders make
    /// PostgreSQL abort one of them, which the caller retries.
    pub async fn deliver(
        &self,
        messages: &[(NewInboxMessage<'_>, Vec<InboxCopy<'_>>)],
    ) -> Result<Vec<Vec<Option<i64>>>, DbError> {
        let mut tx = self.pool.begin().await?;
        let mut all = Vec::with_capacity(messages.len());
        for (message, copies) in messages {
            all.push(Self::deliver_one(&mut tx, message, copies).await?);
        }
        tx.commit().await?;
        Ok(all)
    }

    async fn deliver_one(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        message: &NewInboxMessage<'_>,
        copies: &[InboxCopy<'_>],
    ) -> Result<Vec<Option<i64>>, DbError> {
        let mut order: Vec<usize> = (0..copies.len()).collect();
        order.sort_by_key(|&i| (copies[i].account, copies[i].device));
        let mut seqs = vec![None; copies.len()];
        for i in order {
            let copy = copies[i];
            let (seq,): (i64,) = sqlx::query_as(
                "INSERT INTO inbox_cursors (account_id, device_id, next_seq) VALUES ($1, $2, 1) \
                 ON CONFLICT (account_id, device_id) DO UPDATE SET next_seq = inbox_cursors.next_seq + 1 \
                 RETURNING next_seq",
            )
            .bind(copy.account)
            .bind(copy.device)
            .fetch_one(&mut **tx)
            .await?;
            let stored = sqlx::query(
                "INSERT INTO inbox (account_id, device_id, seq, server_id, sender_account, sender_device, sent_at, kind, body, group_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (account_id, device_id, server_id) DO NOTHING",
            )
            .bind(copy.account)
            .bind(copy.device)
            .bind(seq)
            .bind(message.server_id)
            .bind(message.sender_account)
            .bind(message.sender_device)
            .bind(message.sent_at)
            .bind(message.kind)
            .bind(copy.body)
            .bind(message.group.unwrap_or_default())
            .execute(&mut **tx)
            .await?;
            if stored.rows_affected() == 0 {
                // A redelivery: the sequence number (its row locked by this transaction) is
                // given back.
                sqlx::query(
                    "UPDATE inbox_cursors SET next_seq = next_seq - 1 \
                     WHERE account_id = $1 AND device_id = $2",
                )
                .bind(copy.account)
                .bind(copy.device)
                .execute(&mut **tx)
                .await?;
            } else {
                seqs[i] = Some(seq);
            }
        }
        sqlx::query("UPDATE chat_sends SET delivered = 1, payload = NULL WHERE server_id = $1")
            .bind(message.server_id)
            .execute(&mut **tx)
            .await?;
        Ok(seqs)
    }

    /// A device's inbox messages after `after` (by sequence number), at most `limit`.
    pub async fn inbox_after(
        &self,
        account: &str,
        device: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<InboxRow>, DbError> {
        Ok(sqlx::query_as(
            "SELECT seq, kind, group_id, server_id, sender_account, sender_device, sent_at, body FROM inbox \
             WHERE account_id = $1 AND device_id = $2 AND seq > $3 AND acked = 0 \
             ORDER BY seq LIMIT $4",
        )
        .bind(account)
        .bind(device)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Messages waiting in a device's inbox.
    pub async fn inbox_count(&self, account: &str, device: i64) -> Result<i64, DbError> {
        let (count,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM inbox WHERE account_id = $1 AND device_id = $2 AND acked = 0",
        )
        .bind(account)
        .bind(device)
        .fetch_one(&self.pool)
        .await?;
        Ok(count)
    }

    /// Marks a device's inbox messages up to `seq` acknowledged; they stay (without their
    /// body) as tombstones until they expire, so a redelivery is not stored again. Returns
    /// how many.
    pub async fn ack_inbox(&self, account: &str, device: i64, seq: i64) -> Result<u64, DbError> {
        let done = sqlx::query(
            "UPDATE inbox SET acked = 1, body = $4 \
             WHERE account_id = $1 AND device_id = $2 AND seq <= $3 AND acked = 0",
        )
        .bind(account)
        .bind(device)
        .bind(seq)
        .bind(Vec::<u8>::new())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

impl Db {
    /// Deletes inbox entries accepted before `cutoff_ms` (Unix milliseconds), counting the
    /// unread ones per device as dropped; returns how many unread went.
    pub async fn expire_inbox(&self, cutoff_ms: i64, limit: i64) -> Result<u64, DbError> {
        let due: Vec<(String, i64)> = sqlx::query_as(
            "SELECT DISTINCT account_id, device_id FROM inbox WHERE sent_at < $1 LIMIT $2",
        )
        .bind(cutoff_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut expired = 0;
        for (account, device) in due {
            let mut tx = self.pool.begin().await?;
            let (unread,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM inbox \
                 WHERE account_id = $1 AND device_id = $2 AND sent_at < $3 AND acked = 0",
            )
            .bind(&account)
            .bind(device)
            .bind(cutoff_ms)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "DELETE FROM inbox WHERE account_id = $1 AND device_id = $2 AND sent_at < $3",
            )
            .bind(&account)
            .bind(device)
            .bind(cutoff_ms)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE inbox_cursors SET dropped = dropped + $3 \
                 WHERE account_id = $1 AND device_id = $2",
            )
            .bind(&account)
            .bind(device)
            .bind(unread)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            expired += u64::try_from(unread).unwrap_or(0);
        }
        Ok(expired)
    }

    /// Takes the count of a device's messages dropped since it was last told.
    pub async fn take_dropped(&self, account: &str, device: i64) -> Result<i64, DbError> {
        let dropped: Option<(i64,)> = sqlx::query_as(
            "SELECT dropped FROM inbox_cursors WHERE account_id = $1 AND device_id = $2",
        )
        .bind(account)
        .bind(device)
        .fetch_optional(&self.pool)
        .await?;
        let dropped = dropped.map_or(0, |(n,)| n);
        if dropped > 0 {
            // Subtracted rather than zeroed: a sweep may be adding more right now.
            sqlx::query(
                "UPDATE inbox_cursors SET dropped = dropped - $3 \
                 WHERE account_id = $1 AND device_id = $2",
            )
            .bind(account)
            .bind(device)
            .bind(dropped)
            .execute(&self.pool)
            .await?;
        }
        Ok(dropped)
    }
}
