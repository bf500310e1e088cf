//! `MicrobotAccount`: one device of one account — enrol or open, connect,
//! send, groups, files, and the event callback.

use std::ffi::{c_char, c_void};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use microbot_client::{
    Account, AccountConfig, Conversation, Enrolment, Events, IdentitySource, MessageId,
    MessageIdText as _, SecondFactor, StoreConfig,
};
use zeroize::Zeroizing;

use crate::error::{Failure, MicrobotStatus, from_client, guard};
use crate::events::{MicrobotEventCallback, Pump};
use crate::ffi_str::{arg, optional_arg, write_out, write_string};
use crate::runtime::{block_on, runtime};
use crate::server::server_ref;

/// One device of one account, opened from its local store (opaque).
pub struct MicrobotAccount {
    account: Account,
    /// The events, until a callback takes them.
    events: Mutex<Option<Events>>,
    pump: Mutex<Option<Pump>>,
}

/// Borrows the handle `account`.
///
/// # Safety
/// `account` is NULL or a live handle.
unsafe fn account_ref<'a>(account: *const MicrobotAccount) -> Result<&'a MicrobotAccount, Failure> {
    // SAFETY: NULL or a live handle (caller's contract); `as_ref` checks NULL.
    unsafe { account.as_ref() }.ok_or_else(|| Failure::invalid("account is NULL"))
}

/// Parses a conversation: `u:<username>`, `g:<group id hex>`, or a bare
/// username (usernames contain no `:`).
pub(crate) fn conversation(text: &str) -> Result<Conversation, Failure> {
    if !text.contains(':') {
        return Ok(Conversation::Direct(text.to_owned()));
    }
    Conversation::from_key(text).ok_or_else(|| {
        Failure::invalid(format!(
            "conversation {text:?} is not u:<username>, g:<32 hex digits> or a username"
        ))
    })
}

/// Parses a message id (32 hex digits).
pub(crate) fn message_id(text: &str) -> Result<MessageId, Failure> {
    MessageId::from_text(text)
        .map_err(|_| Failure::invalid(format!("message id {text:?} is not 32 hex digits")))
}

fn store_config(path: &str, passphrase: Option<&str>) -> StoreConfig {
    let store = StoreConfig::new(path);
    match passphrase {
        Some(p) => store.with_passphrase(p),
        None => store,
    }
}

/// Hands a new account handle to the caller.
///
/// # Safety
/// `out` is valid for a write.
unsafe fn hand_out(
    out: *mut *mut MicrobotAccount,
    account: Account,
    events: Events,
) -> Result<(), Failure> {
    let handle = Box::into_raw(Box::new(MicrobotAccount {
        account,
        events: Mutex::new(Some(events)),
        pump: Mutex::new(None),
    }));
    // SAFETY: the caller's contract on `out`.
    unsafe { write_out(out, handle, "out") }.inspect_err(|_| {
        // SAFETY: `handle` came from Box::into_raw just above and was not handed out.
        drop(unsafe { Box::from_raw(handle) });
    })
}

