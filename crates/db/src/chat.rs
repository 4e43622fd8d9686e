use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::{AssertSqlSafe, FromRow};

use crate::{Db, DbError, placeholders};

/// A send as recorded under the sender's own id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRecord {
    /// The message's id.
    pub server_id: String,
    /// When the server accepted it, Unix milliseconds.
    pub created_at: i64,
    /// Whether a delivery worker stored it.
    pub delivered: bool,
    /// What was (or is to be) published, until a delivery worker stored it.
    pub payload: Vec<u8>,
    /// What the send said (a digest the chat server makes), to recognise a reused id.
    pub digest: String,
}

/// A `chat_sends` row: server id, created at, delivered, payload, digest.
type SendRow = (String, i64, i64, Option<Vec<u8>>, String);

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
        let inserted: Option<SendRow> = sqlx::query_as(
            "INSERT INTO chat_sends \
             (account_id, device_id, client_id, server_id, created_at, payload, digest) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (account_id, device_id, client_id) DO NOTHING \
             RETURNING server_id, created_at, delivered, payload, digest",
        )
        .bind(send.account)
        .bind(send.device)
        .bind(send.client_id)
        .bind(send.server_id)
        .bind(send.now_ms)
        .bind(send.payload)
        .bind(send.digest)
        .fetch_optional(&self.writer)
        .await?;
        let (server_id, created_at, delivered, payload, digest) = match inserted {
            Some(row) => row,
            None => {
                sqlx::query_as(
                    "SELECT server_id, created_at, delivered, payload, digest FROM chat_sends \
                     WHERE account_id = $1 AND device_id = $2 AND client_id = $3",
                )
                .bind(send.account)
                .bind(send.device)
                .bind(send.client_id)
                .fetch_one(&self.pool)
                .await?
            }
        };
        Ok(SendRecord {
            server_id,
            created_at,
            delivered: delivered != 0,
            payload: payload.unwrap_or_default(),
            digest,
        })
    }

    /// Whether `device` of `account` sent a message under `client_id` already (a retry).
    pub async fn send_recorded(
        &self,
        account: &str,
        device: i64,
        client_id: &str,
    ) -> Result<bool, DbError> {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT 1 FROM chat_sends \
             WHERE account_id = $1 AND device_id = $2 AND client_id = $3",
        )
        .bind(account)
        .bind(device)
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?
        .is_some())
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
                .execute(&self.writer)
                .await?
                .rows_affected(),
        )
    }

    /// Stores messages, in order, each in the inbox of every device of its copies under the
    /// device's next sequence numbers, and records their sends delivered, all in one
    /// transaction of a few statements whatever the batch holds. Returns each copy's sequence
    /// number, in the order given: `None` where the device has that `server_id` already (a
    /// redelivery, or a repeat inside the batch), which uses up no number. Devices are locked
    /// in (account, device) order. Another transaction storing one of the same copies at once
    /// makes this one fail with [`DbError::Conflict`] before it commits; the caller retries.
    pub async fn deliver(
        &self,
        messages: &[(NewInboxMessage<'_>, Vec<InboxCopy<'_>>)],
    ) -> Result<Vec<Vec<Option<i64>>>, DbError> {
        let mut tx = self.begin().await?;
        let keys: Vec<(&str, i64, &str)> = messages
            .iter()
            .flat_map(|(m, copies)| copies.iter().map(|c| (c.account, c.device, m.server_id)))
            .collect();
        let mut stored = stored_copies(&mut tx, &keys).await?;
        // The new copies and their bytes, counted per device in (account, device) order.
        let mut counts: BTreeMap<(&str, i64), (i64, i64)> = BTreeMap::new();
        let fresh: Vec<Vec<bool>> = messages
            .iter()
            .map(|(m, copies)| {
                copies
                    .iter()
                    .map(|c| {
                        let new =
                            stored.insert((c.account.to_owned(), c.device, m.server_id.to_owned()));
                        if new {
                            let count = counts.entry((c.account, c.device)).or_default();
                            count.0 += 1;
                            count.1 += i64::try_from(c.body.len()).unwrap_or(i64::MAX);
                        }
                        new
                    })
                    .collect()
            })
            .collect();
        let mut next = reserve_seqs(&mut tx, &counts).await?;
        let mut seqs = Vec::with_capacity(messages.len());
        let mut rows = Vec::new();
        for ((message, copies), fresh) in messages.iter().zip(&fresh) {
            let mut message_seqs = Vec::with_capacity(copies.len());
            for (copy, &new) in copies.iter().zip(fresh) {
                let seq = match next.get_mut(&(copy.account, copy.device)) {
                    Some(seq) if new => {
                        *seq += 1;
                        rows.push((message, copy, *seq - 1));
                        Some(*seq - 1)
                    }
                    _ => None,
                };
                message_seqs.push(seq);
            }
            seqs.push(message_seqs);
        }
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO inbox (account_id, device_id, seq, server_id, sender_account, \
                 sender_device, sent_at, kind, body, group_id, size) VALUES {} \
                 ON CONFLICT (account_id, device_id, server_id) DO NOTHING",
                placeholders(chunk.len(), 11)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql)).persistent(false);
            for (message, copy, seq) in chunk {
                query = query
                    .bind(copy.account)
                    .bind(copy.device)
                    .bind(*seq)
                    .bind(message.server_id)
                    .bind(message.sender_account)
                    .bind(message.sender_device)
                    .bind(message.sent_at)
                    .bind(message.kind)
                    .bind(copy.body)
                    .bind(message.group.unwrap_or_default())
                    .bind(i64::try_from(copy.body.len()).unwrap_or(i64::MAX));
            }
            let done = query.execute(&mut *tx).await?;
            if done.rows_affected() != chunk.len() as u64 {
                // A concurrent delivery stored some of them first; their numbers would be
                // lost, so none of this is kept.
                return Err(DbError::Conflict);
            }
        }
        let server_ids: Vec<&str> = messages.iter().map(|(m, _)| m.server_id).collect();
        for chunk in server_ids.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "UPDATE chat_sends SET delivered = 1, payload = NULL WHERE server_id IN {}",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(AssertSqlSafe(sql)).persistent(false);
            for id in chunk {
                query = query.bind(*id);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
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

    /// Messages waiting unacknowledged in every device's inbox (for metrics).
    pub async fn inbox_waiting(&self) -> Result<i64, DbError> {
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM inbox WHERE acked = 0")
            .fetch_one(&self.pool)
            .await?;
        Ok(count)
    }

    /// Marks a device's inbox messages up to `seq` acknowledged; they stay (without their
    /// body) as tombstones until they expire, so a redelivery is not stored again. Returns
    /// how many.
    pub async fn ack_inbox(&self, account: &str, device: i64, seq: i64) -> Result<u64, DbError> {
        let mut tx = self.begin().await?;
        let acked: Vec<(i64,)> = sqlx::query_as(
            "UPDATE inbox SET acked = 1, body = $4 \
             WHERE account_id = $1 AND device_id = $2 AND seq <= $3 AND acked = 0 \
             RETURNING size",
        )
        .bind(account)
        .bind(device)
        .bind(seq)
        .bind(Vec::<u8>::new())
        .fetch_all(&mut *tx)
        .await?;
        let bytes: i64 = acked.iter().map(|(size,)| size).sum();
        let count = i64::try_from(acked.len()).unwrap_or(i64::MAX);
        left_waiting(&mut tx, account, device, count, bytes, 0).await?;
        tx.commit().await?;
        Ok(acked.len() as u64)
    }

    /// Of these accounts' devices not removed, those whose inbox holds `max_messages`
    /// unacknowledged messages or `max_bytes` of them, or more.
    pub async fn full_inboxes(
        &self,
        accounts: &[&str],
        max_messages: i64,
        max_bytes: i64,
    ) -> Result<Vec<(String, i64)>, DbError> {
        let mut full = Vec::new();
        for chunk in accounts.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT c.account_id, c.device_id FROM inbox_cursors c \
                 JOIN devices d ON d.account_id = c.account_id AND d.device_id = c.device_id \
                 WHERE c.account_id IN {} AND d.removed_at IS NULL \
                 AND (c.waiting >= ${} OR c.waiting_bytes >= ${})",
                placeholders(1, chunk.len()),
                chunk.len() + 1,
                chunk.len() + 2
            );
            let mut query =
                sqlx::query_as::<_, (String, i64)>(AssertSqlSafe(sql)).persistent(false);
            for account in chunk {
                query = query.bind(*account);
            }
            full.extend(
                query
                    .bind(max_messages)
                    .bind(max_bytes)
                    .fetch_all(&self.pool)
                    .await?,
            );
        }
        Ok(full)
    }

    /// Counts messages a device was not given (its inbox was full) as dropped, to tell it
    /// on its next hello.
    pub async fn count_dropped(&self, account: &str, device: i64, n: i64) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE inbox_cursors SET dropped = dropped + $3 \
             WHERE account_id = $1 AND device_id = $2",
        )
        .bind(account)
        .bind(device)
        .bind(n)
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}

