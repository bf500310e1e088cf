//! `MicrobotServer`: where the server is and which certificate to trust;
//! registration and its TOTP confirmation.

use std::ffi::c_char;

use microbot_client::ServerConfig;

use crate::error::{Failure, MicrobotStatus, from_client, guard};
use crate::ffi_str::{arg, write_out, write_string};
use crate::runtime::block_on;

/// A server address and its pinned certificate (opaque).
pub struct MicrobotServer {
    pub(crate) config: ServerConfig,
}

/// Borrows the handle `server`.
///
/// # Safety
/// `server` is NULL or a live handle from [`microbot_server_new`].
pub(crate) unsafe fn server_ref<'a>(
    server: *const MicrobotServer,
) -> Result<&'a MicrobotServer, Failure> {
    // SAFETY: NULL or a live handle (caller's contract); `as_ref` checks NULL.
    unsafe { server.as_ref() }.ok_or_else(|| Failure::invalid("server is NULL"))
}

/// Creates a server handle: `address` is `IP:PORT` (QUIC, with the
/// WebSocket fallback on the same port), `fingerprint_hex` the SHA-256 of
/// its certificate in hex (colons allowed). Free with [`microbot_server_free`].
///
/// # Safety
/// String arguments are NUL-terminated; `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn microbot_server_new(
    address: *const c_char,
    fingerprint_hex: *const c_char,
    out: *mut *mut MicrobotServer,
) -> MicrobotStatus {
    guard(|| {
        // SAFETY: the caller's contract on the string arguments.
        let address = unsafe { arg(address, "address") }?;
        // SAFETY: as above.
        let fingerprint = unsafe { arg(fingerprint_hex, "fingerprint_hex") }?;
        let addr = address
            .parse()
            .map_err(|_| Failure::invalid(format!("address {address:?} is not IP:PORT")))?;
        let config = ServerConfig::new(addr, fingerprint).map_err(Failure::invalid)?;
        let handle = Box::into_raw(Box::new(MicrobotServer { config }));
        // SAFETY: the caller's contract on `out`.
        unsafe { write_out(out, handle, "out") }.inspect_err(|_| {
            // SAFETY: `handle` came from Box::into_raw just above and was not handed out.
            drop(unsafe { Box::from_raw(handle) });
        })
    })
}

/// Frees a server handle (NULL is ignored). Accounts made with it keep
/// their own copy of its settings.
///
/// # Safety
/// `server` is NULL or a handle from [`microbot_server_new`] not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn microbot_server_free(server: *mut MicrobotServer) {
    if server.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: a pointer from Box::into_raw in microbot_server_new, not freed yet.
        drop(unsafe { Box::from_raw(server) });
    });
}

/// Creates an account (inactive until [`microbot_confirm_registration`]).
/// On success `*out_totp_secret` is the base32 TOTP secret to put in an
/// authenticator (a secret: free it with [`microbot_string_free`]).
///
/// # Safety
/// `server` is a live handle; strings are NUL-terminated; `out_totp_secret`
/// is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn microbot_register(
    server: *const MicrobotServer,
    username: *const c_char,
    password: *const c_char,
    out_totp_secret: *mut *mut c_char,
) -> MicrobotStatus {
    guard(|| {
        // SAFETY: the caller's contract on each argument.
        let (server, username, password) = unsafe {
            (
                server_ref(server)?,
                arg(username, "username")?,
                arg(password, "password")?,
            )
        };
        let registration = block_on(microbot_client::register(
            &server.config,
            username,
            password,
        ))?
        .map_err(from_client(MicrobotStatus::Auth))?;
        // SAFETY: the caller's contract on `out_totp_secret`.
        unsafe {
            write_string(
                out_totp_secret,
                &registration.totp_secret_base32,
                "out_totp_secret",
            )
        }
    })
}

/// Activates an account with a current TOTP code.
///
/// # Safety
/// `server` is a live handle; strings are NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn microbot_confirm_registration(
    server: *const MicrobotServer,
    username: *const c_char,
    password: *const c_char,
    totp_code: *const c_char,
) -> MicrobotStatus {
    guard(|| {
        // SAFETY: the caller's contract on each argument.
        let (server, username, password, code) = unsafe {
            (
                server_ref(server)?,
                arg(username, "username")?,
                arg(password, "password")?,
                arg(totp_code, "totp_code")?,
            )
        };
        block_on(microbot_client::confirm_registration(
            &server.config,
            username,
            password,
            code,
        ))?
        .map_err(from_client(MicrobotStatus::Auth))
    })
}
