//! The state an `Account` handle shares with its background connection,
//! one part per job: the store, who this device is, the server and the
//! tunables, the event sender, the outbox's wake-up signal and the live
//! connection. Functions take the parts they need ([`Local`] for the
//! store, this device and the events together); the ones that need the
//! server's addresses, the tunables or the outbox's signal as well take
//! this. Not owned here: what is done with it (account/,
//! sync.rs and the feature modules).

use tokio::sync::Notify;

use crate::config::{AccountConfig, ServerConfig};
use crate::events::EventSender;
use crate::store::SharedStore;
use crate::this_device::ThisDevice;
use crate::tls::AddressTokens;
use crate::transport::ConnectionSlot;

/// State shared by the `Account` handle and its background task.
pub(crate) struct Inner {
    /// The local store.
    pub(crate) store: SharedStore,
    /// Who this device is.
    pub(crate) me: ThisDevice,
    /// The server's addresses and certificate pin.
    pub(crate) server: ServerConfig,
    /// The application's tunables.
    pub(crate) config: AccountConfig,
    /// What the application is told.
    pub(crate) events: EventSender,
    /// Signalled when the outbox may have work.
    pub(crate) outbox_wake: Notify,
    /// The live connection, while logged in.
    pub(crate) online: ConnectionSlot,
    /// QUIC address tokens from this account's earlier connections, so a
    /// reconnect skips the server's Retry (tls.rs).
    pub(crate) address_tokens: AddressTokens,
    /// Whether the injected upload interruption
    /// ([`crate::fault_injection::interrupt_upload_at`]) happened (it
    /// happens once per account handle).
    pub(crate) upload_interrupted: std::sync::atomic::AtomicBool,
}

/// The parts a step over this device's own state needs: the store, who
/// this device is, and where the application's events go.
#[derive(Clone, Copy)]
pub(crate) struct Local<'a> {
    /// The local store.
    pub(crate) store: &'a SharedStore,
    /// Who this device is.
    pub(crate) me: &'a ThisDevice,
    /// What the application is told.
    pub(crate) events: &'a EventSender,
}

impl Inner {
    /// The store, this device and the event sender, borrowed together.
    pub(crate) fn local(&self) -> Local<'_> {
        Local {
            store: &self.store,
            me: &self.me,
            events: &self.events,
        }
    }
}
