//! Strings across the boundary: borrowed C strings in, owned C strings out.

use std::ffi::{CStr, CString, c_char};

use zeroize::Zeroize as _;

use crate::error::Failure;

/// Borrows the NUL-terminated UTF-8 string `ptr` (`what` names the
/// argument in the error).
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that stays valid and
/// unchanged for `'a`.
pub(crate) unsafe fn arg<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL, and the caller guarantees NUL termination and
    // validity for 'a (the header documents it for every string argument).
    let text = unsafe { CStr::from_ptr(ptr) };
    text.to_str()
        .map_err(|_| Failure::invalid(format!("{what} is not UTF-8")))
}

/// Like [`arg`], but NULL means `None`.
///
/// # Safety
/// As [`arg`].
pub(crate) unsafe fn optional_arg<'a>(
    ptr: *const c_char,
    what: &str,
) -> Result<Option<&'a str>, Failure> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract of this function.
    unsafe { arg(ptr, what) }.map(Some)
}

/// A C string of `text`, interior NULs replaced by U+FFFD.
pub(crate) fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', "\u{fffd}")).unwrap_or_default()
}

/// Writes `value` through the out-pointer `out` (checked for NULL).
///
/// # Safety
/// `out` is NULL or valid for a write of `T`.
pub(crate) unsafe fn write_out<T>(out: *mut T, value: T, what: &str) -> Result<(), Failure> {
    if out.is_null() {
        return Err(Failure::invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL, and the caller guarantees it is valid for writes.
    unsafe { out.write(value) };
    Ok(())
}

/// Hands `text` to the caller as an owned string through `out`.
///
/// # Safety
/// As [`write_out`].
pub(crate) unsafe fn write_string(
    out: *mut *mut c_char,
    text: &str,
    what: &str,
) -> Result<(), Failure> {
    if out.is_null() {
        return Err(Failure::invalid(format!("{what} is NULL")));
    }
    let owned = c_string(text).into_raw();
    // SAFETY: non-NULL, valid for writes by the caller's contract.
    unsafe { out.write(owned) };
    Ok(())
}

/// Frees a string this library returned through a `char **` out-parameter,
/// overwriting its bytes first (some are secrets). NULL is ignored.
///
/// # Safety
/// `text` is NULL or a string returned by this library and not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn microbot_string_free(text: *mut c_char) {
    if text.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: the caller passes a pointer from `CString::into_raw` (all
        // strings out come from `write_string`) that was not freed yet.
        let owned = unsafe { CString::from_raw(text) };
        let mut bytes = owned.into_bytes_with_nul();
        bytes.zeroize();
    });
}
