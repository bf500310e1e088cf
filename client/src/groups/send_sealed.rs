//! Sending a group message sealed (SPEC.md §19.8): when this device holds
//! the access key of every other member, the sender-key ciphertext goes to
//! each member account in its own `SendSealed` (one sealed envelope per
//! device, `group_id ‖ SenderKeyMessage` inside), all on one connection
//! that never logs in, so the server sees recipients and sizes but not who
//! sent; our own other devices get an identified pairwise transcript, as
//! for a 1:1 send. Otherwise the caller sends identified (`SendGroup`).
//!
//! A retry after a partial failure sends again to members already served;
//! they drop the repeat (same author and message id). Not owned here: the
//! sender-key distribution and the encryption (send.rs), sealing and
//! opening (sealed.rs).

use bytes::Bytes;
use microbot_crypto::IdentityKey;
use microbot_crypto::sealed_sender::ContentType;
use microbot_protocol::content::Content;
use microbot_protocol::transport::{ErrorCode, OutgoingEnvelope};

use super::GroupId;
use crate::account_state::Inner;
use crate::config::AccountConfig;
use crate::error::{StoreError, TransportError};
use crate::sealed::{self, SealedRecipient};
use crate::sessions::{self, SendFailure, Stored, transport_failure};
use crate::store::SharedStore;
use crate::this_device::ThisDevice;
use crate::transport::Connection;

/// A member account a sealed group message goes to.
pub(crate) struct SealedMember {
    username: String,
    identity: IdentityKey,
    access_key: [u8; 16],
    devices: Vec<u64>,
}

/// Why the sealed send did not complete.
pub(crate) enum SealedGroupFailure {
    /// A member refused our access key: send identified instead.
    AccessDenied,
    /// A member's device list changed (the named accounts were marked for
    /// a re-check): distribute and send again.
    DevicesChanged,
    /// Anything else.
    Failed(SendFailure),
}

impl From<StoreError> for SealedGroupFailure {
    fn from(error: StoreError) -> Self {
        SealedGroupFailure::Failed(SendFailure::Store(error))
    }
}

/// The member accounts of a sealed send, or `None` when it must go
/// identified: sealed sender is off, or a member's access key or trusted
/// identity is not known. `members` are the other members whose devices
/// were just checked; each one's devices are those with a session under
/// the identity we trust (they hold our sender key after distribution).
pub(crate) fn sealed_members(
    store: &SharedStore,
    us: &ThisDevice,
    config: &AccountConfig,
    members: &[String],
) -> Result<Option<Vec<SealedMember>>, StoreError> {
    if !config.sealed_sender || members.is_empty() {
        return Ok(None);
    }
    let mut sealed_members = Vec::with_capacity(members.len());
    for name in members {
        let Some((access_key, identity)) = sessions::sealed_access(store, us, config, name)? else {
            return Ok(None);
        };
        let devices = store.tx(|tx| -> Result<Vec<u64>, StoreError> {
            let mut devices = Vec::new();
            for device in tx.session_devices(name)? {
                if tx.session_identity(name, device)? == Some(identity.to_bytes()) {
                    devices.push(device);
                }
            }
            Ok(devices)
        })?;
        sealed_members.push(SealedMember {
            username: name.clone(),
            identity,
            access_key,
            devices,
        });
    }
    Ok(Some(sealed_members))
}

/// An open unauthenticated connection and our certificate: one per
/// sealed group send (its distribution and its message).
pub(crate) struct SealedSender<'a> {
    inner: &'a Inner,
    conn: Connection,
    certificate: microbot_crypto::sealed_sender::certificate::SenderCertificate,
}

/// What became of one member's sealed send.
pub(crate) enum MemberOutcome {
    /// Stored for every device named, at this server time.
    Stored(u64),
    /// A device's queue was full: nothing stored for this member.
    QueueFull,
}

impl<'a> SealedSender<'a> {
    /// Fetches (or reuses) our certificate over the logged-in `conn` and
    /// opens the connection that never logs in.
    pub(crate) async fn open(
        inner: &'a Inner,
        conn: &Connection,
    ) -> Result<Self, SealedGroupFailure> {
        let failed = |error: TransportError| SealedGroupFailure::Failed(transport_failure(error));
        let certificate = sealed::certificate(&inner.store, &inner.me, conn)
            .await
            .map_err(failed)?;
        let conn = sealed::open_unauthenticated(inner).await.map_err(failed)?;
        Ok(Self {
            inner,
            conn,
            certificate,
        })
    }

