//! This device's prekeys on the server (SPEC.md §4.1, §12.6): the first
//! upload (identity, signed prekey, a batch of one-time prekeys, a signed
//! last-resort ML-KEM-768 prekey) and refills when the stock runs low.
//!
//! Not owned here: the keys themselves (microbot-crypto `prekeys`) or the
//! handshake.

use bytes::Bytes;
use microbot_crypto::IdentityKeyPair;
use microbot_crypto::prekeys::{KemPreKey, LocalPreKeys, OneTimePreKeyPublic, SignedPreKey};
use microbot_protocol::transport::{
    self, OneTimePrekey, SignedKemPrekey, SignedPrekey, UploadPrekeysRequest,
};

/// Meta key: this device's private prekeys (secret).
pub(crate) const META_PREKEYS: &str = "prekeys";
/// Meta key: whether the first upload of this device's keys was accepted.
pub(crate) const META_PREKEYS_UPLOADED: &str = "prekeys_uploaded";

/// Id of the first signed prekey.
const FIRST_SIGNED_PREKEY_ID: u32 = 1;
/// Id of the first (last-resort) KEM prekey.
const FIRST_KEM_PREKEY_ID: u32 = 1;
/// Most one-time prekeys in one upload (the server's limit).
pub(crate) const MAX_BATCH: u32 = 1000;

/// Fresh signed and KEM prekeys for a new device (one-time prekeys are
/// drawn when they are uploaded).
pub(crate) fn initial(identity: &IdentityKeyPair) -> LocalPreKeys {
    let rng = &mut rand::rng();
    let mut keys = LocalPreKeys::new();
    keys.add_signed(SignedPreKey::generate(
        rng,
        identity,
        FIRST_SIGNED_PREKEY_ID,
    ));
    keys.add_kem(KemPreKey::generate(rng, identity, FIRST_KEM_PREKEY_ID));
    keys
}

/// The complete upload for `keys` with `one_time` as the one-time batch.
pub(crate) fn full_upload(
    identity: &IdentityKeyPair,
    keys: &LocalPreKeys,
    one_time: &[OneTimePreKeyPublic],
) -> UploadPrekeysRequest {
    UploadPrekeysRequest {
        identity_key: Bytes::copy_from_slice(&identity.public().to_bytes()),
        signed_prekey: keys.latest_signed().map(|k| SignedPrekey {
            id: k.id(),
            public_key: Bytes::copy_from_slice(&k.public().public_key),
            signature: Bytes::copy_from_slice(&k.public().signature),
        }),
        one_time_prekeys: one_time_protos(one_time),
        kem_prekeys: Vec::new(),
        last_resort_kem_prekey: keys.latest_kem().map(|k| SignedKemPrekey {
            id: k.id(),
            public_key: Bytes::copy_from_slice(&k.public().public_key),
            signature: Bytes::copy_from_slice(&k.public().signature),
        }),
    }
}

/// An upload that only adds one-time prekeys.
pub(crate) fn refill_upload(one_time: &[OneTimePreKeyPublic]) -> UploadPrekeysRequest {
    UploadPrekeysRequest {
        one_time_prekeys: one_time_protos(one_time),
        ..UploadPrekeysRequest::default()
    }
}

fn one_time_protos(one_time: &[OneTimePreKeyPublic]) -> Vec<OneTimePrekey> {
    one_time
        .iter()
        .map(|k| OneTimePrekey {
            id: k.id,
            public_key: Bytes::copy_from_slice(&k.public_key),
        })
        .collect()
}

/// Why a fetched bundle is unusable.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BundleError {
    /// A field is missing or has the wrong length.
    #[error("malformed prekey bundle: {0}")]
    Malformed(&'static str),
}

/// Converts a fetched bundle (signatures are checked by `Session::initiate`).
pub(crate) fn bundle_from_proto(
    bundle: &transport::PrekeyBundle,
) -> Result<microbot_crypto::prekeys::PreKeyBundle, BundleError> {
    use microbot_crypto::prekeys::{KemPreKeyPublic, PreKeyBundle, SignedPreKeyPublic};
    let identity = microbot_crypto::IdentityKey::from_bytes(&bundle.identity_key)
        .map_err(|_| BundleError::Malformed("identity key"))?;
    let signed = bundle
        .signed_prekey
        .as_ref()
        .ok_or(BundleError::Malformed("signed prekey missing"))?;
    let signed_prekey = SignedPreKeyPublic {
        id: signed.id,
        public_key: signed
            .public_key
            .as_ref()
            .try_into()
            .map_err(|_| BundleError::Malformed("signed prekey length"))?,
        signature: signed
            .signature
            .as_ref()
            .try_into()
            .map_err(|_| BundleError::Malformed("signed prekey signature length"))?,
    };
    let one_time_prekey = bundle
        .one_time_prekey
        .as_ref()
        .map(|k| {
            Ok(OneTimePreKeyPublic {
                id: k.id,
                public_key: k
                    .public_key
                    .as_ref()
                    .try_into()
                    .map_err(|_| BundleError::Malformed("one-time prekey length"))?,
            })
        })
        .transpose()?;
    let kem_prekey = bundle
        .kem_prekey
        .as_ref()
        .map(|k| {
            Ok(KemPreKeyPublic {
                id: k.id,
                public_key: k.public_key.to_vec(),
                signature: k
                    .signature
                    .as_ref()
                    .try_into()
                    .map_err(|_| BundleError::Malformed("KEM prekey signature length"))?,
            })
        })
        .transpose()?;
    Ok(PreKeyBundle {
        identity,
        signed_prekey,
        one_time_prekey,
        kem_prekey,
    })
}
