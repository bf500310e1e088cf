//! The state an `Account` handle shares with its background connection:
//! the store, this device's keys and names, the server and the tunables,
//! the event sender, the outbox's wake-up signal and the live connection.
//! Not owned here: what is done with it (account/, sync.rs and the
//! feature modules).

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Notify, mpsc};

use crate::config::{AccountConfig, ServerConfig};
use crate::error::StoreError;
use crate::events::Event;
use crate::store::{Store, Tx};
use crate::this_device::ThisDevice;
use crate::transport::Connection;

/// State shared by the `Account` handle and its background task.
pub(crate) struct Inner {
    pub(crate) store: Mutex<Store>,
    /// Who this device is.
    pub(crate) me: ThisDevice,
    pub(crate) server: ServerConfig,
    pub(crate) config: AccountConfig,
    pub(crate) events: mpsc::UnboundedSender<Event>,
    /// Signalled when the outbox may have work.
    pub(crate) wake: Notify,
    /// The live connection, while logged in.
    pub(crate) online: Mutex<Option<Arc<Connection>>>,
}

impl Inner {
    /// Runs `f` in one store transaction.
    pub(crate) fn tx<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .tx(f)
    }

    /// Tells the application.
    pub(crate) fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    /// The live connection, while logged in.
    pub(crate) fn connection(&self) -> Option<Arc<Connection>> {
        self.online
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records the live connection (`None` once it ended).
    pub(crate) fn set_connection(&self, conn: Option<Arc<Connection>>) {
        *self.online.lock().unwrap_or_else(PoisonError::into_inner) = conn;
    }
}
