//! Incoming events as C structs, delivered to a C callback on the
//! account's event thread (see the crate docs for the threading contract).

use std::ffi::{CString, c_char, c_void};
use std::ptr;
use std::thread::JoinHandle;

use microbot_client::{ConnectionState, Event, Events, ReceiptKind, SendFailureReason};
use tokio::sync::oneshot;

use crate::ffi_str::c_string;

/// What a [`MicrobotEvent`] reports. Which fields are set for each kind is
/// listed on the kind; fields not listed are NULL, 0 or false.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MicrobotEventKind {
    /// A text or file message: `conversation`, `from` (author), `text`,
    /// `message_id`, `number` (sent-at ms), `flag` (it carries a file).
    Message = 1,
    /// A message was edited: `conversation`, `from`, `message_id` (the
    /// edited message), `text` (the text to show now).
    Edited = 2,
    /// A message was deleted: `conversation`, `from`, `message_id`.
    Deleted = 3,
    /// A reaction: `conversation`, `from`, `message_id` (the target),
    /// `text` (the emoji), `flag` (withdrawn).
    Reaction = 4,
    /// A receipt: `conversation`, `from`, `number` (how many messages),
    /// `flag` (true: read, false: delivered), `message_id` (the first).
    Receipt = 5,
    /// Typing: `conversation`, `from`, `flag` (started).
    Typing = 6,
    /// A group changed: `conversation`, `number` (its version).
    GroupChanged = 7,
    /// A message the application sent left the outbox: `message_id`,
    /// `number` (server time ms). Not for what the library sends by itself
    /// (automatic delivery receipts, group changes).
    Sent = 8,
    /// A group message skipped some full queues: `message_id`, `number`
    /// (how many devices).
    NotDelivered = 9,
    /// A message the application sent was dropped from the outbox:
    /// `message_id`, `text` (why, for people), `number` (why, for programs:
    /// a `MicrobotSendFailure`), `from` (the username concerned, for the
    /// causes that name one), `conversation` (the group, for the causes
    /// that name one).
    SendFailed = 10,
    /// Connecting to the server.
    Connecting = 11,
    /// Logged in and synchronised.
    Connected = 12,
    /// Disconnected: `text` (why), `number` (ms until the next attempt).
    Disconnected = 13,
    /// The server refused this device for good: `text` (why).
    Refused = 14,
    /// The connection was stopped by the application.
    Stopped = 15,
    /// A contact's identity key changed: `from` (the contact), `text` (the
    /// new safety number). Sending to them is blocked until acknowledged.
    SafetyNumberChanged = 16,
    /// An envelope could not be decrypted: `from`, `number` (its device),
    /// `text` (why).
    DecryptionFailed = 17,
    /// One-time prekeys were uploaded: `number` (how many).
    PrekeysRefilled = 18,
    /// A contact has a new device: `from`, `number` (the device id).
    DeviceAdded = 19,
    /// A kind of event newer than this library's C interface: `text` (the
    /// SDK's name for it). Update the library to receive its fields.
    Unrecognised = 20,
    /// After `Connected`: the messages queued while offline are in, the
    /// outbox drained.
    CaughtUp = 21,
}

/// Why a send failed: the `number` of a `MICROBOT_EVENT_KIND_SEND_FAILED`
/// event. Causes may be added in later versions: treat a value this list
/// does not name like `MICROBOT_SEND_FAILURE_OTHER` (its `text` says why).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MicrobotSendFailure {
    /// A cause newer than this library's C interface: read `text`.
    Other = 0,
    /// The server has no account with this username (`from`).
    UnknownAccount = 1,
    /// None of the account's (`from`) devices published keys.
    NoDevices = 2,
    /// The keys served for `from` were refused (a possible downgrade, a
    /// forged or rolled-back device list): `text` says which.
    KeysRefused = 3,
    /// The recipient's (`from`) devices kept changing during the send.
    DevicesKeepChanging = 4,
    /// The group's (`conversation`) member devices kept changing.
    GroupDevicesKeepChanging = 5,
    /// This device does not know the group (`conversation`).
    UnknownGroup = 6,
    /// This account is not a member of the group (`conversation`).
    NotGroupMember = 7,
    /// The sender key for the group (`conversation`) is exhausted.
    SenderKeyExhausted = 8,
    /// The server refused the send; `text` names its error code.
    ServerRefused = 9,
    /// The exchange with the server broke (an unusable answer).
    RequestFailed = 10,
    /// A queued message named no known conversation (a damaged store).
    UnknownDestination = 11,
    /// The staging copy of a queued file is gone or damaged: `text` says
    /// what; send the file again.
    FileUnavailable = 12,
}

