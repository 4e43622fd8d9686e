//! Group messages with Megolm (docs/e2e.md, "Groups"): each device sends to a group with a
//! group session of its own, encrypting each message once; the session's key travels to each
//! member device over Olm, inside the first envelope that device gets from the session. A
//! session is replaced after 100 messages, after a week, and as soon as a device it was
//! shared with is no longer a member device, so a removed member cannot read what follows.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sealpost_proto::{GroupEnvelope, MemberDevice};
use serde::{Deserialize, Serialize};
use vodozemac::PickleError;
use vodozemac::megolm::{
    GroupSession, GroupSessionPickle, InboundGroupSession, InboundGroupSessionPickle,
    MegolmMessage, SessionConfig, SessionKey, SessionOrdering,
};

use super::{E2e, Sealed, VERSION, failed, peer};
use crate::{Client, ClientError};

/// Messages a group session encrypts before it is replaced.
const ROTATE_AFTER_MESSAGES: u32 = 100;
/// Seconds a group session is used before it is replaced.
const ROTATE_AFTER_SECS: u64 = 7 * 24 * 3600;
/// Message indexes remembered per received session (to tell a replay from a redelivery).
const SEEN_PER_SESSION: usize = 1000;
/// Received sessions kept per sending device and group: the newest, and the one before it
/// (for its messages that arrive late, or again).
const KEPT_PER_SENDER: usize = 2;

/// This device's group session for one group.
pub(super) struct Outbound {
    session: GroupSession,
    /// Unix seconds.
    created: u64,
    /// The member devices (`account/device`) that have its key.
    shared: BTreeSet<String>,
}

/// Another device's group session, as this device received it.
pub(super) struct Inbound {
    group: String,
    /// Grows with each session received: the newest has the highest.
    order: u64,
    session: InboundGroupSession,
    /// Message index → the server id it came with.
    seen: BTreeMap<u32, String>,
}

/// [`Outbound`] as saved: the session as an encrypted pickle.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SavedOutbound {
    session: String,
    created: u64,
    shared: BTreeSet<String>,
}

/// [`Inbound`] as saved: the session as an encrypted pickle.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SavedInbound {
    group: String,
    #[serde(default)]
    order: u64,
    session: String,
    seen: BTreeMap<u32, String>,
}

/// A group envelope's body: the Megolm message (the same in every member device's copy) and,
/// for a device that has not had the session's key yet, the key, Olm-encrypted for it.
#[derive(Debug, Serialize, Deserialize)]
struct GroupSealed {
    v: u32,
    /// The sending device's group session.
    session_id: String,
    /// The Megolm message, standard base64.
    megolm: String,
    /// A [`RoomKey`], Olm-encrypted for this device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    room_key: Option<Sealed>,
}

