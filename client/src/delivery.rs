//! The delivery state of our own messages (SPEC.md §11.6 receipts): queued
//! (still in this device's outbox), sent (the server stored it), delivered
//! to, and read by, the people of the conversation.
//!
//! Receipts are stored per (our message, reader) as the furthest stage
//! that reader reached, so a receipt never moves a message backwards: a
//! late delivery receipt after a read receipt leaves it read. A receipt is
//! kept only for a text or file message this account wrote in the same
//! conversation, and only from someone in that conversation (the 1:1
//! contact, a current group member); any other receipt is ignored, never
//! an error. [`fold`] turns what the store holds into a [`DeliveryState`]
//! without I/O. Not owned here: the receipts' wire form and sending them
//! (messages.rs, account/messaging.rs), the outbox itself (outbox/).

use microbot_protocol::MessageId;

use crate::error::StoreError;
use crate::events::{Conversation, ReceiptKind};
use crate::store::{SendOutcome, Tx};

/// How far one of our own messages got, in the order
/// `Failed < Queued < Sent < Delivered < Read`.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeliveryStage {
    /// It could not be sent and was dropped from the outbox
    /// ([`DeliveryState::failure`] says why; the application got
    /// [`crate::Event::SendFailed`]).
    Failed,
    /// Still in this device's outbox: it leaves when connected.
    Queued,
    /// The server stored it for the recipients' devices (or another of
    /// our devices sent it); no receipt yet.
    Sent,
    /// At least one recipient's device received it
    /// ([`DeliveryState::delivered_to`]).
    Delivered,
    /// At least one recipient read it ([`DeliveryState::read_by`]).
    Read,
}

impl DeliveryStage {
    /// A stable lower-case name (`failed`, `queued`, `sent`, `delivered`,
    /// `read`)
    /// for logs, JSON and bindings.
    pub fn name(self) -> &'static str {
        match self {
            DeliveryStage::Failed => "failed",
            DeliveryStage::Queued => "queued",
            DeliveryStage::Sent => "sent",
            DeliveryStage::Delivered => "delivered",
            DeliveryStage::Read => "read",
        }
    }
}

/// The delivery state of a text or file message this account wrote
/// ([`crate::MessageSnapshot::delivery`]).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryState {
    /// The furthest stage any recipient reached (in a group: read as soon
    /// as one member read it; see the lists for who).
    pub stage: DeliveryStage,
    /// Who received it: the contact in a 1:1 conversation, the members
    /// who did in a group. Includes everyone in
    /// [`read_by`](Self::read_by) (reading implies receiving). Sorted.
    pub delivered_to: Vec<String>,
    /// Who read it. Sorted.
    pub read_by: Vec<String>,
    /// When the server stored it (the server's clock), when this device
    /// sent it.
    pub server_timestamp_ms: Option<u64>,
    /// Why it was dropped, when [`stage`](Self::stage) is
    /// [`DeliveryStage::Failed`].
    pub failure: Option<SendFailureNote>,
}

/// Why one of our messages was dropped, as stored when it failed: the
/// [`crate::SendFailureReason`]'s [`kind`](crate::SendFailureReason::kind)
/// and its text.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendFailureNote {
    /// The reason's stable snake_case kind (`unknown_account`, …).
    pub kind: String,
    /// The reason in words.
    pub text: String,
}

/// The stage a receipt kind stands for, as stored (`receipts.stage`).
fn stored_stage(kind: ReceiptKind) -> i64 {
    match kind {
        ReceiptKind::Delivered => 1,
        ReceiptKind::Read => 2,
    }
}

