//! A backend in plain Rust collections ([`MemoryBackend`]): what
//! [`crate::StoreConfig::in_memory`] runs on, and a complete example of a
//! [`Backend`]. Nothing of it is written anywhere; it is gone when dropped.
//!
//! A transaction writes in place and keeps an undo log: each write records
//! how to put back what it replaced, and a transaction dropped without
//! commit replays the log backwards, so the state is exactly what it was.
//!
//! Not owned here: the rules (the store's typed transaction).

use std::collections::BTreeMap;

use super::backend::{
    Backend, BackendTx, ContactRecord, GroupEntry, HISTORY_KINDS, HistoryEntry, InboundKeyRecord,
    MessageRecord, OutboxRecord, ReceiptRecord, SendOutcomeRecord, SessionRecord, SharedKeyRecord,
    UploadRecord,
};
use crate::error::{DatabaseError, StoreError};

/// A store backend in plain Rust collections: nothing of it is written
/// anywhere, and it is gone when dropped. A transaction writes in place
/// and keeps an undo log, replayed backwards when it is dropped without
/// commit. [`crate::StoreConfig::in_memory`] runs on one; wrapped in
/// [`crate::StoreConfig::from_backend`] it can be opened again (tests).
#[derive(Default)]
pub struct MemoryBackend {
    state: State,
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("messages", &self.state.messages.len())
            .field("outbox", &self.state.outbox.len())
            .finish_non_exhaustive()
    }
}

type Key3 = (Vec<u8>, String, u64);

/// Every table.
#[derive(Default)]
struct State {
    meta: BTreeMap<String, Vec<u8>>,
    contacts: BTreeMap<String, ContactRecord>,
    /// By (username, device id, base key).
    sessions: BTreeMap<(String, u64, Vec<u8>), SessionRecord>,
    /// By seq.
    messages: BTreeMap<u64, MessageRecord>,
    /// (author, message id) → seq.
    message_keys: BTreeMap<(String, Vec<u8>), u64>,
    /// (conversation, seq) of the history kinds.
    history: BTreeMap<(String, u64), ()>,
    /// (message id, seq), (target id, seq) and (kind, seq) of every
    /// message: the lookups by id, target and kind (rows are never removed
    /// and these fields never change).
    by_id: BTreeMap<(Vec<u8>, u64), ()>,
    by_target: BTreeMap<(Vec<u8>, u64), ()>,
    by_kind: BTreeMap<(String, u64), ()>,
    /// The last seq given to a message, and to an outbox row.
    counters: BTreeMap<&'static str, u64>,
    processed: BTreeMap<u64, u64>,
    outbox: BTreeMap<u64, OutboxRecord>,
    receipts: BTreeMap<(Vec<u8>, String), ReceiptRecord>,
    send_outcomes: BTreeMap<Vec<u8>, SendOutcomeRecord>,
    groups: BTreeMap<Vec<u8>, Vec<u8>>,
    outbound_keys: BTreeMap<Vec<u8>, Vec<u8>>,
    shared: BTreeMap<Key3, SharedKeyRecord>,
    inbound: BTreeMap<Key3, InboundKeyRecord>,
    uploads: BTreeMap<Vec<u8>, UploadRecord>,
}

/// One step back: restores what a write replaced.
type Undo = Box<dyn FnOnce(&mut State) + Send>;

/// Which table of [`State`].
type Table<K, V> = fn(&mut State) -> &mut BTreeMap<K, V>;

const MESSAGE_SEQ: &str = "messages";
const OUTBOX_SEQ: &str = "outbox";

impl Backend for MemoryBackend {
    fn begin(&mut self) -> Result<Box<dyn BackendTx + '_>, StoreError> {
        Ok(Box::new(MemoryTx {
            state: &mut self.state,
            undo: Vec::new(),
        }))
    }
}

/// A transaction: writes in place, undone on drop unless committed.
struct MemoryTx<'a> {
    state: &'a mut State,
    undo: Vec<Undo>,
}