/// What a device shares its group session with: the key at the message it comes with.
#[derive(Debug, Serialize, Deserialize)]
struct RoomKey {
    v: u32,
    group: String,
    session_id: String,
    /// The Megolm session key, base64.
    session_key: String,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(super) fn load_outbound(
    saved: BTreeMap<String, SavedOutbound>,
    key: &[u8; 32],
) -> Result<BTreeMap<String, Outbound>, PickleError> {
    saved
        .into_iter()
        .map(|(group, s)| {
            let pickle = GroupSessionPickle::from_encrypted(&s.session, key)?;
            let outbound = Outbound {
                session: GroupSession::from_pickle(pickle),
                created: s.created,
                shared: s.shared,
            };
            Ok((group, outbound))
        })
        .collect()
}

pub(super) fn load_inbound(
    saved: BTreeMap<String, SavedInbound>,
    key: &[u8; 32],
) -> Result<BTreeMap<String, Inbound>, PickleError> {
    saved
        .into_iter()
        .map(|(id, s)| {
            let pickle = InboundGroupSessionPickle::from_encrypted(&s.session, key)?;
            let inbound = Inbound {
                group: s.group,
                order: s.order,
                session: InboundGroupSession::from_pickle(pickle),
                seen: s.seen,
            };
            Ok((id, inbound))
        })
        .collect()
}

pub(super) fn save_outbound(
    outbound: &BTreeMap<String, Outbound>,
    key: &[u8; 32],
) -> BTreeMap<String, SavedOutbound> {
    outbound
        .iter()
        .map(|(group, o)| {
            let saved = SavedOutbound {
                session: o.session.pickle().encrypt(key),
                created: o.created,
                shared: o.shared.clone(),
            };
            (group.clone(), saved)
        })
        .collect()
}

pub(super) fn save_inbound(
    inbound: &BTreeMap<String, Inbound>,
    key: &[u8; 32],
) -> BTreeMap<String, SavedInbound> {
    inbound
        .iter()
        .map(|(id, i)| {
            let saved = SavedInbound {
                group: i.group.clone(),
                order: i.order,
                session: i.session.pickle().encrypt(key),
                seen: i.seen.clone(),
            };
            (id.clone(), saved)
        })
        .collect()
}

impl E2e {
    /// Encrypts `plaintext` once for `group` and makes one envelope per member device of
    /// `devices` (as the server's `group_mismatch` lists them; this device is skipped). Devices
    /// that have not had this device's group session get its key in their envelope (Olm, with
    /// sessions from the key directory as [`E2e::encrypt`] starts them). Call
    /// [`E2e::group_sent`] once the server has accepted the envelopes.
    ///
    /// # Errors
    /// As [`E2e::encrypt`], for a device that needs the key.
    pub async fn encrypt_group(
        &mut self,
        client: &Client,
        group: &str,
        devices: &[MemberDevice],
        plaintext: &[u8],
    ) -> Result<Vec<GroupEnvelope>, ClientError> {
        let me = peer(&self.account_id, self.device_id);
        let members: Vec<&MemberDevice> = devices
            .iter()
            .filter(|d| peer(&d.account_id, d.device_id) != me)
            .collect();
        let wanted: BTreeSet<String> = members
            .iter()
            .map(|d| peer(&d.account_id, d.device_id))
            .collect();
        let now = unix_now();
        let current = self.outbound.get(group).is_some_and(|o| {
            o.shared.is_subset(&wanted)
                && o.session.message_index() < ROTATE_AFTER_MESSAGES
                && now.saturating_sub(o.created) < ROTATE_AFTER_SECS
        });
        if !current {
            let fresh = Outbound {
                session: GroupSession::new(SessionConfig::version_1()),
                created: now,
                shared: BTreeSet::new(),
            };
            self.outbound.insert(group.to_owned(), fresh);
        }
        let outbound = self
            .outbound
            .get_mut(group)
            .ok_or_else(|| failed("no group session"))?;
        let session_id = outbound.session.session_id();
        // The key as it stands before this message, so that this message opens with it.
        let room_key = RoomKey {
            v: VERSION,
            group: group.to_owned(),
            session_id: session_id.clone(),
            session_key: outbound.session.session_key().to_base64(),
        };
        let megolm = outbound.session.encrypt(plaintext).to_base64();
        let mut unshared: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        for d in &members {
            if !outbound.shared.contains(&peer(&d.account_id, d.device_id)) {
                unshared.entry(&d.account_id).or_default().push(d.device_id);
            }
        }
        let room_key = serde_json::to_vec(&room_key).map_err(|e| failed(e.to_string()))?;
        let mut keys = BTreeMap::new();
        for (account, devices) in unshared {
            for (device, sealed) in self.seal_for(client, account, &devices, &room_key).await? {
                keys.insert(peer(account, device), sealed);
            }
        }
        self.save()?;
        members
            .into_iter()
            .map(|d| {
                let sealed = GroupSealed {
                    v: VERSION,
                    session_id: session_id.clone(),
                    megolm: megolm.clone(),
                    room_key: keys.remove(&peer(&d.account_id, d.device_id)),
                };
                let json = serde_json::to_vec(&sealed).map_err(|e| failed(e.to_string()))?;
                Ok(GroupEnvelope {
                    account_id: d.account_id.clone(),
                    device_id: d.device_id,
                    body: STANDARD.encode(json),
                })
            })
            .collect()
    }

    /// Records that the devices of `envelopes` (accepted by the server) have this device's
    /// group session for `group`, so that later messages go to them without its key.
    ///
    /// # Errors
    /// The state cannot be saved.
    pub fn group_sent(
        &mut self,
        group: &str,
        envelopes: &[GroupEnvelope],
    ) -> Result<(), ClientError> {
        if let Some(outbound) = self.outbound.get_mut(group) {
            outbound
                .shared
                .extend(envelopes.iter().map(|e| peer(&e.account_id, e.device_id)));
            self.save()?;
        }
        Ok(())
    }

    /// Forgets every group session of `group`, sent and received (when this account has left
    /// it or was removed): what it sent or received there can no longer be opened here.
    ///
    /// # Errors
    /// The state cannot be saved.
    pub fn forget_group(&mut self, group: &str) -> Result<(), ClientError> {
        self.outbound.remove(group);
        self.inbound.retain(|_, i| i.group != group);
        self.save()
    }

