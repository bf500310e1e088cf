//! Sealed sender in the SDK (SPEC.md §19): the account's profile key and
//! the access key derived from it, the contacts' profile keys learnt from
//! their messages, this device's sender certificate, sending sealed
//! envelopes over a connection that never logs in, and opening them.
//!
//! A contact whose profile key we hold gets our 1:1 messages sealed: the
//! server sees the recipient and a size, not the sender. Without it (first
//! contact) the send is identified, and carries our profile key so the
//! reply can be sealed. The sender of a sealed envelope is known only from
//! its verified certificate, which must name the identity we trust for
//! that username. Not owned here: encrypting the inner message
//! (sessions.rs), what a content does (receive.rs).

use bytes::Bytes;
use microbot_crypto::IdentityKey;
use microbot_crypto::sealed_sender::certificate::{SenderCertificate, ServerPublicKey};
use microbot_crypto::sealed_sender::{self, ContentType, SealedSenderError};
use microbot_protocol::content::Content;
use microbot_protocol::transport::{
    Envelope, GetSenderCertificateRequest, OutgoingEnvelope, SendSealedRequest,
    SetUnidentifiedAccessRequest, client_frame::Request, response,
};
use rand::Rng as _;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use crate::account_state::Inner;
use crate::config::AccountConfig;
use crate::error::{StoreError, TransportError};
use crate::store::SharedStore;
use crate::store::Tx;
use crate::this_device::ThisDevice;
use crate::transport::Connection;

/// Meta key (sealed): this account's profile key.
const META_PROFILE_KEY: &str = "profile_key";
/// Meta key: the access key last registered with the server.
const META_ACCESS_REGISTERED: &str = "unidentified_access_registered";
/// Meta key: this device's sender certificate.
const META_CERTIFICATE: &str = "sender_certificate";
/// Meta key: the server certificate key, `key_id (u32 BE) ‖ public (32)`.
const META_SERVER_KEY: &str = "server_certificate_key";
/// A certificate is renewed when it has less than this left (1 hour).
pub const RENEW_BEFORE_MS: u64 = 60 * 60 * 1000;
/// Bytes of the group id that starts a sealed group message (SPEC.md §19.3).
pub(crate) const GROUP_ID_LEN: usize = 16;
/// Client agent of the connections that carry sealed sends.
const SEALED_AGENT: &str = concat!("microbot-client/", env!("CARGO_PKG_VERSION"));

fn contact_key_name(username: &str) -> String {
    format!("profile_key:{username}")
}

/// This account's profile key, created on first use.
pub(crate) fn own_profile_key(tx: &Tx<'_>) -> Result<Zeroizing<[u8; 32]>, StoreError> {
    if let Some(bytes) = tx.secret("profile key", META_PROFILE_KEY)?
        && let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice())
    {
        return Ok(Zeroizing::new(key));
    }
    let mut key = Zeroizing::new([0u8; 32]);
    rand::rng().fill_bytes(key.as_mut_slice());
    tx.set_secret(META_PROFILE_KEY, key.as_slice())?;
    Ok(key)
}

/// `content` carrying our profile key, for a 1:1 message to a contact.
pub(crate) fn with_profile_key(
    store: &SharedStore,
    content: &Content,
) -> Result<Content, StoreError> {
    let key = store.tx(own_profile_key)?;
    let mut content = content.clone();
    content.profile_key = Bytes::copy_from_slice(key.as_slice());
    Ok(content)
}

/// Keeps the profile key a contact sent us (pairwise only, never our own).
pub(crate) fn remember_profile_key(
    us: &ThisDevice,
    tx: &Tx<'_>,
    sender: &str,
    content: &Content,
) -> Result<(), StoreError> {
    if sender == us.username || content.profile_key.len() != 32 {
        return Ok(());
    }
    tx.set_secret(&contact_key_name(sender), &content.profile_key)
}

/// The access key of `username`, if we hold its profile key.
pub(crate) fn contact_access_key(
    tx: &Tx<'_>,
    username: &str,
) -> Result<Option<[u8; 16]>, StoreError> {
    let Some(bytes) = tx.secret("contact profile key", &contact_key_name(username))? else {
        return Ok(None);
    };
    Ok(<[u8; 32]>::try_from(bytes.as_slice())
        .ok()
        .map(|key| sealed_sender::access_key(&key)))
}

/// Registers this account's access key with the server, once per key
/// (SPEC.md §19.7). Every device of the account shares the profile key only
/// after linking, so each registers what it holds; the last one wins.
pub(crate) async fn register_access(
    store: &SharedStore,
    config: &AccountConfig,
    conn: &Connection,
) -> Result<(), TransportError> {
    let Ok(key) = store.tx(own_profile_key) else {
        return Ok(());
    };
    let access = sealed_sender::access_key(&key);
    let registered = store
        .tx(|tx| tx.meta(META_ACCESS_REGISTERED))
        .ok()
        .flatten();
    if registered.as_deref() == Some(access.as_slice()) {
        return Ok(());
    }
    match conn
        .request(Request::SetUnidentifiedAccess(
            SetUnidentifiedAccessRequest {
                access_key: Bytes::copy_from_slice(&access),
                allow_anyone: config.allow_unidentified_from_anyone,
            },
        ))
        .await?
    {
        response::Result::Ok(_) => {
            let _ = store.tx(|tx| tx.set_meta(META_ACCESS_REGISTERED, &access));
            Ok(())
        }
        _ => Err(TransportError::UnexpectedResponse { expected: "Ok" }),
    }
}

