//! In-process exclusion for one upload: a newer request cancels the one in flight, waits until
//! it has committed what it received, then proceeds. Across nodes the database lease (a fencing
//! token) keeps writers apart; this only makes the hand-over immediate on one node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OwnedMutexGuard;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Default)]
struct Slot {
    lock: Arc<tokio::sync::Mutex<()>>,
    holder: CancellationToken,
    newest_ticket: u64,
}

/// Per-upload exclusion with takeover.
#[derive(Debug, Default)]
pub(super) struct Takeover {
    slots: Mutex<HashMap<String, Slot>>,
}

/// Exclusive access to one upload until dropped; `cancelled` fires when a newer request wants it.
#[derive(Debug)]
pub(super) struct UploadGuard {
    owner: Arc<Takeover>,
    id: String,
    cancelled: CancellationToken,
    _guard: OwnedMutexGuard<()>,
}

impl UploadGuard {
    /// Fires when a newer request asks for this upload.
    pub(super) fn cancelled(&self) -> &CancellationToken {
        &self.cancelled
    }
}

impl Drop for UploadGuard {
    fn drop(&mut self) {
        let mut slots = self
            .owner
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = slots.get(&self.id) {
            // Only the map and this guard still reference the lock: nobody waits.
            if Arc::strong_count(&slot.lock) <= 2 {
                slots.remove(&self.id);
            }
        }
    }
}

impl Takeover {
    /// Whether a request on this node holds or waits for `id`.
    pub(super) fn in_use(&self, id: &str) -> bool {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(id)
    }

    /// Takes `id` over: cancels the current holder, waits for it to finish, and returns the
    /// guard; `None` if an even newer request arrived meanwhile (it wins).
    pub(super) async fn acquire(self: &Arc<Self>, id: &str) -> Option<UploadGuard> {
        let (lock, ticket) = {
            let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            let slot = slots.entry(id.to_owned()).or_default();
            slot.holder.cancel();
            slot.newest_ticket += 1;
            (slot.lock.clone(), slot.newest_ticket)
        };
        let guard = lock.lock_owned().await;
        let cancelled = CancellationToken::new();
        {
            let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            let slot = slots.get_mut(id)?;
            if slot.newest_ticket != ticket {
                return None;
            }
            slot.holder = cancelled.clone();
        }
        Some(UploadGuard {
            owner: self.clone(),
            id: id.to_owned(),
            cancelled,
            _guard: guard,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_newer_request_cancels_and_replaces_the_holder() {
        let takeover = Arc::new(Takeover::default());
        let first = takeover.acquire("u").await.expect("first");
        let t = takeover.clone();
        let second = tokio::spawn(async move { t.acquire("u").await.is_some() });
        first.cancelled().cancelled().await;
        drop(first);
        assert!(second.await.expect("join"));
        assert!(takeover.slots.lock().expect("slots").is_empty());
    }

    #[tokio::test]
    async fn of_two_waiters_only_the_newest_proceeds() {
        let takeover = Arc::new(Takeover::default());
        let first = takeover.acquire("u").await.expect("first");
        let (a, b) = (takeover.clone(), takeover.clone());
        let older = tokio::spawn(async move { a.acquire("u").await.is_some() });
        tokio::task::yield_now().await;
        while takeover.slots.lock().expect("slots")["u"].newest_ticket < 2 {
            tokio::task::yield_now().await;
        }
        let newer = tokio::spawn(async move { b.acquire("u").await.is_some() });
        while takeover.slots.lock().expect("slots")["u"].newest_ticket < 3 {
            tokio::task::yield_now().await;
        }
        drop(first);
        assert!(!older.await.expect("join"));
        assert!(newer.await.expect("join"));
    }
}