    /// The member devices this device's current session for `group` has been shared with:
    /// where a send to the group starts (the server names the others).
    pub fn group_devices(&self, group: &str) -> Vec<MemberDevice> {
        self.outbound
            .get(group)
            .map(|o| {
                o.shared
                    .iter()
                    .filter_map(|p| p.rsplit_once('/'))
                    .filter_map(|(account, device)| {
                        Some(MemberDevice {
                            account_id: account.to_owned(),
                            device_id: device.parse().ok()?,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Decrypts the body of group message `server_id` from device `from_device` of `from` in
    /// `group`, taking the session key it carries (from that device, over Olm). The same
    /// message again (a redelivery) opens again; its message index under another server id
    /// (a replay) is refused.
    ///
    /// # Errors
    /// The body is not a group message, its session's key never reached this device or
    /// belongs to another group, it does not decrypt, or it is a replay.
    pub async fn decrypt_group(
        &mut self,
        client: &Client,
        from: &str,
        from_device: u32,
        group: &str,
        server_id: &str,
        body: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        let sealed: GroupSealed = serde_json::from_slice(body)
            .map_err(|_| failed("not an end-to-end encrypted group message"))?;
        let sender = format!("device {from_device} of {from}");
        let sending = peer(from, from_device);
        let id = format!("{sending}/{}", sealed.session_id);
        if let Some(room_key) = &sealed.room_key {
            match self.open_olm(client, from, from_device, room_key).await {
                Ok(bytes) => {
                    self.take_room_key(&sending, &id, group, &sealed.session_id, &bytes)?;
                }
                // A copy delivered again: its key was taken the first time.
                Err(_) if self.inbound.contains_key(&id) => {}
                Err(e) => return Err(e),
            }
        }
        let inbound = self.inbound.get_mut(&id).ok_or_else(|| {
            failed(format!(
                "a group message from {sender} whose session key never reached this device"
            ))
        })?;
        if inbound.group != group {
            return Err(failed(format!(
                "{sender} used another group's session in {group}"
            )));
        }
        let message = MegolmMessage::from_base64(&sealed.megolm)
            .map_err(|e| failed(format!("a damaged group message: {e}")))?;
        let opened = inbound
            .session
            .decrypt(&message)
            .map_err(|e| failed(format!("a group message from {sender} does not open: {e}")))?;
        match inbound.seen.get(&opened.message_index) {
            Some(seen) if seen != server_id => {
                return Err(failed(format!(
                    "a replay: {sender}'s group message {seen} came again as {server_id}"
                )));
            }
            Some(_) => {}
            None => {
                inbound
                    .seen
                    .insert(opened.message_index, server_id.to_owned());
                while inbound.seen.len() > SEEN_PER_SESSION {
                    inbound.seen.pop_first();
                }
            }
        }
        self.save()?;
        Ok(opened.plaintext)
    }

    /// Keeps the group session key `bytes` (a [`RoomKey`]) from `sender` (`account/device`)
    /// under `id`, if it is for `group` and the session the message names; of two keys of one
    /// session, the one that opens more messages. Older sessions of the sender in the group
    /// beyond [`KEPT_PER_SENDER`] go.
    fn take_room_key(
        &mut self,
        sender: &str,
        id: &str,
        group: &str,
        session_id: &str,
        bytes: &[u8],
    ) -> Result<(), ClientError> {
        let key: RoomKey = serde_json::from_slice(bytes)
            .map_err(|_| failed("a group session key that is not one"))?;
        if key.group != group || key.session_id != session_id {
            return Err(failed(format!(
                "a group session key for another group or session than the message's ({group})"
            )));
        }
        let session_key = SessionKey::from_base64(&key.session_key)
            .map_err(|e| failed(format!("a damaged group session key: {e}")))?;
        let mut session = InboundGroupSession::new(&session_key, SessionConfig::version_1());
        if session.session_id() != session_id {
            return Err(failed("a group session key for another session"));
        }
        let order = self.inbound.values().map(|i| i.order).max().unwrap_or(0) + 1;
        match self.inbound.entry(id.to_owned()) {
            Entry::Vacant(v) => {
                v.insert(Inbound {
                    group: group.to_owned(),
                    order,
                    session,
                    seen: BTreeMap::new(),
                });
                let prefix = format!("{sender}/");
                let mut older: Vec<(u64, String)> = self
                    .inbound
                    .iter()
                    .filter(|(k, i)| k.starts_with(&prefix) && i.group == group)
                    .map(|(k, i)| (i.order, k.clone()))
                    .collect();
                older.sort_unstable();
                let excess = older.len().saturating_sub(KEPT_PER_SENDER);
                for (_, k) in older.into_iter().take(excess) {
                    self.inbound.remove(&k);
                }
            }
            Entry::Occupied(mut o) => {
                if session.compare(&mut o.get_mut().session) == SessionOrdering::Better {
                    o.get_mut().session = session;
                }
            }
        }
        Ok(())
    }
}