/// Enrols this device on an active (confirmed) account and creates its
/// store at `store_path` (encrypted at rest when `passphrase` is not NULL).
/// `device_name` may be NULL. The account is not connected yet: set the
/// event callback, then [`microbot_account_connect`]. Free with
/// [`microbot_account_free`].
///
/// # Safety
/// `server` is a live handle; strings are NUL-terminated (or NULL where
/// allowed); `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn microbot_account_enrol(
    server: *const MicrobotServer,
    store_path: *const c_char,
    passphrase: *const c_char,
    username: *const c_char,
    password: *const c_char,
    totp_code: *const c_char,
    device_name: *const c_char,
    out: *mut *mut MicrobotAccount,
) -> MicrobotStatus {
    guard(|| {
        // SAFETY: the caller's contract on each argument.
        let (server, path, passphrase, username, password, code, name) = unsafe {
            (
                server_ref(server)?,
                arg(store_path, "store_path")?,
                optional_arg(passphrase, "passphrase")?,
                arg(username, "username")?,
                arg(password, "password")?,
                arg(totp_code, "totp_code")?,
                optional_arg(device_name, "device_name")?,
            )
        };
        let mut config = AccountConfig::default();
        if let Some(name) = name {
            config.device_name = name.to_owned();
        }
        let enrolment = Enrolment {
            username: username.to_owned(),
            password: Zeroizing::new(password.to_owned()),
            second_factor: SecondFactor::Totp(code.to_owned()),
            identity: IdentitySource::New,
        };
        let (account, events) = block_on(Account::enrol(
            &store_config(path, passphrase),
            server.config.clone(),
            enrolment,
            config,
        ))?
        .map_err(from_client(MicrobotStatus::Auth))?;
        // SAFETY: the caller's contract on `out`.
        unsafe { hand_out(out, account, events) }
    })
}

use crate::server::MicrobotServer;

/// Reopens the account kept in the store at `store_path` (`passphrase`
/// NULL for an unencrypted store). Not connected yet.
///
/// # Safety
/// Strings are NUL-terminated (or NULL where allowed); `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn microbot_account_open(
    store_path: *const c_char,
    passphrase: *const c_char,
    out: *mut *mut MicrobotAccount,
) -> MicrobotStatus {
    guard(|| {
        // SAFETY: the caller's contract on each argument.
        let (path, passphrase) = unsafe {
            (
                arg(store_path, "store_path")?,
                optional_arg(passphrase, "passphrase")?,
            )
        };
        let (account, events) = {
            let _context = runtime()?.enter();
            Account::open(&store_config(path, passphrase), AccountConfig::default())
                .map_err(from_client(MicrobotStatus::Open))?
        };
        // SAFETY: the caller's contract on `out`.
        unsafe { hand_out(out, account, events) }
    })
}

/// Stops the account (its connection and its event thread, waiting for a
/// callback in progress) and frees the handle. NULL is ignored. Must not be
/// called from this account's own event callback.
///
/// # Safety
/// `account` is NULL or a handle from this library not freed yet, and no
/// other thread uses it any more.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn microbot_account_free(account: *mut MicrobotAccount) {
    if account.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: a pointer from Box::into_raw in hand_out, not freed yet,
        // no longer used by other threads (caller's contract).
        let handle = unsafe { Box::from_raw(account) };
        if let Some(mut pump) = handle
            .pump
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            pump.stop();
        }
        // The account's connection objects are dropped inside the runtime.
        let _context = runtime().map(|rt| rt.enter());
        drop(handle);
    });
}

/// Sets the function called with every event of this account (once per
/// account; see the threading contract in the crate docs: one dedicated
/// thread, in order). Events that arrived before are delivered first.
///
/// # Safety
/// `account` is a live handle; `callback` is a valid function; `user_data`
/// may be used from another thread until [`microbot_account_free`] returns.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn microbot_account_set_event_callback(
    account: *const MicrobotAccount,
    callback: MicrobotEventCallback,
    user_data: *mut c_void,
) -> MicrobotStatus {
    guard(|| {
        // SAFETY: the caller's contract on `account`.
        let handle = unsafe { account_ref(account) }?;
        let callback = callback.ok_or_else(|| Failure::invalid("callback is NULL"))?;
        let events = handle
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| {
                Failure::new(
                    MicrobotStatus::State,
                    "this account already has an event callback",
                )
            })?;
        let pump = Pump::start(events, callback, user_data, runtime()?).map_err(|e| {
            Failure::new(
                MicrobotStatus::State,
                format!("cannot start the event thread: {e}"),
            )
        })?;
        *handle.pump.lock().unwrap_or_else(PoisonError::into_inner) = Some(pump);
        Ok(())
    })
}

