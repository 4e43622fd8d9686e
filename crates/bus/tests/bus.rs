//! Bus scenarios, written once and run against the bus under test: in-process by default, a
//! real Kafka-protocol broker with `SEALPOST_TEST_BUS=kafka` (see `sealpost_bus::testing`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sealpost_bus::{Bus, BusError, Record, Start, Subscription, testing};

/// Generous: a Kafka consumer group takes a few seconds to form.
const WAIT: Duration = Duration::from_secs(60);

async fn bus() -> Arc<dyn Bus> {
    let bus = sealpost_bus::open(&testing::bus_url(&unique("bus")))
        .await
        .expect("open bus");
    bus.check().await.expect("bus ready");
    bus
}

/// A topic (or group) name no other test run uses.
fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

async fn next(sub: &mut Box<dyn Subscription>) -> Record {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a record within the wait")
        .expect("next record")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

#[tokio::test]
async fn each_group_gets_every_record_and_one_key_keeps_its_order() {
    let bus = bus().await;
    let topic = unique("order");
    for i in 0..30 {
        let key = ["alice", "bob", "carol"][i % 3];
        bus.publish(&topic, key.as_bytes(), format!("{key}-{i}").as_bytes())
            .await
            .expect("publish");
    }
    for group in [unique("g1"), unique("g2")] {
        let mut sub = bus
            .subscribe(&topic, &group, Start::Oldest)
            .await
            .expect("subscribe");
        let mut seen: HashMap<String, Vec<usize>> = HashMap::new();
        for _ in 0..30 {
            let record = next(&mut sub).await;
            let payload = text(&record.payload);
            let (key, i) = payload.split_once('-').expect("key-i");
            assert_eq!(text(&record.key), key);
            seen.entry(key.to_owned())
                .or_default()
                .push(i.parse().expect("number"));
            sub.commit(&record).await.expect("commit");
        }
        for (key, order) in &seen {
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(order, &sorted, "{key}'s records arrive in publish order");
            assert_eq!(order.len(), 10, "{key}'s records arrive once each");
        }
        sub.close().await;
    }
}

#[tokio::test]
async fn uncommitted_records_are_delivered_again_and_committed_ones_are_not() {
    let bus = bus().await;
    let (topic, group) = (unique("redeliver"), unique("workers"));
    for i in 0..6 {
        bus.publish(&topic, b"one-key", format!("{i}").as_bytes())
            .await
            .expect("publish");
    }
    let mut first = bus
        .subscribe(&topic, &group, Start::Oldest)
        .await
        .expect("subscribe");
    let mut taken = Vec::new();
    for _ in 0..4 {
        taken.push(next(&mut first).await);
    }
    let payloads: Vec<String> = taken.iter().map(|r| text(&r.payload)).collect();
    assert_eq!(payloads, ["0", "1", "2", "3"]);
    // The work for records 0 and 1 is done; 2 and 3 were taken but never finished.
    first.commit(&taken[1]).await.expect("commit");
    first.close().await;

    let mut second = bus
        .subscribe(&topic, &group, Start::Oldest)
        .await
        .expect("subscribe again");
    let mut rest = Vec::new();
    for _ in 0..4 {
        let record = next(&mut second).await;
        rest.push(text(&record.payload));
        second.commit(&record).await.expect("commit");
    }
    assert_eq!(rest, ["2", "3", "4", "5"]);
    second.close().await;

    // Everything is committed now: a new member of the group gets only new records.
    bus.publish(&topic, b"one-key", b"6")
        .await
        .expect("publish");
    let mut third = bus
        .subscribe(&topic, &group, Start::Oldest)
        .await
        .expect("subscribe");
    assert_eq!(text(&next(&mut third).await.payload), "6");
    third.close().await;
}

#[tokio::test]
async fn a_new_group_starting_at_the_newest_record_skips_the_history() {
    let bus = bus().await;
    let (topic, group) = (unique("signals"), unique("listener"));
    bus.publish(&topic, b"k", b"old").await.expect("publish");
    let mut sub = bus
        .subscribe(&topic, &group, Start::Newest)
        .await
        .expect("subscribe");
    // A record published while the group forms may be missed: publish until one arrives.
    let first = tokio::time::timeout(WAIT, async {
        let mut sent = 0;
        loop {
            bus.publish(&topic, b"k", format!("new-{sent}").as_bytes())
                .await
                .expect("publish");
            sent += 1;
            if let Ok(record) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
                break record.expect("next record");
            }
        }
    })
    .await
    .expect("a new record within the wait");
    assert!(
        text(&first.payload).starts_with("new-"),
        "got {:?}",
        text(&first.payload)
    );
    sub.close().await;
}

