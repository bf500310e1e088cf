//! The store's behaviour, written once and run against every backend
//! (`suite!` at the bottom makes one `#[test]` per behaviour and backend):
//! what the typed transaction promises must not depend on where the rows
//! live.

use std::path::Path;

use microbot_crypto::sender_key::{GroupId as CryptoGroupId, OutboundSenderKey, SenderKeyRecord};
use microbot_crypto::{IdentityKeyPair, Session};
use zeroize::Zeroizing;

use super::{Contact, MemoryBackend, MessageRow, OutboxRow, PendingUpload, SendOutcome, Store};
use crate::config::{KdfParams, StoreConfig};
use crate::error::{OpenError, StoreError};
use crate::groups::{GROUP_RECORD_VERSION, GroupId, GroupRecord};

/// Where a test's store lives, and how it is configured.
struct Fixture {
    _dir: tempfile::TempDir,
    config: StoreConfig,
}

impl Fixture {
    fn create(&self) -> Store {
        Store::create(&self.config).expect("create").keep()
    }

    fn open(&self) -> Result<Store, OpenError> {
        Store::open(&self.config)
    }

    /// The same store with another passphrase (or none).
    fn with_passphrase(&self, passphrase: Option<&str>) -> StoreConfig {
        let mut config = self.config.clone();
        config.passphrase = passphrase.map(|p| Zeroizing::new(p.to_owned()));
        config
    }
}

type Make = fn(Option<&str>) -> Fixture;

fn configured(config: StoreConfig, dir: tempfile::TempDir, passphrase: Option<&str>) -> Fixture {
    let config = config.with_kdf(KdfParams::new(64, 1, 1));
    let config = match passphrase {
        Some(p) => config.with_passphrase(p),
        None => config,
    };
    Fixture { _dir: dir, config }
}

/// A store in a SQLite file.
fn on_sqlite(passphrase: Option<&str>) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = StoreConfig::new(dir.path().join("store.db"));
    configured(config, dir, passphrase)
}

/// A store on a [`MemoryBackend`] (supplied as an application's would be,
/// so it can be opened again).
fn on_memory(passphrase: Option<&str>) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = StoreConfig::from_backend(MemoryBackend::new(), dir.path().join("staging"));
    configured(config, dir, passphrase)
}

fn message(conversation: &str, author: &str, id: u8, kind: &str) -> MessageRow {
    MessageRow {
        conversation: conversation.to_owned(),
        author: author.to_owned(),
        message_id: [id; 16],
        target_id: None,
        kind: kind.to_owned(),
        sent_at_ms: u64::from(id),
        received_at_ms: 1000 + u64::from(id),
        content: Zeroizing::new(vec![id, 0xAA]),
    }
}

fn about(mut row: MessageRow, target: u8) -> MessageRow {
    row.target_id = Some([target; 16]);
    row
}

fn ids(rows: &[MessageRow]) -> Vec<u8> {
    rows.iter().map(|r| r.message_id[0]).collect()
}

fn session_with(us: &IdentityKeyPair, them: &IdentityKeyPair) -> Session {
    Session::initiate(&mut rand::rng(), us, &crate::test_fixtures::bundle(them)).expect("session")
}

fn run(store: &mut Store, f: impl FnOnce(&super::Tx<'_>) -> Result<(), StoreError>) {
    store.tx(f).expect("tx");
}

// ---- the behaviours ----

fn contacts(make: Make) {
    let fixture = make(None);
    let mut store = fixture.create();
    run(&mut store, |tx| {
        assert!(tx.contact("bob")?.is_none());
        let bob = Contact {
            identity: [1; 32],
            pending: None,
            devices_checked_ms: 5,
        };
        tx.set_contact("carol", &bob)?;
        tx.set_contact("bob", &bob)?;
        let changed = Contact {
            pending: Some([2; 32]),
            devices_checked_ms: u64::MAX,
            ..bob.clone()
        };
        tx.set_contact("bob", &changed)?;
        assert!(tx.contact("bob")? == Some(changed.clone()));
        let names: Vec<String> = tx.contacts()?.into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["bob", "carol"]);
        assert!(tx.contacts()?[0].1 == changed);
        Ok(())
    });
}

