//! The delivery worker: takes messages from the bus topic `chat.messages` (consumer group
//! `chat-delivery`), stores one copy per device in the inbox, commits, then wakes the
//! connections: on this node directly, on the others through the bus topic `chat.wakeups`.
//! Every gateway node listens to `chat.wakeups` in a group of its own.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use sealpost_bus::{Backoff, Bus, Membership, Record, Start};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use sealpost_db::{InboxCopy, NewInboxMessage};
use sealpost_proto::{Sender, ServerFrame, TypingState};

use crate::send::{BusMessage, Copy as BusCopy};
use crate::{Chat, TOPIC_MESSAGES, TOPIC_WAKEUPS, unix_millis};

/// The consumer group of the delivery workers.
pub const DELIVERY_GROUP: &str = "chat-delivery";
/// Messages a delivery worker stores in one transaction at most.
const DELIVERY_BATCH: usize = 64;
/// The waits between attempts.
const BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(100),
    max: Duration::from_secs(30),
};

/// How long a typing indicator stays worth showing: older ones are dropped.
const TYPING_FRESH_MS: i64 = 5_000;

/// What travels on `chat.wakeups` to every gateway node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "signal", rename_all = "snake_case")]
pub(crate) enum Signal {
    /// These devices' inboxes have something new.
    Inbox { devices: Vec<(String, u32)> },
    /// A device connected to `node` at `at`: its connections elsewhere, older, close.
    Connected {
        account: String,
        device: u32,
        node: String,
        at: i64,
    },
    /// A device was removed (`token_hash` none) or one of its tokens revoked: its
    /// connections (with that token) close.
    Revoked {
        account: String,
        device: u32,
        token_hash: Option<String>,
    },
    /// A claim on `node` left `device` of `account` with few one-time keys.
    KeysLow {
        account: String,
        device: u32,
        left: u64,
        node: String,
    },
    /// Someone is typing to `account`.
    Typing {
        account: String,
        from_account: String,
        from_device: u32,
        state: TypingState,
        at: i64,
    },
    /// Someone is typing to `group`, whose members are `members`.
    TypingGroup {
        group: String,
        members: Vec<String>,
        from_account: String,
        from_device: u32,
        state: TypingState,
        at: i64,
    },
}

/// Devices one wake-up record names at most (it stays well under Kafka's 1 MB record limit).
const WAKEUP_DEVICES: usize = 4096;

/// Runs `attempt` until it succeeds (true) or shutdown (false), waiting out the backoff
/// between failures: a record is retried until the database takes it, never skipped.
async fn retrying<F, Fut>(shutdown: &CancellationToken, mut attempt: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut failures = 0;
    loop {
        match attempt().await {
            Ok(()) => return true,
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %format!("{e:#}"), "cannot deliver a chat message; retrying");
                if !BACKOFF.pause(failures, shutdown).await {
                    return false;
                }
            }
        }
    }
}

/// Publishes a signal on `chat.wakeups`, keyed by `key` (best effort: a failure is logged).
async fn publish_signal(bus: &dyn Bus, key: &str, signal: &Signal) {
    let published = match serde_json::to_vec(signal) {
        Ok(payload) => bus.publish(TOPIC_WAKEUPS, key.as_bytes(), &payload).await,
        Err(e) => Err(sealpost_bus::BusError::Config(e.to_string())),
    };
    if let Err(e) = published {
        tracing::warn!(error = %e, "cannot publish a chat signal");
    }
}

impl Chat {
    /// Starts `delivery_workers` members of the delivery group; they stop at `shutdown`.
    pub fn spawn_delivery(
        self: &Arc<Self>,
        shutdown: &CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        (0..self.config.delivery_workers)
            .map(|_| self.spawn_delivery_worker(shutdown))
            .collect()
    }

