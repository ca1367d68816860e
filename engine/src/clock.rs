//! The wall clock that decides when a record's expiry has passed: the system's, or a
//! manual one that tests (and simulations) move by hand.
//!
//! Expiry times are Unix milliseconds, as records store them (FORMAT.md, "Record"). A
//! key whose expiry is at or before [`Clock::now_unix_ms`] reads as absent. A manual
//! clock is shared: every clone sees the same time, so one moved in a test moves for
//! every substore and core that was given a clone.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The clock expiry is judged by. `Clock::default()` is the system clock.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// `None`: the system clock; otherwise the manual clock's time, in Unix ms.
    manual: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// The system's wall clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that stands at `unix_ms` until [`Clock::advance`] or [`Clock::set`]
    /// moves it.
    pub fn manual(unix_ms: u64) -> Self {
        Self {
            manual: Some(Arc::new(AtomicU64::new(unix_ms))),
        }
    }

    /// Now, in Unix milliseconds.
    pub fn now_unix_ms(&self) -> u64 {
        match &self.manual {
            Some(now) => now.load(Ordering::Acquire),
            None => system_now_unix_ms(),
        }
    }

    /// Whether an expiry (Unix ms) has passed.
    pub fn has_passed(&self, expiry_unix_ms: Option<u64>) -> bool {
        expiry_unix_ms.is_some_and(|at| at <= self.now_unix_ms())
    }

    /// Moves a manual clock forward.
    ///
    /// # Panics
    /// On the system clock, which cannot be moved.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.manual_time().fetch_add(ms, Ordering::AcqRel);
    }

    /// Sets a manual clock (forward or back).
    ///
    /// # Panics
    /// On the system clock, which cannot be moved.
    pub fn set(&self, unix_ms: u64) {
        self.manual_time().store(unix_ms, Ordering::Release);
    }

    fn manual_time(&self) -> &AtomicU64 {
        self.manual
            .as_deref()
            .expect("only a manual clock (Clock::manual) can be moved")
    }
}

/// Two clocks are equal when both are the system clock or both are clones of one
/// manual clock.
impl PartialEq for Clock {
    fn eq(&self, other: &Self) -> bool {
        match (&self.manual, &other.manual) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Clock {}

fn system_now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_for_every_clone_and_judges_expiry() {
        let clock = Clock::manual(1_000);
        let clone = clock.clone();
        assert!(!clock.has_passed(Some(1_001)));
        assert!(clock.has_passed(Some(1_000)));
        assert!(!clock.has_passed(None));
        clone.advance(Duration::from_millis(5));
        assert_eq!(clock.now_unix_ms(), 1_005);
        assert!(clock.has_passed(Some(1_001)));
        clock.set(10);
        assert_eq!(clone.now_unix_ms(), 10);
        assert_eq!(clock, clone);
        assert_ne!(clock, Clock::manual(10));
        assert_eq!(Clock::system(), Clock::default());
    }

    #[test]
    fn the_system_clock_is_near_the_system_time() {
        let now = Clock::system().now_unix_ms();
        assert!(now > 1_600_000_000_000, "{now}");
    }
}
