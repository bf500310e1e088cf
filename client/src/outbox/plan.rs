//! What the outbox drain decides (SPEC.md §12.7), without I/O: which
//! queued row leaves next, and what the answer to its send means for the
//! row, for the application's events and for the rows behind it.
//!
//! Rows leave in queue order. A destination whose safety number changed
//! answers [`Answer::Blocked`]: its rows stay queued and are skipped until
//! the user accepts the new identity, without holding up other
//! destinations. A send that can never succeed is dropped and reported; a
//! failed connection or store stops the drain with the row still queued.
//! Only rows the application queued ([`OutboxRow::announce`]) are
//! announced (`Sent`, `NotDelivered`, `SendFailed`; a typing indicator
//! only when it fails); what the SDK queued by itself leaves silently,
//! and its failures are logged instead.
//! Not owned here: sending (drain.rs, sessions.rs, groups/send.rs).

use std::collections::BTreeSet;

use microbot_protocol::MessageId;
use microbot_protocol::content::{Content, content::Body};
use prost::Message as _;

use crate::error::{Interrupted, StoreError, TransportError};
use crate::events::{Conversation, Event};
use crate::send_failure::SendFailureReason;
use crate::store::{OutboxRow, Tx};

/// What to do with one queued row.
#[derive(Debug)]
pub(crate) enum NextStep {
    /// Its destination is blocked on a safety-number change: leave it.
    Wait,
    /// Send `content` to `conversation`.
    Send {
        /// Where it goes.
        conversation: Conversation,
        /// What goes.
        content: Box<Content>,
    },
    /// It can never leave (not a content, not a destination): it was
    /// removed from the outbox; tell the application these events.
    Dropped(Vec<Event>),
}

/// How the send of one row went, as plain data.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The server stored it; group sends name the devices whose full
    /// queues were skipped (SPEC.md §12.10).
    Stored {
        /// The server's time stamp.
        server_timestamp_ms: u64,
        /// Recipient devices that did not get it.
        skipped_device_ids: Vec<u64>,
    },
    /// The destination's safety number changed; wait for acknowledgement.
    Blocked,
    /// The send can never succeed, for this reason.
    Refused(SendFailureReason),
    /// The connection failed; the row stays and leaves after reconnecting.
    ConnectionFailed(TransportError),
    /// The store failed; the row stays.
    StoreFailed(StoreError),
}

/// The drain's memory across the rows of one pass: which destinations
/// wait for a safety-number acknowledgement.
#[derive(Debug, Default)]
pub(crate) struct DrainPlan {
    blocked: BTreeSet<String>,
}

impl DrainPlan {
    /// A plan for one pass over the outbox.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Decides what happens to `row`; removes a row that can never leave.
    pub(crate) fn next(&self, tx: &Tx<'_>, row: &OutboxRow) -> Result<NextStep, StoreError> {
        if self.blocked.contains(&row.destination) {
            return Ok(NextStep::Wait);
        }
        let Ok(content) = Content::decode(row.content.as_slice()) else {
            tx.delete_outbox(row.seq)?;
            return Ok(NextStep::Dropped(Vec::new()));
        };
        let Some(conversation) = Conversation::from_key(&row.destination) else {
            tx.delete_outbox(row.seq)?;
            let reason = SendFailureReason::UnknownDestination {
                destination: row.destination.clone(),
            };
            return Ok(NextStep::Dropped(
                failed(row, &content, reason).into_iter().collect(),
            ));
        };
        Ok(NextStep::Send {
            conversation,
            content: Box::new(content),
        })
    }

