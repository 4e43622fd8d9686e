//! The loop every consumer of the bus runs: join a group, hand each record to a handler,
//! commit what it finished, and join again, after a backoff, when the subscription fails or
//! the handler gives a record back.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::{Bus, Record, Start};

/// Waits between failures in a row: `base`, doubled for each further failure, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failure.
    pub base: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Backoff {
    /// The wait after `failures` failures in a row.
    pub fn delay(&self, failures: u32) -> Duration {
        self.base
            .saturating_mul(1 << failures.saturating_sub(1).min(16))
            .min(self.max)
    }

    /// Waits out the delay after `failures` failures in a row; false on shutdown.
    pub async fn pause(&self, failures: u32, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = tokio::time::sleep(self.delay(failures)) => true,
        }
    }
}

/// A consumer group on a topic, and where the group starts when it is new.
#[derive(Debug, Clone, Copy)]
pub struct Membership<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The consumer group.
    pub group: &'a str,
    /// Where a new group starts.
    pub start: Start,
}

/// Runs `handle` on every record of a topic for a consumer group until `shutdown`.
/// A record the handler finished (`true`) is committed; one it gives back (`false`) stays
/// uncommitted: the subscription is closed, and joined again after a backoff, so the record
/// comes again (to this member or another). A subscription that fails is joined again the
/// same way. At shutdown the record in hand stays uncommitted.
pub async fn consume<F, Fut>(
    bus: &dyn Bus,
    membership: Membership<'_>,
    backoff: Backoff,
    shutdown: &CancellationToken,
    mut handle: F,
) where
    F: FnMut(Record) -> Fut,
    Fut: Future<Output = bool>,
{
    consume_batches(bus, membership, 1, backoff, shutdown, |mut records| {
        handle(records.swap_remove(0))
    })
    .await;
}

/// Like [`consume`], handing the handler up to `max` records at a time: the first that comes,
/// and those the subscription holds already (in order), so a busy topic is worked in batches
/// and a quiet one without waiting. The batch is committed, or given back, as a whole.
pub async fn consume_batches<F, Fut>(
    bus: &dyn Bus,
    membership: Membership<'_>,
    max: usize,
    backoff: Backoff,
    shutdown: &CancellationToken,
    mut handle: F,
) where
    F: FnMut(Vec<Record>) -> Fut,
    Fut: Future<Output = bool>,
{
    let Membership {
        topic,
        group,
        start,
    } = membership;
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        let subscription = tokio::select! {
            () = shutdown.cancelled() => return,
            s = bus.subscribe(topic, group, start) => s,
        };
        let mut subscription = match subscription {
            Ok(subscription) => subscription,
            Err(e) => {
                tracing::warn!(error = %e, topic, group, "cannot join the consumer group");
                failures += 1;
                if !backoff.pause(failures, shutdown).await {
                    return;
                }
                continue;
            }
        };
        let healthy = 'serve: loop {
            let record = tokio::select! {
                () = shutdown.cancelled() => break true,
                r = subscription.next() => r,
            };
            let mut batch = match record {
                Ok(record) => vec![record],
                Err(e) => {
                    tracing::warn!(error = %e, topic, group, "lost the subscription");
                    break false;
                }
            };
            // What is there already joins the batch (an error shows again on the next wait).
            while batch.len() < max {
                match subscription.next().now_or_never() {
                    Some(Ok(record)) => batch.push(record),
                    Some(Err(_)) | None => break,
                }
            }
            // Committing a record commits every earlier one of its partition.
            let last: BTreeMap<i32, Record> = batch
                .iter()
                .map(|record| (record.partition, record.clone()))
                .collect();
            if !handle(batch).await {
                break shutdown.is_cancelled();
            }
            failures = 0;
            for record in last.values() {
                if let Err(e) = subscription.commit(record).await {
                    // Harmless to consumers, which must be idempotent: the records come again.
                    tracing::warn!(error = %e, topic, group, "cannot commit");
                    break 'serve false;
                }
            }
        };
        subscription.close().await;
        if !healthy {
            failures += 1;
            // Joining again at once would churn the group while the brokers are away.
            if !backoff.pause(failures, shutdown).await {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_maximum() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let delays: Vec<u128> = (1..=6).map(|n| backoff.delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(1));
    }
}
