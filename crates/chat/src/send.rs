//! A `send`: checked against the recipient's devices, recorded under the sender's id (so a
//! retry is answered the same and stored once), published to the bus keyed by the recipient,
//! and only then answered `sent`.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sealpost_proto::{DeviceKey, Envelope, ServerFrame};
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
    pub(crate) envelopes: Vec<Envelope>,
}

/// A refusal of a frame: `error` with a stable code.
fn refuse(id: &str, code: &str, message: impl Into<String>) -> ServerFrame {
    ServerFrame::Error {
        id: Some(id.to_owned()),
        code: code.to_owned(),
        message: message.into(),
    }
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
        match self.try_send(account, device, &id, &to, envelopes).await {
            Ok(frame) => frame,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "chat send failed");
                refuse(
                    &id,
                    "internal",
                    "the server failed; send again with the same id",
                )
            }
        }
    }

    async fn try_send(
        &self,
        account: &str,
        device: u32,
        id: &str,
        to: &str,
        envelopes: Vec<Envelope>,
    ) -> anyhow::Result<ServerFrame> {
        if id.is_empty() || id.chars().count() > 64 {
            return Ok(refuse(id, "invalid-id", "id must be 1 to 64 characters"));
        }
        for envelope in &envelopes {
            let Ok(body) = STANDARD.decode(&envelope.body) else {
                return Ok(refuse(id, "invalid-frame", "a body is not standard base64"));
            };
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
        let mut devices = self.db.devices(to).await?;
        if devices.is_empty() {
            return Ok(refuse(
                id,
                "no-such-account",
                "the recipient account does not exist",
            ));
        }
        // To one's own account: every other device, not the sending one.
        if to == account {
            devices.retain(|d| d.device_id != i64::from(device));
        }
        let wanted: BTreeSet<u32> = devices
            .iter()
            .filter_map(|d| u32::try_from(d.device_id).ok())
            .collect();
        let named: BTreeSet<u32> = envelopes.iter().map(|e| e.device_id).collect();
        if wanted != named || named.len() != envelopes.len() {
            return Ok(ServerFrame::Mismatch {
                id: id.to_owned(),
                missing: wanted.difference(&named).copied().collect(),
                extra: named.difference(&wanted).copied().collect(),
                devices: devices
                    .iter()
                    .map(|d| DeviceKey {
                        device_id: u32::try_from(d.device_id).unwrap_or(0),
                        identity_key: STANDARD.encode(&d.identity_key),
                    })
                    .collect(),
            });
        }
        let record = self
            .db
            .record_send(
                account,
                i64::from(device),
                id,
                &uuid::Uuid::new_v4().simple().to_string(),
                unix_millis(),
            )
            .await?;
        if !record.published {
            // A retry of a send that was recorded but not published publishes it now, under
            // its first server id: the inbox stores a server id once per device.
            let message = BusMessage {
                server_id: record.server_id.clone(),
                from_account: account.to_owned(),
                from_device: device,
                to: to.to_owned(),
                sent_at: record.created_at,
                envelopes,
            };
            self.bus
                .publish(
                    TOPIC_MESSAGES,
                    to.as_bytes(),
                    &serde_json::to_vec(&message)?,
                )
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
