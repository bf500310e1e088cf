//! Provisioning slots for device linking (SPEC.md §12.14).
//!
//! A new device, not logged in, opens a slot (`CreateProvisioningSlot`);
//! the server picks a random 16-byte id and forgets the slot after
//! [`SLOT_TTL_MS`]. A logged-in device of the account posts the sealed
//! provisioning message to it once (`PutProvisioningSlot`, at most
//! [`MAX_SEALED_LEN`] bytes); the new device reads it once
//! (`FetchProvisioningSlot`), which deletes the slot. The message is sealed
//! end to end to the new device's ephemeral key (crypto-core
//! `provisioning`); the server stores and relays only ciphertext and cannot
//! tell which account it links.
//!
//! Abuse control: slot creation takes from the per-IP registration bucket
//! (limits.rs), at most [`MAX_OPEN_SLOTS`] slots exist at once, and a slot
//! id is 128 random bits, so reading someone else's slot means guessing it.
//!
//! Not owned here: the SQL (storage/provisioning.rs and its backends).

use std::sync::Arc;

use bytes::Bytes;
use microbot_protocol::transport::{
    FetchProvisioningSlotRequest, ProvisioningMessage, ProvisioningSlot, PutProvisioningSlotRequest,
};

use crate::state::ServerState;
use crate::storage::SlotRead;
use crate::storage::provisioning::SLOT_ID_LEN;

/// How long a slot lives, message or not (10 minutes).
pub const SLOT_TTL_MS: u64 = 10 * 60 * 1000;
/// The largest sealed provisioning message a slot takes (256 KiB).
pub const MAX_SEALED_LEN: usize = 256 * 1024;
/// The most slots open at once on this server (bounds the table).
pub const MAX_OPEN_SLOTS: u64 = 10_000;

/// How long a client told that too many slots are open waits before it
/// asks again (a minute: some slot has expired or been read by then).
pub const TOO_MANY_SLOTS_RETRY_MS: u64 = 60_000;

mod error;

pub use error::ProvisioningError;

fn slot_id(bytes: &[u8]) -> Result<[u8; SLOT_ID_LEN], ProvisioningError> {
    <[u8; SLOT_ID_LEN]>::try_from(bytes).map_err(|_| ProvisioningError::SlotIdLength)
}

/// `CreateProvisioningSlot`: a fresh slot.
///
/// # Errors
/// `UNAVAILABLE` when [`MAX_OPEN_SLOTS`] slots are open; storage errors.
pub async fn create(state: &Arc<ServerState>) -> Result<ProvisioningSlot, ProvisioningError> {
    let mut id = [0u8; SLOT_ID_LEN];
    state.rng.fill(&mut id);
    let now = state.now_ms();
    let expires_at_ms = now.saturating_add(SLOT_TTL_MS);
    let created = state
        .storage
        .create_provisioning_slot(&id, expires_at_ms, now, MAX_OPEN_SLOTS)
        .await?;
    if !created {
        return Err(ProvisioningError::TooManySlots {
            retry_after_ms: TOO_MANY_SLOTS_RETRY_MS,
        });
    }
    Ok(ProvisioningSlot {
        slot_id: Bytes::copy_from_slice(&id),
        expires_at_ms,
    })
}

/// `PutProvisioningSlot`: stores the sealed message in an empty slot.
///
/// # Errors
/// `INVALID_ARGUMENT`, `PROVISIONING_MESSAGE_TOO_LARGE`,
/// `UNKNOWN_PROVISIONING_SLOT`.
pub async fn put(
    state: &Arc<ServerState>,
    request: PutProvisioningSlotRequest,
) -> Result<(), ProvisioningError> {
    let id = slot_id(&request.slot_id)?;
    if request.sealed.is_empty() {
        return Err(ProvisioningError::EmptyMessage);
    }
    if request.sealed.len() > MAX_SEALED_LEN {
        return Err(ProvisioningError::MessageTooLarge);
    }
    let now = state.now_ms();
    let stored = state
        .storage
        .put_provisioning_message(&id, &request.sealed, now)
        .await?;
    if stored {
        Ok(())
    } else {
        Err(ProvisioningError::UnknownSlot)
    }
}

/// `FetchProvisioningSlot`: the message if posted (deleting the slot), or
/// `ready = false` while it waits.
///
/// # Errors
/// `INVALID_ARGUMENT`, `UNKNOWN_PROVISIONING_SLOT`.
pub async fn fetch(
    state: &Arc<ServerState>,
    request: FetchProvisioningSlotRequest,
) -> Result<ProvisioningMessage, ProvisioningError> {
    let id = slot_id(&request.slot_id)?;
    let now = state.now_ms();
    let read = state.storage.take_provisioning_message(&id, now).await?;
    match read {
        SlotRead::Missing => Err(ProvisioningError::UnknownSlot),
        SlotRead::Waiting => Ok(ProvisioningMessage {
            ready: false,
            sealed: Bytes::new(),
        }),
        SlotRead::Ready(sealed) => Ok(ProvisioningMessage {
            ready: true,
            sealed: Bytes::from(sealed),
        }),
    }
}
