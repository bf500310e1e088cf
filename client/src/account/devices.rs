//! Requests about the account's devices and the account itself that
//! need the connection: prekey stock, the device list, removing a device
//! (and signing the list without it, SPEC.md §20), deleting the account.

use super::Account;
use crate::auth;
use crate::error::{OnlineError, TransportError};
use crate::sync;
use microbot_protocol::transport::{
    DeleteAccountRequest, DeviceInfo, ErrorCode, PrekeyStatus, PrekeyStatusRequest,
    RemoveDeviceRequest, client_frame::Request, response,
};

impl Account {
    async fn request(&self, request: Request) -> Result<response::Result, OnlineError> {
        let conn = self.inner.online.get().ok_or(OnlineError::NotConnected)?;
        Ok(conn.request(request).await?)
    }

    /// This device's unused prekeys on the server.
    ///
    /// # Errors
    /// [`OnlineError`].
    pub async fn prekey_status(&self) -> Result<PrekeyStatus, OnlineError> {
        match self
            .request(Request::PrekeyStatus(PrekeyStatusRequest {}))
            .await?
        {
            response::Result::PrekeyStatus(status) => Ok(status),
            _ => Err(TransportError::UnexpectedResponse {
                expected: "PrekeyStatus",
            }
            .into()),
        }
    }

    /// The account's devices.
    ///
    /// # Errors
    /// [`OnlineError`].
    pub async fn list_devices(&self) -> Result<Vec<DeviceInfo>, OnlineError> {
        let conn = self.inner.online.get().ok_or(OnlineError::NotConnected)?;
        Ok(sync::list_devices(&conn).await?)
    }

    /// Removes one of the account's devices (password + fresh TOTP code).
    ///
    /// # Errors
    /// [`OnlineError`] (the server's refusal as `TransportError::Server`).
    pub async fn remove_device(
        &self,
        device_id: u64,
        password: &str,
        totp_code: &str,
    ) -> Result<(), OnlineError> {
        let conn = self.inner.online.get().ok_or(OnlineError::NotConnected)?;
        let result = conn
            .request(Request::RemoveDevice(RemoveDeviceRequest {
                device_id,
                password: password.to_owned(),
                totp_code: totp_code.to_owned(),
                second_factor: None,
            }))
            .await?;
        auth::expect_ok(result)?;
        if device_id == self.inner.me.device_id {
            // This device is gone: its connection closes, and the account's
            // other devices are the ones that can still sign.
            return Ok(());
        }
        // SPEC.md §20: the remover signs the list without the device, so
        // contacts stop encrypting to it even if a server kept it.
        use crate::device_lists::SignError;
        match crate::device_lists::sign_out(&self.inner.store, &self.inner.me, &conn, device_id)
            .await
        {
            Ok(()) => Ok(()),
            Err(SignError::Transport(error)) => Err(error.into()),
            Err(SignError::Store(error)) => Err(error.into()),
            Err(SignError::Contended) => Err(OnlineError::Transport(TransportError::Server(
                crate::error::ServerError {
                    code: ErrorCode::StaleDeviceList,
                    message: "the device list kept changing; sign again".into(),
                    retry_after_ms: 0,
                    device_ids: vec![device_id],
                },
            ))),
            Err(error @ (SignError::Refused(_) | SignError::Build(_))) => {
                tracing::error!(%error, "device removed, but no list without it could be signed");
                Err(OnlineError::Transport(TransportError::UnexpectedResponse {
                    expected: "a device list signed by this account's identity",
                }))
            }
        }
    }

    /// Deletes the whole account on the server (password + fresh TOTP code).
    /// The local store is left as it is.
    ///
    /// # Errors
    /// [`OnlineError`].
    pub async fn delete_account(&self, password: &str, totp_code: &str) -> Result<(), OnlineError> {
        let result = self
            .request(Request::DeleteAccount(DeleteAccountRequest {
                password: password.to_owned(),
                totp_code: totp_code.to_owned(),
            }))
            .await?;
        Ok(auth::expect_ok(result)?)
    }
}
