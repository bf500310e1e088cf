//! Uploading this device's prekeys over the connection (SPEC.md §12.6):
//! the shell around the decisions of prekeys.rs. On login, the full set
//! once; on a low-stock push, the server's count is asked for and a batch
//! of one-time prekeys goes up when it is low. The private halves are
//! saved before the public ones leave, so a key the server hands out is
//! always one we can use. Not owned here: what to upload (prekeys.rs),
//! when these run (sync.rs).

use microbot_crypto::prekeys::LocalPreKeys;
use microbot_protocol::transport::{PrekeyStatusRequest, client_frame::Request, response};

use crate::account_state::Local;
use crate::auth;
use crate::error::{Interrupted, StoreError, TransportError};
use crate::events::Event;
use crate::prekeys::{self, META_PREKEYS, META_PREKEYS_UPLOADED, PrekeyUpload};
use crate::store::{SharedStore, Tx};
use crate::this_device::ThisDevice;
use crate::transport::Connection;

/// The first upload of this device's keys, once (a `batch` of one-time
/// prekeys with it).
pub(crate) async fn ensure_uploaded(
    store: &SharedStore,
    me: &ThisDevice,
    batch: u32,
    conn: &Connection,
) -> Result<(), Interrupted> {
    let uploaded = store.tx(|tx| tx.meta(META_PREKEYS_UPLOADED))?;
    let PrekeyUpload::Full { one_time } =
        prekeys::first_upload(uploaded.as_deref() == Some(&[1]), batch)
    else {
        return Ok(());
    };
    let upload = store.tx(|tx| -> Result<_, StoreError> {
        let mut keys = load(me, tx)?;
        let drawn = keys.generate_one_time(&mut rand::rng(), one_time);
        tx.set_secret(META_PREKEYS, &keys.to_bytes())?;
        Ok(prekeys::full_upload(&me.identity, &keys, &drawn))
    })?;
    auth::expect_ok(conn.request(Request::UploadPrekeys(upload)).await?)?;
    store.tx(|tx| tx.set_meta(META_PREKEYS_UPLOADED, &[1]))?;
    Ok(())
}

/// Uploads a `batch` of one-time prekeys when the server's stock is low,
/// and tells the application.
pub(crate) async fn refill_if_low(
    local: Local<'_>,
    batch: u32,
    conn: &Connection,
) -> Result<(), Interrupted> {
    let status = match conn
        .request(Request::PrekeyStatus(PrekeyStatusRequest {}))
        .await?
    {
        response::Result::PrekeyStatus(status) => status,
        _ => {
            return Err(TransportError::UnexpectedResponse {
                expected: "PrekeyStatus",
            }
            .into());
        }
    };
    let threshold = conn
        .hello
        .limits
        .as_ref()
        .map(|l| l.prekey_low_stock_threshold);
    let PrekeyUpload::Refill { one_time } =
        prekeys::refill(status.one_time_prekeys, threshold, batch)
    else {
        return Ok(());
    };
    let drawn = local.store.tx(|tx| -> Result<_, StoreError> {
        let mut keys = load(local.me, tx)?;
        let drawn = keys.generate_one_time(&mut rand::rng(), one_time);
        tx.set_secret(META_PREKEYS, &keys.to_bytes())?;
        Ok(drawn)
    })?;
    auth::expect_ok(
        conn.request(Request::UploadPrekeys(prekeys::refill_upload(&drawn)))
            .await?,
    )?;
    local
        .events
        .emit(Event::PrekeysRefilled { uploaded: one_time });
    Ok(())
}

/// This device's private prekeys from the store.
fn load(me: &ThisDevice, tx: &Tx<'_>) -> Result<LocalPreKeys, StoreError> {
    let bytes = tx
        .secret("prekeys", META_PREKEYS)?
        .ok_or(StoreError::Corrupt { what: "prekeys" })?;
    LocalPreKeys::from_bytes(&me.identity, &bytes)
        .map_err(|_| StoreError::Corrupt { what: "prekeys" })
}
