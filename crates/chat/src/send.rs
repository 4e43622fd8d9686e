//! `send`, `send_group` and `receipt` frames, and group changes: checked, recorded under the
//! sender's id (so a retry is answered the same and stored once), published to the bus keyed
//! by the conversation (the recipient account, or the group), and only then answered `sent`.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sealpost_db::{DeviceRow, NewSend};
use sealpost_proto::{
    DeviceKey, Envelope, GroupChange, GroupEnvelope, MemberDevice, MemberDeviceKey, ReceiptStatus,
    ServerFrame,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Chat, TOPIC_MESSAGES, unix_millis};

/// A message on the bus, with one copy per recipient device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BusMessage {
    pub(crate) server_id: String,
    pub(crate) from_account: String,
    pub(crate) from_device: u32,
    /// The bus key: the recipient account, or the group.
    pub(crate) key: String,
    /// The group it was sent to.
    #[serde(default)]
    pub(crate) group: Option<String>,
    pub(crate) sent_at: i64,
    /// `message`, `receipt` or `group` (a change of a group).
    pub(crate) kind: String,
    pub(crate) copies: Vec<Copy>,
}

/// One recipient device's copy of a message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Copy {
    pub(crate) account: String,
    pub(crate) device: u32,
    /// Standard base64.
    pub(crate) body: String,
}

/// What a stored receipt holds (the body of its inbox entries).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReceiptBody {
    pub(crate) status: ReceiptStatus,
    pub(crate) ids: Vec<String>,
}

/// What a stored group change holds (the body of its inbox entries).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct GroupBody {
    pub(crate) change: GroupChange,
    pub(crate) members: Vec<String>,
    pub(crate) version: u64,
}

/// A send, checked, on its way to the record and the bus.
struct Outgoing<'a> {
    id: &'a str,
    key: &'a str,
    group: Option<&'a str>,
    kind: &'static str,
    copies: Vec<Copy>,
    /// What the client said (a retry says the same).
    digest: String,
}

/// Most message ids one receipt may name.
const MAX_RECEIPT_IDS: usize = 100;

/// A refusal of a frame: `error` with a stable code.
pub(crate) fn refuse(id: &str, code: &str, message: impl Into<String>) -> ServerFrame {
    ServerFrame::Error {
        id: Some(id.to_owned()),
        code: code.to_owned(),
        message: message.into(),
        retry_after: None,
    }
}

/// A refusal for going over a rate limit.
pub(crate) fn limited(id: &str, what: &str, seconds: u64) -> ServerFrame {
    ServerFrame::Error {
        id: Some(id.to_owned()),
        code: "rate-limited".to_owned(),
        message: format!("too many {what}; retry in {seconds} s"),
        retry_after: Some(seconds),
    }
}

fn no_such_account(id: &str) -> ServerFrame {
    refuse(
        id,
        "no-such-account",
        "the recipient account does not exist",
    )
}

fn no_such_group(id: &str) -> ServerFrame {
    refuse(
        id,
        "no-such-group",
        "no such group, or this account is not in it",
    )
}