    fn spawn_delivery_worker(
        self: &Arc<Self>,
        shutdown: &CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let chat = self.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let bus = chat.bus.clone();
            sealpost_bus::consume_batches(
                &*bus,
                Membership {
                    topic: TOPIC_MESSAGES,
                    group: DELIVERY_GROUP,
                    start: Start::Oldest,
                },
                DELIVERY_BATCH,
                BACKOFF,
                &shutdown,
                |records| {
                    let (chat, shutdown) = (chat.clone(), shutdown.clone());
                    async move { retrying(&shutdown, || chat.deliver(&records)).await }
                },
            )
            .await;
        })
    }

    /// Starts this node's wake-up listener; it stops at `shutdown`.
    pub fn spawn_wakeups(
        self: &Arc<Self>,
        shutdown: &CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let chat = self.clone();
        let shutdown = shutdown.clone();
        let group = format!("gateway-{}", self.node);
        tokio::spawn(async move {
            let bus = chat.bus.clone();
            // A wake-up matters only to a gateway listening when it is sent: a node's new
            // group starts at the newest record, not at the topic's whole history.
            let membership = Membership {
                topic: TOPIC_WAKEUPS,
                group: &group,
                start: Start::Newest,
            };
            sealpost_bus::consume(&*bus, membership, BACKOFF, &shutdown, |record| {
                chat.on_signal(&record.payload);
                std::future::ready(true)
            })
            .await;
        })
    }

    /// Stores a batch of messages (one copy per device each, all in one transaction), then
    /// wakes the devices.
    async fn deliver(&self, records: &[Record]) -> anyhow::Result<()> {
        let messages: Vec<BusMessage> = records
            .iter()
            .filter_map(|record| {
                let message = serde_json::from_slice::<BusMessage>(&record.payload).ok();
                if message.is_none() {
                    tracing::warn!(offset = record.offset, "skipping a malformed chat message");
                }
                message
            })
            .collect();
        let bodies: Vec<Vec<(&BusCopy, Vec<u8>)>> = messages
            .iter()
            .map(|message| {
                message
                    .copies
                    .iter()
                    .filter_map(|copy| {
                        Some((copy, sealpost_proto::BASE64.decode(&copy.body).ok()?))
                    })
                    .collect()
            })
            .collect();
        let batch: Vec<(NewInboxMessage<'_>, Vec<InboxCopy<'_>>)> = messages
            .iter()
            .zip(&bodies)
            .map(|(message, bodies)| {
                let stored = NewInboxMessage {
                    server_id: &message.server_id,
                    sender_account: &message.from_account,
                    sender_device: i64::from(message.from_device),
                    sent_at: message.sent_at,
                    kind: &message.kind,
                    group: message.group.as_deref(),
                };
                let copies = bodies
                    .iter()
                    .map(|(copy, body)| InboxCopy {
                        account: &copy.account,
                        device: i64::from(copy.device),
                        body,
                    })
                    .collect();
                (stored, copies)
            })
            .collect();
        // One transaction for the batch (a group message's fan-out included).
        self.db.deliver(&batch).await?;
        self.metrics
            .stored(batch.iter().map(|(_, copies)| copies.len() as u64).sum());
        let mut devices: Vec<(String, u32)> = messages
            .iter()
            .flat_map(|m| m.copies.iter().map(|c| (c.account.clone(), c.device)))
            .collect();
        devices.sort_unstable();
        devices.dedup();
        let Some(key) = messages.first().map(|m| m.key.clone()) else {
            return Ok(());
        };
        if devices.is_empty() {
            return Ok(());
        }
        for (account, device) in &devices {
            self.registry.wake(account, *device);
        }
        // One wake-up for the batch (in records of a bounded size). A lost one only delays its
        // messages until the next one or a reconnect, so the worker goes on without waiting
        // for the bus to take it.
        let bus = self.bus.clone();
        tokio::spawn(async move {
            for devices in devices.chunks(WAKEUP_DEVICES) {
                let devices = devices.to_vec();
                publish_signal(&*bus, &key, &Signal::Inbox { devices }).await;
            }
        });
        Ok(())
    }

    /// Tells the connected devices of `to` that `device` of `account` started or stopped
    /// typing: through the bus to every gateway node, never stored.
    pub(crate) async fn typing(&self, account: &str, device: u32, to: &str, state: TypingState) {
        self.signal(
            to,
            &Signal::Typing {
                account: to.to_owned(),
                from_account: account.to_owned(),
                from_device: device,
                state,
                at: unix_millis(),
            },
        )
        .await;
    }

    /// Tells the connected devices of `members` of `group` (but the typing one) that `device`
    /// of `account` started or stopped typing to the group; never stored.
    pub(crate) async fn typing_group(
        &self,
        account: &str,
        device: u32,
        group: &str,
        members: Vec<String>,
        state: TypingState,
    ) {
        self.signal(
            group,
            &Signal::TypingGroup {
                group: group.to_owned(),
                members,
                from_account: account.to_owned(),
                from_device: device,
                state,
                at: unix_millis(),
            },
        )
        .await;
    }

    /// Tells the other gateway nodes that `device` of `account` connected here now, so that
    /// they close its older connections (best effort).
    pub(crate) async fn connected(&self, account: &str, device: u32, at: i64) {
        self.signal(
            account,
            &Signal::Connected {
                account: account.to_owned(),
                device,
                node: self.node.clone(),
                at,
            },
        )
        .await;
    }

    /// Closes the connections of `device` of `account` on every gateway node: all of them
    /// (the device was removed) or those authenticated with `token_hash` (it was revoked).
    /// Best effort across nodes: a connection the signal misses closes when its token expires
    /// or the device reconnects, and its token no longer works for anything else.
    pub async fn revoked(&self, account: &str, device: u32, token_hash: Option<String>) {
        self.registry.revoke(account, device, token_hash.as_deref());
        self.signal(
            account,
            &Signal::Revoked {
                account: account.to_owned(),
                device,
                token_hash,
            },
        )
        .await;
    }

    /// Publishes a signal to every gateway node, keyed by `key` (best effort).
    pub(crate) async fn signal(&self, key: &str, signal: &Signal) {
        publish_signal(&*self.bus, key, signal).await;
    }

    /// Acts on a signal from `chat.wakeups`: wakes a connection, or hands a fresh typing
    /// indicator to the connected devices.
    fn on_signal(&self, payload: &[u8]) {
        match serde_json::from_slice::<Signal>(payload) {
            Ok(Signal::Inbox { devices }) => {
                for (account, device) in devices {
                    self.registry.wake(&account, device);
                }
            }
            Ok(Signal::Connected {
                account,
                device,
                node,
                at,
            }) if node != self.node => self.registry.replace_older(&account, device, at),
            Ok(Signal::Revoked {
                account,
                device,
                token_hash,
            }) => self
                .registry
                .revoke(&account, device, token_hash.as_deref()),
            Ok(Signal::KeysLow {
                account,
                device,
                left,
                node,
            }) if node != self.node => self.registry.ephemeral_to(
                &account,
                device,
                &ServerFrame::KeysLow {
                    one_time_keys: left,
                },
            ),
            Ok(Signal::Typing {
                account,
                from_account,
                from_device,
                state,
                at,
            }) if unix_millis() - at <= TYPING_FRESH_MS => {
                let skip = (from_account == account).then_some(from_device);
                let frame = ServerFrame::Typing {
                    from: Sender {
                        account_id: from_account,
                        device_id: from_device,
                    },
                    group: None,
                    state,
                };
                self.registry.ephemeral(&account, skip, &frame);
            }
            Ok(Signal::TypingGroup {
                group,
                members,
                from_account,
                from_device,
                state,
                at,
            }) if unix_millis() - at <= TYPING_FRESH_MS => {
                let frame = ServerFrame::Typing {
                    from: Sender {
                        account_id: from_account.clone(),
                        device_id: from_device,
                    },
                    group: Some(group),
                    state,
                };
                for member in &members {
                    let skip = (*member == from_account).then_some(from_device);
                    self.registry.ephemeral(member, skip, &frame);
                }
            }
            _ => {}
        }
    }
}
