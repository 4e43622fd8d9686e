/// Errors from the bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The configuration (URL, options) is unusable.
    #[error("{0}")]
    Config(String),
    /// The broker refused or failed a request, or cannot be reached.
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// This member no longer holds the record's partition (another member of the group took
    /// it over); the record will be delivered there.
    #[error("the partition moved to another member of the group")]
    Revoked,
    /// The subscription was closed.
    #[error("the subscription is closed")]
    Closed,
}
