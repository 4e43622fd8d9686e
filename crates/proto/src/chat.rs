use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{GroupChange, GroupEnvelope, MemberDevice, MemberDeviceKey};

/// One device's copy of a message: the sender's ciphertext for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The recipient device.
    pub device_id: u32,
    /// The ciphertext, standard base64; at most 64 KiB decoded.
    pub body: String,
}

/// Who sent a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Sender {
    /// The sender's account.
    pub account_id: String,
    /// The sending device.
    pub device_id: u32,
}

/// A device of the recipient, as a `mismatch` lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceKey {
    /// Its number.
    pub device_id: u32,
    /// Its Ed25519 identity key, standard base64.
    pub identity_key: String,
}

/// What a receipt says about messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReceiptStatus {
    /// They reached a device of the account sending the receipt.
    Delivered,
    /// Its user saw them.
    Read,
}

/// What a typing indicator says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TypingState {
    /// Started typing.
    Started,
    /// Stopped.
    Stopped,
}

/// A frame from a client (docs/protocol.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// A message for every device of one account.
    Send {
        /// The client's own id for the message, 1 to 64 characters.
        id: String,
        /// The recipient account.
        to: String,
        /// One copy per recipient device.
        envelopes: Vec<Envelope>,
    },
    /// A message for every member device of a group (but the sending one).
    SendGroup {
        /// The client's own id for the message, 1 to 64 characters.
        id: String,
        /// The group.
        group: String,
        /// One copy per member device.
        envelopes: Vec<GroupEnvelope>,
    },
    /// This device has every message up to `seq`.
    Ack {
        /// The highest inbox sequence number received.
        seq: u64,
    },
    /// Tells every device of `to` that its messages `ids` were delivered or read; stored
    /// for devices that are offline, answered `sent` like a message.
    Receipt {
        /// The client's own id for the receipt, 1 to 64 characters.
        id: String,
        /// The account that sent the messages.
        to: String,
        /// Delivered or read.
        status: ReceiptStatus,
        /// The messages' `server_id`s, 1 to 100.
        ids: Vec<String>,
    },
    /// An ephemeral typing indicator for the devices of `to` that are connected now; never
    /// stored, never answered.
    Typing {
        /// The account being typed to.
        to: String,
        /// Started or stopped.
        state: TypingState,
    },
    /// An ephemeral typing indicator for the member devices of `group` connected now; never
    /// stored, never answered.
    TypingGroup {
        /// The group being typed to.
        group: String,
        /// Started or stopped.
        state: TypingState,
    },
}

impl ClientFrame {
    /// The frame's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Send { .. } => "send",
            Self::SendGroup { .. } => "send_group",
            Self::Ack { .. } => "ack",
            Self::Receipt { .. } => "receipt",
            Self::Typing { .. } => "typing",
            Self::TypingGroup { .. } => "typing_group",
        }
    }
}

/// A frame from the server (docs/protocol.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The connection is ready.
    Hello {
        /// The connected account.
        account_id: String,
        /// The connected device.
        device_id: u32,
        /// Messages waiting in this device's inbox (they follow).
        pending: u64,
        /// Messages that expired unread in this device's inbox since its last `hello`.
        dropped: u64,
    },
    /// A stored message for this device.
    Message {
        /// Its place in this device's inbox.
        seq: u64,
        /// The message's id, the same in every device's copy.
        server_id: String,
        /// Who sent it.
        from: Sender,
        /// When the server accepted it, Unix milliseconds.
        timestamp: i64,
        /// The group it was sent to; absent for a message to this account.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
        /// The sender's ciphertext for this device, standard base64.
        body: String,
    },
    /// A stored change of a group this account is (or was) in: acknowledge it by `seq`.
    Group {
        /// Its place in this device's inbox.
        seq: u64,
        /// The change's id.
        server_id: String,
        /// The member who made it.
        from: Sender,
        /// When the server made it, Unix milliseconds.
        timestamp: i64,
        /// The group.
        group: String,
        /// What changed.
        change: GroupChange,
        /// The accounts it changed.
        members: Vec<String>,
        /// The group's version after the change.
        version: u64,
    },
    /// A stored receipt for this device: acknowledge it by `seq` like a message.
    Receipt {
        /// Its place in this device's inbox.
        seq: u64,
        /// The receipt's id.
        server_id: String,
        /// Who sent the receipt (the recipient of the messages).
        from: Sender,
        /// When the server accepted it, Unix milliseconds.
        timestamp: i64,
        /// Delivered or read.
        status: ReceiptStatus,
        /// The messages it is about.
        ids: Vec<String>,
    },
    /// This device holds few one-time keys (after `hello`, and when a claim leaves it
    /// under `chat.one_time_keys_low`): publish more with `PUT /v1/keys`.
    KeysLow {
        /// One-time keys the server still holds for this device.
        one_time_keys: u64,
    },
    /// Someone is typing to this account, or to a group it is in (ephemeral).
    Typing {
        /// Who.
        from: Sender,
        /// The group typed to; absent when typing to this account.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
        /// Started or stopped.
        state: TypingState,
    },
    /// A send or receipt is durable.
    Sent {
        /// The client's id of the send.
        id: String,
        /// The message's id.
        server_id: String,
        /// When the server accepted it, Unix milliseconds.
        timestamp: i64,
    },
    /// A send's devices are not the recipient's: nothing was stored.
    Mismatch {
        /// The client's id of the send.
        id: String,
        /// Recipient devices the send left out.
        missing: Vec<u32>,
        /// Devices the send named that the recipient does not have.
        extra: Vec<u32>,
        /// The recipient's devices now.
        devices: Vec<DeviceKey>,
    },
    /// A group send's devices are not the members' devices: nothing was stored.
    GroupMismatch {
        /// The client's id of the send.
        id: String,
        /// The group.
        group: String,
        /// Member devices the send left out.
        missing: Vec<MemberDevice>,
        /// Devices the send named that are not member devices.
        extra: Vec<MemberDevice>,
        /// Every member device now (but the sending one).
        devices: Vec<MemberDeviceKey>,
    },
    /// A frame was refused.
    Error {
        /// The client's id of the refused send, if it was one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Stable code.
        code: String,
        /// What happened, for people.
        message: String,
        /// `rate-limited`: seconds until the frame would be taken.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
    },
}