impl MicrobotSendFailure {
    /// The code of `reason`, with the username or group it names.
    fn of(reason: &SendFailureReason) -> (Self, Option<&str>, Option<String>) {
        use MicrobotSendFailure as F;
        use SendFailureReason as R;
        let group = |id: &microbot_client::GroupId| Some(format!("g:{id}"));
        match reason {
            R::UnknownAccount { username } => (F::UnknownAccount, Some(username), None),
            R::NoDevices { username } => (F::NoDevices, Some(username), None),
            R::KeysRefused { username, .. } => (F::KeysRefused, Some(username), None),
            R::DevicesKeepChanging { username } => (F::DevicesKeepChanging, Some(username), None),
            R::GroupDevicesKeepChanging { group_id } => {
                (F::GroupDevicesKeepChanging, None, group(group_id))
            }
            R::UnknownGroup { group_id } => (F::UnknownGroup, None, group(group_id)),
            R::NotGroupMember { group_id } => (F::NotGroupMember, None, group(group_id)),
            R::SenderKeyExhausted { group_id } => (F::SenderKeyExhausted, None, group(group_id)),
            R::ServerRefused { .. } => (F::ServerRefused, None, None),
            R::RequestFailed { .. } => (F::RequestFailed, None, None),
            R::UnknownDestination { .. } => (F::UnknownDestination, None, None),
            R::FileUnavailable { .. } => (F::FileUnavailable, None, None),
            _ => (F::Other, None, None),
        }
    }
}

/// One event, borrowed for the duration of the callback.
#[repr(C)]
#[derive(Debug)]
pub struct MicrobotEvent {
    /// What happened; says which fields are set.
    pub kind: MicrobotEventKind,
    /// The conversation key: `u:<username>` or `g:<group id hex>`.
    pub conversation: *const c_char,
    /// The author, sender or contact.
    pub from: *const c_char,
    /// Text, emoji, reason or safety number.
    pub text: *const c_char,
    /// A message id, 32 hex digits.
    pub message_id: *const c_char,
    /// A number whose meaning depends on `kind`.
    pub number: u64,
    /// A flag whose meaning depends on `kind`.
    pub flag: bool,
}

/// The event callback: `user_data` as given to
/// `microbot_account_set_event_callback`, and the event (valid only during
/// the call).
pub type MicrobotEventCallback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, event: *const MicrobotEvent)>;

/// The strings an event points into.
struct Owned {
    kind: MicrobotEventKind,
    conversation: Option<CString>,
    from: Option<CString>,
    text: Option<CString>,
    message_id: Option<CString>,
    number: u64,
    flag: bool,
}

impl Owned {
    fn new(kind: MicrobotEventKind) -> Self {
        Self {
            kind,
            conversation: None,
            from: None,
            text: None,
            message_id: None,
            number: 0,
            flag: false,
        }
    }

    fn conversation(mut self, key: &str) -> Self {
        self.conversation = Some(c_string(key));
        self
    }
    fn from(mut self, who: &str) -> Self {
        self.from = Some(c_string(who));
        self
    }
    fn text(mut self, text: &str) -> Self {
        self.text = Some(c_string(text));
        self
    }
    fn id(mut self, id: &[u8]) -> Self {
        self.message_id = Some(c_string(&hex::encode(id)));
        self
    }
    fn number(mut self, number: u64) -> Self {
        self.number = number;
        self
    }
    fn flag(mut self, flag: bool) -> Self {
        self.flag = flag;
        self
    }

    fn borrow(&self) -> MicrobotEvent {
        let p = |s: &Option<CString>| s.as_ref().map_or(ptr::null(), |s| s.as_ptr());
        MicrobotEvent {
            kind: self.kind,
            conversation: p(&self.conversation),
            from: p(&self.from),
            text: p(&self.text),
            message_id: p(&self.message_id),
            number: self.number,
            flag: self.flag,
        }
    }
}

