//! Shared server state handed to every connection and handler.
//!
//! Not owned here: connection-local state (connection.rs).

use std::sync::Arc;

use crate::attachments::UploadsInProgress;
use crate::auth::login_records::CountedToday;
use crate::auth::password::PasswordHasher;
use crate::bus::Bus;
use crate::clock::{Clock, Rng};
use crate::config::Config;
use crate::error::Internal;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::storage::Storage;
use crate::webhooks::Webhooks;

/// Everything handlers need.
pub struct ServerState {
    /// Resolved configuration.
    pub config: Config,
    /// Persistent state.
    pub storage: Arc<dyn Storage>,
    /// Routes pushes to connected devices.
    pub bus: Arc<dyn Bus>,
    /// Argon2id with the configured parameters.
    pub passwords: PasswordHasher,
    /// Rate limits, IP rules and connection caps.
    pub limits: Arc<Limits>,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Offline-device notices, when a webhook is configured.
    pub webhooks: Option<Webhooks>,
    /// Attachments with a running upload stream.
    pub uploads: UploadsInProgress,
    /// Devices this node has counted as active today (login_records.rs).
    pub counted_today: CountedToday,
    /// Wall-clock time for every handler (tests drive it).
    pub clock: Arc<dyn Clock>,
    /// Random bytes for every id, token and challenge (tests seed it).
    pub rng: Arc<dyn Rng>,
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ServerState {
    /// Runs CPU-heavy work (argon2) off the async threads. Storage needs
    /// none of this: its methods are async and keep their blocking inside
    /// the backend.
    ///
    /// # Errors
    /// The closure's error, or an [`Internal`] failure if the task
    /// panicked.
    pub async fn blocking<T, E, F>(self: &Arc<Self>, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<Internal> + Send + 'static,
        F: FnOnce(&ServerState) -> Result<T, E> + Send + 'static,
    {
        let state = Arc::clone(self);
        tokio::task::spawn_blocking(move || f(&state))
            .await
            .map_err(|e| E::from(Internal::from(e)))?
    }

    /// Milliseconds since the Unix epoch, by the server's clock.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// `N` random bytes from the server's generator.
    pub fn random<const N: usize>(&self) -> [u8; N] {
        let mut out = [0u8; N];
        self.rng.fill(&mut out);
        out
    }

    /// Seconds since the Unix epoch, by the server's clock.
    pub fn now_secs(&self) -> u64 {
        self.clock.now_secs()
    }
}
