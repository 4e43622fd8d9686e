//! The bus on Apache Kafka or any Kafka-protocol broker, with rdkafka: an idempotent producer
//! with `acks=all`, and consumer groups that commit only when told to (after the work is
//! durable), so delivery is at-least-once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::{Bus, BusError, Lag, Record, Start, Subscription};

/// How long a publish may wait for room in the producer's queue.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long topic creation may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a group waits for a silent member before giving its partitions to the others.
const SESSION_TIMEOUT_MS: &str = "10000";
/// How often a member tells the group it is alive (a third of the session timeout).
const HEARTBEAT_INTERVAL_MS: &str = "3000";
/// How long a consumer may work on one record before the group gives its partitions away.
const MAX_POLL_INTERVAL_MS: &str = "1800000";
/// How long the readiness check waits for cluster metadata.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// How often a consumer's statistics (its lag among them) are refreshed.
const STATISTICS_INTERVAL_MS: &str = "5000";

/// A Kafka cluster.
pub struct KafkaBus {
    brokers: String,
    /// Prepended (with a dot) to every topic and group name: deployments, or tests, sharing
    /// one cluster never see each other's records.
    prefix: String,
    partitions: i32,
    replication: i32,
    /// The longest a consumer's fetch waits for records, milliseconds.
    fetch_wait_ms: i32,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    /// Topics known to exist.
    topics: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus")
            .field("brokers", &self.brokers)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

fn config_err(url: &str, why: impl std::fmt::Display) -> BusError {
    BusError::Config(format!("invalid Kafka URL {url:?}: {why}"))
}

impl KafkaBus {
    /// Connects to `kafka://HOST:PORT[,HOST:PORT…][?partitions=N&replication=N&namespace=NAME&fetch_wait_ms=N]`
    /// (lazily: the first request reaches the brokers). With a namespace, topic `T` is the
    /// Kafka topic `NAME.T` and group `G` the Kafka group `NAME.G`.
    pub fn open(url: &str) -> Result<Self, BusError> {
        let rest = url
            .strip_prefix("kafka://")
            .ok_or_else(|| config_err(url, "not a kafka:// URL"))?;
        let (brokers, query) = rest.split_once('?').unwrap_or((rest, ""));
        let brokers = brokers.trim_end_matches('/').to_owned();
        if brokers.is_empty() || brokers.split(',').any(|b| !b.contains(':')) {
            return Err(config_err(
                url,
                "give the brokers as HOST:PORT[,HOST:PORT…]",
            ));
        }
        let (mut partitions, mut replication, mut prefix) = (8, 1, String::new());
        let mut fetch_wait_ms = 10;
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let n = || {
                v.parse::<i32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| config_err(url, format!("{k} must be a positive number")))
            };
            match k.as_ref() {
                "partitions" => partitions = n()?,
                "replication" => replication = n()?,
                "fetch_wait_ms" => fetch_wait_ms = n()?,
                "namespace" => {
                    let legal = !v.is_empty()
                        && v.len() <= 100
                        && v.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
                    if !legal {
                        return Err(config_err(
                            url,
                            "namespace must be 1 to 100 letters, digits, '-', '_' or '.'",
                        ));
                    }
                    prefix = format!("{v}.");
                }
                other => return Err(config_err(url, format!("unknown parameter {other:?}"))),
            }
        }
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &brokers);
        let producer = config
            .clone()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "30000")
            .create()?;
        let admin = config.create()?;
        Ok(Self {
            brokers,
            prefix,
            partitions,
            replication,
            fetch_wait_ms,
            producer,
            admin,
            topics: Mutex::default(),
        })
    }

    /// Creates `topic` unless it is known to exist.
    async fn ensure_topic(&self, topic: &str) -> Result<(), BusError> {
        let known = self
            .topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(topic);
        if known {
            return Ok(());
        }
        let new = NewTopic::new(
            topic,
            self.partitions,
            TopicReplication::Fixed(self.replication),
        );
        let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
        for result in self.admin.create_topics([&new], &options).await? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    tracing::warn!(topic = %name, %code, "cannot create topic");
                    return Err(BusError::Kafka(KafkaError::AdminOp(code)));
                }
            }
        }
        self.topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(topic.to_owned());
        Ok(())
    }
}

