//! Upload requests streaming on this node: a node-wide cap, each account's share of it, and
//! the rate a body must keep up to hold its slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a transfer may not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Every slot of the node is taken.
    Node,
    /// The account holds its share of the node's slots.
    Account(usize),
}

/// The node's transfer slots and who holds them.
#[derive(Debug)]
pub(super) struct Transfers {
    slots: Arc<Semaphore>,
    max: usize,
    per_account: usize,
    /// Slots held by each account holding any (at most `max` entries: each holds a slot).
    held: Mutex<HashMap<String, usize>>,
}

/// A slot held while a request streams; released on drop.
#[derive(Debug)]
pub(super) struct Slot {
    _permit: OwnedSemaphorePermit,
    account: Option<String>,
    transfers: Arc<Transfers>,
}

impl Transfers {
    /// `max` slots for the node, `per_account` of them at most for one account.
    pub(super) fn new(max: usize, per_account: usize) -> Arc<Self> {
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
            per_account,
            held: Mutex::default(),
        })
    }

    /// Takes a slot for `account` (`None`: the server's own work, which only the node cap
    /// limits). While a quarter of the node's slots or fewer are free, an account already
    /// streaming gets no second one, so the last slots go to accounts holding none.
    pub(super) fn acquire(self: &Arc<Self>, account: Option<&str>) -> Result<Slot, Refusal> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(refusal) = self.refusal_given(&held, account) {
            return Err(refusal);
        }
        let permit = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Node)?;
        if let Some(account) = account {
            *held.entry(account.to_owned()).or_default() += 1;
        }
        Ok(Slot {
            _permit: permit,
            account: account.map(str::to_owned),
            transfers: self.clone(),
        })
    }

    /// Why [`Self::acquire`] would refuse `account` now, if it would (nothing is taken).
    pub(super) fn refusal(&self, account: Option<&str>) -> Option<Refusal> {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        self.refusal_given(&held, account)
    }

    fn refusal_given(
        &self,
        held: &HashMap<String, usize>,
        account: Option<&str>,
    ) -> Option<Refusal> {
        if let Some(account) = account {
            let mine = held.get(account).copied().unwrap_or(0);
            let crowded = self.slots.available_permits() * 4 <= self.max;
            let share = if crowded { 1 } else { self.per_account };
            if mine >= share {
                return Some(Refusal::Account(share));
            }
        }
        (self.slots.available_permits() == 0).then_some(Refusal::Node)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(account) = &self.account else {
            return;
        };
        let mut held = self
            .transfers
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(account) {
            *count -= 1;
            if *count == 0 {
                held.remove(account);
            }
        }
    }
}

/// Why a body lost its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lapse {
    /// No byte for the idle timeout.
    Idle,
    /// Fewer bytes than the minimum rate over a whole window.
    TooSlow,
}

/// The clocks a streaming body runs against: an idle timeout since its last byte, and a
/// minimum rate over consecutive windows. Time the server spends on its own work (writing,
/// committing) is not the client's and stops both clocks.
#[derive(Debug)]
pub(super) struct Pace {
    idle: Duration,
    window: Duration,
    /// Bytes a window must bring; 0 disables the rate check.
    window_min: u64,
    last_byte: Instant,
    window_start: Instant,
    window_bytes: u64,
}

impl Pace {
    /// Clocks starting at `now`; the first window is `stagger` longer (its bytes still need
    /// only reach one window's minimum), so that bodies started together, as an attacker's
    /// are, are not all stopped, committed and resumed in the same instant.
    pub(super) fn new(
        idle: Duration,
        min_rate: u64,
        window: Duration,
        now: Instant,
        stagger: Duration,
    ) -> Self {
        let window_min =
            u64::try_from(u128::from(min_rate).saturating_mul(window.as_millis()) / 1000)
                .unwrap_or(u64::MAX);
        Self {
            idle,
            window,
            window_min,
            last_byte: now,
            window_start: now + stagger,
            window_bytes: 0,
        }
    }

    /// When the next check is due.
    pub(super) fn deadline(&self) -> Instant {
        let idle = self.last_byte + self.idle;
        if self.window_min == 0 {
            return idle;
        }
        idle.min(self.window_start + self.window)
    }