/// Starts the background connection (login, prekeys, sync, outbox,
/// reconnects); progress arrives as `CONNECTING`/`CONNECTED`/… events.
/// Returns at once.
///
/// # Safety
/// `account` is a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn microbot_account_connect(
    account: *const MicrobotAccount,
) -> MicrobotStatus {
    guard(|| {
        // SAFETY: the caller's contract on `account`.
        let handle = unsafe { account_ref(account) }?;
        let _context = runtime()?.enter();
        handle.account.connect();
        Ok(())
    })
}

/// This account's username, through `*out` (free with `microbot_string_free`).
///
/// # Safety
/// `account` is a live handle; `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn microbot_account_username(
    account: *const MicrobotAccount,
    out: *mut *mut c_char,
) -> MicrobotStatus {
    guard(|| {
        // SAFETY: the caller's contract on `account` and `out`.
        unsafe { write_string(out, account_ref(account)?.account.username(), "out") }
    })
}

/// Queues a text message to `conversation` (`u:<username>`, a bare
/// username, or `g:<group id hex>`); it leaves when connected (a `SENT`
/// event follows). `out_message_id` (may be NULL) receives its id in hex.
///
/// # Safety
/// `account` is a live handle; strings are NUL-terminated;
/// `out_message_id` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn microbot_account_send_text(
    account: *const MicrobotAccount,
    conversation_key: *const c_char,
    text: *const c_char,
    out_message_id: *mut *mut c_char,
) -> MicrobotStatus {
    guard(|| {
        // SAFETY: the caller's contract on each argument.
        let (handle, to, text) = unsafe {
            (
                account_ref(account)?,
                arg(conversation_key, "conversation")?,
                arg(text, "text")?,
            )
        };
        let id = handle
            .account
            .send_text(&conversation(to)?, text)
            .map_err(from_client(MicrobotStatus::Send))?;
        hand_id(out_message_id, &id)
    })
}

/// Writes `id` through `out` unless it is NULL.
fn hand_id(out: *mut *mut c_char, id: &MessageId) -> Result<(), Failure> {
    if out.is_null() {
        return Ok(());
    }
    // SAFETY: non-NULL out-pointers are valid for a write (every caller's contract).
    unsafe { write_string(out, &hex::encode(id), "out_message_id") }
}

/// Reacts to (or, with `remove`, withdraws a reaction from) the message
/// `message_id` (hex) in `conversation` with `emoji`.
///
/// # Safety
/// As [`microbot_account_send_text`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn microbot_account_react(
    account: *const MicrobotAccount,
    conversation_key: *const c_char,
    message_id_hex: *const c_char,
    emoji: *const c_char,
    remove: bool,
) -> MicrobotStatus {
    guard(|| {
        // SAFETY: the caller's contract on each argument.
        let (handle, to, target, emoji) = unsafe {
            (
                account_ref(account)?,
                arg(conversation_key, "conversation")?,
                arg(message_id_hex, "message_id")?,
                arg(emoji, "emoji")?,
            )
        };
        handle
            .account
            .react(&conversation(to)?, message_id(target)?, emoji, remove)
            .map_err(from_client(MicrobotStatus::Send))?;
        Ok(())
    })
}

/// Replaces the text of one of this account's messages.
///
/// # Safety
/// As [`microbot_account_send_text`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn microbot_account_edit(
    account: *const MicrobotAccount,
    conversation_key: *const c_char,
    message_id_hex: *const c_char,
    text: *const c_char,
) -> MicrobotStatus {
    guard(|| {
        // SAFETY: the caller's contract on each argument.
        let (handle, to, target, text) = unsafe {
            (
                account_ref(account)?,
                arg(conversation_key, "conversation")?,
                arg(message_id_hex, "message_id")?,
                arg(text, "text")?,
            )
        };
        handle
            .account
            .edit(&conversation(to)?, message_id(target)?, text)
            .map_err(from_client(MicrobotStatus::Send))?;
        Ok(())
    })
}