    /// Applies the answer to the send of `row` (whose content is
    /// `content`) in `tx`: the events to tell the application, or why the
    /// drain stops.
    pub(crate) fn answered(
        &mut self,
        tx: &Tx<'_>,
        row: &OutboxRow,
        content: &Content,
        answer: Answer,
    ) -> Result<Vec<Event>, Interrupted> {
        let message_id: MessageId = content.id().unwrap_or_default();
        match answer {
            Answer::Stored {
                server_timestamp_ms,
                skipped_device_ids,
            } => {
                tx.delete_outbox(row.seq).map_err(Interrupted::Store)?;
                if !row.announce || matches!(content.body, Some(Body::Typing(_))) {
                    return Ok(Vec::new());
                }
                tx.record_sent(&message_id, server_timestamp_ms)
                    .map_err(Interrupted::Store)?;
                let mut events = vec![Event::Sent {
                    message_id,
                    server_timestamp_ms,
                }];
                if !skipped_device_ids.is_empty() {
                    let usernames = skipped_members(tx, &row.destination, &skipped_device_ids)
                        .map_err(Interrupted::Store)?;
                    events.push(Event::NotDelivered {
                        message_id,
                        usernames,
                        device_ids: skipped_device_ids,
                    });
                }
                Ok(events)
            }
            Answer::Blocked => {
                self.blocked.insert(row.destination.clone());
                Ok(Vec::new())
            }
            Answer::Refused(reason) => {
                tx.delete_outbox(row.seq).map_err(Interrupted::Store)?;
                if row.announce {
                    tx.record_send_failure(&message_id, reason.kind(), &reason.to_string())
                        .map_err(Interrupted::Store)?;
                }
                Ok(failed(row, content, reason).into_iter().collect())
            }
            Answer::ConnectionFailed(error) => Err(Interrupted::Connection(error)),
            Answer::StoreFailed(error) => Err(Interrupted::Store(error)),
        }
    }
}

/// The `SendFailed` event for a dropped `row`, or, for a row the
/// application did not queue, `None` and a log line (the reason's kind
/// only: no names, nothing of the content).
fn failed(row: &OutboxRow, content: &Content, reason: SendFailureReason) -> Option<Event> {
    if row.announce {
        return Some(Event::SendFailed {
            message_id: content.id().unwrap_or_default(),
            reason,
        });
    }
    tracing::warn!(
        reason = reason.kind(),
        "a send the SDK queued by itself failed and was dropped"
    );
    None
}