#[tokio::test]
async fn bad_bus_urls_are_refused_with_a_reason() {
    for url in [
        "nats://localhost:4222",
        "kafka://",
        "kafka://localhost:9092?partitions=0",
        "kafka://localhost:9092?fetch_wait_ms=0",
        "kafka://localhost:9092?compression=zstd",
        "kafka://localhost:9092?namespace=",
        "kafka://localhost:9092?namespace=a/b",
        "memory://a/b",
    ] {
        match sealpost_bus::open(url).await {
            Err(BusError::Config(why)) => assert!(!why.is_empty(), "{url}"),
            other => panic!("{url}: expected a configuration error, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn servers_given_one_test_key_share_a_bus_and_others_do_not() {
    let key = unique("shared");
    let open = |key: String| async move {
        sealpost_bus::open(&testing::bus_url(&key))
            .await
            .expect("open bus")
    };
    let (first, second, other) = (
        open(key.clone()).await,
        open(key).await,
        open(unique("other")).await,
    );
    let topic = unique("share");
    first
        .publish(&topic, b"k", b"hello")
        .await
        .expect("publish");
    let mut sub = second
        .subscribe(&topic, "g", Start::Oldest)
        .await
        .expect("subscribe");
    assert_eq!(text(&next(&mut sub).await.payload), "hello");
    sub.close().await;
    other
        .publish(&topic, b"k", b"elsewhere")
        .await
        .expect("publish");
    let mut sub = first
        .subscribe(&topic, "g2", Start::Oldest)
        .await
        .expect("subscribe");
    assert_eq!(text(&next(&mut sub).await.payload), "hello");
    other
        .publish(&topic, b"k", b"elsewhere")
        .await
        .expect("publish");
    first
        .publish(&topic, b"k", b"again")
        .await
        .expect("publish");
    assert_eq!(
        text(&next(&mut sub).await.payload),
        "again",
        "a bus of another key stays apart"
    );
    sub.close().await;
}

#[tokio::test]
async fn a_metered_bus_times_publishes_and_shows_what_a_member_has_not_committed() {
    let metrics = sealpost_bus::BusMetrics::default();
    let mut registry = prometheus_client::registry::Registry::with_prefix("sealpost");
    metrics.register(&mut registry);
    let bus = sealpost_bus::metered(bus().await, &metrics);
    let (topic, group) = (unique("lag"), unique("lagging"));
    for i in 0..5 {
        bus.publish(&topic, b"one-key", format!("{i}").as_bytes())
            .await
            .expect("publish");
    }
    let encode = || {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        text
    };
    assert!(
        encode().contains(&format!(
            "sealpost_bus_publish_duration_seconds_count{{topic=\"{topic}\"}} 5"
        )),
        "{}",
        encode()
    );
    let mut sub = bus
        .subscribe(&topic, &group, Start::Oldest)
        .await
        .expect("subscribe");
    let mut records = Vec::new();
    for _ in 0..5 {
        records.push(next(&mut sub).await);
    }
    sub.commit(&records[1]).await.expect("commit");
    // Three records are not committed. Kafka reports lag in its statistics, which a consumer
    // refreshes while it waits for records.
    let lag = format!(
        "sealpost_bus_consumer_lag{{topic=\"{topic}\",group=\"{group}\",partition=\"{}\"}} 3",
        records[1].partition
    );
    let deadline = std::time::Instant::now() + WAIT;
    while !encode().contains(&lag) {
        assert!(
            std::time::Instant::now() < deadline,
            "no {lag} in {}",
            encode()
        );
        let _ = tokio::time::timeout(Duration::from_millis(500), sub.next()).await;
    }
    sub.close().await;
    assert!(!encode().contains(&group), "a member that left still shows");
}