/// Folds what the store holds about one of our messages: whether it is
/// still in the outbox, and each reader's furthest receipt (`(reader,
/// read)`: true for a read receipt, false for a delivery receipt only).
pub(crate) fn fold(
    queued: bool,
    outcome: Option<SendOutcome>,
    receipts: &[(String, bool)],
) -> DeliveryState {
    let mut delivered_to: Vec<String> = receipts.iter().map(|(who, _)| who.clone()).collect();
    let mut read_by: Vec<String> = receipts
        .iter()
        .filter(|(_, read)| *read)
        .map(|(who, _)| who.clone())
        .collect();
    delivered_to.sort();
    delivered_to.dedup();
    read_by.sort();
    read_by.dedup();
    let (server_timestamp_ms, failure) = match outcome {
        Some(SendOutcome::Stored {
            server_timestamp_ms,
        }) => (server_timestamp_ms, None),
        Some(SendOutcome::Failed { kind, text }) => (None, Some(SendFailureNote { kind, text })),
        None => (None, None),
    };
    let stage = if !read_by.is_empty() {
        DeliveryStage::Read
    } else if !delivered_to.is_empty() {
        DeliveryStage::Delivered
    } else if queued {
        DeliveryStage::Queued
    } else if failure.is_some() {
        DeliveryStage::Failed
    } else {
        DeliveryStage::Sent
    };
    DeliveryState {
        stage,
        delivered_to,
        read_by,
        server_timestamp_ms,
        failure,
    }
}

/// The delivery state of our message `id`, from the store.
pub(crate) fn state(tx: &Tx<'_>, id: &MessageId) -> Result<DeliveryState, StoreError> {
    let queued = tx.in_outbox(id)?;
    let receipts: Vec<(String, bool)> = tx
        .receipts(id)?
        .into_iter()
        .map(|(reader, stage)| (reader, stage >= stored_stage(ReceiptKind::Read)))
        .collect();
    Ok(fold(queued, tx.send_outcome(id)?, &receipts))
}

/// Stores a receipt `from` someone in `conversation` for the messages
/// `ids`: kept for each that is a text or file message `me` wrote in that
/// conversation, when `from` is in the conversation; ignored otherwise.
pub(crate) fn record(
    tx: &Tx<'_>,
    me: &str,
    conversation: &Conversation,
    from: &str,
    kind: ReceiptKind,
    ids: &[MessageId],
) -> Result<(), StoreError> {
    if from == me || !in_conversation(tx, conversation, from)? {
        return Ok(());
    }
    let key = conversation.key();
    for id in ids {
        if tx.authored_in(me, id, &key)? {
            tx.raise_receipt(id, from, stored_stage(kind))?;
        }
    }
    Ok(())
}

/// Meta key set once the receipts stored as messages before the receipts
/// table existed (schema v4) were read into it.
const META_RECEIPTS_FOLDED: &str = "receipts_folded";

/// Reads receipts stored in history before the receipts table existed
/// into it, once per store (an upgraded store's old messages then show
/// how far they got instead of "sent"). Rows that do not decode are
/// skipped; membership is the group's as this device knows it now.
pub(crate) fn fold_stored_receipts(tx: &Tx<'_>, me: &str) -> Result<(), StoreError> {
    use microbot_protocol::content::{Content, content::Body};
    use prost::Message as _;
    if tx.meta(META_RECEIPTS_FOLDED)?.is_some() {
        return Ok(());
    }
    for row in tx.receipt_rows()? {
        let Some(conversation) = Conversation::from_key(&row.conversation) else {
            continue;
        };
        let Ok(content) = Content::decode(row.content.as_slice()) else {
            continue;
        };
        let (kind, ids) = match &content.body {
            Some(Body::DeliveryReceipt(r)) => (ReceiptKind::Delivered, &r.message_ids),
            Some(Body::ReadReceipt(r)) => (ReceiptKind::Read, &r.message_ids),
            _ => continue,
        };
        let ids: Vec<MessageId> = ids
            .iter()
            .filter_map(|id| <[u8; 16]>::try_from(id.as_ref()).ok())
            .collect();
        record(tx, me, &conversation, &row.author, kind, &ids)?;
    }
    tx.set_meta(META_RECEIPTS_FOLDED, &[1])
}