fn sessions(make: Make) {
    let fixture = make(None);
    let mut store = fixture.create();
    let us = IdentityKeyPair::generate(&mut rand::rng());
    let old = IdentityKeyPair::generate(&mut rand::rng());
    let new = IdentityKeyPair::generate(&mut rand::rng());
    run(&mut store, |tx| {
        let made: Vec<Session> = (0..6).map(|_| session_with(&us, &old)).collect();
        for session in &made {
            tx.save_session("bob", 1, session)?;
        }
        tx.save_session("bob", 2, &session_with(&us, &new))?;
        let kept = tx.sessions("bob", 1)?;
        assert_eq!(kept.len(), 4, "four kept per device");
        let order: Vec<[u8; 32]> = kept.iter().map(|s| *s.session.base_key()).collect();
        let newest: Vec<[u8; 32]> = made.iter().rev().take(4).map(|s| *s.base_key()).collect();
        assert_eq!(order, newest, "newest first");
        // Saving an older one again makes it the one used.
        tx.save_session("bob", 1, &made[3])?;
        assert_eq!(
            tx.sessions("bob", 1)?[0].session.base_key(),
            made[3].base_key()
        );
        assert_eq!(
            tx.session_identity("bob", 1)?,
            Some(old.public().to_bytes())
        );
        assert_eq!(tx.session_devices("bob")?, vec![1, 2]);
        assert_eq!(tx.session_devices("carol")?, Vec::<u64>::new());
        tx.delete_sessions_not_of("bob", &new.public().to_bytes())?;
        assert_eq!(tx.session_devices("bob")?, vec![2]);
        tx.delete_device("bob", 2)?;
        assert_eq!(tx.session_identity("bob", 2)?, None);
        assert!(tx.sessions("bob", 2)?.is_empty());
        Ok(())
    });
}

fn duplicate_messages(make: Make) {
    let fixture = make(None);
    let mut store = fixture.create();
    run(&mut store, |tx| {
        assert!(tx.insert_message(&message("u:bob", "bob", 1, "text"))?);
        let mut again = message("u:bob", "bob", 1, "text");
        again.content = Zeroizing::new(b"other".to_vec());
        assert!(!tx.insert_message(&again)?, "a duplicate");
        // The same id from another author is another message.
        assert!(tx.insert_message(&message("u:bob", "alice", 1, "text"))?);
        let events = tx.message_events("bob", &[1; 16])?;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].content.as_slice(), &[1, 0xAA]);
        Ok(())
    });
}

fn message_events(make: Make) {
    let fixture = make(None);
    let mut store = fixture.create();
    run(&mut store, |tx| {
        tx.insert_message(&message("u:bob", "alice", 1, "text"))?;
        tx.insert_message(&about(message("u:bob", "alice", 2, "edit"), 1))?;
        tx.insert_message(&about(message("u:bob", "bob", 3, "edit"), 1))?;
        tx.insert_message(&about(message("u:bob", "bob", 4, "reaction"), 1))?;
        tx.insert_message(&about(message("u:bob", "alice", 5, "delete"), 1))?;
        tx.insert_message(&about(message("u:bob", "alice", 6, "read_receipt"), 1))?;
        let events = tx.message_events("alice", &[1; 16])?;
        assert_eq!(ids(&events), vec![1, 2, 5]);
        assert_eq!(events[1].target_id, Some([1; 16]));
        assert_eq!(events[1].kind, "edit");
        assert_eq!((events[1].sent_at_ms, events[1].received_at_ms), (2, 1002));
        let first = tx.history("u:bob", 1)?[0].seq;
        assert_eq!(
            ids(&tx.message_events_until("alice", &[1; 16], first)?),
            vec![1]
        );
        assert!(tx.authored_in("alice", &[1; 16], "u:bob")?);
        assert!(!tx.authored_in("alice", &[1; 16], "u:carol")?);
        assert!(!tx.authored_in("alice", &[2; 16], "u:bob")?, "an edit");
        Ok(())
    });
}

