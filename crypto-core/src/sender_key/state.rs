//! Persisted sender-key state (SPEC.md §6.7): versioned protobuf messages,
//! kept apart from the in-memory types and converted at the edge. Secret
//! fields are zeroized when these structs drop.

use std::fmt;

use zeroize::Zeroize;

/// `OutboundSenderKeyState` in SPEC.md §6.7.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
pub(super) struct OutboundSenderKeyState {
    #[prost(uint32, tag = "1")]
    pub version: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub group_id: Vec<u8>,
    #[prost(uint32, tag = "3")]
    pub key_id: u32,
    #[prost(uint32, tag = "4")]
    pub iteration: u32,
    #[prost(bytes = "vec", tag = "5")]
    pub chain_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "6")]
    pub signing_seed: Vec<u8>,
}

/// `SkippedSenderMessageKey` in SPEC.md §6.7.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
pub(super) struct SkippedSenderMessageKey {
    #[prost(uint32, tag = "1")]
    pub iteration: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub message_key: Vec<u8>,
}

/// `InboundSenderKeyState` in SPEC.md §6.7.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
pub(super) struct InboundSenderKeyState {
    #[prost(uint32, tag = "1")]
    pub version: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub group_id: Vec<u8>,
    #[prost(uint32, tag = "3")]
    pub key_id: u32,
    #[prost(uint32, tag = "4")]
    pub iteration: u32,
    #[prost(bytes = "vec", tag = "5")]
    pub chain_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "6")]
    pub signing_key: Vec<u8>,
    #[prost(message, repeated, tag = "7")]
    pub skipped: Vec<SkippedSenderMessageKey>,
}

/// `SenderKeyRecordState` in SPEC.md §6.7.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
pub(super) struct SenderKeyRecordState {
    #[prost(uint32, tag = "1")]
    pub version: u32,
    #[prost(message, repeated, tag = "2")]
    pub generations: Vec<InboundSenderKeyState>,
}

impl Drop for OutboundSenderKeyState {
    fn drop(&mut self) {
        self.chain_key.zeroize();
        self.signing_seed.zeroize();
    }
}

impl Drop for SkippedSenderMessageKey {
    fn drop(&mut self) {
        self.message_key.zeroize();
    }
}

impl Drop for InboundSenderKeyState {
    fn drop(&mut self) {
        self.chain_key.zeroize();
    }
}

macro_rules! redacted_debug {
    ($($ty:ident),*) => {$(
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($ty), " { <redacted> }"))
            }
        }
    )*};
}

redacted_debug!(
    OutboundSenderKeyState,
    SkippedSenderMessageKey,
    InboundSenderKeyState,
    SenderKeyRecordState
);
