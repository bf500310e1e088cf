//! The queue caps of SPEC.md §12.7, written once: whether a device's queue
//! takes one more envelope from a sender. Pure: the storage backends read
//! the numbers (the device row's `queue_len`, and only when this module
//! asks for it, the sender's share) and write the rows; the rule is here.
//!
//! A queue is full at `max_queue_len` stored envelopes (expired ones count
//! until the sweep deletes them). A sender account may also hold at most
//! `max_per_sender` unexpired envelopes in the queue of a device that is
//! not one of its own. Counting the sender's share walks envelope rows, so
//! it is asked for only when it can matter: a queue shorter than
//! `max_per_sender` cannot hold that many from one sender.
//!
//! Not owned here: reading or writing rows (storage/), the settings
//! (config.rs).

use std::collections::HashMap;

/// The two caps of one send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueCaps {
    /// Envelopes a device queue holds at most.
    pub max_queue_len: u32,
    /// Unexpired envelopes one sender account may hold in another
    /// account's device queue.
    pub max_per_sender: u32,
}

/// What the queue length alone says about one more envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Room {
    /// There is room.
    Yes,
    /// The queue is full.
    No,
    /// The queue is long enough that the sender's share decides: ask
    /// [`room_by_share`] with it.
    DependsOnShare,
}

/// Step one: the rule from the stored queue length (`queued`, the device
/// row's count).
pub fn room_by_length(queued: u32, caps: QueueCaps) -> Room {
    if queued >= caps.max_queue_len {
        Room::No
    } else if queued < caps.max_per_sender {
        Room::Yes
    } else {
        Room::DependsOnShare
    }
}

/// Step two, after [`Room::DependsOnShare`]: a device of the sender's own
/// account always has room below the length cap; another account's device
/// has room while the sender holds fewer than `max_per_sender` unexpired
/// envelopes in it.
pub fn room_by_share(own_account: bool, from_sender: u32, caps: QueueCaps) -> bool {
    own_account || from_sender < caps.max_per_sender
}

/// Whether the sender's share of a queue must be read before a batch adds
/// `adding` envelopes to a queue holding `queued`: only then can any of
/// them meet [`Room::DependsOnShare`].
pub fn share_may_matter(queued: u32, adding: u32, caps: QueueCaps) -> bool {
    queued.saturating_add(adding) > caps.max_per_sender
}

/// The state of the queues one batch of sends writes to, so several sends
/// of one transaction see each other's envelopes: each admitted send counts
/// in the lengths and shares the next one is checked against.
#[derive(Debug, Default)]
pub struct QueueTally {
    queued: HashMap<u64, u32>,
    shares: HashMap<(u64, String), u32>,
}

/// Why [`QueueTally::admit`] refused a send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// These recipient devices' queues are full (in the send's order).
    Full(Vec<u64>),
    /// The share of this device's queue was needed and not provided.
    ShareUnknown(u64),
}

impl QueueTally {
    /// Records a device queue's stored length.
    pub fn set_queued(&mut self, device: u64, queued: u32) {
        self.queued.insert(device, queued);
    }

    /// Records how many unexpired envelopes `sender` holds in `device`'s
    /// queue (needed only where [`share_may_matter`]).
    pub fn set_share(&mut self, device: u64, sender: &str, count: u32) {
        self.shares.insert((device, sender.to_owned()), count);
    }