fn receipts_and_reactions(make: Make) {
    let fixture = make(None);
    let mut store = fixture.create();
    run(&mut store, |tx| {
        tx.insert_message(&message("u:bob", "alice", 1, "text"))?;
        tx.insert_message(&about(message("u:bob", "bob", 2, "read_receipt"), 1))?;
        tx.insert_message(&about(message("u:bob", "bob", 3, "reaction"), 1))?;
        tx.insert_message(&about(message("u:bob", "bob", 4, "delivery_receipt"), 1))?;
        tx.insert_message(&about(message("g:x", "carol", 5, "reaction"), 1))?;
        tx.insert_message(&about(message("u:bob", "bob", 6, "read_receipt"), 9))?;
        tx.insert_message(&about(message("u:bob", "bob", 7, "reaction"), 9))?;
        assert_eq!(ids(&tx.receipt_rows()?), vec![2, 4, 6]);
        assert_eq!(ids(&tx.reactions(&[1; 16])?), vec![3, 5]);
        tx.raise_receipt(&[1; 16], "carol", 1)?;
        tx.raise_receipt(&[1; 16], "bob", 2)?;
        tx.raise_receipt(&[1; 16], "bob", 1)?;
        tx.raise_receipt(&[1; 16], "carol", 2)?;
        tx.raise_receipt(&[9; 16], "bob", 1)?;
        assert_eq!(
            tx.receipts(&[1; 16])?,
            vec![("bob".to_owned(), 2), ("carol".to_owned(), 2)]
        );
        assert_eq!(tx.receipts(&[9; 16])?, vec![("bob".to_owned(), 1)]);
        assert!(tx.receipts(&[8; 16])?.is_empty());
        Ok(())
    });
}

fn history_pages(make: Make) {
    let fixture = make(None);
    let mut store = fixture.create();
    let heads = |page: &[super::rows::HistoryHead]| -> Vec<u8> {
        page.iter().map(|h| h.message_id[0]).collect()
    };
    run(&mut store, |tx| {
        for id in 1..=5 {
            tx.insert_message(&message("u:bob", "alice", id, "text"))?;
            tx.insert_message(&message("u:carol", "alice", id + 100, "text"))?;
            tx.insert_message(&message("u:bob", "alice", id + 50, "read_receipt"))?;
            tx.insert_message(&about(message("u:bob", "bob", id + 150, "edit"), id))?;
        }
        tx.insert_message(&message("u:bob", "bob", 60, "attachment"))?;
        let (newest, older) = tx.history_page("u:bob", None, 2)?;
        assert_eq!((heads(&newest), older), (vec![5, 60], true));
        assert_eq!(newest[1].author, "bob");
        let (middle, older) = tx.history_page("u:bob", Some(newest[0].seq), 2)?;
        assert_eq!((heads(&middle), older), (vec![3, 4], true));
        tx.insert_message(&message("u:bob", "alice", 6, "text"))?;
        let (last, older) = tx.history_page("u:bob", Some(middle[0].seq), 2)?;
        assert_eq!((heads(&last), older), (vec![1, 2], false));
        let (none, older) = tx.history_page("u:bob", Some(last[0].seq), 2)?;
        assert!(none.is_empty() && !older);
        let (empty, older) = tx.history_page("u:bob", None, 0)?;
        assert!(empty.is_empty() && older);
        assert_eq!(heads(&tx.history("u:bob", 3)?), vec![5, 60, 6]);
        assert_eq!(
            heads(&tx.history("u:carol", 100)?),
            vec![101, 102, 103, 104, 105]
        );
        assert!(tx.history("u:nobody", 10)?.is_empty());
        Ok(())
    });
}

