//! Metrics of a bus, whatever its backend: how long publishes take and how many fail, by
//! topic, and how far each consumer-group member of this process is behind, by partition.
//! [`metered`] wraps a bus so that everything through it is measured.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::{Bus, BusError, Record, Start, Subscription};

/// Upper bounds of the publish-latency buckets, seconds.
const PUBLISH_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How far a member of a consumer group is behind: for each partition it holds, the records
/// published to it that the group has not committed yet.
pub trait Lag: Send + Sync {
    /// `(partition, records behind)` for the partitions this member holds and knows about.
    fn partitions(&self) -> Vec<(i32, u64)>;
}

/// Labels of the publish metrics. Topics are the code's own names, never a client's.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

/// Labels of `sealpost_bus_consumer_lag`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct LagLabels {
    topic: String,
    group: String,
    partition: i32,
}

/// The bus metrics of one process.
#[derive(Debug, Clone)]
pub struct BusMetrics {
    publish_seconds: Family<TopicLabels, Histogram, fn() -> Histogram>,
    publish_errors: Family<TopicLabels, Counter>,
    lag: Arc<LagBoard>,
}

impl Default for BusMetrics {
    fn default() -> Self {
        Self {
            publish_seconds: Family::new_with_constructor(|| Histogram::new(PUBLISH_BUCKETS)),
            publish_errors: Family::default(),
            lag: Arc::default(),
        }
    }
}

impl BusMetrics {
    /// Adds the bus metrics to `registry` (as `…bus_*`).
    pub fn register(&self, registry: &mut Registry) {
        let bus = registry.sub_registry_with_prefix("bus");
        bus.register(
            "publish_duration_seconds",
            "Time a publish took until the bus had the record durable, by topic",
            self.publish_seconds.clone(),
        );
        bus.register(
            "publish_errors",
            "Publishes that failed, by topic",
            self.publish_errors.clone(),
        );
        bus.register_collector(Box::new(self.lag.clone()));
    }
}

/// A member of a consumer group on the board: its topic, its group and its lag.
type Member = (String, String, Arc<dyn Lag>);

/// The consumer-group members of this process that report their lag, read at each scrape.
#[derive(Default)]
struct LagBoard {
    members: Mutex<HashMap<u64, Member>>,
    next: AtomicU64,
}

impl std::fmt::Debug for LagBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LagBoard").finish_non_exhaustive()
    }
}

impl LagBoard {
    fn join(self: &Arc<Self>, topic: &str, group: &str, lag: Arc<dyn Lag>) -> LagEntry {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.members
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, (topic.to_owned(), group.to_owned(), lag));
        LagEntry {
            board: self.clone(),
            id,
        }
    }

    /// The lag of every partition some member of this process holds (the largest, when two
    /// members report one partition while it moves between them).
    fn snapshot(&self) -> BTreeMap<LagLabels, u64> {
        let members: Vec<_> = self
            .members
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|(topic, group, lag)| (topic.clone(), group.clone(), lag.clone()))
            .collect();
        let mut out = BTreeMap::new();
        for (topic, group, lag) in members {
            for (partition, behind) in lag.partitions() {
                let labels = LagLabels {
                    topic: topic.clone(),
                    group: group.clone(),
                    partition,
                };
                let entry = out.entry(labels).or_insert(0);
                *entry = behind.max(*entry);
            }
        }
        out
    }
}

impl Collector for LagBoard {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let lags = self.snapshot();
        let gauge = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "consumer_lag",
            "Records published to a partition that this process's member of the consumer group \
             has not committed yet",
            None,
            gauge.metric_type(),
        )?;
        for (labels, behind) in &lags {
            let value = i64::try_from(*behind).unwrap_or(i64::MAX);
            ConstGauge::new(value).encode(family.encode_family(labels)?)?;
        }
        Ok(())
    }
}

/// A member's place on the board; leaving it (drop) takes the member off.
struct LagEntry {
    board: Arc<LagBoard>,
    id: u64,
}

impl Drop for LagEntry {
    fn drop(&mut self) {
        self.board
            .members
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// `bus`, measured into `metrics`.
pub fn metered(bus: Arc<dyn Bus>, metrics: &BusMetrics) -> Arc<dyn Bus> {
    Arc::new(MeteredBus {
        inner: bus,
        metrics: metrics.clone(),
    })
}

#[derive(Debug)]
struct MeteredBus {
    inner: Arc<dyn Bus>,
    metrics: BusMetrics,
}

#[async_trait::async_trait]
impl Bus for MeteredBus {
    async fn publish(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<(), BusError> {
        let started = Instant::now();
        let published = self.inner.publish(topic, key, payload).await;
        let labels = TopicLabels {
            topic: topic.to_owned(),
        };
        match &published {
            Ok(()) => self
                .metrics
                .publish_seconds
                .get_or_create(&labels)
                .observe(started.elapsed().as_secs_f64()),
            Err(_) => {
                self.metrics.publish_errors.get_or_create(&labels).inc();
            }
        }
        published
    }

    async fn subscribe(
        &self,
        topic: &str,
        group: &str,
        start: Start,
    ) -> Result<Box<dyn Subscription>, BusError> {
        let inner = self.inner.subscribe(topic, group, start).await?;
        let entry = inner
            .lag()
            .map(|lag| self.metrics.lag.join(topic, group, lag));
        Ok(Box::new(MeteredSubscription {
            inner,
            _entry: entry,
        }))
    }

    async fn check(&self) -> Result<(), BusError> {
        self.inner.check().await
    }

    fn outlives_process(&self) -> bool {
        self.inner.outlives_process()
    }
}

struct MeteredSubscription {
    inner: Box<dyn Subscription>,
    _entry: Option<LagEntry>,
}

#[async_trait::async_trait]
impl Subscription for MeteredSubscription {
    async fn next(&mut self) -> Result<Record, BusError> {
        self.inner.next().await
    }

    async fn commit(&mut self, record: &Record) -> Result<(), BusError> {
        self.inner.commit(record).await
    }

    async fn close(self: Box<Self>) {
        let Self { inner, _entry } = *self;
        inner.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bus whose broker refuses everything (a real one cannot be made to fail on cue).
    #[derive(Debug)]
    struct Refusing;

    #[async_trait::async_trait]
    impl Bus for Refusing {
        async fn publish(&self, _: &str, _: &[u8], _: &[u8]) -> Result<(), BusError> {
            Err(BusError::Closed)
        }
        async fn subscribe(
            &self,
            _: &str,
            _: &str,
            _: Start,
        ) -> Result<Box<dyn Subscription>, BusError> {
            Err(BusError::Closed)
        }
        async fn check(&self) -> Result<(), BusError> {
            Ok(())
        }
        fn outlives_process(&self) -> bool {
            true
        }
    }

    #[tokio::test]
    async fn failed_publishes_are_counted_by_topic_and_not_timed() {
        let metrics = BusMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let bus = metered(Arc::new(Refusing), &metrics);
        for _ in 0..2 {
            assert!(bus.publish("chat.messages", b"k", b"v").await.is_err());
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(
            text.contains("bus_publish_errors_total{topic=\"chat.messages\"} 2"),
            "{text}"
        );
        assert!(
            !text.contains("bus_publish_duration_seconds_count"),
            "{text}"
        );
    }
}
