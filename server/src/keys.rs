//! Prekeys (SPEC.md §12.6): upload by the owning device, bundle hand-out to
//! anyone logged in, low-stock notices.
//!
//! The server checks only lengths; signatures are checked by the fetching
//! client, which trusts the identity key, not the server.
//!
//! Not owned here: what the keys mean (crypto-core, SPEC.md §3).

use std::sync::Arc;

use microbot_protocol::transport::{
    self, FetchPrekeysRequest, PrekeyBundle, PrekeyBundles, PrekeyLowStock, PrekeyStatus, Push,
    UploadPrekeysRequest, push,
};

use crate::auth::devices::Caller;
use crate::bus::BusEvent;
use crate::state::ServerState;
use crate::storage::{OneTimeKey, PrekeyCaps, PrekeyStock, PrekeyUpload, SignedKey};

/// X25519 / Ed25519 public key length.
pub const KEY_LEN: usize = 32;
/// Ed25519 signature length.
pub const SIGNATURE_LEN: usize = 64;
/// ML-KEM-768 encapsulation key length.
pub const KEM_PUBLIC_KEY_LEN: usize = 1184;
/// Most one-time prekeys per upload.
pub const MAX_ONE_TIME_PER_UPLOAD: usize = 1000;
/// Most one-time KEM prekeys per upload.
pub const MAX_KEM_PER_UPLOAD: usize = 100;
/// Most devices per bundle request.
pub const MAX_DEVICES_PER_FETCH: usize = 100;

mod error;

pub use error::KeyError;

fn signed(key: &transport::SignedPrekey) -> Result<SignedKey, KeyError> {
    if key.public_key.len() != KEY_LEN || key.signature.len() != SIGNATURE_LEN {
        return Err(KeyError::SignedPrekeyShape);
    }
    Ok(SignedKey {
        id: key.id,
        public_key: key.public_key.to_vec(),
        signature: key.signature.to_vec(),
    })
}

fn signed_kem(key: &transport::SignedKemPrekey) -> Result<SignedKey, KeyError> {
    if key.public_key.len() != KEM_PUBLIC_KEY_LEN || key.signature.len() != SIGNATURE_LEN {
        return Err(KeyError::KemPrekeyShape);
    }
    Ok(SignedKey {
        id: key.id,
        public_key: key.public_key.to_vec(),
        signature: key.signature.to_vec(),
    })
}