fn shown_flags(make: Make) {
    let fixture = make(None);
    let mut store = fixture.create();
    run(&mut store, |tx| {
        tx.insert_message(&message("u:bob", "bob", 1, "text"))?;
        tx.insert_message(&about(message("u:bob", "bob", 2, "edit"), 1))?;
        tx.insert_message(&about(message("u:bob", "carol", 3, "reaction"), 1))?;
        tx.insert_message(&message("u:bob", "bob", 4, "text"))?;
        assert!(tx.unshown(0, 10)?.is_empty(), "stored rows count as shown");
        for (author, id) in [("bob", 1), ("bob", 2), ("carol", 3), ("bob", 4)] {
            tx.mark_unshown(author, &[id; 16], 7)?;
        }
        let unshown = tx.unshown(0, 10)?;
        let got: Vec<(u64, u8)> = unshown
            .iter()
            .map(|(_, d, r)| (*d, r.message_id[0]))
            .collect();
        assert_eq!(got, vec![(7, 1), (7, 2), (7, 3), (7, 4)]);
        let page = tx.unshown(unshown[0].0, 2)?;
        assert_eq!(page.len(), 2);
        assert_eq!(page[0].2.message_id, [2; 16]);
        tx.mark_message_shown("bob", &[1; 16])?;
        let left: Vec<u8> = tx
            .unshown(0, 10)?
            .iter()
            .map(|(_, _, r)| r.message_id[0])
            .collect();
        assert_eq!(left, vec![4]);
        tx.mark_shown(unshown[3].0)?;
        assert!(tx.unshown(0, 10)?.is_empty());
        Ok(())
    });
}

fn processed_envelopes(make: Make) {
    let fixture = make(None);
    let mut store = fixture.create();
    run(&mut store, |tx| {
        assert!(!tx.envelope_processed(7)?);
        tx.mark_envelope_processed(7)?;
        tx.mark_envelope_processed(7)?;
        assert!(tx.envelope_processed(7)?);
        // One recorded long ago.
        tx.write()?.insert_processed_envelope(8, 1)?;
        assert!(tx.envelope_processed(8)?);
        Ok(())
    });
    store.prune().expect("prune");
    run(&mut store, |tx| {
        assert!(tx.envelope_processed(7)?);
        assert!(!tx.envelope_processed(8)?, "pruned");
        Ok(())
    });
}

