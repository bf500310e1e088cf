//! An application's own storage backend (issue 15, the embedder's API):
//! an account enrols and reopens over a backend the test supplies — a
//! wrapper around the memory backend that records every table it is asked
//! about and every blob it is given — and with a passphrase set the
//! backend never receives a message body in the clear.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use crate::common;

use common::*;
use microbot_client::store::{
    Backend, BackendTx, ContactRecord, GroupEntry, HistoryEntry, InboundKeyRecord, MemoryBackend,
    MessageRecord, OutboxRecord, ReceiptRecord, SendOutcomeRecord, SessionRecord, SharedKeyRecord,
    UploadRecord,
};
use microbot_client::{Account, Conversation, IdentitySource, OpenError, StoreConfig, StoreError};

/// What the backend saw.
#[derive(Default)]
struct Seen {
    /// The tables read or written.
    tables: BTreeSet<&'static str>,
    /// Every blob written (meta values, session states, bodies, payloads …).
    blobs: Vec<Vec<u8>>,
    /// The message bodies and outbox payloads written.
    contents: Vec<Vec<u8>>,
}

/// The memory backend, watched.
struct Recording {
    inner: MemoryBackend,
    seen: Arc<Mutex<Seen>>,
}

impl Backend for Recording {
    fn begin(&mut self) -> Result<Box<dyn BackendTx + '_>, StoreError> {
        Ok(Box::new(RecordingTx {
            inner: self.inner.begin()?,
            seen: Arc::clone(&self.seen),
        }))
    }
}

struct RecordingTx<'a> {
    inner: Box<dyn BackendTx + 'a>,
    seen: Arc<Mutex<Seen>>,
}

impl RecordingTx<'_> {
    fn asked(&self, table: &'static str) {
        self.seen.lock().unwrap().tables.insert(table);
    }

    fn given(&self, table: &'static str, blob: &[u8]) {
        let mut seen = self.seen.lock().unwrap();
        seen.tables.insert(table);
        seen.blobs.push(blob.to_vec());
        if matches!(table, "messages" | "outbox") {
            seen.contents.push(blob.to_vec());
        }
    }
}