    /// Counts bytes that arrived.
    pub(super) fn received(&mut self, bytes: u64, now: Instant) {
        self.last_byte = now;
        self.window_bytes += bytes;
    }

    /// Stops both clocks for `busy`, time the server spent on its own work.
    pub(super) fn paused(&mut self, busy: Duration) {
        self.last_byte += busy;
        self.window_start += busy;
    }

    /// At or after [`Self::deadline`]: whether the body lapsed; else the next window starts.
    pub(super) fn check(&mut self, now: Instant) -> Option<Lapse> {
        if now >= self.last_byte + self.idle {
            return Some(Lapse::Idle);
        }
        if self.window_min > 0 && now >= self.window_start + self.window {
            if self.window_bytes < self.window_min {
                return Some(Lapse::TooSlow);
            }
            self.window_start = now;
            self.window_bytes = 0;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_gets_its_share_and_one_slot_once_the_node_is_crowded() {
        let transfers = Transfers::new(8, 4);
        let a: Vec<Slot> = (0..4)
            .map(|_| transfers.acquire(Some("a")).expect("share"))
            .collect();
        assert_eq!(
            transfers.acquire(Some("a")).err(),
            Some(Refusal::Account(4))
        );
        let b = transfers.acquire(Some("b")).expect("b");
        let b2 = transfers
            .acquire(Some("b"))
            .expect("b's second, 3 of 8 free");
        // Two slots of eight free: crowded, so b gets no third but c and d get their first.
        assert_eq!(
            transfers.acquire(Some("b")).err(),
            Some(Refusal::Account(1))
        );
        assert_eq!(transfers.refusal(Some("b")), Some(Refusal::Account(1)));
        assert_eq!(transfers.refusal(Some("c")), None);
        let c = transfers.acquire(Some("c")).expect("c");
        let d = transfers.acquire(Some("d")).expect("d");
        assert_eq!(transfers.acquire(Some("e")).err(), Some(Refusal::Node));
        assert_eq!(transfers.acquire(None).err(), Some(Refusal::Node));
        drop((a, b, b2, c, d));
        assert!(transfers.held.lock().expect("held").is_empty());
        assert_eq!(transfers.slots.available_permits(), 8);
    }

    #[test]
    fn a_body_must_bring_the_minimum_rate_each_window_and_server_time_is_not_its() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut pace = Pace::new(
            Duration::from_secs(60),
            1000,
            Duration::from_secs(10),
            start,
            Duration::ZERO,
        );
        assert_eq!(pace.deadline(), at(10_000));
        pace.received(9_000, at(5_000));
        assert_eq!(pace.check(at(9_000)), None, "not due yet");
        pace.received(1_000, at(9_500));
        assert_eq!(pace.check(at(10_000)), None, "10 000 bytes in 10 s");
        pace.received(9_999, at(19_000));
        pace.paused(Duration::from_secs(5));
        assert_eq!(
            pace.check(at(20_000)),
            None,
            "the server's 5 s do not count"
        );
        assert_eq!(pace.check(at(25_000)), Some(Lapse::TooSlow));

        let mut idle = Pace::new(
            Duration::from_secs(3),
            0,
            Duration::from_secs(1),
            start,
            Duration::ZERO,
        );
        assert_eq!(
            idle.check(at(2_000)),
            None,
            "no rate check when the minimum is 0"
        );
        idle.received(1, at(2_000));
        assert_eq!(idle.deadline(), at(5_000));
        assert_eq!(idle.check(at(5_000)), Some(Lapse::Idle));

        let mut staggered = Pace::new(
            Duration::from_secs(60),
            1000,
            Duration::from_secs(10),
            start,
            Duration::from_secs(4),
        );
        assert_eq!(
            staggered.deadline(),
            at(14_000),
            "the first window is longer"
        );
        staggered.received(10_000, at(13_000));
        assert_eq!(staggered.check(at(14_000)), None);
        assert_eq!(staggered.deadline(), at(24_000), "the next ones are not");
        assert_eq!(staggered.check(at(24_000)), Some(Lapse::TooSlow));
    }
}