fn outbox(make: Make) {
    let fixture = make(None);
    let mut store = fixture.create();
    run(&mut store, |tx| {
        assert_eq!(tx.outbox_len()?, 0);
        tx.push_outbox("u:bob", &[1; 16], b"one", true)?;
        tx.push_outbox("g:team", &[2; 16], b"two", false)?;
        tx.push_outbox("u:bob", &[3; 16], b"three", true)?;
        let rows = tx.outbox()?;
        let got: Vec<(&str, u8, &[u8], bool)> = rows
            .iter()
            .map(|r| {
                (
                    r.destination.as_str(),
                    r.message_id[0],
                    r.content.as_slice(),
                    r.announce,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("u:bob", 1, &b"one"[..], true),
                ("g:team", 2, &b"two"[..], false),
                ("u:bob", 3, &b"three"[..], true)
            ]
        );
        assert!(rows.windows(2).all(|w| w[0].seq < w[1].seq));
        assert_eq!(tx.outbox_len()?, 3);
        assert!(tx.in_outbox(&[2; 16])? && tx.outbox_contains(&[2; 16])?);
        tx.delete_outbox(rows[1].seq)?;
        assert!(!tx.in_outbox(&[2; 16])?);
        tx.push_outbox("u:carol", &[4; 16], b"four", true)?;
        let after: Vec<OutboxRow> = tx.outbox()?;
        assert_eq!(
            after.iter().map(|r| r.message_id[0]).collect::<Vec<_>>(),
            vec![1, 3, 4]
        );
        assert!(after[2].seq > rows[2].seq, "positions are not reused");
        assert_eq!(tx.outbox_len()?, 3);
        Ok(())
    });
}

fn send_outcomes(make: Make) {
    let fixture = make(None);
    let mut store = fixture.create();
    run(&mut store, |tx| {
        assert_eq!(tx.send_outcome(&[1; 16])?, None);
        tx.record_send_failure(&[1; 16], "queue_full", "the queue is full")?;
        assert_eq!(
            tx.send_outcome(&[1; 16])?,
            Some(SendOutcome::Failed {
                kind: "queue_full".into(),
                text: "the queue is full".into()
            })
        );
        tx.record_sent(&[1; 16], 42)?;
        assert_eq!(
            tx.send_outcome(&[1; 16])?,
            Some(SendOutcome::Stored {
                server_timestamp_ms: Some(42)
            })
        );
        tx.record_sent(&[2; 16], u64::MAX)?;
        tx.record_send_failure(&[2; 16], "k", "t")?;
        assert!(matches!(
            tx.send_outcome(&[2; 16])?,
            Some(SendOutcome::Failed { .. })
        ));
        Ok(())
    });
}

fn group_record(name: &str) -> GroupRecord {
    let mut record = GroupRecord::default();
    record.format = GROUP_RECORD_VERSION;
    record.version = 3;
    record.active = true;
    record.name = name.to_owned();
    record
}

fn groups_and_sender_keys(make: Make) {
    let fixture = make(None);
    let mut store = fixture.create();
    let (a, b) = (GroupId::from_bytes([2; 16]), GroupId::from_bytes([1; 16]));
    let crypto_id = CryptoGroupId::new(a.as_bytes()).expect("group id");
    let key = OutboundSenderKey::create(&mut rand::rng(), crypto_id);
    run(&mut store, |tx| {
        assert_eq!(tx.group(&a)?, None);
        tx.set_group(&a, &group_record("a"))?;
        tx.set_group(&b, &group_record("b"))?;
        tx.set_group(&a, &group_record("a2"))?;
        assert_eq!(tx.group(&a)?.map(|g| g.name.clone()), Some("a2".to_owned()));
        let all: Vec<String> = tx
            .groups()?
            .into_iter()
            .map(|(_, g)| g.name.clone())
            .collect();
        assert_eq!(all, vec!["b", "a2"], "by group id");

        assert!(tx.outbound_key(&a)?.is_none());
        tx.set_outbound_key(&a, &key)?;
        assert_eq!(
            tx.outbound_key(&a)?.map(|k| k.to_bytes().to_vec()),
            Some(key.to_bytes().to_vec())
        );
        tx.add_shared(&a, "carol", 2, 9)?;
        tx.add_shared(&a, "bob", 1, 9)?;
        tx.add_shared(&a, "bob", 1, 10)?;
        tx.add_shared(&b, "bob", 1, 1)?;
        assert_eq!(
            tx.shared(&a)?,
            vec![("bob".to_owned(), 1, 10), ("carol".to_owned(), 2, 9)]
        );
        tx.delete_outbound_key(&a)?;
        assert!(tx.outbound_key(&a)?.is_none());
        assert!(tx.shared(&a)?.is_empty(), "shared goes with the key");
        assert_eq!(tx.shared(&b)?.len(), 1);
        tx.add_shared(&b, "carol", 3, 1)?;
        tx.clear_shared(&b)?;
        assert!(tx.shared(&b)?.is_empty());

        let record = SenderKeyRecord::new();
        tx.set_inbound_record(&a, "bob", 1, &record)?;
        tx.set_inbound_record(&b, "bob", 1, &record)?;
        tx.set_outbound_key(&a, &key)?;
        assert!(tx.inbound_record(&a, "bob", 1)?.is_some());
        assert!(tx.inbound_record(&a, "bob", 2)?.is_none());
        tx.delete_group_keys(&a)?;
        assert!(tx.inbound_record(&a, "bob", 1)?.is_none());
        assert!(tx.outbound_key(&a)?.is_none());
        assert!(tx.inbound_record(&b, "bob", 1)?.is_some());
        assert!(tx.group(&a)?.is_some(), "the record stays");
        Ok(())
    });
}

const STAGING: &str = "0123456789abcdef0123456789abcdef";
const STAGING_2: &str = "fedcba9876543210fedcba9876543210";

fn upload(id: u8, staging: &str) -> PendingUpload {
    PendingUpload {
        message_id: [id; 16],
        staging: staging.to_owned(),
        ciphertext_len: 1 << 40,
        attachment_id: None,
    }
}

fn uploads(make: Make) {
    let fixture = make(None);
    let mut store = fixture.create();
    run(&mut store, |tx| {
        tx.push_outbox("u:bob", &[1; 16], b"file v1", true)?;
        tx.insert_message(&message("u:bob", "alice", 1, "attachment"))?;
        tx.insert_upload(&upload(1, STAGING))?;
        assert!(
            tx.insert_upload(&upload(1, STAGING_2)).is_err(),
            "one per message"
        );
        assert!(
            tx.insert_upload(&upload(2, STAGING)).is_err(),
            "one per name"
        );
        assert_eq!(tx.pending_upload(&[1; 16])?, Some(upload(1, STAGING)));
        tx.set_upload_attachment_id(&[1; 16], Some(&[7; 16]))?;
        assert_eq!(
            tx.pending_upload(&[1; 16])?.and_then(|u| u.attachment_id),
            Some(vec![7; 16])
        );
        assert_eq!(tx.upload_names()?, vec![STAGING.to_owned()]);
        let row = tx.outbox()?.remove(0);
        tx.finish_upload(&row, "alice", b"file v2")?;
        assert_eq!(tx.pending_upload(&[1; 16])?, None);
        assert_eq!(tx.outbox()?[0].content.as_slice(), b"file v2");
        let stored = tx.message_events("alice", &[1; 16])?;
        assert_eq!(stored[0].content.as_slice(), b"file v2");
        // Removing a queued row removes its record.
        tx.push_outbox("u:bob", &[3; 16], b"file", true)?;
        tx.insert_upload(&upload(3, STAGING_2))?;
        let seq = tx.outbox()?[1].seq;
        tx.delete_outbox(seq)?;
        assert_eq!(tx.pending_upload(&[3; 16])?, None);
        // A record without its row goes when the store opens.
        tx.insert_upload(&upload(4, STAGING_2))?;
        Ok(())
    });
    drop(store);
    let mut store = fixture.open().expect("reopen");
    run(&mut store, |tx| {
        assert!(tx.upload_names()?.is_empty());
        Ok(())
    });
}

fn secrets_with_a_passphrase(make: Make) {
    let fixture = make(Some("correct horse"));
    let mut store = fixture.create();
    run(&mut store, |tx| {
        tx.set_meta("name", b"plain value")?;
        tx.set_secret("seed", b"the secret seed")?;
        assert_eq!(tx.meta_string("name")?.as_deref(), Some("plain value"));
        let raw = tx.meta("seed")?.expect("stored");
        assert!(!raw.windows(6).any(|w| w == b"secret"), "sealed");
        assert_eq!(
            tx.secret("seed", "seed")?.as_deref().map(Vec::as_slice),
            Some(&b"the secret seed"[..])
        );
        tx.set_meta("number", &7u64.to_be_bytes())?;
        assert_eq!(tx.meta_u64("number")?, Some(7));
        assert!(tx.meta_u64("name").is_err());
        assert_eq!(tx.secret("x", "missing")?, None);
        Ok(())
    });
    drop(store);
    assert!(matches!(
        Store::open(&fixture.with_passphrase(Some("wrong horse"))),
        Err(OpenError::WrongPassphrase)
    ));
    assert!(matches!(
        Store::open(&fixture.with_passphrase(None)),
        Err(OpenError::PassphraseRequired)
    ));
    let mut store = fixture.open().expect("the right passphrase opens it");
    run(&mut store, |tx| {
        let seed = tx.secret("seed", "seed")?.expect("kept");
        assert_eq!(seed.as_slice(), b"the secret seed");
        // Sealed for its row: moved to another key it does not open.
        let raw = tx.meta("seed")?.expect("stored");
        tx.set_meta("other", &raw)?;
        assert!(matches!(
            tx.secret("other", "other"),
            Err(StoreError::Tampered { .. })
        ));
        Ok(())
    });
}

fn no_passphrase_is_fixed_at_creation(make: Make) {
    let fixture = make(None);
    drop(fixture.create());
    assert!(matches!(
        Store::open(&fixture.with_passphrase(Some("late"))),
        Err(OpenError::NotEncrypted)
    ));
    assert!(fixture.open().is_ok());
}

/// Everything a transaction can change, read back.
fn snapshot(store: &mut Store) -> String {
    let a = GroupId::from_bytes([1; 16]);
    store
        .tx(|tx| -> Result<String, StoreError> {
            let outbox: Vec<(i64, String, Vec<u8>, bool)> = tx
                .outbox()?
                .into_iter()
                .map(|r| (r.seq, r.destination, r.content.to_vec(), r.announce))
                .collect();
            let sessions: Vec<[u8; 32]> = tx
                .sessions("bob", 1)?
                .iter()
                .map(|s| *s.session.base_key())
                .collect();
            let events: Vec<(Vec<u8>, bool)> = tx
                .unshown(0, 100)?
                .into_iter()
                .map(|(_, _, r)| (r.content.to_vec(), true))
                .collect();
            Ok(format!(
                "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
                tx.meta("k")?,
                tx.contacts()?
                    .into_iter()
                    .map(|(n, c)| (n, c.devices_checked_ms))
                    .collect::<Vec<_>>(),
                sessions,
                tx.history_page("u:bob", None, 100)?
                    .0
                    .iter()
                    .map(|h| (h.seq, h.message_id))
                    .collect::<Vec<_>>(),
                tx.message_events("bob", &[1; 16])?
                    .iter()
                    .map(|r| r.content.to_vec())
                    .collect::<Vec<_>>(),
                events,
                tx.envelope_processed(5)?,
                outbox,
                tx.receipts(&[1; 16])?,
                tx.send_outcome(&[1; 16])?,
                tx.group(&a)?.map(|g| g.name.clone()),
                tx.shared(&a)?,
                tx.inbound_record(&a, "bob", 1)?.is_some(),
                tx.outbound_key(&a)?.is_some(),
                tx.pending_upload(&[1; 16])?,
                tx.upload_names()?,
            ))
        })
        .expect("snapshot")
}

fn a_failed_transaction_changes_nothing(make: Make) {
    let fixture = make(None);
    let mut store = fixture.create();
    let us = IdentityKeyPair::generate(&mut rand::rng());
    let them = IdentityKeyPair::generate(&mut rand::rng());
    let a = GroupId::from_bytes([1; 16]);
    let key = OutboundSenderKey::create(
        &mut rand::rng(),
        CryptoGroupId::new(a.as_bytes()).expect("id"),
    );
    let first = session_with(&us, &them);
    run(&mut store, |tx| {
        tx.set_meta("k", b"v")?;
        tx.set_contact(
            "bob",
            &Contact {
                identity: [1; 32],
                pending: None,
                devices_checked_ms: 1,
            },
        )?;
        tx.save_session("bob", 1, &first)?;
        tx.insert_message(&message("u:bob", "bob", 1, "text"))?;
        tx.push_outbox("u:bob", &[1; 16], b"queued", true)?;
        tx.insert_upload(&upload(1, STAGING))?;
        tx.raise_receipt(&[1; 16], "bob", 1)?;
        tx.record_sent(&[1; 16], 5)?;
        tx.set_group(&a, &group_record("before"))?;
        tx.add_shared(&a, "bob", 1, 1)?;
        Ok(())
    });
    let before = snapshot(&mut store);
    let second = session_with(&us, &them);
    let changes = |tx: &super::Tx<'_>| -> Result<(), StoreError> {
        tx.set_meta("k", b"changed")?;
        tx.set_contact(
            "bob",
            &Contact {
                identity: [2; 32],
                pending: None,
                devices_checked_ms: 2,
            },
        )?;
        tx.set_contact(
            "carol",
            &Contact {
                identity: [2; 32],
                pending: None,
                devices_checked_ms: 2,
            },
        )?;
        tx.save_session("bob", 1, &second)?;
        tx.insert_message(&message("u:bob", "bob", 2, "text"))?;
        tx.mark_unshown("bob", &[1; 16], 3)?;
        let row = tx.outbox()?.remove(0);
        tx.finish_upload(&row, "bob", b"replaced")?;
        tx.push_outbox("u:bob", &[2; 16], b"more", true)?;
        tx.delete_outbox(row.seq)?;
        tx.mark_envelope_processed(5)?;
        tx.raise_receipt(&[1; 16], "bob", 2)?;
        tx.record_send_failure(&[1; 16], "k", "t")?;
        tx.set_group(&a, &group_record("after"))?;
        tx.add_shared(&a, "carol", 1, 1)?;
        tx.set_inbound_record(&a, "bob", 1, &SenderKeyRecord::new())?;
        tx.set_outbound_key(&a, &key)?;
        tx.insert_upload(&upload(2, STAGING_2))?;
        Ok(())
    };
    let failed: Result<(), StoreError> = store.tx(|tx| {
        changes(tx)?;
        Err(StoreError::NoAccount)
    });
    assert!(matches!(failed, Err(StoreError::NoAccount)));
    assert_eq!(snapshot(&mut store), before, "an error rolls back");
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = store.tx(|tx| -> Result<(), StoreError> {
            changes(tx)?;
            panic!("mid-transaction");
        });
    }));
    assert!(panicked.is_err());
    assert_eq!(snapshot(&mut store), before, "a panic rolls back");
    // And the same changes, committed, do show.
    run(&mut store, changes);
    assert_ne!(snapshot(&mut store), before);
}

