//! A `send` or `receipt`: checked, recorded under the sender's id (so a retry is answered the
//! same and stored once), published to the bus keyed by the recipient, and only then answered
//! `sent`.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sealpost_db::DeviceRow;
use sealpost_proto::{DeviceKey, Envelope, ReceiptStatus, ServerFrame};
use serde::{Deserialize, Serialize};

use crate::{Chat, TOPIC_MESSAGES, unix_millis};

/// A message on the bus: one copy per recipient device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BusMessage {
    pub(crate) server_id: String,
    pub(crate) from_account: String,
    pub(crate) from_device: u32,
    pub(crate) to: String,
    pub(crate) sent_at: i64,
    /// `message` or `receipt`.
    pub(crate) kind: String,
    pub(crate) envelopes: Vec<Envelope>,
}

/// What a stored receipt holds (the body of its inbox entries).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReceiptBody {
    pub(crate) status: ReceiptStatus,
    pub(crate) ids: Vec<String>,
}

/// Most message ids one receipt may name.
const MAX_RECEIPT_IDS: usize = 100;

/// A refusal of a frame: `error` with a stable code.
fn refuse(id: &str, code: &str, message: impl Into<String>) -> ServerFrame {
    ServerFrame::Error {
        id: Some(id.to_owned()),
        code: code.to_owned(),
        message: message.into(),
        retry_after: None,
    }
}

/// A refusal for going over a rate limit.
fn limited(id: &str, what: &str, seconds: u64) -> ServerFrame {
    ServerFrame::Error {
        id: Some(id.to_owned()),
        code: "rate-limited".to_owned(),
        message: format!("too many {what}; retry in {seconds} s"),
        retry_after: Some(seconds),
    }
}

/// A client id, or a message id a receipt names: 1 to 64 characters.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.chars().count() <= 64
}

/// The answer when the server failed: the client retries with the same id.
fn failed(id: &str, e: &anyhow::Error) -> ServerFrame {
    tracing::error!(error = %format!("{e:#}"), "chat send failed");
    refuse(
        id,
        "internal",
        "the server failed; send again with the same id",
    )
}

impl Chat {
    /// Handles a `send` from `device` of `account`; returns the answer.
    pub(crate) async fn send(
        &self,
        account: &str,
        device: u32,
        id: String,
        to: String,
        envelopes: Vec<Envelope>,
    ) -> ServerFrame {
        self.try_send(account, device, &id, &to, envelopes)
            .await
            .unwrap_or_else(|e| failed(&id, &e))
    }

    async fn try_send(
        &self,
        account: &str,
        device: u32,
        id: &str,
        to: &str,
        envelopes: Vec<Envelope>,
    ) -> anyhow::Result<ServerFrame> {
        if !valid_id(id) {
            return Ok(refuse(id, "invalid-id", "id must be 1 to 64 characters"));
        }
        let mut bytes = 0u64;
        for envelope in &envelopes {
            let Ok(body) = STANDARD.decode(&envelope.body) else {
                return Ok(refuse(id, "invalid-frame", "a body is not standard base64"));
            };
            bytes += body.len() as u64;
            if body.len() > self.config.max_body {
                return Ok(refuse(
                    id,
                    "message-too-large",
                    format!(
                        "a body has {} bytes; the limit is {} (media travels as blob references)",
                        body.len(),
                        self.config.max_body
                    ),
                ));
            }
        }
        if !valid_id(to) {
            return Ok(refuse(
                id,
                "no-such-account",
                "the recipient account does not exist",
            ));
        }
        if let Err(seconds) = self.per_pair.check(&pair(account, to)) {
            return Ok(limited(id, "messages to this account", seconds));
        }
        if let Err(seconds) = self
            .per_device_bytes
            .take(&format!("{account}/{device}"), bytes)
        {
            return Ok(limited(id, "bytes from this device", seconds));
        }
        let Some(devices) = self.recipients(account, device, to).await? else {
            return Ok(refuse(
                id,
                "no-such-account",
                "the recipient account does not exist",
            ));
        };
        let wanted: BTreeSet<u32> = devices.iter().map(device_number).collect();
        let named: BTreeSet<u32> = envelopes.iter().map(|e| e.device_id).collect();
        if wanted != named || named.len() != envelopes.len() {
            return Ok(ServerFrame::Mismatch {
                id: id.to_owned(),
                missing: wanted.difference(&named).copied().collect(),
                extra: named.difference(&wanted).copied().collect(),
                devices: devices
                    .iter()
                    .map(|d| DeviceKey {
                        device_id: device_number(d),
                        identity_key: STANDARD.encode(&d.identity_key),
                    })
                    .collect(),
            });
        }
        self.commit(account, device, id, to, "message", envelopes)
            .await
    }

