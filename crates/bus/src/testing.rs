//! Test support: which bus a test runs against. `SEALPOST_TEST_BUS=kafka` (with
//! `SEALPOST_TEST_KAFKA_BROKERS=HOST:PORT`) uses that broker; unset or `memory`, the in-process
//! bus. A requested broker that cannot be reached is a failure, never a skip.

/// The bus URL tests should use.
///
/// # Panics
/// When Kafka is requested but not configured.
pub fn bus_url() -> String {
    match std::env::var("SEALPOST_TEST_BUS").as_deref() {
        Err(_) | Ok("" | "memory") => "memory://".to_owned(),
        Ok("kafka") => {
            let brokers = std::env::var("SEALPOST_TEST_KAFKA_BROKERS")
                .expect("SEALPOST_TEST_BUS=kafka needs SEALPOST_TEST_KAFKA_BROKERS");
            format!("kafka://{brokers}?partitions=4")
        }
        Ok(other) => panic!("SEALPOST_TEST_BUS={other:?}: use memory or kafka"),
    }
}