#[async_trait::async_trait]
impl Bus for KafkaBus {
    fn outlives_process(&self) -> bool {
        true
    }

    async fn publish(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<(), BusError> {
        let topic = format!("{}{topic}", self.prefix);
        self.ensure_topic(&topic).await?;
        self.producer
            .send(
                FutureRecord::to(&topic).key(key).payload(payload),
                QUEUE_TIMEOUT,
            )
            .await
            .map_err(|(e, _)| BusError::Kafka(e))?;
        Ok(())
    }

    async fn subscribe(
        &self,
        topic: &str,
        group: &str,
        start: Start,
    ) -> Result<Box<dyn Subscription>, BusError> {
        let topic = format!("{}{topic}", self.prefix);
        self.ensure_topic(&topic).await?;
        let context = LagContext {
            topic: topic.clone(),
            partitions: Mutex::default(),
        };
        let consumer: StreamConsumer<LagContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", format!("{}{group}", self.prefix))
            .set("enable.auto.commit", "false")
            .set(
                "auto.offset.reset",
                match start {
                    Start::Oldest => "earliest",
                    Start::Newest => "latest",
                },
            )
            // A member works on a record before it asks for the next (a media job may take
            // minutes, with retries): only this long without asking gets it replaced.
            .set("max.poll.interval.ms", MAX_POLL_INTERVAL_MS)
            // A member that stops heartbeating (its process died, or its broker restarted
            // and lost it) gives its partitions away after this long (librdkafka: 45 s).
            .set("session.timeout.ms", SESSION_TIMEOUT_MS)
            .set("heartbeat.interval.ms", HEARTBEAT_INTERVAL_MS)
            // A broker answers a fetch when records arrive or after this long, whichever
            // comes first; brokers that wait it out (tansu) add up to this much latency.
            .set("fetch.wait.max.ms", self.fetch_wait_ms.to_string())
            // The statistics carry each partition's lag (served while the consumer polls).
            .set("statistics.interval.ms", STATISTICS_INTERVAL_MS)
            .create_with_context(context)?;
        consumer.subscribe(&[&topic])?;
        Ok(Box::new(KafkaSubscription {
            consumer: Some(Arc::new(consumer)),
            prefix: self.prefix.clone(),
        }))
    }

    async fn check(&self) -> Result<(), BusError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, CHECK_TIMEOUT)
                .map(|_| ())
        })
        .await
        .map_err(|_| BusError::Closed)??;
        Ok(())
    }
}

struct KafkaSubscription {
    consumer: Option<Arc<StreamConsumer<LagContext>>>,
    prefix: String,
}

/// A consumer's context: keeps the lag of the partitions it fetches, from librdkafka's
/// statistics (`consumer_lag`: the partition's high watermark less the group's committed
/// offset).
struct LagContext {
    /// The topic as the broker names it.
    topic: String,
    partitions: Mutex<Vec<(i32, u64)>>,
}

/// The part of librdkafka's statistics the lag comes from.
#[derive(serde::Deserialize)]
struct Statistics {
    #[serde(default)]
    topics: std::collections::HashMap<String, TopicStatistics>,
}

#[derive(serde::Deserialize)]
struct TopicStatistics {
    #[serde(default)]
    partitions: std::collections::HashMap<String, PartitionStatistics>,
}

#[derive(serde::Deserialize)]
struct PartitionStatistics {
    partition: i32,
    #[serde(default)]
    fetch_state: String,
    #[serde(default = "unknown_lag")]
    consumer_lag: i64,
}

/// librdkafka's "not known".
fn unknown_lag() -> i64 {
    -1
}

