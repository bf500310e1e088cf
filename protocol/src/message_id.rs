//! The text form of a [`MessageId`]: 32 lowercase hexadecimal digits, as
//! the CLI prints ids, the bindings pass them and apps keep them in their
//! own records. Parsing accepts upper case and surrounding whitespace.
//!
//! `MessageId` is a plain byte array, so the form is an extension trait:
//! bring [`MessageIdText`] into scope and write `id.to_text()` and
//! `MessageId::from_text("…")`.

use crate::content_rules::{ID_LEN, MessageId};

/// Why a text is not a message id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a message id: expected {} hexadecimal digits", ID_LEN * 2)]
pub struct InvalidMessageId;

/// Converts a [`MessageId`] to and from its text form.
pub trait MessageIdText: Sized {
    /// 32 lowercase hexadecimal digits.
    fn to_text(&self) -> String;

    /// Parses 32 hexadecimal digits (either case; surrounding whitespace
    /// is ignored).
    ///
    /// # Errors
    /// [`InvalidMessageId`] for any other text.
    fn from_text(text: &str) -> Result<Self, InvalidMessageId>;
}

impl MessageIdText for MessageId {
    fn to_text(&self) -> String {
        hex::encode(self)
    }

    fn from_text(text: &str) -> Result<Self, InvalidMessageId> {
        let mut id = [0u8; ID_LEN];
        hex::decode_to_slice(text.trim(), &mut id).map_err(|_| InvalidMessageId)?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_is_lowercase_hex() {
        let id: MessageId = *b"\x00\x01\xab\xcd\xef\x10\x20\x30\x40\x50\x60\x70\x80\x90\xa0\xff";
        let text = id.to_text();
        assert_eq!(text, "0001abcdef102030405060708090a0ff");
        assert_eq!(MessageId::from_text(&text), Ok(id));
        assert_eq!(
            MessageId::from_text("  0001ABCDEF102030405060708090A0FF\n"),
            Ok(id)
        );
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "0001abcdef102030405060708090a0f",
            "0001abcdef102030405060708090a0fff",
            "0001abcdef102030405060708090a0fg",
            "0001abcdef10 030405060708090a0ff",
        ] {
            assert_eq!(MessageId::from_text(bad), Err(InvalidMessageId), "{bad:?}");
        }
    }
}
