//! Shared server state handed to every connection and handler.
//!
//! Not owned here: connection-local state (connection.rs).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::attachments::UploadsInProgress;
use crate::auth::password::PasswordHasher;
use crate::bus::Bus;
use crate::config::Config;
use crate::error::ApiError;
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
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ServerState {
    /// Runs blocking work (storage, argon2) off the async threads.
    ///
    /// # Errors
    /// The closure's error, or `ERROR_CODE_INTERNAL` if the task panicked.
    pub async fn blocking<T, F>(self: &Arc<Self>, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&ServerState) -> Result<T, ApiError> + Send + 'static,
    {
        let state = Arc::clone(self);
        tokio::task::spawn_blocking(move || f(&state))
            .await
            .map_err(ApiError::internal)?
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    now_ms() / 1000
}