impl ClientContext for LagContext {
    /// Keeps the lags of the newest statistics; statistics it cannot read leave none (a
    /// gauge that is absent rather than one that stopped moving).
    fn stats_raw(&self, statistics: &[u8]) {
        let statistics = serde_json::from_slice::<Statistics>(statistics).ok();
        let mut lags: Vec<(i32, u64)> = statistics
            .as_ref()
            .and_then(|s| s.topics.get(&self.topic))
            .map(|t| {
                t.partitions
                    .values()
                    // Partitions this member fetches whose lag is known (-1: no commit yet).
                    .filter(|p| p.partition >= 0 && p.fetch_state == "active")
                    .filter_map(|p| Some((p.partition, u64::try_from(p.consumer_lag).ok()?)))
                    .collect()
            })
            .unwrap_or_default();
        lags.sort_unstable();
        *self
            .partitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = lags;
    }
}

impl ConsumerContext for LagContext {}

impl Lag for LagContext {
    fn partitions(&self) -> Vec<(i32, u64)> {
        self.partitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl KafkaSubscription {
    fn consumer(&self) -> Result<&Arc<StreamConsumer<LagContext>>, BusError> {
        self.consumer.as_ref().ok_or(BusError::Closed)
    }
}

#[async_trait::async_trait]
impl Subscription for KafkaSubscription {
    async fn next(&mut self) -> Result<Record, BusError> {
        let message = loop {
            match self.consumer()?.recv().await {
                Ok(message) => break message,
                // The brokers are away: librdkafka reconnects by itself, and this member keeps
                // its place in the group. Leaving and joining anew instead would leave a
                // member behind that the group waits for before it hands out partitions.
                Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure,
                )) => {}
                Err(e) => return Err(e.into()),
            }
        };
        let topic = message.topic();
        Ok(Record {
            topic: topic.strip_prefix(&self.prefix).unwrap_or(topic).to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message
                .key()
                .map(bytes::Bytes::copy_from_slice)
                .unwrap_or_default(),
            payload: message
                .payload()
                .map(bytes::Bytes::copy_from_slice)
                .unwrap_or_default(),
        })
    }

    async fn commit(&mut self, record: &Record) -> Result<(), BusError> {
        let mut offsets = TopicPartitionList::new();
        offsets.add_partition_offset(
            &format!("{}{}", self.prefix, record.topic),
            record.partition,
            Offset::Offset(record.offset + 1),
        )?;
        // Asynchronous: the offset goes out with the next request, and a commit lost in a
        // crash only means the record comes again (consumers are idempotent).
        self.consumer()?
            .commit(&offsets, CommitMode::Async)
            .map_err(|e| match e {
                KafkaError::ConsumerCommit(
                    RDKafkaErrorCode::IllegalGeneration
                    | RDKafkaErrorCode::UnknownMemberId
                    | RDKafkaErrorCode::RebalanceInProgress,
                ) => BusError::Revoked,
                other => BusError::Kafka(other),
            })
    }

    fn lag(&self) -> Option<Arc<dyn Lag>> {
        let consumer = self.consumer.as_ref()?;
        let context: Arc<dyn Lag> = consumer.context().clone();
        Some(context)
    }

    /// Leaves the group cleanly: unsubscribes, then polls briefly so the LeaveGroup request
    /// goes out before the consumer is destroyed (by `drop`, on a thread of its own, also when
    /// this future is dropped half-way: a task aborted at shutdown).
    async fn close(self: Box<Self>) {
        if let Some(consumer) = &self.consumer {
            consumer.unsubscribe();
            let _ = tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await;
        }
    }
}

impl Drop for KafkaSubscription {
    /// Destroys the consumer on a thread of its own. Destroying one can block (with fetched,
    /// unread messages, or when librdkafka asks for the rebalance protocol of a closing
    /// consumer, which may never answer: librdkafka issue 4041); a runtime that is shutting
    /// down drops its tasks on the dropping thread, which must not hang, and a thread that
    /// blocks there blocks nothing else.
    fn drop(&mut self) {
        if let Some(consumer) = self.consumer.take() {
            std::thread::spawn(move || {
                consumer.unsubscribe();
                drop(consumer);
            });
        }
    }
}