/// The server certificate key this device trusts, if it has fetched one.
pub(crate) fn trusted_server_key(tx: &Tx<'_>) -> Result<Option<ServerPublicKey>, StoreError> {
    let Some(bytes) = tx.meta(META_SERVER_KEY)? else {
        return Ok(None);
    };
    if bytes.len() != 36 {
        return Err(StoreError::Corrupt {
            what: "server certificate key",
        });
    }
    let key_id = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    ServerPublicKey::from_bytes(key_id, &bytes[4..])
        .map(Some)
        .map_err(|_| StoreError::Corrupt {
            what: "server certificate key",
        })
}

/// This device's sender certificate, renewed over the (pinned, logged-in)
/// connection when it expires within [`RENEW_BEFORE_MS`]. The server key
/// that comes with it becomes the trusted one.
pub(crate) async fn certificate(
    store: &SharedStore,
    me: &ThisDevice,
    conn: &Connection,
) -> Result<SenderCertificate, TransportError> {
    let now = crate::now_ms();
    let cached = store
        .tx(|tx| tx.meta(META_CERTIFICATE))
        .ok()
        .flatten()
        .and_then(|bytes| SenderCertificate::parse(&bytes).ok())
        .filter(|c| c.expires_at_ms > now.saturating_add(RENEW_BEFORE_MS));
    if let Some(certificate) = cached {
        return Ok(certificate);
    }
    let response = match conn
        .request(Request::GetSenderCertificate(
            GetSenderCertificateRequest {},
        ))
        .await?
    {
        response::Result::SenderCertificate(r) => r,
        _ => {
            return Err(TransportError::UnexpectedResponse {
                expected: "SenderCertificate",
            });
        }
    };
    let unusable = |why: &str| TransportError::Config(format!("sender certificate: {why}"));
    let server_key =
        ServerPublicKey::from_bytes(response.server_key_id, &response.server_public_key)
            .map_err(|_| unusable("the server key is not an Ed25519 key"))?;
    let certificate =
        SenderCertificate::parse(&response.certificate).map_err(|_| unusable("malformed"))?;
    certificate
        .verify(&server_key, now)
        .map_err(|e| unusable(&e.to_string()))?;
    if !certificate.is_for_identity(me.identity.public())
        || certificate.username != me.username
        || certificate.device_id != me.device_id
    {
        return Err(unusable("it does not name this device"));
    }
    let mut key_bytes = response.server_key_id.to_be_bytes().to_vec();
    key_bytes.extend_from_slice(&server_key.to_bytes());
    store
        .tx(|tx| -> Result<(), StoreError> {
            tx.set_meta(META_SERVER_KEY, &key_bytes)?;
            tx.set_meta(META_CERTIFICATE, certificate.as_bytes())
        })
        .map_err(|e| TransportError::Config(e.to_string()))?;
    Ok(certificate)
}

/// Seals each ciphertext (a `SessionMessage`) to `recipient_identity` and
/// sends them to `recipient`'s devices over a new connection that does not
/// log in (SPEC.md §19.8). Returns the server's time stamp.
pub(crate) async fn send_sealed(
    inner: &Inner,
    recipient: &str,
    recipient_identity: &IdentityKey,
    access_key: &[u8; 16],
    certificate: &SenderCertificate,
    envelopes: Vec<OutgoingEnvelope>,
) -> Result<u64, TransportError> {
    let conn = open_unauthenticated(inner).await?;
    let result = send_sealed_on(
        &conn,
        &inner.me,
        &SealedRecipient {
            username: recipient,
            identity: recipient_identity,
            access_key,
        },
        certificate,
        ContentType::Session,
        envelopes,
    )
    .await;
    conn.abort("sealed send done");
    result
}

/// Who a sealed send goes to: the account, the identity we trust for it
/// and the access key derived from its profile key.
pub(crate) struct SealedRecipient<'a> {
    /// The recipient account.
    pub(crate) username: &'a str,
    /// Its identity key (what the envelopes are sealed to).
    pub(crate) identity: &'a IdentityKey,
    /// Its access key (SPEC.md §19.7).
    pub(crate) access_key: &'a [u8; 16],
}

/// A connection for sealed sends: it never logs in (SPEC.md §19.8).
pub(crate) async fn open_unauthenticated(inner: &Inner) -> Result<Connection, TransportError> {
    let (conn, _pushes) = Connection::connect_any(
        &inner.server,
        sealed_start_index(inner),
        SEALED_AGENT,
        inner.config.connect_timeout,
    )
    .await?;
    Ok(conn)
}

