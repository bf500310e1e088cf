//! Linking a device (SPEC.md §12.14): the public methods, each handing
//! over to `linking::Linking`, which holds the logic.

use crate::account::Account;
use crate::auth::SecondFactor;
use crate::config::{AccountConfig, ServerConfig, StoreConfig};
use crate::error::AuthError;
use crate::events::Events;
use crate::linking::Linking;
use crate::linking::{LinkError, Provisioned};
use zeroize::Zeroizing;

impl Account {
    /// Gives this account to the new device that shows `code`: seals the
    /// identity and the contacts and groups to the code's key and posts it
    /// to its slot. Needs the connection.
    ///
    /// # Errors
    /// [`LinkError::InvalidCode`], [`LinkError::NotConnected`],
    /// [`LinkError::SlotGone`] (expired or already used), …
    pub async fn link_device(&self, code: &str) -> Result<(), LinkError> {
        Linking { inner: &self.inner }.link_device(code).await
    }

    /// [`Account::link_device`], also sending the newest `per_conversation`
    /// messages of every conversation (with their edits and deletes) — only
    /// with the user's agreement: the new device then holds that history.
    /// At most [`crate::MAX_PROVISIONED_HISTORY`] messages and
    /// [`crate::HISTORY_BUDGET`] bytes go; older ones are left out.
    ///
    /// # Errors
    /// As [`Account::link_device`].
    pub async fn link_device_with_history(
        &self,
        code: &str,
        per_conversation: u32,
    ) -> Result<(), LinkError> {
        Linking { inner: &self.inner }
            .link_device_with_history(code, per_conversation)
            .await
    }

    /// Enrols this device on the account it was given (password + second
    /// factor, like any device), with the account's identity, then keeps
    /// the contacts (trusted identities) and groups it received; the groups
    /// are brought up to date from the server when connected. `provisioned`
    /// is only read, so a wrong code can be retried with the same one.
    ///
    /// # Errors
    /// [`AuthError`], as [`Account::enrol`].
    pub async fn enrol_provisioned(
        store: &StoreConfig,
        server: ServerConfig,
        provisioned: &Provisioned,
        password: Zeroizing<String>,
        second_factor: SecondFactor,
        config: AccountConfig,
    ) -> Result<(Account, Events), AuthError> {
        Linking::enrol_provisioned(store, server, provisioned, password, second_factor, config)
            .await
    }
}
