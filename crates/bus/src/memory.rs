//! The in-process bus: one partition per topic, kept in memory. Every group has a committed
//! offset and at most one member that holds the partition; the others wait until it leaves, as
//! with a Kafka topic of one partition. As with Kafka, retention does not depend on consumers:
//! a topic keeps its newest [`MAX_RECORDS`] records and [`MAX_BYTES`] of payload; a group that
//! falls further behind loses the oldest (with a warning).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::{Bus, BusError, Lag, Record, Start, Subscription};

/// Records a topic keeps at most.
const MAX_RECORDS: usize = 100_000;
/// Key and payload bytes a topic keeps at most.
const MAX_BYTES: usize = 64 << 20;

/// An in-process bus.
#[derive(Debug, Default)]
pub struct MemoryBus {
    topics: Mutex<HashMap<String, Arc<Topic>>>,
    members: AtomicU64,
}

#[derive(Debug, Default)]
struct Topic {
    state: Mutex<TopicState>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct TopicState {
    /// Offset of `log[0]`.
    base: u64,
    log: VecDeque<(Bytes, Bytes)>,
    /// Key and payload bytes in `log`.
    bytes: usize,
    groups: HashMap<String, Group>,
}

#[derive(Debug, Default)]
struct Group {
    committed: u64,
    /// The next offset to hand out to the owner.
    next: u64,
    /// The member holding the partition.
    owner: Option<u64>,
}

impl MemoryBus {
    /// The bus a `memory://` URL names: a new one for `memory://`, or the one every
    /// `memory://NAME` of this process shares (letting several servers in one process, such as
    /// an API node and a worker node in a test, talk as they would through Kafka). A named bus
    /// lives while someone holds it.
    pub fn named(name: &str) -> Result<Arc<Self>, BusError> {
        if name.is_empty() {
            return Ok(Arc::new(Self::default()));
        }
        let legal = name.len() <= 100
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !legal {
            return Err(BusError::Config(format!(
                "invalid memory bus name {name:?}: use letters, digits, '-', '_' or '.'"
            )));
        }
        static NAMED: Mutex<Option<HashMap<String, std::sync::Weak<MemoryBus>>>> = Mutex::new(None);
        let mut named = NAMED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let named = named.get_or_insert_with(HashMap::new);
        named.retain(|_, bus| bus.strong_count() > 0);
        if let Some(bus) = named.get(name).and_then(std::sync::Weak::upgrade) {
            return Ok(bus);
        }
        let bus = Arc::new(Self::default());
        named.insert(name.to_owned(), Arc::downgrade(&bus));
        Ok(bus)
    }
}

impl TopicState {
    fn end(&self) -> u64 {
        self.base + self.log.len() as u64
    }

    /// Drops the oldest records beyond the retention limits; groups behind them skip ahead.
    fn trim(&mut self) {
        while self.log.len() > MAX_RECORDS || (self.bytes > MAX_BYTES && self.log.len() > 1) {
            if let Some((key, payload)) = self.log.pop_front() {
                self.bytes -= key.len() + payload.len();
                self.base += 1;
            }
        }
        let base = self.base;
        for (name, group) in &mut self.groups {
            if group.committed < base {
                tracing::warn!(group = %name, lost = base - group.committed, "in-process bus: a consumer group fell behind retention");
                group.committed = base;
            }
            group.next = group.next.max(base);
        }
    }
}

fn lock(topic: &Topic) -> MutexGuard<'_, TopicState> {
    topic
        .state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl MemoryBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    fn topic(&self, name: &str) -> Arc<Topic> {
        let mut topics = self
            .topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        topics.entry(name.to_owned()).or_default().clone()
    }
}

#[async_trait::async_trait]
impl Bus for MemoryBus {
    fn outlives_process(&self) -> bool {
        false
    }

