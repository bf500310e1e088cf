//! Faults for crash-recovery and resume tests, kept out of the public
//! [`AccountConfig`] fields: an application never calls these (they make
//! the account lose acknowledgements or drop its connection on purpose).

use crate::config::AccountConfig;

/// Store received messages but never acknowledge them to the server, as
/// if the process died between the two steps (they are fetched again).
pub fn skip_acks(config: &mut AccountConfig) {
    config.faults.skip_ack = true;
}

/// Close the connection once, the first time an upload has written
/// `bytes` encrypted bytes, as if the network dropped; the upload then
/// resumes.
pub fn interrupt_upload_at(config: &mut AccountConfig, bytes: u64) {
    config.faults.interrupt_upload_at = Some(bytes);
}
