//! The devices connected to this node: one connection each (a new one replaces the old), the
//! wake-up that tells a connection its inbox has something new, the queue of ephemeral
//! frames (typing) for it, and why it must close (replaced, revoked).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use sealpost_proto::ServerFrame;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

/// Ephemeral frames a connection may have queued; more are dropped (they are only hints).
const EPHEMERAL_QUEUE: usize = 64;

/// Why a connection is told to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kick {
    /// A newer connection of the device took its place.
    Replaced,
    /// Its device was removed or its token revoked.
    Revoked,
}

/// Tells a connection to close, and why.
#[derive(Debug, Clone, Default)]
pub(crate) struct Kicker {
    token: CancellationToken,
    why: Arc<OnceLock<Kick>>,
}

impl Kicker {
    fn kick(&self, why: Kick) {
        // The first reason stands.
        let _ = self.why.set(why);
        self.token.cancel();
    }

    /// Resolves with the reason once the connection is to close.
    pub(crate) async fn kicked(&self) -> Kick {
        self.token.cancelled().await;
        self.why.get().copied().unwrap_or(Kick::Replaced)
    }
}

/// One device's connection, as the registry knows it.
#[derive(Debug)]
struct Slot {
    connection: u64,
    /// When it registered, Unix milliseconds.
    since: i64,
    /// The token it authenticated with (SHA-256, hex).
    token_hash: String,
    wake: Arc<Notify>,
    kicker: Kicker,
    ephemeral: mpsc::Sender<ServerFrame>,
}

/// What a registered connection waits on.
#[derive(Debug)]
pub(crate) struct Registration {
    /// This connection's number (to unregister only itself).
    pub(crate) connection: u64,
    /// Notified when the device's inbox may have something new.
    pub(crate) wake: Arc<Notify>,
    /// Fires when the connection must close: replaced or revoked.
    pub(crate) kicker: Kicker,
    /// Ephemeral frames for the device.
    pub(crate) ephemeral: mpsc::Receiver<ServerFrame>,
}

/// Connected devices by account, then device.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    accounts: Mutex<HashMap<String, HashMap<u32, Slot>>>,
    next: AtomicU64,
}

impl Registry {
    /// Registers a connection of a device made at `now` (Unix milliseconds) with the token
    /// `token_hash`, replacing (and closing) an older one.
    pub(crate) fn register(
        &self,
        account: &str,
        device: u32,
        token_hash: &str,
        now: i64,
    ) -> Registration {
        let connection = self.next.fetch_add(1, Ordering::Relaxed);
        let wake = Arc::new(Notify::new());
        let kicker = Kicker::default();
        let (sender, ephemeral) = mpsc::channel(EPHEMERAL_QUEUE);
        let slot = Slot {
            connection,
            since: now,
            token_hash: token_hash.to_owned(),
            wake: wake.clone(),
            kicker: kicker.clone(),
            ephemeral: sender,
        };
        let old = self
            .lock()
            .entry(account.to_owned())
            .or_default()
            .insert(device, slot);
        if let Some(old) = old {
            old.kicker.kick(Kick::Replaced);
        }
        Registration {
            connection,
            wake,
            kicker,
            ephemeral,
        }
    }

    /// Forgets a connection, unless a newer one of the device took its place.
    pub(crate) fn unregister(&self, account: &str, device: u32, connection: u64) {
        let mut accounts = self.lock();
        if let Some(devices) = accounts.get_mut(account) {
            if devices
                .get(&device)
                .is_some_and(|s| s.connection == connection)
            {
                devices.remove(&device);
            }
            if devices.is_empty() {
                accounts.remove(account);
            }
        }
    }

    /// Closes the device's connection on this node if it is older than `at` (a newer one
    /// opened on another node; a replayed, stale signal leaves newer connections alone).
    pub(crate) fn replace_older(&self, account: &str, device: u32, at: i64) {
        let mut accounts = self.lock();
        if let Some(devices) = accounts.get_mut(account)
            && devices.get(&device).is_some_and(|s| s.since < at)
            && let Some(old) = devices.remove(&device)
        {
            old.kicker.kick(Kick::Replaced);
        }
    }

    /// Closes the device's connection on this node: any (the device was removed), or only
    /// one authenticated with `token_hash` (that token was revoked).
    pub(crate) fn revoke(&self, account: &str, device: u32, token_hash: Option<&str>) {
        let mut accounts = self.lock();
        if let Some(devices) = accounts.get_mut(account)
            && devices
                .get(&device)
                .is_some_and(|s| token_hash.is_none_or(|t| s.token_hash == t))
            && let Some(old) = devices.remove(&device)
        {
            old.kicker.kick(Kick::Revoked);
        }
    }

    /// Wakes the device's connection on this node, if it has one (a wake-up with nobody
    /// waiting is kept for the next wait).
    pub(crate) fn wake(&self, account: &str, device: u32) {
        if let Some(slot) = self.lock().get(account).and_then(|d| d.get(&device)) {
            slot.wake.notify_one();
        }
    }

    /// Queues an ephemeral frame for every device of `account` connected here, but `skip`.
    pub(crate) fn ephemeral(&self, account: &str, skip: Option<u32>, frame: &ServerFrame) {
        if let Some(devices) = self.lock().get(account) {
            for (device, slot) in devices {
                if Some(*device) != skip {
                    // A full queue drops the hint: the device is not keeping up anyway.
                    let _ = slot.ephemeral.try_send(frame.clone());
                }
            }
        }
    }

    /// Queues an ephemeral frame for `device` of `account`, if it is connected here.
    pub(crate) fn ephemeral_to(&self, account: &str, device: u32, frame: &ServerFrame) {
        if let Some(slot) = self.lock().get(account).and_then(|d| d.get(&device)) {
            let _ = slot.ephemeral.try_send(frame.clone());
        }
    }

    /// Connections on this node.
    pub(crate) fn len(&self) -> usize {
        self.lock().values().map(HashMap::len).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<u32, Slot>>> {
        self.accounts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
