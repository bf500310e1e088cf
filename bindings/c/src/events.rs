//! Incoming events as C structs, delivered to a C callback on the
//! account's event thread (see the crate docs for the threading contract).

use std::ffi::{CString, c_char, c_void};
use std::ptr;
use std::thread::JoinHandle;

use microbot_client::{ConnectionState, Event, Events, ReceiptKind};
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
    /// A message left the outbox: `message_id`, `number` (server time ms).
    Sent = 8,
    /// A group message skipped some full queues: `message_id`, `number`
    /// (how many devices).
    NotDelivered = 9,
    /// A message was dropped from the outbox: `message_id`, `text` (why).
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
            Owned::new(K::SendFailed).id(message_id).text(reason)
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