/// Seals each envelope's ciphertext (a `SessionMessage` for
/// [`ContentType::Session`]; `group_id ‖ SenderKeyMessage` for
/// [`ContentType::SenderKey`], SPEC.md §19.3) to the recipient and sends
/// them in one `SendSealed` on `conn`. Returns the server's time stamp.
pub(crate) async fn send_sealed_on(
    conn: &Connection,
    me: &ThisDevice,
    recipient: &SealedRecipient<'_>,
    certificate: &SenderCertificate,
    content_type: ContentType,
    envelopes: Vec<OutgoingEnvelope>,
) -> Result<u64, TransportError> {
    let mut sealed = Vec::with_capacity(envelopes.len());
    for envelope in envelopes {
        let bytes = sealed_sender::seal(
            &mut rand::rng(),
            &me.identity,
            certificate,
            recipient.identity,
            content_type,
            &envelope.ciphertext,
        )
        .map_err(|e| TransportError::Config(format!("cannot seal: {e}")))?;
        sealed.push(OutgoingEnvelope {
            recipient_device_id: envelope.recipient_device_id,
            ciphertext: Bytes::from(bytes),
        });
    }
    let result = conn
        .request(Request::SendSealed(SendSealedRequest {
            recipient_username: recipient.username.to_owned(),
            access_key: Bytes::copy_from_slice(recipient.access_key),
            envelopes: sealed,
        }))
        .await?;
    match result {
        response::Result::Send(r) => Ok(r.server_timestamp_ms),
        _ => Err(TransportError::UnexpectedResponse { expected: "Send" }),
    }
}

/// Where the unauthenticated connection of a sealed send starts among
/// the server's addresses: the node this device's logged-in connection
/// reaches right now (known to be alive, so a dead node listed first costs
/// nothing), else the device's own start index (SPEC.md §12.1). Later
/// addresses are tried in order when that one fails.
fn sealed_start_index(inner: &Inner) -> usize {
    let addresses = inner.server.addresses();
    inner
        .online
        .get()
        .and_then(|conn| {
            let live = conn.remote_address();
            addresses.iter().position(|addr| *addr == live)
        })
        .unwrap_or_else(|| {
            inner
                .server
                .start_index(&inner.me.username, inner.me.device_id)
        })
}

/// Why a sealed envelope was refused (the recipient's state is unchanged).
#[derive(Debug, thiserror::Error)]
pub enum UnsealError {
    /// No server certificate key is known yet (this device never fetched a
    /// certificate), so no certificate can be checked.
    #[error("no trusted server certificate key yet")]
    NoServerKey,
    /// The envelope or its certificate was refused (SPEC.md §19.5).
    #[error("sealed envelope refused: {0}")]
    Refused(#[from] SealedSenderError),
    /// The certificate names an identity other than the one we trust for
    /// its username.
    #[error("the sender certificate's identity is not the one trusted for {0}")]
    UntrustedIdentity(String),
    /// A sealed group message shorter than its 16-byte group id.
    #[error("a sealed group message without its group id")]
    NoGroupId,
}

/// Opens a sealed envelope (empty `sender_username`): the envelope as if
/// identified by the verified certificate, with the inner message as its
/// ciphertext, and the certified identity key.
pub(crate) fn unseal(
    us: &ThisDevice,
    tx: &Tx<'_>,
    envelope: &Envelope,
) -> Result<Result<(Envelope, [u8; 32]), UnsealError>, StoreError> {
    let Some(trusted) = trusted_server_key(tx)? else {
        return Ok(Err(UnsealError::NoServerKey));
    };
    // The certificate is checked at the time the server accepted the
    // envelope (SPEC.md §19.4), not now: a message that waited in the queue
    // longer than a certificate lives is still opened.
    let opened = match sealed_sender::open(
        &us.identity,
        &trusted,
        envelope.server_timestamp_ms,
        &envelope.ciphertext,
    ) {
        Ok(opened) => opened,
        Err(error) => return Ok(Err(error.into())),
    };
    // A group message carries its group id first (SPEC.md §19.3), so the
    // receiver can find the sender key; membership is checked when it is
    // opened (receive.rs), as for an identified one.
    let (group_id, message) = match opened.content_type {
        ContentType::Session => (envelope.group_id.clone(), opened.message),
        ContentType::SenderKey => {
            if opened.message.len() < GROUP_ID_LEN {
                return Ok(Err(UnsealError::NoGroupId));
            }
            let mut group_id = opened.message;
            let message = group_id.split_off(GROUP_ID_LEN);
            (Bytes::from(group_id), message)
        }
    };
    let certified = opened.certificate.identity_key.to_bytes();
    let username = opened.certificate.username.clone();
    let expected = if username == us.username {
        Some(us.identity.public().to_bytes())
    } else {
        tx.contact(&username)?.map(|c| c.identity)
    };
    if let Some(expected) = expected
        && !bool::from(expected.ct_eq(&certified))
    {
        return Ok(Err(UnsealError::UntrustedIdentity(username)));
    }
    Ok(Ok((
        Envelope {
            envelope_id: envelope.envelope_id,
            sender_username: username,
            sender_device_id: opened.certificate.device_id,
            server_timestamp_ms: envelope.server_timestamp_ms,
            ciphertext: Bytes::from(message),
            group_id,
        },
        certified,
    )))
}