    /// Handles a `receipt` from `device` of `account`: stored for every device of `to` (but
    /// the sending one, when it is the same account); returns the answer.
    pub(crate) async fn receipt(
        &self,
        account: &str,
        device: u32,
        id: String,
        to: String,
        body: ReceiptBody,
    ) -> ServerFrame {
        if !valid_id(&id) {
            return refuse(&id, "invalid-id", "id must be 1 to 64 characters");
        }
        let ids_ok = !body.ids.is_empty()
            && body.ids.len() <= MAX_RECEIPT_IDS
            && body.ids.iter().all(|i| valid_id(i));
        if !ids_ok {
            return refuse(
                &id,
                "invalid-frame",
                format!("a receipt names 1 to {MAX_RECEIPT_IDS} message ids of 1 to 64 characters"),
            );
        }
        if !valid_id(&to) {
            return refuse(
                &id,
                "no-such-account",
                "the recipient account does not exist",
            );
        }
        if let Err(seconds) = self.per_pair.check(&pair(account, &to)) {
            return limited(&id, "receipts to this account", seconds);
        }
        self.try_receipt(account, device, &id, &to, &body)
            .await
            .unwrap_or_else(|e| failed(&id, &e))
    }

    /// Whether `account` may signal `to` now (typing indicators over the limit, or to
    /// nonsense, are dropped).
    pub(crate) fn may_signal(&self, account: &str, to: &str) -> bool {
        valid_id(to) && self.per_pair.check(&pair(account, to)).is_ok()
    }

    async fn try_receipt(
        &self,
        account: &str,
        device: u32,
        id: &str,
        to: &str,
        body: &ReceiptBody,
    ) -> anyhow::Result<ServerFrame> {
        let Some(devices) = self.recipients(account, device, to).await? else {
            return Ok(refuse(
                id,
                "no-such-account",
                "the recipient account does not exist",
            ));
        };
        let encoded = STANDARD.encode(serde_json::to_vec(body)?);
        let envelopes = devices
            .iter()
            .map(|d| Envelope {
                device_id: device_number(d),
                body: encoded.clone(),
            })
            .collect();
        self.commit(account, device, id, to, "receipt", envelopes)
            .await
    }

    /// The devices of `to` a message from `device` of `account` goes to: all of them, but the
    /// sending device when writing to one's own account. `None` if `to` has no devices.
    async fn recipients(
        &self,
        account: &str,
        device: u32,
        to: &str,
    ) -> anyhow::Result<Option<Vec<DeviceRow>>> {
        let mut devices = self.db.devices(to).await?;
        if devices.is_empty() {
            return Ok(None);
        }
        if to == account {
            devices.retain(|d| d.device_id != i64::from(device));
        }
        Ok(Some(devices))
    }

    /// Records a send under the client's id, publishes it unless that happened before, and
    /// answers `sent`. The record keeps the payload until a delivery worker has stored it, so
    /// a message the bus loses is published again (`Chat::sweep`).
    async fn commit(
        &self,
        account: &str,
        device: u32,
        id: &str,
        to: &str,
        kind: &str,
        envelopes: Vec<Envelope>,
    ) -> anyhow::Result<ServerFrame> {
        let server_id = uuid::Uuid::new_v4().simple().to_string();
        let now = unix_millis();
        let message = BusMessage {
            server_id: server_id.clone(),
            from_account: account.to_owned(),
            from_device: device,
            to: to.to_owned(),
            sent_at: now,
            kind: kind.to_owned(),
            envelopes,
        };
        let record = self
            .db
            .record_send(
                account,
                i64::from(device),
                id,
                &server_id,
                now,
                &serde_json::to_vec(&message)?,
            )
            .await?;
        if !record.published {
            // A retry of a send recorded but not published publishes the first record's
            // payload, under its first server id: the inbox stores a server id once a device.
            self.bus
                .publish(TOPIC_MESSAGES, to.as_bytes(), &record.payload)
                .await?;
            self.db
                .mark_send_published(account, i64::from(device), id)
                .await?;
        }
        Ok(ServerFrame::Sent {
            id: id.to_owned(),
            server_id: record.server_id,
            timestamp: record.created_at,
        })
    }
}

/// A device's number as the protocol spells it.
fn device_number(device: &DeviceRow) -> u32 {
    u32::try_from(device.device_id).unwrap_or(0)
}

/// The rate-limit key of messages from one account to another.
fn pair(from: &str, to: &str) -> String {
    format!("{from}>{to}")
}