    async fn publish(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<(), BusError> {
        let topic = self.topic(topic);
        {
            let mut state = lock(&topic);
            state.bytes += key.len() + payload.len();
            state
                .log
                .push_back((Bytes::copy_from_slice(key), Bytes::copy_from_slice(payload)));
            state.trim();
        }
        topic.changed.notify_waiters();
        Ok(())
    }

    async fn subscribe(
        &self,
        topic: &str,
        group: &str,
        start: Start,
    ) -> Result<Box<dyn Subscription>, BusError> {
        let handle = self.topic(topic);
        {
            let mut state = lock(&handle);
            let first = match start {
                Start::Oldest => state.base,
                Start::Newest => state.end(),
            };
            state.groups.entry(group.to_owned()).or_insert(Group {
                committed: first,
                next: first,
                owner: None,
            });
        }
        Ok(Box::new(MemorySubscription {
            topic: handle,
            name: topic.to_owned(),
            group: group.to_owned(),
            member: self.members.fetch_add(1, Ordering::Relaxed),
        }))
    }

    async fn check(&self) -> Result<(), BusError> {
        Ok(())
    }
}

struct MemorySubscription {
    topic: Arc<Topic>,
    name: String,
    group: String,
    member: u64,
}

/// The lag of a member of a group on the in-process bus: what its one partition holds past the
/// group's commit, while the member holds it.
struct MemoryLag {
    topic: Arc<Topic>,
    group: String,
    member: u64,
}

impl Lag for MemoryLag {
    fn partitions(&self) -> Vec<(i32, u64)> {
        let state = lock(&self.topic);
        let end = state.end();
        state
            .groups
            .get(&self.group)
            .filter(|g| g.owner == Some(self.member))
            .map(|g| vec![(0, end.saturating_sub(g.committed.max(state.base)))])
            .unwrap_or_default()
    }
}

impl MemorySubscription {
    /// The next record for this member, if it holds (or can take) the partition.
    fn poll(&self) -> Option<Record> {
        let mut state = lock(&self.topic);
        let (base, end) = (state.base, state.end());
        let group = state.groups.get_mut(&self.group)?;
        match group.owner {
            None => {
                group.owner = Some(self.member);
                group.next = group.committed;
            }
            Some(owner) if owner != self.member => return None,
            Some(_) => {}
        }
        if group.next >= end {
            return None;
        }
        let offset = group.next.max(base);
        group.next = offset + 1;
        let index = usize::try_from(offset - base).ok()?;
        let (key, payload) = state.log.get(index)?.clone();
        Some(Record {
            topic: self.name.clone(),
            partition: 0,
            offset: i64::try_from(offset).ok()?,
            key,
            payload,
        })
    }

    fn leave(&self) {
        {
            let mut state = lock(&self.topic);
            if let Some(group) = state.groups.get_mut(&self.group)
                && group.owner == Some(self.member)
            {
                group.owner = None;
                group.next = group.committed;
            }
        }
        self.topic.changed.notify_waiters();
    }
}

#[async_trait::async_trait]
impl Subscription for MemorySubscription {
    async fn next(&mut self) -> Result<Record, BusError> {
        loop {
            let changed = self.topic.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(record) = self.poll() {
                return Ok(record);
            }
            changed.await;
        }
    }

    async fn commit(&mut self, record: &Record) -> Result<(), BusError> {
        let offset = u64::try_from(record.offset).map_err(|_| BusError::Revoked)? + 1;
        let mut state = lock(&self.topic);
        let group = state.groups.get_mut(&self.group).ok_or(BusError::Closed)?;
        if group.owner != Some(self.member) {
            return Err(BusError::Revoked);
        }
        group.committed = group.committed.max(offset);
        Ok(())
    }

    async fn close(self: Box<Self>) {
        self.leave();
    }

    fn lag(&self) -> Option<Arc<dyn Lag>> {
        Some(Arc::new(MemoryLag {
            topic: self.topic.clone(),
            group: self.group.clone(),
            member: self.member,
        }))
    }
}

impl Drop for MemorySubscription {
    fn drop(&mut self) {
        self.leave();
    }
}