/// A client id, a message id a receipt names, an account or group id: 1 to 64 characters.
pub(crate) fn valid_id(id: &str) -> bool {
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
        let bytes = match self.check_send(id, envelopes.iter().map(|e| e.body.as_str())) {
            Ok(bytes) => bytes,
            Err(refusal) => return Ok(*refusal),
        };
        if !valid_id(to) {
            return Ok(no_such_account(id));
        }
        if let Some(refusal) = self.take_device_bytes(account, device, id, bytes) {
            return Ok(refusal);
        }
        // The conversation's budget is keyed by the recipient: only once it exists, so sends
        // to made-up accounts cannot fill the limiter.
        let Some(devices) = self.recipients(account, device, to).await? else {
            return Ok(no_such_account(id));
        };
        if let Some(refusal) = self.take_conversation(id, &pair(account, to)) {
            return Ok(refusal);
        }
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
        // A retry of a send that went through (and maybe filled the inbox) is answered as
        // the first was.
        if let Some(full) = self.full_inboxes(&[to]).await?.first()
            && !self
                .db
                .send_recorded(account, i64::from(device), id)
                .await?
        {
            return Ok(refuse(
                id,
                "recipient-inbox-full",
                format!(
                    "device {} of the recipient has too many messages waiting (chat.max_inbox_messages or chat.max_inbox_bytes); it must come online and read them first",
                    full.1
                ),
            ));
        }
        let digest = digest(&(to, "message", &envelopes))?;
        let copies = envelopes
            .into_iter()
            .map(|e| Copy {
                account: to.to_owned(),
                device: e.device_id,
                body: e.body,
            })
            .collect();
        let answer = self
            .commit(
                account,
                device,
                Outgoing {
                    id,
                    key: to,
                    group: None,
                    kind: "message",
                    copies,
                    digest,
                },
            )
            .await?;
        // Whom an account writes to are its contacts (for `group_adds = contacts`).
        if matches!(answer, ServerFrame::Sent { .. }) && to != account {
            self.db.add_contact(account, to).await?;
        }
        Ok(answer)
    }

    /// Handles a `send_group` from `device` of `account`; returns the answer.
    pub(crate) async fn send_group(
        &self,
        account: &str,
        device: u32,
        id: String,
        group: String,
        envelopes: Vec<GroupEnvelope>,
    ) -> ServerFrame {
        self.try_send_group(account, device, &id, &group, envelopes)
            .await
            .unwrap_or_else(|e| failed(&id, &e))
    }

    async fn try_send_group(
        &self,
        account: &str,
        device: u32,
        id: &str,
        group: &str,
        envelopes: Vec<GroupEnvelope>,
    ) -> anyhow::Result<ServerFrame> {
        let bytes = match self.check_send(id, envelopes.iter().map(|e| e.body.as_str())) {
            Ok(bytes) => bytes,
            Err(refusal) => return Ok(*refusal),
        };
        if !valid_id(group) || self.db.member_role(group, account).await?.is_none() {
            return Ok(no_such_group(id));
        }
        let conversation = pair(account, &group_conversation(group));
        if let Some(refusal) = self
            .take_conversation(id, &conversation)
            .or_else(|| self.take_device_bytes(account, device, id, bytes))
        {
            return Ok(refusal);
        }
        let mut devices = self.db.group_devices(group).await?;
        devices.retain(|d| !(d.account_id == account && d.device_id == i64::from(device)));
        let wanted: BTreeSet<MemberDevice> = devices.iter().map(member_device).collect();
        let named: BTreeSet<MemberDevice> = envelopes
            .iter()
            .map(|e| MemberDevice {
                account_id: e.account_id.clone(),
                device_id: e.device_id,
            })
            .collect();
        if wanted != named || named.len() != envelopes.len() {
            return Ok(ServerFrame::GroupMismatch {
                id: id.to_owned(),
                group: group.to_owned(),
                missing: wanted.difference(&named).cloned().collect(),
                extra: named.difference(&wanted).cloned().collect(),
                devices: devices
                    .iter()
                    .map(|d| MemberDeviceKey {
                        account_id: d.account_id.clone(),
                        device_id: device_number(d),
                        identity_key: STANDARD.encode(&d.identity_key),
                    })
                    .collect(),
            });
        }
        let digest = digest(&(group, "group-message", &envelopes))?;
        let copies = envelopes
            .into_iter()
            .map(|e| Copy {
                account: e.account_id,
                device: e.device_id,
                body: e.body,
            })
            .collect();
        let copies = self.skip_full_inboxes(copies).await?;
        self.commit(
            account,
            device,
            Outgoing {
                id,
                key: group,
                group: Some(group),
                kind: "message",
                copies,
                digest,
            },
        )
        .await
    }

    /// Checks a send's id, and that every body is base64 of at most `max_body` bytes;
    /// returns their total.
    fn check_send<'a>(
        &self,
        id: &str,
        bodies: impl Iterator<Item = &'a str>,
    ) -> Result<u64, Box<ServerFrame>> {
        if !valid_id(id) {
            return Err(Box::new(refuse(
                id,
                "invalid-id",
                "id must be 1 to 64 characters",
            )));
        }
        let mut total = 0u64;
        for body in bodies {
            let Ok(body) = sealpost_proto::BASE64.decode(body) else {
                return Err(Box::new(refuse(
                    id,
                    "invalid-frame",
                    "a body is not standard base64",
                )));
            };
            if body.len() > self.config.max_body {
                return Err(Box::new(refuse(
                    id,
                    "message-too-large",
                    format!(
                        "a body has {} bytes; the limit is {} (media travels as blob references)",
                        body.len(),
                        self.config.max_body
                    ),
                )));
            }
            total += body.len() as u64;
        }
        Ok(total)
    }

    /// Takes a send from the conversation's budget; the refusal when it is spent.
    fn take_conversation(&self, id: &str, conversation: &str) -> Option<ServerFrame> {
        self.per_pair
            .check(conversation)
            .err()
            .map(|seconds| limited(id, "messages to this conversation", seconds))
    }

    /// Takes a send's bytes from the device's budget; the refusal when it is spent.
    fn take_device_bytes(
        &self,
        account: &str,
        device: u32,
        id: &str,
        bytes: u64,
    ) -> Option<ServerFrame> {
        self.per_device_bytes
            .take(&format!("{account}/{device}"), bytes)
            .err()
            .map(|seconds| limited(id, "bytes from this device", seconds))
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
            return no_such_account(&id);
        }
        self.try_receipt(account, device, &id, &to, &body)
            .await
            .unwrap_or_else(|e| failed(&id, &e))
    }

    /// Whether `account` may signal `to` now: typing indicators to an account that does not
    /// exist, or over the limit, are dropped (checked in that order, so made-up accounts
    /// cannot fill the limiter).
    pub(crate) async fn may_signal(&self, account: &str, to: &str) -> anyhow::Result<bool> {
        Ok(valid_id(to)
            && !self.db.devices(to).await?.is_empty()
            && self.per_pair.check(&pair(account, to)).is_ok())
    }

    /// The members of `group` when `account` may signal them now: typing indicators over the
    /// group's limit, to a group `account` is not in, or to nonsense, are dropped.
    pub(crate) async fn typing_audience(
        &self,
        account: &str,
        group: &str,
    ) -> anyhow::Result<Option<Vec<String>>> {
        if !valid_id(group) {
            return Ok(None);
        }
        let members = self.db.group_members(group).await?;
        if !members.iter().any(|m| m.account_id == account)
            || self
                .per_pair
                .check(&pair(account, &group_conversation(group)))
                .is_err()
        {
            return Ok(None);
        }
        Ok(Some(members.into_iter().map(|m| m.account_id).collect()))
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
            return Ok(no_such_account(id));
        };
        if let Err(seconds) = self.per_pair.check(&pair(account, to)) {
            return Ok(limited(id, "receipts to this account", seconds));
        }
        let encoded = STANDARD.encode(serde_json::to_vec(body)?);
        let copies = devices
            .iter()
            .map(|d| Copy {
                account: to.to_owned(),
                device: device_number(d),
                body: encoded.clone(),
            })
            .collect();
        self.commit(
            account,
            device,
            Outgoing {
                id,
                key: to,
                group: None,
                kind: "receipt",
                copies,
                digest: digest(&(to, "receipt", body.status, &body.ids))?,
            },
        )
        .await
    }

    /// Tells every member device of a group, and every device of the accounts `also` (one that
    /// just left it, or ones just invited), about a change of the group, but the acting device; through the same
    /// pipeline as the group's messages, so it keeps its place among them.
    pub(crate) async fn announce(
        &self,
        account: &str,
        device: u32,
        group: &str,
        body: &GroupBody,
        also: &[String],
    ) -> anyhow::Result<()> {
        let encoded = STANDARD.encode(serde_json::to_vec(body)?);
        let mut devices = self.db.group_devices(group).await?;
        for account in also {
            devices.extend(self.db.devices(account).await?);
        }
        let copies = devices
            .iter()
            .filter(|d| !(d.account_id == account && d.device_id == i64::from(device)))
            .map(|d| Copy {
                account: d.account_id.clone(),
                device: device_number(d),
                body: encoded.clone(),
            })
            .collect();
        let copies = self.skip_full_inboxes(copies).await?;
        let id = format!("group-{}", uuid::Uuid::new_v4().simple());
        self.commit(
            account,
            device,
            Outgoing {
                id: &id,
                key: group,
                group: Some(group),
                kind: "group",
                copies,
                digest: String::new(),
            },
        )
        .await?;
        Ok(())
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

    /// The copies but those for a device whose inbox is full: that device is told on its next
    /// hello that messages were dropped, so one dormant member does not stop a group (nor
    /// group changes fill an inbox past its cap).
    async fn skip_full_inboxes(&self, copies: Vec<Copy>) -> anyhow::Result<Vec<Copy>> {
        let accounts: BTreeSet<&str> = copies.iter().map(|c| c.account.as_str()).collect();
        let full: BTreeSet<(String, i64)> = self
            .full_inboxes(&accounts.into_iter().collect::<Vec<_>>())
            .await?
            .into_iter()
            .collect();
        if full.is_empty() {
            return Ok(copies);
        }
        let mut kept = Vec::with_capacity(copies.len());
        for copy in copies {
            let key = (copy.account, i64::from(copy.device));
            if full.contains(&key) {
                self.db.count_dropped(&key.0, key.1, 1).await?;
                self.metrics.inbox_full_skipped();
                continue;
            }
            kept.push(Copy {
                account: key.0,
                ..copy
            });
        }
        Ok(kept)
    }

    /// Devices of these accounts whose inbox is at `chat.max_inbox_messages` or
    /// `chat.max_inbox_bytes`.
    async fn full_inboxes(&self, accounts: &[&str]) -> anyhow::Result<Vec<(String, i64)>> {
        let cap = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        Ok(self
            .db
            .full_inboxes(
                accounts,
                cap(self.config.max_inbox_messages),
                cap(self.config.max_inbox_bytes),
            )
            .await?)
    }

    /// Records a send under the client's id, publishes it unless it was delivered before,
    /// and answers `sent`. The record keeps the payload until a delivery worker has stored it, so
    /// a message the bus loses is published again (`Chat::sweep`).
    async fn commit(
        &self,
        account: &str,
        device: u32,
        out: Outgoing<'_>,
    ) -> anyhow::Result<ServerFrame> {
        let server_id = uuid::Uuid::new_v4().simple().to_string();
        let now = unix_millis();
        let message = BusMessage {
            server_id: server_id.clone(),
            from_account: account.to_owned(),
            from_device: device,
            key: out.key.to_owned(),
            group: out.group.map(str::to_owned),
            sent_at: now,
            kind: out.kind.to_owned(),
            copies: out.copies,
        };
        let record = self
            .db
            .record_send(NewSend {
                account,
                device: i64::from(device),
                client_id: out.id,
                server_id: &server_id,
                now_ms: now,
                payload: &serde_json::to_vec(&message)?,
                digest: &out.digest,
            })
            .await?;
        if record.digest != out.digest {
            return Ok(refuse(
                out.id,
                "id-reused",
                "this id was used for a different message; give each message its own id",
            ));
        }
        if !record.delivered {
            // A retry of a send not yet delivered publishes the first record's payload again,
            // under its first server id: the inbox stores a server id once per device, so
            // whether the first publish got through need not be written down.
            self.bus
                .publish(TOPIC_MESSAGES, out.key.as_bytes(), &record.payload)
                .await?;
        }
        Ok(ServerFrame::Sent {
            id: out.id.to_owned(),
            server_id: record.server_id,
            timestamp: record.created_at,
        })
    }
}

/// What a client said, as a SHA-256 (hex): a retry says the same, another message under the
/// same id does not.
fn digest(said: &impl Serialize) -> anyhow::Result<String> {
    Ok(hex::encode(Sha256::digest(serde_json::to_vec(said)?)))
}

/// A device's number as the protocol spells it.
fn device_number(device: &DeviceRow) -> u32 {
    u32::try_from(device.device_id).unwrap_or(0)
}

fn member_device(device: &DeviceRow) -> MemberDevice {
    MemberDevice {
        account_id: device.account_id.clone(),
        device_id: device_number(device),
    }
}

/// The rate-limit key of messages from one account to a conversation.
fn pair(from: &str, to: &str) -> String {
    format!("{from}>{to}")
}

/// A group as a conversation, for `pair`.
fn group_conversation(group: &str) -> String {
    format!("group:{group}")
}
