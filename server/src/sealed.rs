//! Sealed sender on the server (SPEC.md §19.6–§19.8): issuing sender
//! certificates, registering unidentified-access keys, and queueing sealed
//! envelopes for a connection that never logged in.
//!
//! The certificate layout is SPEC.md §19.2 (crypto-core
//! `sealed_sender::certificate` parses it; the server does not link the
//! client crypto library, so the few bytes are written here). The signing
//! key is the deployment's, kept in storage so every node signs with the
//! same one. A sealed send names a recipient and presents its access key,
//! checked in constant time; the stored envelopes carry no sender
//! (`sender_username` empty, `sender_device_id` 0) and nothing about the
//! sender is logged.
//!
//! Not owned here: the per-address and per-access-key rate limits
//! (limits.rs), the request state machine (dispatch.rs).

use std::sync::Arc;

use bytes::Bytes;
use ed25519_dalek::{Signer as _, SigningKey};
use microbot_protocol::transport::{
    SendResponse, SendSealedRequest, SenderCertificateResponse, SetUnidentifiedAccessRequest,
};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use crate::auth::devices::Caller;
use crate::error::Internal;
use crate::queues::{checked_envelopes, left_out_devices, store_and_push};
use crate::state::ServerState;
use crate::storage::StorageError;
use crate::storage::sealed::ACCESS_KEY_LEN;

mod error;

pub use error::SealedError;

/// Id of the certificate key a new deployment creates.
pub const CERTIFICATE_KEY_ID: u32 = 1;
/// Prefix of the bytes the server signs (SPEC.md §2, §19.2).
pub const SENDER_CERTIFICATE_LABEL: &[u8] = b"Microbot SenderCertificate v1";
/// Version byte of a certificate (SPEC.md §19.2).
pub const CERTIFICATE_VERSION: u8 = 0x01;
/// Most envelopes in one sealed send (the devices of one account).
pub const MAX_SEALED_ENVELOPES: usize = 100;

/// The deployment's certificate key: the stored one, or `candidate` stored
/// now if none was.
async fn certificate_key(state: &ServerState) -> Result<(u32, SigningKey), StorageError> {
    let mut candidate = Zeroizing::new([0u8; 32]);
    state.rng.fill(candidate.as_mut_slice());
    let (key_id, seed) = state
        .storage
        .certificate_key(CERTIFICATE_KEY_ID, &candidate)
        .await?;
    Ok((key_id, SigningKey::from_bytes(&seed)))
}

/// The encoded certificate of SPEC.md §19.2.
pub fn encode_certificate(
    key_id: u32,
    signing: &SigningKey,
    username: &str,
    device_id: u64,
    identity_key: &[u8; 32],
    expires_at_ms: u64,
) -> Result<Vec<u8>, Internal> {
    let name = username.as_bytes();
    let name_len = u8::try_from(name.len())
        .ok()
        .filter(|n| (1..=64).contains(n))
        .ok_or_else(|| Internal::new("username does not fit a certificate"))?;
    let mut body = Vec::with_capacity(118 + name.len());
    body.push(CERTIFICATE_VERSION);
    body.extend_from_slice(&key_id.to_be_bytes());
    body.extend_from_slice(&expires_at_ms.to_be_bytes());
    body.extend_from_slice(&device_id.to_be_bytes());
    body.extend_from_slice(identity_key);
    body.push(name_len);
    body.extend_from_slice(name);
    let mut signed = Vec::with_capacity(SENDER_CERTIFICATE_LABEL.len() + body.len());
    signed.extend_from_slice(SENDER_CERTIFICATE_LABEL);
    signed.extend_from_slice(&body);
    body.extend_from_slice(&signing.sign(&signed).to_bytes());
    Ok(body)
}

/// `GetSenderCertificate`: a certificate for the logged-in device with the
/// identity key it uploaded, valid for `sender_certificate_ttl_secs`.
///
/// # Errors
/// `NO_PREKEYS` before the device uploaded its identity key; storage errors.
pub async fn certificate(
    state: &Arc<ServerState>,
    caller: &Caller,
) -> Result<SenderCertificateResponse, SealedError> {
    let identity: [u8; 32] = state
        .storage
        .device_identity_key(caller.device_id)
        .await?
        .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok())
        .ok_or(SealedError::NoIdentityKey)?;
    let (key_id, signing) = certificate_key(state).await?;
    let expires_at_ms = state.now_ms().saturating_add(
        state
            .config
            .sender_certificate_ttl_secs
            .saturating_mul(1000),
    );
    let certificate = encode_certificate(
        key_id,
        &signing,
        &caller.username,
        caller.device_id,
        &identity,
        expires_at_ms,
    )?;
    Ok(SenderCertificateResponse {
        certificate: Bytes::from(certificate),
        expires_at_ms,
        server_key_id: key_id,
        server_public_key: Bytes::copy_from_slice(signing.verifying_key().as_bytes()),
    })
}

