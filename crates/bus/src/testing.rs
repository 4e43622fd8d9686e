//! Test support: which bus a test runs against. `SEALPOST_TEST_BUS=kafka` (with
//! `SEALPOST_TEST_KAFKA_BROKERS=HOST:PORT`) uses that broker, in a namespace of the test's own;
//! unset or `memory`, a named in-process bus of the test's own. A requested broker that cannot be reached is a
//! failure, never a skip.

use std::hash::{DefaultHasher, Hash, Hasher};

/// The bus URL a test identified by `key` should use: every key gets a bus (a named
/// in-process bus, or a Kafka namespace) of its own, which servers given the same key share.
///
/// # Panics
/// When Kafka is requested but not configured.
pub fn bus_url(key: &str) -> String {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    std::process::id().hash(&mut hasher);
    let name = format!("test-{:016x}", hasher.finish());
    match std::env::var("SEALPOST_TEST_BUS").as_deref() {
        Err(_) | Ok("" | "memory") => format!("memory://{name}"),
        Ok("kafka") => {
            let brokers = std::env::var("SEALPOST_TEST_KAFKA_BROKERS")
                .expect("SEALPOST_TEST_BUS=kafka needs SEALPOST_TEST_KAFKA_BROKERS");
            format!("kafka://{brokers}?partitions=4&namespace={name}")
        }
        Ok(other) => panic!("SEALPOST_TEST_BUS={other:?}: use memory or kafka"),
    }
}