fn convert(event: &Event) -> Owned {
    use MicrobotEventKind as K;
    match event {
        Event::Message(m) => Owned::new(K::Message)
            .conversation(&m.conversation.key())
            .from(&m.author)
            .text(&m.text)
            .id(&m.message_id)
            .number(m.sent_at_ms)
            .flag(m.attachment.is_some()),
        Event::Edited {
            conversation,
            author,
            target,
            text,
        } => Owned::new(K::Edited)
            .conversation(&conversation.key())
            .from(author)
            .id(target)
            .text(text),
        Event::Deleted {
            conversation,
            author,
            target,
        } => Owned::new(K::Deleted)
            .conversation(&conversation.key())
            .from(author)
            .id(target),
        Event::Reaction {
            conversation,
            from,
            target,
            emoji,
            removed,
        } => Owned::new(K::Reaction)
            .conversation(&conversation.key())
            .from(from)
            .id(target)
            .text(emoji)
            .flag(*removed),
        Event::Receipt {
            conversation,
            from,
            kind,
            message_ids,
        } => {
            let owned = Owned::new(K::Receipt)
                .conversation(&conversation.key())
                .from(from)
                .number(message_ids.len() as u64)
                .flag(*kind == ReceiptKind::Read);
            match message_ids.first() {
                Some(first) => owned.id(first),
                None => owned,
            }
        }
        Event::Typing {
            conversation,
            from,
            started,
        } => Owned::new(K::Typing)
            .conversation(&conversation.key())
            .from(from)
            .flag(*started),
        Event::GroupChanged {
            group_id, version, ..
        } => Owned::new(K::GroupChanged)
            .conversation(&format!("g:{group_id}"))
            .number(*version),
        Event::Sent {
            message_id,
            server_timestamp_ms,
        } => Owned::new(K::Sent)
            .id(message_id)
            .number(*server_timestamp_ms),
        Event::NotDelivered {
            message_id,
            device_ids,
            ..
        } => Owned::new(K::NotDelivered)
            .id(message_id)
            .number(device_ids.len() as u64),
        Event::SendFailed { message_id, reason } => {
            let (code, username, group) = MicrobotSendFailure::of(reason);
            let mut owned = Owned::new(K::SendFailed)
                .id(message_id)
                .text(&reason.to_string())
                .number(code as u64);
            if let Some(username) = username {
                owned = owned.from(username);
            }
            if let Some(group) = group {
                owned = owned.conversation(&group);
            }
            owned
        }
        Event::Connection(state) => match state {
            ConnectionState::Connecting => Owned::new(K::Connecting),
            ConnectionState::Connected => Owned::new(K::Connected),
            ConnectionState::CaughtUp => Owned::new(K::CaughtUp),
            ConnectionState::Disconnected {
                reason,
                retry_in_ms,
            } => Owned::new(K::Disconnected)
                .text(reason)
                .number(*retry_in_ms),
            ConnectionState::Refused { reason } => Owned::new(K::Refused).text(reason),
            ConnectionState::Stopped => Owned::new(K::Stopped),
            _ => Owned::new(K::Unrecognised).text(event.kind()),
        },
        Event::SafetyNumberChanged {
            username,
            safety_number,
        } => Owned::new(K::SafetyNumberChanged)
            .from(username)
            .text(&safety_number.to_string()),
        Event::DecryptionFailed {
            sender,
            sender_device,
            reason,
        } => Owned::new(K::DecryptionFailed)
            .from(sender)
            .number(*sender_device)
            .text(reason),
        Event::PrekeysRefilled { uploaded } => {
            Owned::new(K::PrekeysRefilled).number(u64::from(*uploaded))
        }
        Event::DeviceAdded {
            username,
            device_id,
        } => Owned::new(K::DeviceAdded).from(username).number(*device_id),
        other => Owned::new(K::Unrecognised).text(other.kind()),
    }
}

/// The caller's `user_data`, moved to the event thread.
struct UserData(*mut c_void);

// SAFETY: the documented contract of microbot_account_set_event_callback:
// the caller guarantees `user_data` may be used from the event thread. The
// library never dereferences it; it only hands it back.
unsafe impl Send for UserData {}

/// The running event thread of one account.
pub(crate) struct Pump {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Pump {
    /// Starts the thread delivering `events` to `callback`.
    pub(crate) fn start(
        mut events: Events,
        callback: unsafe extern "C" fn(*mut c_void, *const MicrobotEvent),
        user_data: *mut c_void,
        runtime: &'static tokio::runtime::Runtime,
    ) -> std::io::Result<Self> {
        let (stop, mut stopped) = oneshot::channel();
        let user_data = UserData(user_data);
        let thread = std::thread::Builder::new()
            .name("microbot-events".into())
            .spawn(move || {
                let user_data = user_data;
                loop {
                    let next = runtime.block_on(async {
                        tokio::select! {
                            _ = &mut stopped => None,
                            event = events.next() => event,
                        }
                    });
                    let Some(event) = next else { break };
                    let owned = convert(&event);
                    let borrowed = owned.borrow();
                    // SAFETY: `callback` is the caller's function with the
                    // documented signature; `borrowed` points into `owned`,
                    // alive until after the call; `user_data` is handed back
                    // as given (the caller vouched for its use here).
                    unsafe { callback(user_data.0, &borrowed) };
                }
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it, unless called from it.
    pub(crate) fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;

    fn text(p: *const c_char) -> Option<String> {
        // SAFETY: every non-null pointer of a borrowed event points into
        // the `Owned` kept alive by the caller.
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }

    #[test]
    fn a_failed_send_carries_its_reason_as_text_and_code() {
        let owned = convert(&Event::SendFailed {
            message_id: [1; 16],
            reason: SendFailureReason::UnknownAccount {
                username: "frank".into(),
            },
        });
        let event = owned.borrow();
        assert_eq!(event.kind, MicrobotEventKind::SendFailed);
        assert_eq!(event.number, MicrobotSendFailure::UnknownAccount as u64);
        assert_eq!(text(event.text).as_deref(), Some("no account named frank"));
        assert_eq!(text(event.from).as_deref(), Some("frank"));
        assert_eq!(text(event.message_id), Some("01".repeat(16)));

        let group_id = microbot_client::GroupId::from_bytes([2; 16]);
        let owned = convert(&Event::SendFailed {
            message_id: [1; 16],
            reason: SendFailureReason::NotGroupMember { group_id },
        });
        let event = owned.borrow();
        assert_eq!(event.number, 7);
        assert_eq!(text(event.conversation), Some(format!("g:{group_id}")));
        assert!(event.from.is_null());
    }
}