impl Drop for MemoryTx<'_> {
    fn drop(&mut self) {
        while let Some(step) = self.undo.pop() {
            step(self.state);
        }
    }
}

impl MemoryTx<'_> {
    /// Sets `key` in `table`, remembering what was there.
    fn put<K, V>(&mut self, table: Table<K, V>, key: K, value: V)
    where
        K: Ord + Clone + Send + 'static,
        V: Send + 'static,
    {
        let old = table(self.state).insert(key.clone(), value);
        self.undo.push(restore(table, key, old));
    }

    /// Removes `key` from `table`, remembering what was there.
    fn remove<K, V>(&mut self, table: Table<K, V>, key: &K)
    where
        K: Ord + Clone + Send + 'static,
        V: Send + 'static,
    {
        if let Some(old) = table(self.state).remove(key) {
            self.undo.push(restore(table, key.clone(), Some(old)));
        }
    }

    /// Removes every key of `table` that `doomed` picks.
    fn remove_where<K, V>(&mut self, table: Table<K, V>, doomed: impl Fn(&K) -> bool)
    where
        K: Ord + Clone + Send + 'static,
        V: Send + 'static,
    {
        let keys: Vec<K> = table(self.state)
            .keys()
            .filter(|k| doomed(k))
            .cloned()
            .collect();
        for key in &keys {
            self.remove(table, key);
        }
    }

    /// The next number of the counter `name`.
    fn next(&mut self, name: &'static str) -> u64 {
        let seq = self.state.counters.get(name).copied().unwrap_or(0) + 1;
        self.put(|s| &mut s.counters, name, seq);
        seq
    }

    /// Changes the message `seq` with `change`.
    fn change_message(&mut self, seq: u64, change: impl FnOnce(&mut MessageRecord)) {
        if let Some(mut row) = self.state.messages.get(&seq).cloned() {
            change(&mut row);
            self.put(|s| &mut s.messages, seq, row);
        }
    }
}

fn restore<K, V>(table: Table<K, V>, key: K, old: Option<V>) -> Undo
where
    K: Ord + Send + 'static,
    V: Send + 'static,
{
    Box::new(move |state| {
        let table = table(state);
        match old {
            Some(value) => {
                table.insert(key, value);
            }
            None => {
                table.remove(&key);
            }
        }
    })
}

/// The messages an index lists under `key`, in store order.
fn indexed<'s, K: Ord + Clone>(
    state: &'s State,
    index: &'s BTreeMap<(K, u64), ()>,
    key: K,
) -> impl Iterator<Item = MessageRecord> + 's {
    index
        .range((key.clone(), 0)..=(key, u64::MAX))
        .filter_map(|((_, seq), ())| state.messages.get(seq))
        .cloned()
}