/// Takes `count` messages of `bytes` off a device's waiting totals, and adds `dropped`.
async fn left_waiting(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    account: &str,
    device: i64,
    count: i64,
    bytes: i64,
    dropped: i64,
) -> Result<(), DbError> {
    if count == 0 && dropped == 0 {
        return Ok(());
    }
    sqlx::query(
        "UPDATE inbox_cursors SET waiting = waiting - $3, waiting_bytes = waiting_bytes - $4, \
         dropped = dropped + $5 WHERE account_id = $1 AND device_id = $2",
    )
    .bind(account)
    .bind(device)
    .bind(count)
    .bind(bytes)
    .bind(dropped)
    .execute(&mut **tx)
    .await?;
    Ok(())
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
            let mut tx = self.begin().await?;
            let gone: Vec<(i64, i64)> = sqlx::query_as(
                "DELETE FROM inbox WHERE account_id = $1 AND device_id = $2 AND sent_at < $3 \
                 RETURNING acked, size",
            )
            .bind(&account)
            .bind(device)
            .bind(cutoff_ms)
            .fetch_all(&mut *tx)
            .await?;
            let unread_sizes: Vec<i64> = gone
                .iter()
                .filter(|(acked, _)| *acked == 0)
                .map(|(_, size)| *size)
                .collect();
            let unread = i64::try_from(unread_sizes.len()).unwrap_or(i64::MAX);
            let bytes = unread_sizes.iter().sum();
            left_waiting(&mut tx, &account, device, unread, bytes, unread).await?;
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
            .execute(&self.writer)
            .await?;
        }
        Ok(dropped)
    }
}

