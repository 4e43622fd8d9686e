//! Test support: which bus a test runs against. `SEALPOST_TEST_BUS=kafka` (with
//! `SEALPOST_TEST_KAFKA_BROKERS=HOST:PORT`) uses that broker, in a namespace of the test's own;
//! unset or `memory`, the in-process bus. A requested broker that cannot be reached is a
//! failure, never a skip.

use std::hash::{DefaultHasher, Hash, Hasher};

/// The bus URL a test identified by `key` should use: on Kafka, every key gets a namespace of
/// its own (servers given the same key share one).
///
/// # Panics
/// When Kafka is requested but not configured.
pub fn bus_url(key: &str) -> String {
    match std::env::var("SEALPOST_TEST_BUS").as_deref() {
        Err(_) | Ok("" | "memory") => "memory://".to_owned(),
        Ok("kafka") => {
            let brokers = std::env::var("SEALPOST_TEST_KAFKA_BROKERS")
                .expect("SEALPOST_TEST_BUS=kafka needs SEALPOST_TEST_KAFKA_BROKERS");
            let mut hasher = DefaultHasher::new();
            key.hash(&mut hasher);
            std::process::id().hash(&mut hasher);
            format!(
                "kafka://{brokers}?partitions=4&namespace=test-{:016x}",
                hasher.finish()
            )
        }
        Ok(other) => panic!("SEALPOST_TEST_BUS={other:?}: use memory or kafka"),
    }
}
