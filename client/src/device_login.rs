//! The device-login signature (SPEC.md §12.5): the device key signs the
//! server's fresh challenge and the device id under a fixed context, so a
//! captured login cannot be replayed on another connection. Used by both
//! transports' logins (auth.rs, websocket.rs). Not owned here: sending
//! the request (auth.rs).

use bytes::Bytes;
use ed25519_dalek::{Signer as _, SigningKey};
use microbot_protocol::transport::LoginRequest;

/// Context prefix of the login signature.
pub const LOGIN_CONTEXT: &[u8] = b"Microbot device login v1\x00";

/// The `login` request for `challenge` (SPEC.md §12.5): the device key's
/// signature over the login message.
pub(crate) fn login_request(
    challenge: &[u8],
    device_id: u64,
    device_key: &SigningKey,
) -> LoginRequest {
    let mut message = Vec::with_capacity(LOGIN_CONTEXT.len() + 40);
    message.extend_from_slice(LOGIN_CONTEXT);
    message.extend_from_slice(challenge);
    message.extend_from_slice(&device_id.to_be_bytes());
    let signature = device_key.sign(&message);
    LoginRequest {
        device_id,
        signature: Bytes::copy_from_slice(&signature.to_bytes()),
    }
}
