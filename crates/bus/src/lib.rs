//! The message bus: topics of keyed records, producers and consumer groups with at-least-once
//! delivery, behind one trait. `memory://` keeps everything in this process (the embedded
//! default); `kafka://HOST:PORT` talks to Apache Kafka or any Kafka-protocol broker.

mod consume;
mod error;
mod kafka;
mod memory;
mod metrics;
#[cfg(feature = "test-support")]
pub mod testing;

use std::fmt::Debug;
use std::sync::Arc;

use bytes::Bytes;

pub use consume::{Backoff, Membership, consume, consume_batches};
pub use error::BusError;
pub use kafka::KafkaBus;
pub use memory::MemoryBus;
pub use metrics::{BusMetrics, Lag, metered};

/// One record as a consumer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The topic it was published to.
    pub topic: String,
    /// The partition that holds it (records with one key share a partition).
    pub partition: i32,
    /// Its position in the partition.
    pub offset: i64,
    /// The key it was published with.
    pub key: Bytes,
    /// The payload.
    pub payload: Bytes,
}

/// Topics, producers and consumer groups.
#[async_trait::async_trait]
pub trait Bus: Send + Sync + Debug {
    /// Appends a record to `topic` (created if missing). Records with one key keep their order.
    /// Returns once the record is durable (Kafka: acknowledged by every in-sync replica).
    async fn publish(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<(), BusError>;

    /// Joins consumer group `group` on `topic`. A group gets every record of the topic from
    /// where it starts, each handed to one member at a time, and handed out again (to whichever
    /// member then holds its partition) until a member commits it: at-least-once, so consumers
    /// must be idempotent. A new group starts where `start` says; a known one goes on after
    /// its last commit.
    async fn subscribe(
        &self,
        topic: &str,
        group: &str,
        start: Start,
    ) -> Result<Box<dyn Subscription>, BusError>;

    /// Checks that the bus is usable (readiness).
    async fn check(&self) -> Result<(), BusError>;

    /// Whether records outlive this process (Kafka: yes; the in-process bus: no, so what it
    /// held when the process died is gone).
    fn outlives_process(&self) -> bool;
}

/// Where a new consumer group starts reading a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At the oldest record the bus still holds: the group sees everything published.
    Oldest,
    /// After the newest record: the group sees what is published from about now on (a record
    /// published while it joins may be missed). For signals that matter only to whoever
    /// listens at the time.
    Newest,
}

/// A member of a consumer group.
#[async_trait::async_trait]
pub trait Subscription: Send {
    /// Waits for the next record.
    async fn next(&mut self) -> Result<Record, BusError>;

    /// Marks `record`, and every earlier record of its partition, done for the group. Call it
    /// only once the work the record asked for is durable. Kafka sends the mark in the
    /// background: one lost in a crash only means the record comes again.
    async fn commit(&mut self, record: &Record) -> Result<(), BusError>;

    /// Leaves the group, so that its partitions (and their uncommitted records) go to the
    /// other members at once.
    async fn close(self: Box<Self>);

    /// How far this member is behind, readable while it works (for metrics); `None` when the
    /// backend cannot tell.
    fn lag(&self) -> Option<Arc<dyn Lag>> {
        None
    }
}

/// Opens the bus a URL names: `memory://` (this process's own), `memory://NAME` (shared by
/// everything in this process that opens the same name), or `kafka://HOST:PORT[,HOST:PORT…]`
/// with optional `?partitions=N` (for topics it creates; default 8), `replication=N` (default
/// 1), `namespace=NAME` (a prefix for topic and group names) and `fetch_wait_ms=N` (the
/// longest a consumer's fetch waits for records; default 10).
pub async fn open(url: &str) -> Result<Arc<dyn Bus>, BusError> {
    match url.split_once("://") {
        Some(("memory", name)) => Ok(MemoryBus::named(name)?),
        Some(("kafka", _)) => Ok(Arc::new(KafkaBus::open(url)?)),
        _ => Err(BusError::Config(format!(
            "unsupported bus URL {url:?}: use memory:// or kafka://HOST:PORT"
        ))),
    }
}
