//! The chat server: the WebSocket gateway at `/v1/chat` (docs/protocol.md), the delivery
//! worker that moves messages from the bus into per-device inboxes, and the registry of the
//! devices connected to this node. Message bodies are ciphertext the server never reads.

mod delivery;
mod gateway;
mod groups;
mod keys;
mod metrics;
mod registry;
mod send;

use std::sync::Arc;
use std::time::Duration;

use sealpost_auth::{AuthService, RateLimiter};
use sealpost_bus::Bus;
use sealpost_db::Db;
use tokio_util::sync::CancellationToken;

pub use delivery::DELIVERY_GROUP;
pub use gateway::{__path_upgrade, SUBPROTOCOL, TokenQuery, upgrade};
pub use groups::GroupError;
pub use keys::KeyError;
pub use metrics::ChatMetrics;

/// The topic messages go to, keyed by recipient account.
pub const TOPIC_MESSAGES: &str = "chat.messages";
/// The topic that wakes connections on other nodes.
pub const TOPIC_WAKEUPS: &str = "chat.wakeups";

/// Limits and timings of the chat server.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// Largest message body (decoded), bytes.
    pub max_body: usize,
    /// Largest frame a client may send, bytes.
    pub max_frame: usize,
    /// Messages pushed to a device before it must acknowledge.
    pub window: usize,
    /// How often the server pings.
    pub ping_interval: Duration,
    /// A connection silent this long is dropped.
    pub idle_timeout: Duration,
    /// A device that does not take a frame within this long is disconnected (too slow).
    pub write_timeout: Duration,
    /// Sends and receipts one account may address to one account a minute (typing
    /// indicators over it are dropped).
    pub messages_per_pair_per_minute: u64,
    /// Body bytes one device may send a minute.
    pub bytes_per_device_per_minute: u64,
    /// Frames but acknowledgements one device may send a minute, all at once at most (more
    /// are refused `rate-limited` before any other work; typing indicators are dropped).
    pub frames_per_device_per_minute: u64,
    /// How long a message waits in an inbox for its device before it is dropped.
    pub inbox_retention: Duration,
    /// A send no delivery worker stored after this long is published again.
    pub republish_after: Duration,
    /// Most members a group may have.
    pub max_group_members: usize,
    /// Members of the delivery group each worker node runs (each takes its own partitions of
    /// `chat.messages`, so up to the topic's partition count work at once).
    pub delivery_workers: usize,
    /// Most one-time keys a device may hold (and publish at once).
    pub max_one_time_keys: usize,
    /// Under this many one-time keys a device is told to publish more.
    pub one_time_keys_low: usize,
    /// Key-directory claims (`GET /v1/keys/{account}`) one account may make a minute.
    pub key_claims_per_minute: u64,
    /// One-time keys of one account that claims may take a minute, whoever asks; past it,
    /// claims get the fallback keys (so many accounts cannot drain a device's keys).
    pub key_claims_per_target_per_minute: u64,
    /// Unacknowledged messages one device's inbox may hold: a send to an account with a
    /// device this full is refused (`recipient-inbox-full`); a group send skips that device.
    pub max_inbox_messages: u64,
    /// Unacknowledged body bytes one device's inbox may hold (as `max_inbox_messages`).
    pub max_inbox_bytes: u64,
    /// Group changes (creations, members added, removed or given a role, leaving) one account
    /// may make a minute.
    pub group_changes_per_account_per_minute: u64,
    /// Changes one group may take a minute, whoever makes them.
    pub group_changes_per_group_per_minute: u64,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            max_body: 64 << 10,
            max_frame: 1 << 20,
            window: 256,
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            write_timeout: Duration::from_secs(10),
            messages_per_pair_per_minute: 120,
            bytes_per_device_per_minute: 16 << 20,
            frames_per_device_per_minute: 1200,
            inbox_retention: Duration::from_secs(30 * 24 * 3600),
            republish_after: Duration::from_secs(30),
            max_group_members: 256,
            delivery_workers: 4,
            max_one_time_keys: 100,
            one_time_keys_low: 10,
            key_claims_per_minute: 60,
            key_claims_per_target_per_minute: 60,
            max_inbox_messages: 10_000,
            max_inbox_bytes: 100 << 20,
            group_changes_per_account_per_minute: 30,
            group_changes_per_group_per_minute: 30,
        }
    }
}