/// Creates a group named `name` with the `member_count` usernames in
/// `members` (this account is its admin); `*out_conversation` receives
/// `g:<group id hex>`. Needs the connection; blocks until the server
/// answered.
///
/// # Safety
/// `account` is a live handle; `members` points to `member_count` strings;
/// `out_conversation` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn microbot_account_create_group(
    account: *const MicrobotAccount,
    name: *const c_char,
    members: *const *const c_char,
    member_count: usize,
    out_conversation: *mut *mut c_char,
) -> MicrobotStatus {
    guard(|| {
        // SAFETY: the caller's contract on `account` and `name`.
        let (handle, name) = unsafe { (account_ref(account)?, arg(name, "name")?) };
        if members.is_null() && member_count > 0 {
            return Err(Failure::invalid("members is NULL"));
        }
        let mut list = Vec::with_capacity(member_count.min(1024));
        for i in 0..member_count {
            // SAFETY: `members` points to `member_count` pointers (caller's
            // contract), so `add(i)` stays inside that array.
            let member = unsafe { *members.add(i) };
            // SAFETY: each entry is a NUL-terminated string (caller's contract).
            list.push(unsafe { arg(member, "member") }?);
        }
        let id = block_on(handle.account.create_group(name, &list))?
            .map_err(from_client(MicrobotStatus::Group))?;
        // SAFETY: the caller's contract on `out_conversation`.
        unsafe { write_string(out_conversation, &format!("g:{id}"), "out_conversation") }
    })
}

/// Encrypts the file at `path` (streaming) into a staging copy and queues
/// it as a message with `caption` (may be NULL), online or offline, like a
/// text: the upload and the send happen when connected, reported by the
/// `SENT` or `SEND_FAILED` event. Blocks while the file is encrypted.
/// `out_message_id` may be NULL.
///
/// # Safety
/// As [`microbot_account_send_text`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn microbot_account_send_file(
    account: *const MicrobotAccount,
    conversation_key: *const c_char,
    path: *const c_char,
    caption: *const c_char,
    out_message_id: *mut *mut c_char,
) -> MicrobotStatus {
    guard(|| {
        // SAFETY: the caller's contract on each argument.
        let (handle, to, path, caption) = unsafe {
            (
                account_ref(account)?,
                arg(conversation_key, "conversation")?,
                arg(path, "path")?,
                optional_arg(caption, "caption")?,
            )
        };
        let options = microbot_client::FileOptions {
            caption: caption.unwrap_or_default().to_owned(),
            ..Default::default()
        };
        let id = block_on(handle.account.send_attachment(
            &conversation(to)?,
            Path::new(path),
            options,
            |_| {},
        ))?
        .map_err(from_client(MicrobotStatus::Attachment))?;
        hand_id(out_message_id, &id)
    })
}

/// Downloads, verifies and decrypts the file of the received message
/// `message_id` (hex) to `dest_path`; `*out_size` (may be NULL) receives
/// its size. Needs the connection; blocks until done.
///
/// # Safety
/// As [`microbot_account_send_text`]; `out_size` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn microbot_account_download_attachment(
    account: *const MicrobotAccount,
    message_id_hex: *const c_char,
    dest_path: *const c_char,
    out_size: *mut u64,
) -> MicrobotStatus {
    guard(|| {
        // SAFETY: the caller's contract on each argument.
        let (handle, id, dest) = unsafe {
            (
                account_ref(account)?,
                arg(message_id_hex, "message_id")?,
                arg(dest_path, "dest_path")?,
            )
        };
        let size = block_on(handle.account.download_attachment(
            &message_id(id)?,
            Path::new(dest),
            |_| {},
        ))?
        .map_err(from_client(MicrobotStatus::Attachment))?;
        if out_size.is_null() {
            return Ok(());
        }
        // SAFETY: non-NULL and valid for a write (caller's contract).
        unsafe { write_out(out_size, size, "out_size") }
    })
}
