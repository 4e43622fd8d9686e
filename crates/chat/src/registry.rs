//! The devices connected to this node: one connection each (a new one replaces the old), and
//! the wake-up that tells a connection its inbox has something new.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// One device's connection, as the registry knows it.
#[derive(Debug)]
struct Slot {
    connection: u64,
    wake: Arc<Notify>,
    replaced: CancellationToken,
}

/// What a registered connection waits on.
#[derive(Debug)]
pub(crate) struct Registration {
    /// This connection's number (to unregister only itself).
    pub(crate) connection: u64,
    /// Notified when the device's inbox may have something new.
    pub(crate) wake: Arc<Notify>,
    /// Cancelled when a newer connection of the device replaces this one.
    pub(crate) replaced: CancellationToken,
}

/// Connected devices by `(account, device)`.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    slots: Mutex<HashMap<(String, u32), Slot>>,
    next: AtomicU64,
}

impl Registry {
    /// Registers a connection of a device, replacing (and cancelling) an older one.
    pub(crate) fn register(&self, account: &str, device: u32) -> Registration {
        let connection = self.next.fetch_add(1, Ordering::Relaxed);
        let wake = Arc::new(Notify::new());
        let replaced = CancellationToken::new();
        let slot = Slot {
            connection,
            wake: wake.clone(),
            replaced: replaced.clone(),
        };
        let old = self.lock().insert((account.to_owned(), device), slot);
        if let Some(old) = old {
            old.replaced.cancel();
        }
        Registration {
            connection,
            wake,
            replaced,
        }
    }

    /// Forgets a connection, unless a newer one of the device took its place.
    pub(crate) fn unregister(&self, account: &str, device: u32, connection: u64) {
        let mut slots = self.lock();
        let key = (account.to_owned(), device);
        if slots.get(&key).is_some_and(|s| s.connection == connection) {
            slots.remove(&key);
        }
    }

    /// Wakes the device's connection on this node, if it has one (a wake-up with nobody
    /// waiting is kept for the next wait).
    pub(crate) fn wake(&self, account: &str, device: u32) {
        if let Some(slot) = self.lock().get(&(account.to_owned(), device)) {
            slot.wake.notify_one();
        }
    }

    /// Connections on this node.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u32), Slot>> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