/// The chat server of one node.
#[derive(Debug)]
pub struct Chat {
    db: Db,
    bus: Arc<dyn Bus>,
    auth: Arc<AuthService>,
    config: ChatConfig,
    registry: registry::Registry,
    /// Sends per `sender>recipient` account pair.
    per_pair: RateLimiter,
    key_claims: RateLimiter,
    target_claims: RateLimiter,
    group_changes_by_account: RateLimiter,
    group_changes_by_group: RateLimiter,
    /// Body bytes per sending device.
    per_device_bytes: RateLimiter,
    /// Frames per sending device.
    per_device_frames: RateLimiter,
    /// This node's name, for its wake-up group.
    node: String,
    shutdown: CancellationToken,
    metrics: ChatMetrics,
}

impl Chat {
    /// A chat server over these backends, measured into `metrics`; connections close (1012)
    /// at `shutdown`.
    pub fn new(
        db: Db,
        bus: Arc<dyn Bus>,
        auth: Arc<AuthService>,
        config: ChatConfig,
        shutdown: CancellationToken,
        metrics: ChatMetrics,
    ) -> Arc<Self> {
        Arc::new(Self {
            db,
            bus,
            auth,
            per_pair: RateLimiter::new(config.messages_per_pair_per_minute),
            key_claims: RateLimiter::new(config.key_claims_per_minute),
            target_claims: RateLimiter::new(config.key_claims_per_target_per_minute),
            group_changes_by_account: RateLimiter::new(config.group_changes_per_account_per_minute),
            group_changes_by_group: RateLimiter::new(config.group_changes_per_group_per_minute),
            per_device_bytes: RateLimiter::new(config.bytes_per_device_per_minute),
            per_device_frames: RateLimiter::new(config.frames_per_device_per_minute),
            config,
            registry: registry::Registry::default(),
            node: uuid::Uuid::new_v4().simple().to_string(),
            shutdown,
            metrics,
        })
    }

    /// The chat sweep: publishes again the sends no delivery worker stored within
    /// `republish_after` (the bus lost them: an in-process bus in a crash, a trimmed
    /// backlog), drops inbox messages older than the retention (each device is told how many
    /// on its next `hello`), and forgets delivered sends as old. Returns the messages dropped.
    pub async fn sweep(&self) -> anyhow::Result<u64> {
        let now = unix_millis();
        let lost = self
            .db
            .undelivered_sends(
                i64::MIN,
                now.saturating_sub(millis(self.config.republish_after)),
                1_000,
            )
            .await?;
        for (_, payload) in &lost {
            self.republish(payload).await?;
        }
        if !lost.is_empty() {
            tracing::warn!(
                republished = lost.len(),
                "chat sends the bus lost were published again"
            );
        }
        let cutoff = now.saturating_sub(millis(self.config.inbox_retention));
        let expired = self.db.expire_inbox(cutoff, 1_000).await?;
        if expired > 0 {
            tracing::info!(expired, "chat inbox messages expired unread");
        }
        self.db.purge_sends(cutoff).await?;
        Ok(expired)
    }

    /// After a start on a bus that does not outlive its process, publishes again every send
    /// not yet delivered, oldest first and before any new send: the bus lost them with the
    /// process that held them, and published now they keep their place in each
    /// conversation. Returns how many.
    pub async fn recover(&self) -> anyhow::Result<u64> {
        if self.bus.outlives_process() {
            return Ok(0);
        }
        let mut republished = 0u64;
        let mut after = i64::MIN;
        loop {
            // Paged by record time: sends of one millisecond split across two pages are
            // left to the sweep.
            let lost = self.db.undelivered_sends(after, i64::MAX, 1_000).await?;
            let Some((last, _)) = lost.last() else { break };
            after = *last;
            for (_, payload) in &lost {
                self.republish(payload).await?;
                republished += 1;
            }
        }
        if republished > 0 {
            tracing::warn!(
                republished,
                "chat sends lost with the last process were published again"
            );
        }
        Ok(republished)
    }

    async fn republish(&self, payload: &[u8]) -> anyhow::Result<()> {
        if let Ok(message) = serde_json::from_slice::<send::BusMessage>(payload) {
            self.bus
                .publish(TOPIC_MESSAGES, message.key.as_bytes(), payload)
                .await?;
        }
        Ok(())
    }

    /// Devices connected to this node now.
    pub fn connections(&self) -> usize {
        self.registry.len()
    }

    /// Reads the gauges that come from the database (the messages waiting in every inbox)
    /// for a scrape; nodes that run the delivery workers call it.
    pub async fn refresh_metrics(&self) -> anyhow::Result<()> {
        let waiting = self.db.inbox_waiting().await?;
        self.metrics.set_inbox_messages(waiting);
        Ok(())
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Unix milliseconds now.
fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