impl ServerFrame {
    /// The frame's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Hello { .. } => "hello",
            Self::Message { .. } => "message",
            Self::Group { .. } => "group",
            Self::Receipt { .. } => "receipt",
            Self::KeysLow { .. } => "keys_low",
            Self::Typing { .. } => "typing",
            Self::Sent { .. } => "sent",
            Self::Mismatch { .. } => "mismatch",
            Self::GroupMismatch { .. } => "group_mismatch",
            Self::Error { .. } => "error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `kind` is the `type` a frame has on the wire (metrics count frames by it).
    #[test]
    fn a_frames_kind_is_its_wire_type() {
        let from = || Sender {
            account_id: "a".into(),
            device_id: 1,
        };
        let client = [
            r#"{"type":"send","id":"1","to":"b","envelopes":[]}"#,
            r#"{"type":"send_group","id":"1","group":"g","envelopes":[]}"#,
            r#"{"type":"ack","seq":1}"#,
            r#"{"type":"receipt","id":"1","to":"b","status":"read","ids":["x"]}"#,
            r#"{"type":"typing","to":"b","state":"started"}"#,
            r#"{"type":"typing_group","group":"g","state":"stopped"}"#,
        ];
        for text in client {
            let frame: ClientFrame = serde_json::from_str(text).expect(text);
            assert!(
                text.contains(&format!(r#""type":"{}""#, frame.kind())),
                "{text}"
            );
        }
        let server = [
            ServerFrame::Hello {
                account_id: "a".into(),
                device_id: 1,
                pending: 0,
                dropped: 0,
            },
            ServerFrame::Message {
                seq: 1,
                server_id: "s".into(),
                from: from(),
                timestamp: 0,
                group: None,
                body: String::new(),
            },
            ServerFrame::Group {
                seq: 1,
                server_id: "s".into(),
                from: from(),
                timestamp: 0,
                group: "g".into(),
                change: crate::GroupChange::Created,
                members: vec![],
                version: 1,
            },
            ServerFrame::Receipt {
                seq: 1,
                server_id: "s".into(),
                from: from(),
                timestamp: 0,
                status: ReceiptStatus::Delivered,
                ids: vec![],
            },
            ServerFrame::KeysLow { one_time_keys: 1 },
            ServerFrame::Typing {
                from: from(),
                group: None,
                state: TypingState::Started,
            },
            ServerFrame::Sent {
                id: "1".into(),
                server_id: "s".into(),
                timestamp: 0,
            },
            ServerFrame::Mismatch {
                id: "1".into(),
                missing: vec![],
                extra: vec![],
                devices: vec![],
            },
            ServerFrame::GroupMismatch {
                id: "1".into(),
                group: "g".into(),
                missing: vec![],
                extra: vec![],
                devices: vec![],
            },
            ServerFrame::Error {
                id: None,
                code: "c".into(),
                message: "m".into(),
                retry_after: None,
            },
        ];
        for frame in server {
            let json = serde_json::to_value(&frame).expect("json");
            assert_eq!(json["type"], frame.kind(), "{json}");
        }
    }
}