/// Whether `who` takes part in `conversation`: the 1:1 contact, or a
/// current member of the group as this device knows it.
fn in_conversation(
    tx: &Tx<'_>,
    conversation: &Conversation,
    who: &str,
) -> Result<bool, StoreError> {
    Ok(match conversation {
        Conversation::Direct(peer) => peer == who,
        Conversation::Group(id) => tx.group(id)?.is_some_and(|g| g.is_member(who)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MessageRow, Store};
    use zeroize::Zeroizing;

    fn store() -> (tempfile::TempDir, Store) {
        crate::store::temporary()
    }

    fn text_row(conversation: &Conversation, author: &str, id: MessageId) -> MessageRow {
        MessageRow {
            conversation: conversation.key(),
            author: author.to_owned(),
            message_id: id,
            target_id: None,
            kind: "text".into(),
            sent_at_ms: 1,
            received_at_ms: 1,
            content: Zeroizing::new(vec![1, 2, 3]),
        }
    }

    #[test]
    fn no_receipt_is_queued_or_sent_by_the_outbox() {
        assert_eq!(fold(true, None, &[]).stage, DeliveryStage::Queued);
        let sent = fold(false, None, &[]);
        assert_eq!(sent.stage, DeliveryStage::Sent);
        assert!(sent.delivered_to.is_empty() && sent.read_by.is_empty());
    }

    #[test]
    fn a_reader_counts_as_delivered_to_and_the_furthest_stage_wins() {
        let state = fold(
            false,
            None,
            &[("carol".into(), false), ("bob".into(), true)],
        );
        assert_eq!(state.stage, DeliveryStage::Read);
        assert_eq!(state.delivered_to, ["bob", "carol"]);
        assert_eq!(state.read_by, ["bob"]);
        let delivered = fold(false, None, &[("carol".into(), false)]);
        assert_eq!(delivered.stage, DeliveryStage::Delivered);
        assert_eq!(delivered.read_by, Vec::<String>::new());
    }

    #[test]
    fn a_receipt_outranks_a_row_still_in_the_outbox() {
        // The server stored it but the row was not deleted yet (a crash
        // between the two): the receipt says more than the outbox.
        assert_eq!(
            fold(true, None, &[("bob".into(), false)]).stage,
            DeliveryStage::Delivered
        );
    }

    #[test]
    fn the_server_time_stamp_and_a_failure_are_kept() {
        let stored = Some(SendOutcome::Stored {
            server_timestamp_ms: Some(42),
        });
        let sent = fold(false, stored.clone(), &[]);
        assert_eq!(sent.stage, DeliveryStage::Sent);
        assert_eq!(sent.server_timestamp_ms, Some(42));
        assert_eq!(sent.failure, None);
        // Receipts outrank the bare stored record; the time stamp stays.
        let read = fold(false, stored, &[("bob".into(), true)]);
        assert_eq!(read.stage, DeliveryStage::Read);
        assert_eq!(read.server_timestamp_ms, Some(42));
        let failed = fold(
            false,
            Some(SendOutcome::Failed {
                kind: "unknown_account".into(),
                text: "no account named frank".into(),
            }),
            &[],
        );
        assert_eq!(failed.stage, DeliveryStage::Failed);
        assert_eq!(
            failed.failure.as_ref().map(|f| f.kind.as_str()),
            Some("unknown_account")
        );
        assert_eq!(failed.server_timestamp_ms, None);
    }

    #[test]
    fn stages_are_ordered_and_named() {
        assert!(DeliveryStage::Failed < DeliveryStage::Queued);
        assert_eq!(DeliveryStage::Failed.name(), "failed");
        assert!(DeliveryStage::Queued < DeliveryStage::Sent);
        assert!(DeliveryStage::Sent < DeliveryStage::Delivered);
        assert!(DeliveryStage::Delivered < DeliveryStage::Read);
        assert_eq!(DeliveryStage::Read.name(), "read");
    }

    #[test]
    fn a_late_delivery_receipt_keeps_a_read_message_read() {
        let (_dir, mut store) = store();
        let bob = Conversation::Direct("bob".into());
        store
            .tx(|tx| -> Result<(), StoreError> {
                tx.insert_message(&text_row(&bob, "alice", [1; 16]))?;
                record(tx, "alice", &bob, "bob", ReceiptKind::Read, &[[1; 16]])?;
                record(tx, "alice", &bob, "bob", ReceiptKind::Delivered, &[[1; 16]])?;
                let state = state(tx, &[1; 16])?;
                assert_eq!(state.stage, DeliveryStage::Read);
                assert_eq!(state.read_by, ["bob"]);
                Ok(())
            })
            .expect("tx");
    }

    #[test]
    fn receipts_stored_before_the_table_existed_are_folded_in_once() {
        use microbot_protocol::content::Content;
        use prost::Message as _;
        let (_dir, mut store) = store();
        let bob = Conversation::Direct("bob".into());
        let receipt = |id: u8, content: Content| MessageRow {
            kind: if id == 20 {
                "read_receipt"
            } else {
                "delivery_receipt"
            }
            .into(),
            content: Zeroizing::new(content.encode_to_vec()),
            ..text_row(&bob, "bob", [id; 16])
        };
        store
            .tx(|tx| -> Result<(), StoreError> {
                tx.insert_message(&text_row(&bob, "alice", [1; 16]))?;
                tx.insert_message(&receipt(20, Content::read_receipt([20; 16], 2, [[1; 16]])))?;
                tx.insert_message(&receipt(
                    21,
                    Content::delivery_receipt([21; 16], 3, [[1; 16]]),
                ))?;
                fold_stored_receipts(tx, "alice")?;
                let state = state(tx, &[1; 16])?;
                assert_eq!(state.stage, DeliveryStage::Read);
                assert_eq!(state.read_by, ["bob"]);
                // Once per store: later receipts are recorded as they
                // arrive (receive), not by folding history again.
                tx.insert_message(&text_row(&bob, "alice", [3; 16]))?;
                tx.insert_message(&receipt(
                    20 + 2,
                    Content::delivery_receipt([22; 16], 4, [[3; 16]]),
                ))?;
                fold_stored_receipts(tx, "alice")?;
                assert!(tx.receipts(&[3; 16])?.is_empty());
                Ok(())
            })
            .expect("tx");
    }

    #[test]
    fn receipts_for_others_messages_unknown_ids_or_from_outsiders_are_ignored() {
        let (_dir, mut store) = store();
        let bob = Conversation::Direct("bob".into());
        let carol = Conversation::Direct("carol".into());
        store
            .tx(|tx| -> Result<(), StoreError> {
                tx.insert_message(&text_row(&bob, "alice", [1; 16]))?;
                tx.insert_message(&text_row(&bob, "bob", [2; 16]))?;
                tx.push_outbox(&bob.key(), &[1; 16], &[0], true)?;
                // Carol is not in the conversation with Bob.
                record(tx, "alice", &bob, "carol", ReceiptKind::Read, &[[1; 16]])?;
                // Carol's receipt in her own conversation names a message
                // of the conversation with Bob.
                record(tx, "alice", &carol, "carol", ReceiptKind::Read, &[[1; 16]])?;
                // Not ours, unknown, and our own device's receipt.
                record(
                    tx,
                    "alice",
                    &bob,
                    "bob",
                    ReceiptKind::Read,
                    &[[2; 16], [9; 16]],
                )?;
                record(tx, "alice", &bob, "alice", ReceiptKind::Read, &[[1; 16]])?;
                assert_eq!(state(tx, &[1; 16])?.stage, DeliveryStage::Queued);
                assert!(tx.receipts(&[2; 16])?.is_empty());
                assert!(tx.receipts(&[9; 16])?.is_empty());
                Ok(())
            })
            .expect("tx");
    }
}
