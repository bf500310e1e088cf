//! Which contacts are bot accounts (SPEC.md §12.3): the flag the server
//! sends with an account's prekey bundles, kept per contact in the store's
//! meta table so the application can show it.

use crate::error::StoreError;
use crate::store::Tx;

fn key(username: &str) -> String {
    format!("bot:{username}")
}

/// Records whether `username` is a bot account, as its bundles said.
pub(crate) fn remember(tx: &Tx<'_>, username: &str, bot: bool) -> Result<(), StoreError> {
    tx.set_meta(&key(username), &[u8::from(bot)])
}

/// Whether `username` is a bot account as far as this device knows (false
/// until its keys were fetched once).
pub(crate) fn is_bot(tx: &Tx<'_>, username: &str) -> Result<bool, StoreError> {
    Ok(tx.meta(&key(username))?.is_some_and(|v| v == [1]))
}