impl BackendTx for MemoryTx<'_> {
    fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        self.undo.clear();
        Ok(())
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.state.meta.get(key).cloned())
    }

    fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.put(|s| &mut s.meta, key.to_owned(), value.to_vec());
        Ok(())
    }

    fn contact(&self, username: &str) -> Result<Option<ContactRecord>, StoreError> {
        Ok(self.state.contacts.get(username).cloned())
    }

    fn contacts(&self) -> Result<Vec<ContactRecord>, StoreError> {
        Ok(self.state.contacts.values().cloned().collect())
    }

    fn put_contact(&mut self, record: &ContactRecord) -> Result<(), StoreError> {
        self.put(|s| &mut s.contacts, record.username.clone(), record.clone());
        Ok(())
    }

    fn sessions(
        &self,
        username: &str,
        device_id: Option<u64>,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        Ok(self
            .state
            .sessions
            .values()
            .filter(|s| s.username == username && device_id.is_none_or(|d| d == s.device_id))
            .cloned()
            .collect())
    }

    fn last_session_use(&self) -> Result<u64, StoreError> {
        Ok(self
            .state
            .sessions
            .values()
            .map(|s| s.used_seq)
            .max()
            .unwrap_or(0))
    }

    fn put_session(&mut self, record: &SessionRecord) -> Result<(), StoreError> {
        let key = (
            record.username.clone(),
            record.device_id,
            record.base_key.clone(),
        );
        self.put(|s| &mut s.sessions, key, record.clone());
        Ok(())
    }

    fn delete_session(
        &mut self,
        username: &str,
        device_id: u64,
        base_key: &[u8],
    ) -> Result<(), StoreError> {
        let key = (username.to_owned(), device_id, base_key.to_vec());
        self.remove(|s| &mut s.sessions, &key);
        Ok(())
    }

    fn insert_message(&mut self, record: &MessageRecord) -> Result<Option<u64>, StoreError> {
        let key = (record.author.clone(), record.message_id.clone());
        if self.state.message_keys.contains_key(&key) {
            return Ok(None);
        }
        let seq = self.next(MESSAGE_SEQ);
        let mut row = record.clone();
        row.seq = seq;
        if HISTORY_KINDS.contains(&row.kind.as_str()) {
            self.put(|s| &mut s.history, (row.conversation.clone(), seq), ());
        }
        self.put(|s| &mut s.by_id, (row.message_id.clone(), seq), ());
        if let Some(target) = &row.target_id {
            self.put(|s| &mut s.by_target, (target.clone(), seq), ());
        }
        self.put(|s| &mut s.by_kind, (row.kind.clone(), seq), ());
        self.put(|s| &mut s.messages, seq, row);
        self.put(|s| &mut s.message_keys, key, seq);
        Ok(Some(seq))
    }

    fn message(
        &self,
        author: &str,
        message_id: &[u8],
    ) -> Result<Option<MessageRecord>, StoreError> {
        let key = (author.to_owned(), message_id.to_vec());
        Ok(self
            .state
            .message_keys
            .get(&key)
            .and_then(|seq| self.state.messages.get(seq))
            .cloned())
    }

    fn messages_with_id(&self, message_id: &[u8]) -> Result<Vec<MessageRecord>, StoreError> {
        Ok(indexed(self.state, &self.state.by_id, message_id.to_vec()).collect())
    }

    fn messages_about(&self, author: &str, id: &[u8]) -> Result<Vec<MessageRecord>, StoreError> {
        let mut rows: Vec<MessageRecord> = indexed(self.state, &self.state.by_target, id.to_vec())
            .filter(|m| m.author == author && m.message_id != id)
            .collect();
        rows.extend(self.message(author, id)?);
        Ok(rows)
    }

    fn messages_targeting(&self, target_id: &[u8]) -> Result<Vec<MessageRecord>, StoreError> {
        Ok(indexed(self.state, &self.state.by_target, target_id.to_vec()).collect())
    }

    fn messages_of_kind(&self, kind: &str) -> Result<Vec<MessageRecord>, StoreError> {
        Ok(indexed(self.state, &self.state.by_kind, kind.to_owned()).collect())
    }

    fn history_before(
        &self,
        conversation: &str,
        before: u64,
        limit: u64,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let range = (conversation.to_owned(), 0)..(conversation.to_owned(), before);
        Ok(self
            .state
            .history
            .range(range)
            .rev()
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .filter_map(|((_, seq), ())| self.state.messages.get(seq))
            .map(|m| HistoryEntry {
                seq: m.seq,
                author: m.author.clone(),
                message_id: m.message_id.clone(),
            })
            .collect())
    }

    fn unshown(&self, after: u64, limit: u32) -> Result<Vec<MessageRecord>, StoreError> {
        Ok(self
            .state
            .messages
            .range(after.saturating_add(1)..)
            .map(|(_, m)| m)
            .filter(|m| !m.shown && m.seq > after)
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }

    fn set_message_shown(&mut self, seq: u64, shown: bool) -> Result<(), StoreError> {
        self.change_message(seq, |m| m.shown = shown);
        Ok(())
    }

    fn set_message_author_device(&mut self, seq: u64, device_id: u64) -> Result<(), StoreError> {
        self.change_message(seq, |m| m.author_device = device_id);
        Ok(())
    }

    fn set_message_body(&mut self, seq: u64, body: &[u8]) -> Result<(), StoreError> {
        self.change_message(seq, |m| m.body = body.to_vec());
        Ok(())
    }

    fn envelope_processed(&self, envelope_id: u64) -> Result<bool, StoreError> {
        Ok(self.state.processed.contains_key(&envelope_id))
    }

    fn insert_processed_envelope(
        &mut self,
        envelope_id: u64,
        processed_ms: u64,
    ) -> Result<(), StoreError> {
        self.put(|s| &mut s.processed, envelope_id, processed_ms);
        Ok(())
    }

    fn prune_processed_envelopes(&mut self, before_ms: u64) -> Result<(), StoreError> {
        let old: Vec<u64> = self
            .state
            .processed
            .iter()
            .filter(|&(_, &ms)| ms < before_ms)
            .map(|(&id, _)| id)
            .collect();
        for id in &old {
            self.remove(|s| &mut s.processed, id);
        }
        Ok(())
    }

    fn push_outbox(&mut self, record: &OutboxRecord) -> Result<u64, StoreError> {
        let seq = self.next(OUTBOX_SEQ);
        let mut row = record.clone();
        row.seq = seq;
        self.put(|s| &mut s.outbox, seq, row);
        Ok(seq)
    }

    fn outbox(&self) -> Result<Vec<OutboxRecord>, StoreError> {
        Ok(self.state.outbox.values().cloned().collect())
    }

    fn outbox_entry(&self, seq: u64) -> Result<Option<OutboxRecord>, StoreError> {
        Ok(self.state.outbox.get(&seq).cloned())
    }

    fn outbox_has_message(&self, message_id: &[u8]) -> Result<bool, StoreError> {
        Ok(self
            .state
            .outbox
            .values()
            .any(|r| r.message_id == message_id))
    }

    fn outbox_len(&self) -> Result<u64, StoreError> {
        Ok(u64::try_from(self.state.outbox.len()).unwrap_or(u64::MAX))
    }

    fn set_outbox_payload(&mut self, seq: u64, payload: &[u8]) -> Result<(), StoreError> {
        if let Some(mut row) = self.state.outbox.get(&seq).cloned() {
            row.payload = payload.to_vec();
            self.put(|s| &mut s.outbox, seq, row);
        }
        Ok(())
    }

    fn delete_outbox(&mut self, seq: u64) -> Result<(), StoreError> {
        self.remove(|s| &mut s.outbox, &seq);
        Ok(())
    }

    fn receipts(&self, message_id: &[u8]) -> Result<Vec<ReceiptRecord>, StoreError> {
        Ok(self
            .state
            .receipts
            .values()
            .filter(|r| r.message_id == message_id)
            .cloned()
            .collect())
    }

    fn put_receipt(&mut self, record: &ReceiptRecord) -> Result<(), StoreError> {
        let key = (record.message_id.clone(), record.reader.clone());
        self.put(|s| &mut s.receipts, key, record.clone());
        Ok(())
    }

    fn send_outcome(&self, message_id: &[u8]) -> Result<Option<SendOutcomeRecord>, StoreError> {
        Ok(self.state.send_outcomes.get(message_id).cloned())
    }

    fn put_send_outcome(&mut self, record: &SendOutcomeRecord) -> Result<(), StoreError> {
        self.put(
            |s| &mut s.send_outcomes,
            record.message_id.clone(),
            record.clone(),
        );
        Ok(())
    }

    fn group(&self, group_id: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.state.groups.get(group_id).cloned())
    }

    fn groups(&self) -> Result<Vec<GroupEntry>, StoreError> {
        Ok(self
            .state
            .groups
            .iter()
            .map(|(id, record)| GroupEntry {
                group_id: id.clone(),
                record: record.clone(),
            })
            .collect())
    }

    fn put_group(&mut self, group_id: &[u8], record: &[u8]) -> Result<(), StoreError> {
        self.put(|s| &mut s.groups, group_id.to_vec(), record.to_vec());
        Ok(())
    }

    fn outbound_key(&self, group_id: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.state.outbound_keys.get(group_id).cloned())
    }

    fn put_outbound_key(&mut self, group_id: &[u8], state: &[u8]) -> Result<(), StoreError> {
        self.put(|s| &mut s.outbound_keys, group_id.to_vec(), state.to_vec());
        Ok(())
    }

    fn delete_outbound_key(&mut self, group_id: &[u8]) -> Result<(), StoreError> {
        self.remove(|s| &mut s.outbound_keys, &group_id.to_vec());
        Ok(())
    }

    fn shared_keys(&self, group_id: &[u8]) -> Result<Vec<SharedKeyRecord>, StoreError> {
        Ok(self
            .state
            .shared
            .values()
            .filter(|r| r.group_id == group_id)
            .cloned()
            .collect())
    }

    fn put_shared_key(&mut self, record: &SharedKeyRecord) -> Result<(), StoreError> {
        let key = (
            record.group_id.clone(),
            record.username.clone(),
            record.device_id,
        );
        self.put(|s| &mut s.shared, key, record.clone());
        Ok(())
    }

    fn clear_shared_keys(&mut self, group_id: &[u8]) -> Result<(), StoreError> {
        self.remove_where(|s| &mut s.shared, |(g, _, _)| g == group_id);
        Ok(())
    }

    fn inbound_key(
        &self,
        group_id: &[u8],
        username: &str,
        device_id: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let key = (group_id.to_vec(), username.to_owned(), device_id);
        Ok(self.state.inbound.get(&key).map(|r| r.state.clone()))
    }

    fn put_inbound_key(&mut self, record: &InboundKeyRecord) -> Result<(), StoreError> {
        let key = (
            record.group_id.clone(),
            record.username.clone(),
            record.device_id,
        );
        self.put(|s| &mut s.inbound, key, record.clone());
        Ok(())
    }

    fn delete_inbound_keys(&mut self, group_id: &[u8]) -> Result<(), StoreError> {
        self.remove_where(|s| &mut s.inbound, |(g, _, _)| g == group_id);
        Ok(())
    }

    fn upload(&self, message_id: &[u8]) -> Result<Option<UploadRecord>, StoreError> {
        Ok(self.state.uploads.get(message_id).cloned())
    }

    fn uploads(&self) -> Result<Vec<UploadRecord>, StoreError> {
        Ok(self.state.uploads.values().cloned().collect())
    }

    fn insert_upload(&mut self, record: &UploadRecord) -> Result<(), StoreError> {
        if self.state.uploads.contains_key(&record.message_id)
            || self
                .state
                .uploads
                .values()
                .any(|u| u.staging == record.staging)
        {
            return Err(StoreError::Database(DatabaseError::new(
                "an upload with this message id or staging name is recorded already",
            )));
        }
        self.put(
            |s| &mut s.uploads,
            record.message_id.clone(),
            record.clone(),
        );
        Ok(())
    }

    fn set_upload_attachment_id(
        &mut self,
        message_id: &[u8],
        attachment_id: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        if let Some(mut row) = self.state.uploads.get(message_id).cloned() {
            row.attachment_id = attachment_id.map(<[u8]>::to_vec);
            self.put(|s| &mut s.uploads, message_id.to_vec(), row);
        }
        Ok(())
    }

    fn delete_upload(&mut self, message_id: &[u8]) -> Result<(), StoreError> {
        self.remove(|s| &mut s.uploads, &message_id.to_vec());
        Ok(())
    }
}