fn one_store_at_a_time(make: Make) {
    let fixture = make(None);
    let store = fixture.create();
    assert!(matches!(fixture.open(), Err(OpenError::InUse { .. })));
    drop(store);
    assert!(fixture.open().is_ok());
}

#[test]
fn a_store_in_memory_runs_on_the_memory_backend_and_cannot_be_opened_again() {
    let config = StoreConfig::in_memory();
    let mut new = Store::create(&config).expect("create");
    let store = new.store();
    run(store, |tx| {
        tx.push_outbox("u:bob", &[1; 16], b"x", true)?;
        Ok(())
    });
    assert!(store.staging_dir().ends_with("uploads"));
    assert!(!Path::new(":memory:").exists(), "no file");
    assert!(matches!(
        Store::open(&config),
        Err(OpenError::NotFound { .. })
    ));
}

/// A store, its backends and their transactions move between threads
/// (an account's background task runs on any of them).
#[test]
fn backends_and_their_transactions_are_send() {
    fn send<T: Send + ?Sized>() {}
    fn shared<T: Send + Sync + ?Sized>() {}
    send::<dyn super::Backend>();
    send::<dyn super::BackendTx>();
    send::<MemoryBackend>();
    send::<Store>();
    shared::<StoreConfig>();
    shared::<super::SharedStore>();
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend {
            $(#[test] fn $name() { super::$name(super::on_sqlite) })*
        }
        mod memory_backend {
            $(#[test] fn $name() { super::$name(super::on_memory) })*
        }
    };
}

suite!(
    contacts,
    sessions,
    duplicate_messages,
    message_events,
    receipts_and_reactions,
    history_pages,
    shown_flags,
    processed_envelopes,
    outbox,
    send_outcomes,
    groups_and_sender_keys,
    uploads,
    secrets_with_a_passphrase,
    no_passphrase_is_fixed_at_creation,
    a_failed_transaction_changes_nothing,
    one_store_at_a_time,
);
