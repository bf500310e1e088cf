//! What a login writes, and when it need not (SPEC.md §12.5, §14.1).
//!
//! A login records the device's last login time and counts the device and
//! its account as active for the day and the week. Devices reconnect far
//! more often than that changes: a phone moving between networks logs in
//! again within seconds, and every one of its later logins that day finds
//! the analytics rows already there. Rewriting them cost each login a
//! place in the writer's batch and a wait for its fsync. So:
//!
//! - the last login time is kept to the minute: a login less than
//!   [`LAST_LOGIN_RESOLUTION_MS`] from the recorded time leaves it (the
//!   first login always writes it, so "ever logged in" is exact);
//! - this node remembers which devices it has counted today, and does not
//!   count them again. The store stays the authority (counting twice is a
//!   no-op there, so several nodes each remembering their own is correct);
//!   this only skips writes that would change nothing. The memory is
//!   bounded ([`COUNTED_TODAY_CAP`] devices; beyond it, logins just write).
//!
//! Not owned here: the login's checks (devices.rs), the analytics rows
//! (storage/analytics.rs).

use std::collections::HashSet;
use std::sync::Mutex;

use crate::storage::analytics::day_of;

/// How far apart two logins must be for the second to be written as the
/// device's last login time.
pub const LAST_LOGIN_RESOLUTION_MS: u64 = 60_000;

/// Most devices remembered as counted today (about 40 bytes each).
pub const COUNTED_TODAY_CAP: usize = 1_000_000;

/// Whether a login at `now_ms` is written over the recorded last login
/// `recorded_ms` (0: the device never logged in).
pub fn last_login_due(recorded_ms: u64, now_ms: u64) -> bool {
    recorded_ms == 0 || recorded_ms.abs_diff(now_ms) >= LAST_LOGIN_RESOLUTION_MS
}

/// The devices this node has counted as active today.
#[derive(Debug, Default)]
pub struct CountedToday {
    day: Mutex<Day>,
}

#[derive(Debug, Default)]
struct Day {
    day: i64,
    devices: HashSet<u64>,
}

impl CountedToday {
    /// Whether `device_id` was counted on the day of `now_ms` by this node
    /// (so counting it again would change nothing).
    pub fn contains(&self, device_id: u64, now_ms: u64) -> bool {
        let day = self.lock();
        day.day == day_of(now_ms) && day.devices.contains(&device_id)
    }

    /// Notes that `device_id` was counted (stored) on the day of `now_ms`.
    /// A new day forgets the previous one's devices.
    pub fn insert(&self, device_id: u64, now_ms: u64) {
        let today = day_of(now_ms);
        let mut day = self.lock();
        if day.day != today {
            // A login stamped with an earlier day (a clock step back)
            // does not throw away the newer day.
            if today < day.day {
                return;
            }
            *day = Day {
                day: today,
                devices: HashSet::new(),
            };
        }
        if day.devices.len() < COUNTED_TODAY_CAP {
            day.devices.insert(device_id);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Day> {
        // The set is only a cache of stored facts: a panic elsewhere
        // while it was held leaves it usable.
        self.day
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::analytics::DAY_MS;

    #[test]
    fn the_first_login_is_always_written_then_once_a_minute() {
        assert!(last_login_due(0, 5));
        assert!(!last_login_due(1_000_000, 1_000_000 + 59_999));
        assert!(last_login_due(1_000_000, 1_000_000 + 60_000));
        // A clock stepped back by a minute or more is written too.
        assert!(last_login_due(1_000_000, 1_000_000 - 60_000));
        assert!(!last_login_due(1_000_000, 1_000_000 - 1));
    }

    #[test]
    fn devices_are_remembered_for_their_day_only() {
        let counted = CountedToday::default();
        let today = 20_000 * DAY_MS + 5;
        assert!(!counted.contains(7, today));
        counted.insert(7, today);
        assert!(counted.contains(7, today + 1000));
        assert!(!counted.contains(8, today));
        // The next day starts empty.
        assert!(!counted.contains(7, today + DAY_MS));
        counted.insert(8, today + DAY_MS);
        assert!(!counted.contains(7, today + DAY_MS));
        assert!(counted.contains(8, today + DAY_MS));
        // A late login stamped yesterday keeps today's set.
        counted.insert(9, today);
        assert!(counted.contains(8, today + DAY_MS));
        assert!(!counted.contains(9, today));
    }
}