    /// Checks one envelope per listed recipient against the current state
    /// (`own_account(device)` tells whether a device is the sender's own)
    /// and, when every one has room, counts them. All or nothing: a refused
    /// send changes nothing.
    ///
    /// # Errors
    /// [`Refusal::Full`] with every full recipient;
    /// [`Refusal::ShareUnknown`] when a share the rule needs was not set.
    pub fn admit(
        &mut self,
        sender: &str,
        recipients: &[u64],
        own_account: impl Fn(u64) -> bool,
        caps: QueueCaps,
    ) -> Result<(), Refusal> {
        let mut full = Vec::new();
        for &device in recipients {
            let queued = self.queued.get(&device).copied().unwrap_or(0);
            let room = match room_by_length(queued, caps) {
                Room::Yes => true,
                Room::No => false,
                Room::DependsOnShare if own_account(device) => true,
                Room::DependsOnShare => {
                    let Some(share) = self.shares.get(&(device, sender.to_owned())) else {
                        return Err(Refusal::ShareUnknown(device));
                    };
                    room_by_share(false, *share, caps)
                }
            };
            if !room {
                full.push(device);
            }
        }
        if !full.is_empty() {
            return Err(Refusal::Full(full));
        }
        for &device in recipients {
            let queued = self.queued.entry(device).or_insert(0);
            *queued = queued.saturating_add(1);
            if let Some(share) = self.shares.get_mut(&(device, sender.to_owned())) {
                *share = share.saturating_add(1);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: QueueCaps = QueueCaps {
        max_queue_len: 10,
        max_per_sender: 4,
    };

    #[test]
    fn the_length_decides_below_the_share_and_at_the_cap() {
        assert_eq!(room_by_length(0, CAPS), Room::Yes);
        assert_eq!(room_by_length(3, CAPS), Room::Yes);
        assert_eq!(room_by_length(4, CAPS), Room::DependsOnShare);
        assert_eq!(room_by_length(9, CAPS), Room::DependsOnShare);
        assert_eq!(room_by_length(10, CAPS), Room::No);
        assert_eq!(room_by_length(u32::MAX, CAPS), Room::No);
    }

    #[test]
    fn the_share_binds_other_accounts_only() {
        assert!(room_by_share(false, 3, CAPS));
        assert!(!room_by_share(false, 4, CAPS));
        assert!(room_by_share(true, 400, CAPS));
    }

    #[test]
    fn a_share_is_read_only_when_the_batch_can_reach_it() {
        assert!(!share_may_matter(0, 4, CAPS));
        assert!(share_may_matter(0, 5, CAPS));
        assert!(share_may_matter(4, 1, CAPS));
        assert!(!share_may_matter(3, 1, CAPS));
        assert!(share_may_matter(u32::MAX, u32::MAX, CAPS));
    }

    #[test]
    fn sends_of_one_batch_count_against_each_other() {
        let mut tally = QueueTally::default();
        tally.set_queued(7, 8);
        tally.set_share(7, "bob", 1);
        // 8 queued ≥ 4: the share decides; bob holds 1, 2, 3 → admitted.
        for _ in 0..2 {
            assert_eq!(tally.admit("bob", &[7], |_| false, CAPS), Ok(()));
        }
        // 10 queued now: full for everyone.
        assert_eq!(
            tally.admit("bob", &[7], |_| true, CAPS),
            Err(Refusal::Full(vec![7]))
        );
    }

    #[test]
    fn a_refused_send_changes_nothing_and_names_every_full_queue() {
        let mut tally = QueueTally::default();
        tally.set_queued(1, 10);
        tally.set_queued(2, 0);
        tally.set_queued(3, 10);
        assert_eq!(
            tally.admit("bob", &[1, 2, 3], |_| false, CAPS),
            Err(Refusal::Full(vec![1, 3]))
        );
        // Device 2 was not counted: four more fit below the share.
        for _ in 0..4 {
            assert_eq!(tally.admit("bob", &[2], |_| false, CAPS), Ok(()));
        }
    }

    #[test]
    fn the_sender_share_caps_another_account_but_not_its_own_devices() {
        let mut tally = QueueTally::default();
        tally.set_queued(5, 6);
        tally.set_share(5, "bob", 4);
        assert_eq!(
            tally.admit("bob", &[5], |_| false, CAPS),
            Err(Refusal::Full(vec![5]))
        );
        assert_eq!(tally.admit("bob", &[5], |d| d == 5, CAPS), Ok(()));
        // Another sender without a recorded share: the caller must read it.
        assert_eq!(
            tally.admit("carol", &[5], |_| false, CAPS),
            Err(Refusal::ShareUnknown(5))
        );
    }
}
