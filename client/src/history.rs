//! History in pages, newest first, each page oldest first
//! ([`crate::Account::history_page`]).
//!
//! A [`HistoryCursor`] marks where the next older page starts: the store's
//! insertion position of the oldest message handed out, not an offset, so
//! pages do not shift while new messages arrive. It is bound to its
//! conversation (a short hash of the conversation's key), so a cursor kept
//! for one conversation and handed back for another is refused
//! ([`HistoryError::ForeignCursor`](crate::error::HistoryError::ForeignCursor))
//! instead of paging through the wrong rows.
//!
//! Text form, for an app or the CLI to keep and hand back later:
//! `h1-<position, decimal>-<16 hex digits of the conversation tag>`. The
//! tag is the first 8 bytes of SHA-256("microbot history cursor v1" ‖
//! conversation key). Not owned here: the query (store/rows.rs) and the
//! converged view of each message (messages.rs).

use std::fmt;

use sha2::{Digest as _, Sha256};

use crate::error::InvalidHistoryCursor;
use crate::events::Conversation;
use crate::messages::MessageSnapshot;

/// Where the next older page of a conversation's history starts.
/// Opaque; keep it as [`to_text`](Self::to_text) and read it back with
/// [`from_text`](Self::from_text).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct HistoryCursor {
    /// Messages stored before this position come next.
    before: u64,
    /// Which conversation ([`conversation_tag`]).
    tag: [u8; 8],
}

/// What the text form starts with (the version of the form).
const TEXT_PREFIX: &str = "h1-";

impl HistoryCursor {
    /// A cursor for the messages of `conversation` stored before position
    /// `before`.
    pub(crate) fn new(conversation: &Conversation, before: u64) -> Self {
        Self {
            before,
            tag: conversation_tag(conversation),
        }
    }

    /// The position messages must be stored before, when the cursor
    /// belongs to `conversation`.
    pub(crate) fn position_in(&self, conversation: &Conversation) -> Option<u64> {
        (self.tag == conversation_tag(conversation)).then_some(self.before)
    }

    /// The stable text form (ASCII letters, digits and `-`).
    pub fn to_text(&self) -> String {
        format!("{TEXT_PREFIX}{}-{}", self.before, hex::encode(self.tag))
    }

    /// Reads the [`to_text`](Self::to_text) form back.
    ///
    /// # Errors
    /// [`InvalidHistoryCursor`] when `text` is not a cursor's text form
    /// (cut short, changed, or from a newer release); start again from the
    /// newest page.
    pub fn from_text(text: &str) -> Result<Self, InvalidHistoryCursor> {
        let rest = text
            .strip_prefix(TEXT_PREFIX)
            .ok_or(InvalidHistoryCursor::UnknownForm)?;
        let (position, tag) = rest
            .split_once('-')
            .ok_or(InvalidHistoryCursor::Malformed)?;
        let digits = !position.is_empty() && position.bytes().all(|b| b.is_ascii_digit());
        let before = position
            .parse::<u64>()
            .ok()
            .filter(|_| digits)
            .ok_or(InvalidHistoryCursor::Malformed)?;
        let tag = hex::decode(tag)
            .ok()
            .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
            .filter(|_| tag.bytes().all(|b| !b.is_ascii_uppercase()))
            .ok_or(InvalidHistoryCursor::Malformed)?;
        Ok(Self { before, tag })
    }
}

impl fmt::Debug for HistoryCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HistoryCursor")
            .field(&self.to_text())
            .finish()
    }
}

impl fmt::Display for HistoryCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl std::str::FromStr for HistoryCursor {
    type Err = InvalidHistoryCursor;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::from_text(text)
    }
}

/// Which conversation a cursor belongs to, without naming it.
fn conversation_tag(conversation: &Conversation) -> [u8; 8] {
    let digest = Sha256::new()
        .chain_update(b"microbot history cursor v1")
        .chain_update(conversation.key().as_bytes())
        .finalize();
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&digest[..8]);
    tag
}

/// One page of a conversation's history.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryPage {
    /// Text and file messages, oldest first.
    pub messages: Vec<MessageSnapshot>,
    /// Where the next older page starts; `None` when nothing older is stored.
    pub older: Option<HistoryCursor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bob() -> Conversation {
        Conversation::Direct("bob".into())
    }

    #[test]
    fn the_text_form_reads_back_and_stays_in_its_conversation() {
        let cursor = HistoryCursor::new(&bob(), 42);
        let text = cursor.to_text();
        assert!(text.starts_with("h1-42-"), "{text}");
        let back = HistoryCursor::from_text(&text).expect("reads back");
        assert_eq!(back, cursor);
        assert_eq!(back.position_in(&bob()), Some(42));
        assert_eq!(
            back.position_in(&Conversation::Direct("carol".into())),
            None
        );
        assert_eq!(text.parse::<HistoryCursor>().expect("FromStr"), cursor);
    }

    #[test]
    fn garbage_is_a_typed_error_never_a_panic() {
        let good = HistoryCursor::new(&bob(), 7).to_text();
        let tag = good.rsplit('-').next().expect("tag").to_owned();
        for (text, expected) in [
            ("", InvalidHistoryCursor::UnknownForm),
            ("h2-7-0011223344556677", InvalidHistoryCursor::UnknownForm),
            ("h1-", InvalidHistoryCursor::Malformed),
            ("h1-7", InvalidHistoryCursor::Malformed),
            ("h1--7-0011223344556677", InvalidHistoryCursor::Malformed),
            ("h1-+7-0011223344556677", InvalidHistoryCursor::Malformed),
            ("h1-7-00112233445566", InvalidHistoryCursor::Malformed),
            ("h1-7-00112233445566zz", InvalidHistoryCursor::Malformed),
            (
                "h1-99999999999999999999999-0011223344556677",
                InvalidHistoryCursor::Malformed,
            ),
        ] {
            assert_eq!(HistoryCursor::from_text(text), Err(expected), "{text:?}");
        }
        let upper = format!("h1-7-{}", tag.to_uppercase());
        if upper != good {
            assert_eq!(
                HistoryCursor::from_text(&upper),
                Err(InvalidHistoryCursor::Malformed)
            );
        }
    }
}
