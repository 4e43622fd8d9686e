//! The delivery worker: takes messages from the bus topic `chat.messages` (consumer group
//! `chat-delivery`), stores one copy per device in the inbox, commits, then wakes the
//! connections: on this node directly, on the others through the bus topic `chat.wakeups`.
//! Every gateway node listens to `chat.wakeups` in a group of its own.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sealpost_bus::{Record, Subscription};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::send::BusMessage;
use crate::{Chat, TOPIC_MESSAGES, TOPIC_WAKEUPS};

/// The consumer group of the delivery workers.
pub const DELIVERY_GROUP: &str = "chat-delivery";
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A device whose inbox has something new.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Wakeup {
    account: String,
    device: u32,
}

impl Chat {
    /// Starts the delivery worker; it stops at `shutdown`.
    pub fn spawn_delivery(
        self: &Arc<Self>,
        shutdown: &CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let chat = self.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            chat.consume(
                TOPIC_MESSAGES,
                DELIVERY_GROUP.to_owned(),
                &shutdown,
                |chat, record| Box::pin(async move { chat.deliver(&record).await }),
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
            chat.consume(TOPIC_WAKEUPS, group, &shutdown, |chat, record| {
                Box::pin(async move {
                    if let Ok(wakeup) = serde_json::from_slice::<Wakeup>(&record.payload) {
                        chat.registry.wake(&wakeup.account, wakeup.device);
                    }
                    Ok(())
                })
            })
            .await;
        })
    }

    /// Runs `handle` on every record of `topic` for `group`, committing after each; a failure
    /// is retried with backoff (the record stays uncommitted), a lost subscription rejoined.
    async fn consume<F>(
        self: Arc<Self>,
        topic: &'static str,
        group: String,
        shutdown: &CancellationToken,
        handle: F,
    ) where
        F: Fn(
                Arc<Self>,
                Record,
            ) -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>
            + Send,
    {
        let mut failures = 0u32;
        'join: while !shutdown.is_cancelled() {
            let subscription = tokio::select! {
                () = shutdown.cancelled() => return,
                s = self.bus.subscribe(topic, &group) => s,
            };
            let mut subscription: Box<dyn Subscription> = match subscription {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, topic, "cannot join {group}");
                    failures += 1;
                    if !pause(failures, shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            loop {
                let record = tokio::select! {
                    () = shutdown.cancelled() => break,
                    r = subscription.next() => r,
                };
                let record = match record {
                    Ok(record) => record,
                    Err(e) => {
                        tracing::warn!(error = %e, topic, "lost the subscription");
                        subscription.close().await;
                        failures += 1;
                        if !pause(failures, shutdown).await {
                            return;
                        }
                        continue 'join;
                    }
                };
                loop {
                    match handle(self.clone(), record.clone()).await {
                        Ok(()) => break,
                        Err(e) => {
                            failures += 1;
                            tracing::warn!(error = %format!("{e:#}"), topic, "cannot handle a record; retrying");
                            if !pause(failures, shutdown).await {
                                subscription.close().await;
                                return;
                            }
                        }
                    }
                }
                failures = 0;
                if let Err(e) = subscription.commit(&record).await {
                    // Harmless: doing it again stores nothing twice.
                    tracing::warn!(error = %e, topic, "cannot commit");
                }
            }
            subscription.close().await;
        }
    }

    /// Stores one copy of a message per device, then wakes the devices.
    async fn deliver(&self, record: &Record) -> anyhow::Result<()> {
        let Ok(message) = serde_json::from_slice::<BusMessage>(&record.payload) else {
            tracing::warn!(offset = record.offset, "skipping a malformed chat message");
            return Ok(());
        };
        for envelope in &message.envelopes {
            let Ok(body) = STANDARD.decode(&envelope.body) else {
                continue;
            };
            self.db
                .deliver(
                    &message.to,
                    i64::from(envelope.device_id),
                    &message.server_id,
                    &message.from_account,
                    i64::from(message.from_device),
                    message.sent_at,
                    &body,
                )
                .await?;
        }
        for envelope in &message.envelopes {
            self.registry.wake(&message.to, envelope.device_id);
            let wakeup = Wakeup {
                account: message.to.clone(),
                device: envelope.device_id,
            };
            // A lost wake-up only delays the message until the next one or a reconnect.
            if let Err(e) = self
                .bus
                .publish(
                    TOPIC_WAKEUPS,
                    message.to.as_bytes(),
                    &serde_json::to_vec(&wakeup)?,
                )
                .await
            {
                tracing::warn!(error = %e, "cannot publish a wake-up");
            }
        }
        Ok(())
    }
}

/// Waits out the backoff after `failures` failures in a row; false on shutdown.
async fn pause(failures: u32, shutdown: &CancellationToken) -> bool {
    let backoff = Duration::from_millis(100)
        .saturating_mul(1 << failures.saturating_sub(1).min(10))
        .min(MAX_BACKOFF);
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(backoff) => true,
    }
}