/// The members a group send skipped, by the devices the group's key
/// records name (a device not named there is left out), each once, sorted.
fn skipped_members(
    tx: &Tx<'_>,
    destination: &str,
    device_ids: &[u64],
) -> Result<Vec<String>, StoreError> {
    let Some(Conversation::Group(id)) = Conversation::from_key(destination) else {
        return Ok(Vec::new());
    };
    let names: BTreeSet<String> = tx
        .shared(&id)?
        .into_iter()
        .filter(|(_, device, _)| device_ids.contains(device))
        .map(|(username, _, _)| username)
        .collect();
    Ok(names.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use microbot_protocol::content::TypingAction;

    use super::*;
    use crate::groups::GroupId;
    use crate::store::Store;

    fn store() -> (tempfile::TempDir, Store) {
        crate::store::temporary()
    }

    fn push(store: &mut Store, destination: &str, content: &Content) -> OutboxRow {
        push_from(store, destination, content, true)
    }

    /// A row the SDK queued by itself (`announce` false).
    fn push_internal(store: &mut Store, destination: &str, content: &Content) -> OutboxRow {
        push_from(store, destination, content, false)
    }

    fn push_from(
        store: &mut Store,
        destination: &str,
        content: &Content,
        announce: bool,
    ) -> OutboxRow {
        store
            .tx(|tx| -> Result<_, StoreError> {
                let id = content.id().unwrap_or_default();
                tx.push_outbox(destination, &id, &content.encode_to_vec(), announce)?;
                let rows = tx.outbox()?;
                Ok(rows.into_iter().last().expect("the row just pushed"))
            })
            .expect("push")
    }

    fn queued(store: &mut Store) -> usize {
        store.tx(|tx| tx.outbox()).expect("outbox").len()
    }

    fn text(id: u8) -> Content {
        Content::text([id; 16], 1, "hello")
    }

    #[test]
    fn a_stored_send_leaves_the_outbox_and_is_reported_sent() {
        let (_dir, mut store) = store();
        let content = text(1);
        let row = push(
            &mut store,
            &Conversation::Direct("bob".into()).key(),
            &content,
        );
        let mut plan = DrainPlan::new();
        let events = store
            .tx(|tx| -> Result<_, StoreError> {
                let NextStep::Send { conversation, .. } = plan.next(tx, &row)? else {
                    panic!("a decodable row to a known destination is sent");
                };
                assert_eq!(conversation, Conversation::Direct("bob".into()));
                let answer = Answer::Stored {
                    server_timestamp_ms: 42,
                    skipped_device_ids: Vec::new(),
                };
                Ok(plan.answered(tx, &row, &content, answer).expect("no stop"))
            })
            .expect("tx");
        assert!(matches!(
            events.as_slice(),
            [Event::Sent { message_id, server_timestamp_ms: 42 }] if *message_id == [1; 16]
        ));
        assert_eq!(queued(&mut store), 0);
    }

    #[test]
    fn a_typing_indicator_leaves_without_a_sent_event() {
        let (_dir, mut store) = store();
        let content = Content::typing([2; 16], 1, TypingAction::Started);
        let row = push(
            &mut store,
            &Conversation::Direct("bob".into()).key(),
            &content,
        );
        let mut plan = DrainPlan::new();
        let answer = Answer::Stored {
            server_timestamp_ms: 1,
            skipped_device_ids: Vec::new(),
        };
        let events = store
            .tx(|tx| Ok::<_, StoreError>(plan.answered(tx, &row, &content, answer).expect("ok")))
            .expect("tx");
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(queued(&mut store), 0);
    }

    #[test]
    fn a_blocked_destination_holds_its_later_rows_but_not_others() {
        let (_dir, mut store) = store();
        let bob = Conversation::Direct("bob".into()).key();
        let carol = Conversation::Direct("carol".into()).key();
        let first = push(&mut store, &bob, &text(1));
        let second = push(&mut store, &bob, &text(2));
        let other = push(&mut store, &carol, &text(3));
        let mut plan = DrainPlan::new();
        store
            .tx(|tx| -> Result<(), StoreError> {
                let events = plan
                    .answered(tx, &first, &text(1), Answer::Blocked)
                    .expect("blocked is no stop");
                assert!(events.is_empty());
                assert!(matches!(plan.next(tx, &second)?, NextStep::Wait));
                assert!(matches!(plan.next(tx, &other)?, NextStep::Send { .. }));
                Ok(())
            })
            .expect("tx");
        assert_eq!(queued(&mut store), 3, "blocked rows stay queued");
    }

    #[test]
    fn a_refused_send_is_dropped_and_reported() {
        let (_dir, mut store) = store();
        let content = text(4);
        let row = push(
            &mut store,
            &Conversation::Direct("bob".into()).key(),
            &content,
        );
        let mut plan = DrainPlan::new();
        let answer = Answer::Refused(SendFailureReason::UnknownAccount {
            username: "bob".into(),
        });
        let events = store
            .tx(|tx| Ok::<_, StoreError>(plan.answered(tx, &row, &content, answer).expect("ok")))
            .expect("tx");
        let [Event::SendFailed { message_id, reason }] = events.as_slice() else {
            panic!("one SendFailed: {events:?}");
        };
        assert_eq!(*message_id, [4; 16]);
        assert_eq!(
            reason,
            &SendFailureReason::UnknownAccount {
                username: "bob".into()
            }
        );
        assert_eq!(reason.to_string(), "no account named bob");
        assert_eq!(queued(&mut store), 0);
    }

    #[test]
    fn a_lost_connection_stops_the_drain_and_keeps_the_row() {
        let (_dir, mut store) = store();
        let content = text(5);
        let row = push(
            &mut store,
            &Conversation::Direct("bob".into()).key(),
            &content,
        );
        let mut plan = DrainPlan::new();
        let answer = Answer::ConnectionFailed(TransportError::ConnectionLost("gone".into()));
        let stopped = store
            .tx(|tx| Ok::<_, StoreError>(plan.answered(tx, &row, &content, answer).is_err()))
            .expect("tx");
        assert!(stopped);
        assert_eq!(queued(&mut store), 1);
    }

    #[test]
    fn a_row_that_is_no_content_is_dropped_silently() {
        let (_dir, mut store) = store();
        let row = store
            .tx(|tx| -> Result<_, StoreError> {
                tx.push_outbox("u:bob", &[6; 16], &[0xff, 0xff, 0xff], true)?;
                Ok(tx.outbox()?.remove(0))
            })
            .expect("push");
        let plan = DrainPlan::new();
        let step = store.tx(|tx| plan.next(tx, &row)).expect("tx");
        assert!(matches!(step, NextStep::Dropped(events) if events.is_empty()));
        assert_eq!(queued(&mut store), 0);
    }

    #[test]
    fn a_row_to_an_unknown_destination_is_dropped_and_reported() {
        let (_dir, mut store) = store();
        let row = push(&mut store, "nowhere", &text(7));
        let plan = DrainPlan::new();
        let step = store.tx(|tx| plan.next(tx, &row)).expect("tx");
        assert!(matches!(
            step,
            NextStep::Dropped(events) if matches!(
                events.as_slice(),
                [Event::SendFailed {
                    message_id,
                    reason: SendFailureReason::UnknownDestination { destination },
                }] if *message_id == [7; 16] && destination == "nowhere"
            )
        ));
        assert_eq!(queued(&mut store), 0);
    }

    #[test]
    fn a_row_the_sdk_queued_leaves_and_fails_without_an_event() {
        let (_dir, mut store) = store();
        let bob = Conversation::Direct("bob".into()).key();
        let receipt = Content::delivery_receipt([10; 16], 1, [[1; 16]]);
        let stored = push_internal(&mut store, &bob, &receipt);
        let refused = push_internal(&mut store, &bob, &text(11));
        let lost = push_internal(&mut store, "nowhere", &text(12));
        let mut plan = DrainPlan::new();
        store
            .tx(|tx| -> Result<(), StoreError> {
                let answer = Answer::Stored {
                    server_timestamp_ms: 3,
                    skipped_device_ids: vec![7],
                };
                let events = plan.answered(tx, &stored, &receipt, answer).expect("ok");
                assert!(events.is_empty(), "{events:?}");
                let answer = Answer::Refused(SendFailureReason::UnknownAccount {
                    username: "bob".into(),
                });
                let events = plan.answered(tx, &refused, &text(11), answer).expect("ok");
                assert!(events.is_empty(), "{events:?}");
                let step = plan.next(tx, &lost)?;
                assert!(
                    matches!(&step, NextStep::Dropped(events) if events.is_empty()),
                    "{step:?}"
                );
                Ok(())
            })
            .expect("tx");
        assert_eq!(queued(&mut store), 0, "all three left the outbox");
    }

    #[test]
    fn a_failed_typing_indicator_of_the_application_is_reported() {
        let (_dir, mut store) = store();
        let content = Content::typing([13; 16], 1, TypingAction::Started);
        let row = push(
            &mut store,
            &Conversation::Direct("bob".into()).key(),
            &content,
        );
        let mut plan = DrainPlan::new();
        let answer = Answer::Refused(SendFailureReason::NoDevices {
            username: "bob".into(),
        });
        let events = store
            .tx(|tx| Ok::<_, StoreError>(plan.answered(tx, &row, &content, answer).expect("ok")))
            .expect("tx");
        assert!(
            matches!(events.as_slice(), [Event::SendFailed { message_id, .. }] if *message_id == [13; 16]),
            "{events:?}"
        );
    }

    #[test]
    fn skipped_group_devices_are_reported_by_their_members() {
        let (_dir, mut store) = store();
        let group = GroupId::from_bytes([9; 16]);
        let content = text(8);
        let row = push(&mut store, &Conversation::Group(group).key(), &content);
        let mut plan = DrainPlan::new();
        let events = store
            .tx(|tx| -> Result<_, StoreError> {
                tx.add_shared(&group, "carol", 11, 1)?;
                tx.add_shared(&group, "carol", 12, 1)?;
                tx.add_shared(&group, "bob", 21, 1)?;
                tx.add_shared(&group, "dave", 31, 1)?;
                let answer = Answer::Stored {
                    server_timestamp_ms: 5,
                    skipped_device_ids: vec![12, 11, 21, 99],
                };
                Ok(plan.answered(tx, &row, &content, answer).expect("ok"))
            })
            .expect("tx");
        let [
            Event::Sent { .. },
            Event::NotDelivered {
                message_id,
                usernames,
                device_ids,
            },
        ] = events.as_slice()
        else {
            panic!("sent, then not delivered: {events:?}");
        };
        assert_eq!(*message_id, [8; 16]);
        assert_eq!(usernames, &["bob".to_owned(), "carol".to_owned()]);
        assert_eq!(device_ids, &[12, 11, 21, 99]);
    }
}
