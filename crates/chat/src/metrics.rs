//! The chat server's metrics: connections, frames in and out, refusals, inbox copies stored and
//! waiting, and how long a send takes until it is `sent` and until its recipient device has
//! it. Every label value is the code's own (a frame type, a refusal code), never a client's.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds of the latency buckets, seconds.
const LATENCY_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabels {
    r#type: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FrameLabels {
    frame: &'static str,
}

fn latency() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The chat metrics of one node; clones share them.
#[derive(Debug, Clone)]
pub struct ChatMetrics {
    connections: Gauge,
    disconnects: Family<ReasonLabels, Counter>,
    frames_received: Family<TypeLabels, Counter>,
    frames_sent: Family<TypeLabels, Counter>,
    errors: Family<CodeLabels, Counter>,
    send_seconds: Family<FrameLabels, Histogram, fn() -> Histogram>,
    delivery_seconds: Histogram,
    inbox_stored: Counter,
    inbox_messages: Gauge,
    inbox_full_skipped: Counter,
}

impl Default for ChatMetrics {
    fn default() -> Self {
        Self {
            connections: Gauge::default(),
            disconnects: Family::default(),
            frames_received: Family::default(),
            frames_sent: Family::default(),
            errors: Family::default(),
            send_seconds: Family::new_with_constructor(latency),
            delivery_seconds: latency(),
            inbox_stored: Counter::default(),
            inbox_messages: Gauge::default(),
            inbox_full_skipped: Counter::default(),
        }
    }
}

impl ChatMetrics {
    /// Adds the chat metrics to `registry` (as `…chat_*`).
    pub fn register(&self, registry: &mut Registry) {
        let chat = registry.sub_registry_with_prefix("chat");
        chat.register(
            "connections",
            "Chat WebSocket connections open on this node",
            self.connections.clone(),
        );
        chat.register(
            "disconnects",
            "Chat connections ended, by reason",
            self.disconnects.clone(),
        );
        chat.register(
            "frames_received",
            "Frames read from devices, by type (invalid: not a frame of the protocol)",
            self.frames_received.clone(),
        );
        chat.register(
            "frames_sent",
            "Frames written to devices, by type",
            self.frames_sent.clone(),
        );
        chat.register(
            "errors",
            "Error frames written to devices, by code",
            self.errors.clone(),
        );
        chat.register(
            "send_duration_seconds",
            "A send, group send or receipt read until its `sent` answer was written (durable and \
             published)",
            self.send_seconds.clone(),
        );
        chat.register(
            "delivery_latency_seconds",
            "A send accepted until the message was written to its recipient device's \
             connection, for messages sent while that device was connected",
            self.delivery_seconds.clone(),
        );
        chat.register(
            "inbox_stored",
            "Message copies the delivery workers stored in device inboxes",
            self.inbox_stored.clone(),
        );
        chat.register(
            "inbox_messages",
            "Messages waiting unacknowledged in every inbox (from the database, on nodes that \
             run the delivery workers)",
            self.inbox_messages.clone(),
        );
        chat.register(
            "inbox_full_skipped",
            "Group message copies not stored because the member device's inbox was full \
             (chat.max_inbox_messages or chat.max_inbox_bytes; the device is told on its next \
             hello); a direct send to such a device is refused instead (chat_errors_total \
             code=recipient-inbox-full)",
            self.inbox_full_skipped.clone(),
        );
    }

    pub(crate) fn connected(&self) -> ConnectionGuard {
        self.connections.inc();
        ConnectionGuard(self.connections.clone())
    }

    pub(crate) fn disconnected(&self, reason: &'static str) {
        self.disconnects
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub(crate) fn received(&self, r#type: &'static str) {
        self.frames_received
            .get_or_create(&TypeLabels { r#type })
            .inc();
    }

    pub(crate) fn sent(&self, r#type: &'static str, error_code: Option<&str>) {
        self.frames_sent.get_or_create(&TypeLabels { r#type }).inc();
        if let Some(code) = error_code {
            self.errors
                .get_or_create(&CodeLabels {
                    code: code.to_owned(),
                })
                .inc();
        }
    }

    pub(crate) fn send_took(&self, frame: &'static str, seconds: f64) {
        self.send_seconds
            .get_or_create(&FrameLabels { frame })
            .observe(seconds);
    }

    pub(crate) fn delivered_after(&self, seconds: f64) {
        self.delivery_seconds.observe(seconds);
    }

    pub(crate) fn stored(&self, copies: u64) {
        self.inbox_stored.inc_by(copies);
    }

    pub(crate) fn inbox_full_skipped(&self) {
        self.inbox_full_skipped.inc();
    }

    pub(crate) fn set_inbox_messages(&self, waiting: i64) {
        self.inbox_messages.set(waiting);
    }
}

/// Counts a connection open while it lives.
#[derive(Debug)]
pub(crate) struct ConnectionGuard(Gauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