    /// Sends `envelopes` (to `member`'s devices, all of them) sealed as
    /// `content_type`. A member whose device list changed is marked for a
    /// re-check ([`SealedGroupFailure::DevicesChanged`]).
    pub(crate) async fn send(
        &self,
        member: &SealedMember,
        content_type: ContentType,
        envelopes: Vec<OutgoingEnvelope>,
    ) -> Result<MemberOutcome, SealedGroupFailure> {
        let recipient = SealedRecipient {
            username: &member.username,
            identity: &member.identity,
            access_key: &member.access_key,
        };
        let sent = sealed::send_sealed_on(
            &self.conn,
            &self.inner.me,
            &recipient,
            &self.certificate,
            content_type,
            envelopes,
        )
        .await;
        match sent {
            Ok(timestamp) => Ok(MemberOutcome::Stored(timestamp)),
            Err(TransportError::Server(error)) if error.code == ErrorCode::QueueFull => {
                Ok(MemberOutcome::QueueFull)
            }
            Err(TransportError::Server(error))
                if error.code == ErrorCode::UnidentifiedAccessDenied =>
            {
                Err(SealedGroupFailure::AccessDenied)
            }
            Err(TransportError::Server(error))
                if matches!(
                    error.code,
                    ErrorCode::MissingDevices | ErrorCode::UnknownDevice | ErrorCode::DeviceRemoved
                ) =>
            {
                let removed = error.code != ErrorCode::MissingDevices;
                self.inner.store.tx(|tx| -> Result<(), StoreError> {
                    for device in error.device_ids.iter().filter(|_| removed) {
                        tx.delete_device(&member.username, *device)?;
                    }
                    if let Some(mut contact) = tx.contact(&member.username)? {
                        contact.devices_checked_ms = 0;
                        tx.set_contact(&member.username, &contact)?;
                    }
                    Ok(())
                })?;
                Err(SealedGroupFailure::DevicesChanged)
            }
            Err(error) => Err(SealedGroupFailure::Failed(transport_failure(error))),
        }
    }

    /// Closes the unauthenticated connection.
    pub(crate) fn close(self) {
        self.conn.abort("sealed group send done");
    }
}

impl SealedMember {
    /// The member's account.
    pub(crate) fn username(&self) -> &str {
        &self.username
    }

    /// The member's devices this send goes to.
    pub(crate) fn devices(&self) -> &[u64] {
        &self.devices
    }
}

/// Sends `ciphertext` (our sender key's message for group `id`) sealed to
/// every member in `members`, and `content` as a transcript to our own
/// other devices.
pub(crate) async fn send_sealed_group(
    inner: &Inner,
    conn: &Connection,
    id: GroupId,
    members: &[SealedMember],
    ciphertext: &[u8],
    content: &Content,
) -> Result<Stored, SealedGroupFailure> {
    let mut message = Vec::with_capacity(sealed::GROUP_ID_LEN + ciphertext.len());
    message.extend_from_slice(id.as_bytes());
    message.extend_from_slice(ciphertext);
    let message = Bytes::from(message);
    let sender = SealedSender::open(inner, conn).await?;
    let mut stored = Stored {
        server_timestamp_ms: 0,
        skipped_device_ids: Vec::new(),
    };
    let mut outcome = Ok(());
    for member in members.iter().filter(|m| !m.devices.is_empty()) {
        let envelopes = member
            .devices
            .iter()
            .map(|device| OutgoingEnvelope {
                recipient_device_id: *device,
                ciphertext: message.clone(),
            })
            .collect();
        match sender.send(member, ContentType::SenderKey, envelopes).await {
            Ok(MemberOutcome::Stored(timestamp)) => {
                stored.server_timestamp_ms = stored.server_timestamp_ms.max(timestamp);
            }
            // Like a full queue in a group fan-out (SPEC.md §12.10):
            // reported as not delivered, the others still get it.
            Ok(MemberOutcome::QueueFull) => {
                stored
                    .skipped_device_ids
                    .extend(member.devices.iter().copied());
            }
            Err(failure) => {
                outcome = Err(failure);
                break;
            }
        }
    }
    sender.close();
    outcome?;
    let failed = |error: TransportError| SealedGroupFailure::Failed(transport_failure(error));
    // Our own other devices: a pairwise transcript, identified (the server
    // knows they are ours anyway).
    let me = inner.me.username.clone();
    let (own, _) = sessions::encrypt_for(&inner.store, &inner.me, &me, content)?;
    if !own.is_empty() {
        match sessions::send_identified(conn, own, vec![me]).await {
            Ok(timestamp) => {
                stored.server_timestamp_ms = stored.server_timestamp_ms.max(timestamp);
            }
            Err(TransportError::Server(error))
                if matches!(
                    error.code,
                    ErrorCode::MissingDevices | ErrorCode::UnknownDevice | ErrorCode::DeviceRemoved
                ) =>
            {
                inner
                    .store
                    .tx(crate::device_sessions::reset_own_devices_check)?;
                return Err(SealedGroupFailure::DevicesChanged);
            }
            Err(error) => return Err(failed(error)),
        }
    }
    if stored.server_timestamp_ms == 0 {
        stored.server_timestamp_ms = crate::now_ms();
    }
    Ok(stored)
}
