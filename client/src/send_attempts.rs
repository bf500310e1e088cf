//! How a send tries again when the server's view of the recipients'
//! devices differs from ours (SPEC.md §12.7 for 1:1 sends, §12.10 for
//! group sends), decided without I/O; the send planner (send_plan.rs)
//! applies it and the senders (sessions.rs, groups/send.rs) carry it out.
//!
//! A send makes at most [`ATTEMPTS`] attempts. Every attempt but the last
//! asks the server to check the device set (1:1: both accounts claimed
//! complete; group: the devices holding our sender key), so a device
//! linked since our last look is reported at once and picked up before
//! the next attempt. The last attempt asks for no check, so a device whose
//! keys we cannot use never holds the message from the others. A refusal
//! that says the device set changed leads to another attempt only from a
//! checking attempt; anything else ends the send.

use microbot_protocol::transport::ErrorCode;

/// The most attempts one send makes.
pub(crate) const ATTEMPTS: u8 = 3;

/// One attempt of a send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Attempt {
    index: u8,
}

/// What the sender does after the server refused an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AfterRefusal {
    /// The device set changed: forget `removed` devices, re-check the
    /// recipients' devices (and our own), and make the next attempt.
    Recheck {
        /// Devices the server says no longer exist.
        removed: Vec<u64>,
    },
    /// The refusal ends the send.
    Final,
}

impl Attempt {
    /// The first attempt of a send.
    pub(crate) fn first() -> Self {
        Attempt { index: 0 }
    }

    /// The attempt after this one, when the send makes another.
    pub(crate) fn next(self) -> Option<Self> {
        let index = self.index + 1;
        (index < ATTEMPTS).then_some(Attempt { index })
    }

    /// Whether this attempt asks the server to check the device set (all
    /// but the last); only such an attempt is followed by another when the
    /// device set changed (the server's refusal, or our own distribution
    /// finding stale devices).
    pub(crate) fn checks_devices(self) -> bool {
        self.index + 1 < ATTEMPTS
    }

    /// What the server's refusal `code` (naming `device_ids`) of this
    /// attempt means: unknown or removed devices are forgotten and
    /// missing ones looked up, then the next attempt; only a checking
    /// attempt gets another.
    pub(crate) fn after_refusal(self, code: ErrorCode, device_ids: &[u64]) -> AfterRefusal {
        if !self.checks_devices() {
            return AfterRefusal::Final;
        }
        match code {
            ErrorCode::UnknownDevice | ErrorCode::DeviceRemoved => AfterRefusal::Recheck {
                removed: device_ids.to_vec(),
            },
            ErrorCode::MissingDevices => AfterRefusal::Recheck {
                removed: Vec::new(),
            },
            _ => AfterRefusal::Final,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The attempts of one send, in order.
    fn attempts() -> impl Iterator<Item = Attempt> {
        std::iter::successors(Some(Attempt::first()), |attempt| attempt.next())
    }

    #[test]
    fn all_attempts_but_the_last_check_the_device_set() {
        let checks: Vec<bool> = attempts().map(Attempt::checks_devices).collect();
        assert_eq!(checks, [true, true, false]);
    }

    #[test]
    fn removed_devices_are_forgotten_and_missing_ones_looked_up() {
        let first = attempts().next().unwrap_or(Attempt { index: 0 });
        assert_eq!(
            first.after_refusal(ErrorCode::DeviceRemoved, &[4, 5]),
            AfterRefusal::Recheck {
                removed: vec![4, 5]
            }
        );
        assert_eq!(
            first.after_refusal(ErrorCode::UnknownDevice, &[9]),
            AfterRefusal::Recheck { removed: vec![9] }
        );
        assert_eq!(
            first.after_refusal(ErrorCode::MissingDevices, &[7]),
            AfterRefusal::Recheck {
                removed: Vec::new()
            }
        );
    }

    #[test]
    fn the_last_attempt_and_other_refusals_end_the_send() {
        let last = attempts().last().unwrap_or(Attempt { index: 2 });
        assert!(!last.checks_devices());
        assert_eq!(
            last.after_refusal(ErrorCode::MissingDevices, &[]),
            AfterRefusal::Final
        );
        let first = Attempt { index: 0 };
        assert_eq!(
            first.after_refusal(ErrorCode::QueueFull, &[1]),
            AfterRefusal::Final
        );
        assert_eq!(
            first.after_refusal(ErrorCode::NotGroupMember, &[]),
            AfterRefusal::Final
        );
    }
}
