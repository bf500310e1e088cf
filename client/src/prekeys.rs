//! This device's prekeys on the server (SPEC.md §4.1, §12.6): the first
//! upload (identity, signed prekey, a batch of one-time prekeys, a signed
//! last-resort ML-KEM-768 prekey) and refills when the stock runs low,
//! decided without I/O ([`first_upload`], [`refill`]) and built as the
//! requests that carry them.
//!
//! The signed prekey and the KEM prekey are uploaded once, with the first
//! upload, and not rotated (SPEC.md §4.1 suggests a weekly rotation of the
//! signed prekey; this client does not do it yet). Not owned here: the
//! keys themselves (microbot-crypto `prekeys`), the handshake, the upload
//! over the connection (prekey_upload.rs).

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

/// The server's low-stock threshold when its hello names none.
pub(crate) const DEFAULT_LOW_STOCK_THRESHOLD: u32 = 10;

/// What this device's prekeys on the server need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PrekeyUpload {
    /// Nothing: the server holds what it needs.
    Nothing,
    /// The first upload of this device's keys (identity, signed prekey,
    /// last-resort KEM prekey) with this many new one-time prekeys.
    Full {
        /// One-time prekeys to draw and upload.
        one_time: u32,
    },
    /// This many new one-time prekeys.
    Refill {
        /// One-time prekeys to draw and upload.
        one_time: u32,
    },
}

/// The one-time prekeys drawn per upload for the configured `batch`:
/// at least one, at most [`MAX_BATCH`].
pub(crate) fn batch_size(batch: u32) -> u32 {
    batch.clamp(1, MAX_BATCH)
}

/// What a fresh login uploads, from local state: the full set once, until
/// the server accepted it (`uploaded`).
pub(crate) fn first_upload(uploaded: bool, batch: u32) -> PrekeyUpload {
    if uploaded {
        PrekeyUpload::Nothing
    } else {
        PrekeyUpload::Full {
            one_time: batch_size(batch),
        }
    }
}

/// What a low-stock report leads to, from the server's count of this
/// device's unused one-time prekeys (`on_server`) and its low-stock
/// `threshold` ([`DEFAULT_LOW_STOCK_THRESHOLD`] when it names none): a
/// batch below the threshold, nothing otherwise.
pub(crate) fn refill(on_server: u32, threshold: Option<u32>, batch: u32) -> PrekeyUpload {
    if on_server >= threshold.unwrap_or(DEFAULT_LOW_STOCK_THRESHOLD) {
        PrekeyUpload::Nothing
    } else {
        PrekeyUpload::Refill {
            one_time: batch_size(batch),
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_full_set_goes_up_once() {
        assert_eq!(
            first_upload(false, 100),
            PrekeyUpload::Full { one_time: 100 }
        );
        assert_eq!(first_upload(true, 100), PrekeyUpload::Nothing);
    }

    #[test]
    fn a_stock_below_the_threshold_is_refilled_by_one_batch() {
        assert_eq!(
            refill(9, Some(10), 100),
            PrekeyUpload::Refill { one_time: 100 }
        );
        assert_eq!(refill(10, Some(10), 100), PrekeyUpload::Nothing);
        assert_eq!(refill(0, Some(0), 100), PrekeyUpload::Nothing);
    }

    #[test]
    fn without_a_threshold_from_the_server_the_default_applies() {
        assert_eq!(
            refill(DEFAULT_LOW_STOCK_THRESHOLD - 1, None, 5),
            PrekeyUpload::Refill { one_time: 5 }
        );
        assert_eq!(
            refill(DEFAULT_LOW_STOCK_THRESHOLD, None, 5),
            PrekeyUpload::Nothing
        );
    }

    #[test]
    fn the_batch_is_at_least_one_and_at_most_the_servers_limit() {
        assert_eq!(first_upload(false, 0), PrekeyUpload::Full { one_time: 1 });
        assert_eq!(
            refill(0, None, u32::MAX),
            PrekeyUpload::Refill {
                one_time: MAX_BATCH
            }
        );
    }
}
