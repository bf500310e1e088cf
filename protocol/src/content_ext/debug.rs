//! `Debug` for content types: never prints text, keys, SDP or any other
//! field of the plaintext; only sizes, ids and the kind of body. (build.rs
//! turns off the generated impls for these types.)

use std::fmt;

use prost::Message;

use crate::content::{self, call_signal, content::Body};

macro_rules! debug_encoded_len_only {
    ($($ty:ident),* $(,)?) => {
        $(
            impl fmt::Debug for content::$ty {
                fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.debug_struct(stringify!($ty))
                        .field("encoded_len", &self.encoded_len())
                        .finish_non_exhaustive()
                }
            }
        )*
    };
}

debug_encoded_len_only!(
    Text,
    ReplyTo,
    Reaction,
    Edit,
    Delete,
    ReadReceipt,
    DeliveryReceipt,
    Typing,
    AttachmentPointer,
    GroupChange,
    GroupMetadata,
    SenderKeyDistribution,
    CallSignal,
    CallOffer,
    CallAnswer,
    CallIceCandidate,
    CallHangup,
    SyncMessage,
    SentTranscript,
    ProvisionMessage,
    ProvisionedContact,
    ProvisionedGroup,
    HistoryMessage,
    MiniappEvent,
);

impl Body {
    /// The name of this body kind as in `content.proto` (e.g. `"text"`).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Body::Text(_) => "text",
            Body::Reaction(_) => "reaction",
            Body::Edit(_) => "edit",
            Body::Delete(_) => "delete",
            Body::ReadReceipt(_) => "read_receipt",
            Body::DeliveryReceipt(_) => "delivery_receipt",
            Body::Typing(_) => "typing",
            Body::Attachment(_) => "attachment",
            Body::GroupChange(_) => "group_change",
            Body::SenderKeyDistribution(_) => "sender_key_distribution",
            Body::CallSignal(_) => "call_signal",
            Body::Sync(_) => "sync",
            Body::MiniappEvent(_) => "miniapp_event",
        }
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind_name())
    }
}

impl fmt::Debug for call_signal::Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            call_signal::Signal::Offer(_) => "offer",
            call_signal::Signal::Answer(_) => "answer",
            call_signal::Signal::IceCandidate(_) => "ice_candidate",
            call_signal::Signal::Hangup(_) => "hangup",
        })
    }
}

impl fmt::Debug for content::Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Content")
            .field("message_id", &Hex(&self.message_id))
            .field("sent_at_ms", &self.sent_at_ms)
            .field("body", &self.body)
            .field("group_id", &Hex(&self.group_id))
            .field("padding_len", &self.padding.len())
            .field("encoded_len", &self.encoded_len())
            .finish()
    }
}

/// Ids print as hex.
struct Hex<'a>(&'a [u8]);

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}