impl BackendTx for RecordingTx<'_> {
    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.inner.commit()
    }
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.asked("meta");
        self.inner.meta(key)
    }
    fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.given("meta", value);
        self.inner.put_meta(key, value)
    }
    fn contact(&self, username: &str) -> Result<Option<ContactRecord>, StoreError> {
        self.asked("contacts");
        self.inner.contact(username)
    }
    fn contacts(&self) -> Result<Vec<ContactRecord>, StoreError> {
        self.asked("contacts");
        self.inner.contacts()
    }
    fn put_contact(&mut self, record: &ContactRecord) -> Result<(), StoreError> {
        self.asked("contacts");
        self.inner.put_contact(record)
    }
    fn sessions(
        &self,
        username: &str,
        device_id: Option<u64>,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        self.asked("sessions");
        self.inner.sessions(username, device_id)
    }
    fn last_session_use(&self) -> Result<u64, StoreError> {
        self.asked("sessions");
        self.inner.last_session_use()
    }
    fn put_session(&mut self, record: &SessionRecord) -> Result<(), StoreError> {
        self.given("sessions", &record.state);
        self.inner.put_session(record)
    }
    fn delete_session(
        &mut self,
        username: &str,
        device_id: u64,
        base_key: &[u8],
    ) -> Result<(), StoreError> {
        self.asked("sessions");
        self.inner.delete_session(username, device_id, base_key)
    }
    fn insert_message(&mut self, record: &MessageRecord) -> Result<Option<u64>, StoreError> {
        self.given("messages", &record.body);
        self.inner.insert_message(record)
    }
    fn message(
        &self,
        author: &str,
        message_id: &[u8],
    ) -> Result<Option<MessageRecord>, StoreError> {
        self.asked("messages");
        self.inner.message(author, message_id)
    }
    fn messages_with_id(&self, message_id: &[u8]) -> Result<Vec<MessageRecord>, StoreError> {
        self.asked("messages");
        self.inner.messages_with_id(message_id)
    }
    fn messages_about(&self, author: &str, id: &[u8]) -> Result<Vec<MessageRecord>, StoreError> {
        self.asked("messages");
        self.inner.messages_about(author, id)
    }
    fn messages_targeting(&self, target_id: &[u8]) -> Result<Vec<MessageRecord>, StoreError> {
        self.asked("messages");
        self.inner.messages_targeting(target_id)
    }
    fn messages_of_kind(&self, kind: &str) -> Result<Vec<MessageRecord>, StoreError> {
        self.asked("messages");
        self.inner.messages_of_kind(kind)
    }
    fn history_before(
        &self,
        conversation: &str,
        before: u64,
        limit: u64,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        self.asked("messages");
        self.inner.history_before(conversation, before, limit)
    }
    fn unshown(&self, after: u64, limit: u32) -> Result<Vec<MessageRecord>, StoreError> {
        self.asked("messages");
        self.inner.unshown(after, limit)
    }
    fn set_message_shown(&mut self, seq: u64, shown: bool) -> Result<(), StoreError> {
        self.asked("messages");
        self.inner.set_message_shown(seq, shown)
    }
    fn set_message_author_device(&mut self, seq: u64, device_id: u64) -> Result<(), StoreError> {
        self.asked("messages");
        self.inner.set_message_author_device(seq, device_id)
    }
    fn set_message_body(&mut self, seq: u64, body: &[u8]) -> Result<(), StoreError> {
        self.given("messages", body);
        self.inner.set_message_body(seq, body)
    }
    fn envelope_processed(&self, envelope_id: u64) -> Result<bool, StoreError> {
        self.asked("processed_envelopes");
        self.inner.envelope_processed(envelope_id)
    }
    fn insert_processed_envelope(
        &mut self,
        envelope_id: u64,
        processed_ms: u64,
    ) -> Result<(), StoreError> {
        self.asked("processed_envelopes");
        self.inner
            .insert_processed_envelope(envelope_id, processed_ms)
    }
    fn prune_processed_envelopes(&mut self, before_ms: u64) -> Result<(), StoreError> {
        self.asked("processed_envelopes");
        self.inner.prune_processed_envelopes(before_ms)
    }
    fn push_outbox(&mut self, record: &OutboxRecord) -> Result<u64, StoreError> {
        self.given("outbox", &record.payload);
        self.inner.push_outbox(record)
    }
    fn outbox(&self) -> Result<Vec<OutboxRecord>, StoreError> {
        self.asked("outbox");
        self.inner.outbox()
    }
    fn outbox_entry(&self, seq: u64) -> Result<Option<OutboxRecord>, StoreError> {
        self.asked("outbox");
        self.inner.outbox_entry(seq)
    }
    fn outbox_has_message(&self, message_id: &[u8]) -> Result<bool, StoreError> {
        self.asked("outbox");
        self.inner.outbox_has_message(message_id)
    }
    fn outbox_len(&self) -> Result<u64, StoreError> {
        self.asked("outbox");
        self.inner.outbox_len()
    }
    fn set_outbox_payload(&mut self, seq: u64, payload: &[u8]) -> Result<(), StoreError> {
        self.given("outbox", payload);
        self.inner.set_outbox_payload(seq, payload)
    }
    fn delete_outbox(&mut self, seq: u64) -> Result<(), StoreError> {
        self.asked("outbox");
        self.inner.delete_outbox(seq)
    }
    fn receipts(&self, message_id: &[u8]) -> Result<Vec<ReceiptRecord>, StoreError> {
        self.asked("receipts");
        self.inner.receipts(message_id)
    }
    fn put_receipt(&mut self, record: &ReceiptRecord) -> Result<(), StoreError> {
        self.asked("receipts");
        self.inner.put_receipt(record)
    }
    fn send_outcome(&self, message_id: &[u8]) -> Result<Option<SendOutcomeRecord>, StoreError> {
        self.asked("send_outcomes");
        self.inner.send_outcome(message_id)
    }
    fn put_send_outcome(&mut self, record: &SendOutcomeRecord) -> Result<(), StoreError> {
        self.asked("send_outcomes");
        self.inner.put_send_outcome(record)
    }
    fn group(&self, group_id: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.asked("groups");
        self.inner.group(group_id)
    }
    fn groups(&self) -> Result<Vec<GroupEntry>, StoreError> {
        self.asked("groups");
        self.inner.groups()
    }
    fn put_group(&mut self, group_id: &[u8], record: &[u8]) -> Result<(), StoreError> {
        self.given("groups", record);
        self.inner.put_group(group_id, record)
    }
    fn outbound_key(&self, group_id: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.asked("sender_keys_out");
        self.inner.outbound_key(group_id)
    }
    fn put_outbound_key(&mut self, group_id: &[u8], state: &[u8]) -> Result<(), StoreError> {
        self.given("sender_keys_out", state);
        self.inner.put_outbound_key(group_id, state)
    }
    fn delete_outbound_key(&mut self, group_id: &[u8]) -> Result<(), StoreError> {
        self.asked("sender_keys_out");
        self.inner.delete_outbound_key(group_id)
    }
    fn shared_keys(&self, group_id: &[u8]) -> Result<Vec<SharedKeyRecord>, StoreError> {
        self.asked("sender_key_shared");
        self.inner.shared_keys(group_id)
    }
    fn put_shared_key(&mut self, record: &SharedKeyRecord) -> Result<(), StoreError> {
        self.asked("sender_key_shared");
        self.inner.put_shared_key(record)
    }
    fn clear_shared_keys(&mut self, group_id: &[u8]) -> Result<(), StoreError> {
        self.asked("sender_key_shared");
        self.inner.clear_shared_keys(group_id)
    }
    fn inbound_key(
        &self,
        group_id: &[u8],
        username: &str,
        device_id: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.asked("sender_keys_in");
        self.inner.inbound_key(group_id, username, device_id)
    }
    fn put_inbound_key(&mut self, record: &InboundKeyRecord) -> Result<(), StoreError> {
        self.given("sender_keys_in", &record.state);
        self.inner.put_inbound_key(record)
    }
    fn delete_inbound_keys(&mut self, group_id: &[u8]) -> Result<(), StoreError> {
        self.asked("sender_keys_in");
        self.inner.delete_inbound_keys(group_id)
    }
    fn upload(&self, message_id: &[u8]) -> Result<Option<UploadRecord>, StoreError> {
        self.asked("uploads");
        self.inner.upload(message_id)
    }
    fn uploads(&self) -> Result<Vec<UploadRecord>, StoreError> {
        self.asked("uploads");
        self.inner.uploads()
    }
    fn insert_upload(&mut self, record: &UploadRecord) -> Result<(), StoreError> {
        self.asked("uploads");
        self.inner.insert_upload(record)
    }
    fn set_upload_attachment_id(
        &mut self,
        message_id: &[u8],
        attachment_id: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        self.asked("uploads");
        self.inner
            .set_upload_attachment_id(message_id, attachment_id)
    }
    fn delete_upload(&mut self, message_id: &[u8]) -> Result<(), StoreError> {
        self.asked("uploads");
        self.inner.delete_upload(message_id)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

const SECRET_TEXT: &str = "meet at the north gate at nine";
const SECRET_REPLY: &str = "the north gate it is";

/// Alice runs on the application's backend with a passphrase, Bob on one
/// without: texts go both ways and stay in Alice's history, her account
/// reopens over the same backend (and only with the passphrase), and her
/// backend never held a message body in the clear (Bob's, unsealed, did).
#[tokio::test(flavor = "multi_thread")]
async fn an_account_runs_on_the_applications_backend_and_it_sees_no_plaintext() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let staging = tempfile::tempdir().unwrap();
    let own = StoreConfig::from_backend(
        Recording {
            inner: MemoryBackend::new(),
            seen: Arc::clone(&seen),
        },
        staging.path().join("uploads"),
    )
    .with_kdf(CHEAP_KDF)
    .with_passphrase("app passphrase");
    assert!(!format!("{own:?}").contains("app passphrase"));

    let (alice, mut alice_events) = try_enrol(
        &server.config,
        &own,
        &mut alice_user,
        IdentitySource::New,
        fast_config(),
    )
    .await
    .unwrap();
    // Bob's backend, without a passphrase, shows the recording would
    // catch a body in the clear.
    let bob_seen = Arc::new(Mutex::new(Seen::default()));
    let bob_store = StoreConfig::from_backend(
        Recording {
            inner: MemoryBackend::new(),
            seen: Arc::clone(&bob_seen),
        },
        staging.path().join("bob-uploads"),
    );
    let (bob, mut bob_events) = try_enrol(
        &server.config,
        &bob_store,
        &mut bob_user,
        IdentitySource::New,
        fast_config(),
    )
    .await
    .unwrap();
    alice.connect();
    bob.connect();
    wait_connected(&mut alice_events).await;
    wait_connected(&mut bob_events).await;

    let to_bob = Conversation::Direct("bob".into());
    let to_alice = Conversation::Direct("alice".into());
    alice.send_text(&to_bob, SECRET_TEXT).unwrap();
    assert_eq!(next_text(&mut bob_events).await.text, SECRET_TEXT);
    bob.send_text(&to_alice, SECRET_REPLY).unwrap();
    assert_eq!(next_text(&mut alice_events).await.text, SECRET_REPLY);
    assert_eq!(alice.history(&to_bob, 10).unwrap().len(), 2);

    // The same backend, a second account at once: refused.
    match Account::open(&own, fast_config()) {
        Err(OpenError::InUse { .. }) => {}
        other => panic!("expected InUse, got {:?}", other.map(|_| ())),
    }
    alice.disconnect().await;
    drop(alice);

    let wrong = own.clone().with_passphrase("not it");
    match Account::open(&wrong, fast_config()) {
        Err(OpenError::WrongPassphrase) => {}
        other => panic!("expected WrongPassphrase, got {:?}", other.map(|_| ())),
    }
    let (reopened, _events) = Account::open(&own, fast_config()).unwrap();
    assert_eq!(reopened.username(), "alice");
    let history = reopened.history(&to_bob, 10).unwrap();
    assert_eq!(history.len(), 2, "the history is in the backend");

    {
        let seen = seen.lock().unwrap();
        for table in ["meta", "contacts", "sessions", "messages", "outbox"] {
            assert!(
                seen.tables.contains(table),
                "{table} never used: {:?}",
                seen.tables
            );
        }
        assert!(seen.contents.len() >= 2, "bodies and payloads were written");
        for content in &seen.contents {
            assert_eq!(content.first(), Some(&1), "sealed (version byte 1)");
        }
        for blob in &seen.blobs {
            for plain in [SECRET_TEXT, SECRET_REPLY] {
                assert!(
                    !contains(blob, plain.as_bytes()),
                    "the backend saw {plain:?}"
                );
            }
        }
    }
    {
        let bob_seen = bob_seen.lock().unwrap();
        assert!(
            bob_seen
                .contents
                .iter()
                .any(|c| contains(c, SECRET_TEXT.as_bytes())),
            "without a passphrase the body is stored as it is"
        );
    }
    bob.disconnect().await;
    server.stop().await;
}