/// `SetUnidentifiedAccess`: stores (or clears) the account's access key
/// and its allow-anyone flag.
///
/// # Errors
/// `INVALID_ARGUMENT` for a key that is neither empty nor 16 bytes.
pub async fn set_access(
    state: &Arc<ServerState>,
    caller: &Caller,
    request: SetUnidentifiedAccessRequest,
) -> Result<(), SealedError> {
    let key: Option<[u8; ACCESS_KEY_LEN]> = match request.access_key.len() {
        0 => None,
        ACCESS_KEY_LEN => <[u8; ACCESS_KEY_LEN]>::try_from(request.access_key.as_ref()).ok(),
        _ => return Err(SealedError::AccessKeyFormat),
    };
    let account_id = caller.account_id;
    state
        .storage
        .set_unidentified_access(account_id, key.as_ref(), request.allow_anyone)
        .await?;
    Ok(())
}

/// The rate-limit key of a sealed send: a hash of recipient and presented
/// access key, so neither appears in limiter state (or Redis).
pub fn rate_key(recipient: &str, access_key: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(b"microbot sealed send rate v1\0");
    hash.update(recipient.as_bytes());
    hash.update([0]);
    hash.update(access_key);
    hex::encode(&hash.finalize()[..16])
}

/// `SendSealed`: checks the access key, then stores one sealed envelope per
/// addressed device of the recipient (all or none) without a sender.
///
/// # Errors
/// `INVALID_ARGUMENT` (shape), `UNIDENTIFIED_ACCESS_DENIED` (wrong key,
/// sealed sends not accepted, unknown account: not told apart),
/// `UNKNOWN_DEVICE` (a device not of that account), `MISSING_DEVICES`
/// (a device of the account left out), `QUEUE_FULL`.
pub async fn send(
    state: &Arc<ServerState>,
    request: SendSealedRequest,
) -> Result<SendResponse, SealedError> {
    if request.access_key.len() != ACCESS_KEY_LEN {
        return Err(SealedError::AccessKeyLength);
    }
    let (envelopes, addressed) = checked_envelopes(
        state,
        request.envelopes,
        MAX_SEALED_ENVELOPES,
        "a sealed send",
    )?;
    let presented = Zeroizing::new(request.access_key.to_vec());
    let username = request.recipient_username;
    let access = state
        .storage
        .unidentified_access(&username)
        .await?
        .ok_or(SealedError::Denied)?;
    let key_matches = access
        .access_key
        .is_some_and(|k| bool::from(k.ct_eq(presented.as_slice())));
    if !(key_matches || access.allow_anyone) {
        return Err(SealedError::Denied);
    }
    let devices = state.storage.account_devices(access.account_id).await?;
    for id in &addressed {
        if !devices.iter().any(|d| d.id == *id && !d.removed) {
            return Err(SealedError::ForeignDevice);
        }
    }
    let mut missing = Vec::new();
    left_out_devices(
        state.storage.as_ref(),
        access.account_id,
        0,
        &addressed,
        &mut missing,
    )
    .await?;
    if !missing.is_empty() {
        return Err(SealedError::MissingDevices(missing));
    }
    let recipients = envelopes.len();
    let response = store_and_push(state, String::new(), 0, envelopes).await?;
    tracing::debug!(recipients, "sealed envelopes stored");
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_have_the_spec_layout_and_verify() {
        let signing = SigningKey::from_bytes(&[7; 32]);
        let cert = encode_certificate(3, &signing, "alice", 9, &[1; 32], 1000).unwrap();
        assert_eq!(cert.len(), 118 + 5);
        assert_eq!(cert[0], 1);
        assert_eq!(&cert[1..5], &3u32.to_be_bytes());
        assert_eq!(&cert[21..53], &[1; 32]);
        let (body, sig) = cert.split_at(cert.len() - 64);
        let mut signed = SENDER_CERTIFICATE_LABEL.to_vec();
        signed.extend_from_slice(body);
        let sig = ed25519_dalek::Signature::from_slice(sig).unwrap();
        signing
            .verifying_key()
            .verify_strict(&signed, &sig)
            .unwrap();
        assert!(encode_certificate(3, &signing, "", 9, &[1; 32], 1000).is_err());
    }

    #[test]
    fn rate_keys_hide_the_access_key() {
        let key = rate_key("bob", &[0xab; 16]);
        assert_eq!(key.len(), 32);
        assert!(!key.contains("abab"));
        assert_ne!(key, rate_key("bob", &[0xac; 16]));
    }
}
