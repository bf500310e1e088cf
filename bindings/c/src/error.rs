//! Status codes, the per-thread last error message, and the guard that
//! keeps panics inside the library.

use std::cell::RefCell;
use std::ffi::{CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// What a call returned. `MICROBOT_STATUS_OK` is 0; on any other value
/// [`microbot_last_error_message`] explains.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MicrobotStatus {
    /// Success.
    Ok = 0,
    /// A NULL where a value is required, a string that is not UTF-8, a
    /// malformed address, conversation, id or fingerprint: fix the call.
    InvalidArgument = 1,
    /// Registration, confirmation or enrolment was refused (wrong password
    /// or code, name taken, …) or could not reach the server.
    Auth = 2,
    /// The local store could not be opened (wrong passphrase, no account,
    /// already enrolled, corrupt).
    Open = 3,
    /// A message could not be queued (unknown contact or group, text too
    /// long, identity change to acknowledge, …).
    Send = 4,
    /// The connection failed or the server refused a request.
    Transport = 5,
    /// The local store failed.
    Store = 6,
    /// A group operation failed.
    Group = 7,
    /// A file upload or download failed.
    Attachment = 8,
    /// The operation is not possible in this state (an event callback is
    /// already set, the account is not connected, …).
    State = 9,
    /// A bug in the library: a panic was caught at the boundary.
    Panic = 10,
}

/// An error on its way to the caller.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: MicrobotStatus,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(status: MicrobotStatus, message: impl std::fmt::Display) -> Self {
        Self {
            status,
            message: message.to_string(),
        }
    }

    pub(crate) fn invalid(message: impl std::fmt::Display) -> Self {
        Self::new(MicrobotStatus::InvalidArgument, message)
    }
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

fn set_last_error(message: &str) {
    let text = CString::new(message.replace('\0', "\u{fffd}")).unwrap_or_default();
    LAST_ERROR.with(|slot| *slot.borrow_mut() = Some(text));
}

/// The message of the last failed call on this thread, or NULL if none
/// failed yet. The pointer stays valid until the next failing call on this
/// thread; do not free it.
#[unsafe(no_mangle)]
pub extern "C" fn microbot_last_error_message() -> *const c_char {
    LAST_ERROR.with(|slot| {
        slot.borrow()
            .as_ref()
            .map_or(std::ptr::null(), |s| s.as_ptr())
    })
}

/// Runs `f`, turning its error or a panic into a status code and the
/// thread's last error message.
pub(crate) fn guard(f: impl FnOnce() -> Result<(), Failure>) -> MicrobotStatus {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => MicrobotStatus::Ok,
        Ok(Err(failure)) => {
            set_last_error(&failure.message);
            failure.status
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".to_owned());
            set_last_error(&format!("internal error (caught panic): {what}"));
            MicrobotStatus::Panic
        }
    }
}

/// Maps an SDK error to a status by its type.
pub(crate) fn from_client<E: std::fmt::Display>(status: MicrobotStatus) -> impl Fn(E) -> Failure {
    move |error| Failure::new(status, error)
}