/// Validates an upload into its storage form.
///
/// # Errors
/// The [`KeyError`] naming the bad field.
pub fn validate_upload(request: &UploadPrekeysRequest) -> Result<PrekeyUpload, KeyError> {
    let identity_key = match request.identity_key.len() {
        0 => None,
        KEY_LEN => Some(request.identity_key.to_vec()),
        _ => return Err(KeyError::IdentityKeyLength),
    };
    if request.one_time_prekeys.len() > MAX_ONE_TIME_PER_UPLOAD {
        return Err(KeyError::TooManyOneTimePrekeys);
    }
    if request.kem_prekeys.len() > MAX_KEM_PER_UPLOAD {
        return Err(KeyError::TooManyKemPrekeys);
    }
    let one_time_prekeys = request
        .one_time_prekeys
        .iter()
        .map(|k| {
            if k.public_key.len() == KEY_LEN {
                Ok(OneTimeKey {
                    id: k.id,
                    public_key: k.public_key.to_vec(),
                })
            } else {
                Err(KeyError::OneTimePrekeyLength)
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(PrekeyUpload {
        identity_key,
        signed_prekey: request.signed_prekey.as_ref().map(signed).transpose()?,
        one_time_prekeys,
        kem_prekeys: request
            .kem_prekeys
            .iter()
            .map(signed_kem)
            .collect::<Result<_, _>>()?,
        last_resort_kem_prekey: request
            .last_resort_kem_prekey
            .as_ref()
            .map(signed_kem)
            .transpose()?,
    })
}

/// `UploadPrekeysRequest` for the logged-in device.
///
/// # Errors
/// `INVALID_ARGUMENT`, `NO_PREKEYS` (first upload incomplete),
/// `RATE_LIMITED`, `QUOTA_EXCEEDED` (the device would hold more unused
/// one-time or KEM prekeys than `max_one_time_prekeys` / `max_kem_prekeys`;
/// nothing is stored).
pub async fn upload(
    state: &Arc<ServerState>,
    caller: &Caller,
    request: UploadPrekeysRequest,
) -> Result<(), KeyError> {
    let upload = validate_upload(&request)?;
    state
        .limits
        .check_prekey_upload(&state.metrics, caller.account_id)?;
    let device_id = caller.device_id;
    let caps = PrekeyCaps {
        one_time: state.config.max_one_time_prekeys,
        kem: state.config.max_kem_prekeys,
    };
    Ok(state
        .storage
        .upload_prekeys_capped(device_id, &upload, caps)
        .await?)
}

/// The low-stock push for a stock, if it is below the threshold.
pub fn low_stock_push(state: &ServerState, stock: PrekeyStock) -> Option<Push> {
    let threshold = state.config.prekey_low_stock_threshold;
    (stock.one_time < threshold).then(|| Push {
        event: Some(push::Event::PrekeyLowStock(PrekeyLowStock {
            one_time_prekeys: stock.one_time,
            kem_prekeys: stock.kem,
            threshold,
        })),
    })
}

/// `FetchPrekeysRequest`: one bundle per device that has keys (devices
/// without keys are omitted, SPEC.md §12.6); one-time keys are consumed.
/// Limited per (fetching account, fetched account), so one account cannot
/// drain another's stock; a device gets at most one low-stock push a
/// minute, however many fetches drain it.
///
/// # Errors
/// `UNKNOWN_ACCOUNT`, `INVALID_ARGUMENT`, `RATE_LIMITED`.
pub async fn fetch(
    state: &Arc<ServerState>,
    caller: &Caller,
    request: FetchPrekeysRequest,
) -> Result<PrekeyBundles, KeyError> {
    if request.device_ids.len() > MAX_DEVICES_PER_FETCH {
        return Err(KeyError::TooManyDevices);
    }
    let (target, bot) = state
        .storage
        .account_by_username(&request.username)
        .await?
        .filter(|a| a.active)
        .map(|a| (a.id, a.bot))
        .ok_or(KeyError::UnknownAccount)?;
    state
        .limits
        .check_prekey_fetch(&state.metrics, caller.account_id, target)?;
    let username = request.username.clone();
    let devices: Vec<u64> = state
        .storage
        .account_devices(target)
        .await?
        .into_iter()
        .map(|d| d.id)
        .filter(|id| request.device_ids.is_empty() || request.device_ids.contains(id))
        .collect();
    let signed_device_list =
        crate::device_lists::signed_bytes(state.storage.as_ref(), target).await?;
    let bundles = state.storage.take_bundles(&devices).await?;
    for bundle in &bundles {
        if let Some(push) = low_stock_push(state, bundle.stock)
            && state.limits.low_stock_push_due(bundle.device_id)
        {
            state
                .bus
                .publish(bundle.device_id, BusEvent::Push(Box::new(push)));
        }
    }
    Ok(PrekeyBundles {
        username,
        bot,
        signed_device_list,
        bundles: bundles
            .into_iter()
            .map(|b| {
                let (kem_prekey, kem_prekey_is_last_resort) = match b.kem_prekey {
                    Some((k, last_resort)) => (
                        Some(transport::SignedKemPrekey {
                            id: k.id,
                            public_key: k.public_key.into(),
                            signature: k.signature.into(),
                        }),
                        last_resort,
                    ),
                    None => (None, false),
                };
                PrekeyBundle {
                    device_id: b.device_id,
                    identity_key: b.identity_key.into(),
                    signed_prekey: Some(transport::SignedPrekey {
                        id: b.signed_prekey.id,
                        public_key: b.signed_prekey.public_key.into(),
                        signature: b.signed_prekey.signature.into(),
                    }),
                    one_time_prekey: b.one_time_prekey.map(|k| transport::OneTimePrekey {
                        id: k.id,
                        public_key: k.public_key.into(),
                    }),
                    kem_prekey,
                    kem_prekey_is_last_resort,
                }
            })
            .collect(),
    })
}

/// `PrekeyStatusRequest` for the logged-in device.
///
/// # Errors
/// Storage errors.
pub async fn status(state: &Arc<ServerState>, device_id: u64) -> Result<PrekeyStock, KeyError> {
    Ok(state.storage.prekey_stock(device_id).await?)
}

/// The wire form of a stock.
pub fn status_proto(stock: PrekeyStock) -> PrekeyStatus {
    PrekeyStatus {
        one_time_prekeys: stock.one_time,
        kem_prekeys: stock.kem,
        signed_prekey_id: stock.signed_prekey_id,
    }
}