/// Rows a multi-row statement carries at most (10 parameters each: well under SQLite's limit).
const ROWS_PER_STATEMENT: usize = 500;

/// Which of these (account, device, server id) copies an inbox holds already.
async fn stored_copies(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    keys: &[(&str, i64, &str)],
) -> Result<HashSet<(String, i64, String)>, DbError> {
    let mut stored = HashSet::new();
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT account_id, device_id, server_id FROM inbox \
             WHERE (account_id, device_id, server_id) IN (VALUES {})",
            placeholders(chunk.len(), 3)
        );
        let mut query =
            sqlx::query_as::<_, (String, i64, String)>(AssertSqlSafe(sql)).persistent(false);
        for (account, device, server_id) in chunk {
            query = query.bind(*account).bind(*device).bind(*server_id);
        }
        stored.extend(query.fetch_all(&mut **tx).await?);
    }
    Ok(stored)
}

/// Moves each device's cursor on by its count, in (account, device) order; returns the first
/// sequence number reserved for each.
async fn reserve_seqs<'a>(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    counts: &BTreeMap<(&'a str, i64), (i64, i64)>,
) -> Result<HashMap<(&'a str, i64), i64>, DbError> {
    let counts: Vec<_> = counts.iter().collect();
    let mut first = HashMap::with_capacity(counts.len());
    for chunk in counts.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO inbox_cursors (account_id, device_id, next_seq, waiting, waiting_bytes) \
             VALUES {} ON CONFLICT (account_id, device_id) \
             DO UPDATE SET next_seq = inbox_cursors.next_seq + excluded.next_seq, \
             waiting = inbox_cursors.waiting + excluded.waiting, \
             waiting_bytes = inbox_cursors.waiting_bytes + excluded.waiting_bytes \
             RETURNING account_id, device_id, next_seq",
            placeholders(chunk.len(), 5)
        );
        let mut query =
            sqlx::query_as::<_, (String, i64, i64)>(AssertSqlSafe(sql)).persistent(false);
        for ((account, device), (count, bytes)) in chunk {
            query = query
                .bind(*account)
                .bind(*device)
                .bind(*count)
                .bind(*count)
                .bind(*bytes);
        }
        let last: HashMap<(String, i64), i64> = query
            .fetch_all(&mut **tx)
            .await?
            .into_iter()
            .map(|(account, device, last)| ((account, device), last))
            .collect();
        for &(&(account, device), &(count, _)) in chunk {
            if let Some(last) = last.get(&(account.to_owned(), device)) {
                first.insert((account, device), last - count + 1);
            }
        }
    }
    Ok(first)
}
