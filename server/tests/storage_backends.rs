//! One behaviour suite for every `Storage` backend: SQLite always, and
//! PostgreSQL when `MICROBOT_TEST_POSTGRES` names a database (`.ci/run`
//! sets it; without it the PostgreSQL half is skipped with a note).
//!
//! Each backend is opened twice on the same data ("two nodes"): concurrency
//! tests race the two handles, so one-time prekeys, TOTP steps and group
//! versions are shown to hold across nodes, not only across threads. Every
//! PostgreSQL test runs in a fresh schema, so the tests run in parallel.

use crate::support::engines;

use std::sync::Arc;

use tokio::sync::Barrier;

use engines::{Schema, admin};

use microbot_server::testing::storage::groups::GroupRole;
use microbot_server::testing::storage::postgres::PostgresStorage;
use microbot_server::testing::storage::sqlite::SqliteStorage;
use microbot_server::testing::storage::{
    AttachmentRecord, FetchPage, GroupChange, NewAccount, OneTimeKey, OutgoingEnvelope,
    OwnedSendMeta, PrekeyUpload, SendMeta, SignedKey, Storage, StorageError,
};

/// Two handles on one store, and what keeps it alive.
struct Backend {
    name: &'static str,
    a: Arc<dyn Storage>,
    b: Arc<dyn Storage>,
    _keep: Box<dyn std::any::Any>,
}

async fn backends(test: &str) -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite3");
    let mut out = vec![Backend {
        name: "sqlite",
        a: Arc::new(SqliteStorage::open(&path).unwrap()),
        b: Arc::new(SqliteStorage::open(&path).unwrap()),
        _keep: Box::new(dir),
    }];
    match std::env::var("MICROBOT_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => {
            let schema = Schema::new(&url, &format!("t_{test}"));
            let a = PostgresStorage::open(&schema.url, 4)
                .await
                .expect("open postgres");
            let b = PostgresStorage::open(&schema.url, 4)
                .await
                .expect("open postgres again");
            out.push(Backend {
                name: "postgres",
                a: Arc::new(a),
                b: Arc::new(b),
                _keep: Box::new(schema),
            });
        }
        _ => eprintln!(
            "storage_backends::{test}: MICROBOT_TEST_POSTGRES is not set, \
             skipped the PostgreSQL half (scripts/services.sh starts one)"
        ),
    }
    out
}

async fn account(s: &dyn Storage, username: &str) -> i64 {
    let id = s
        .create_account(&NewAccount {
            username,
            password_hash: "$argon2id$stub",
            totp_secret: &[7; 20],
            recovery_code_hashes: &[[1; 32], [2; 32]],
            now_ms: 1,
            bot: false,
        })
        .await
        .unwrap();
    s.activate_account(id).await.unwrap();
    id
}

async fn device(s: &dyn Storage, account: i64) -> u64 {
    s.create_device(account, &[9; 32], "phone", 1)
        .await
        .unwrap()
}

fn meta(now_ms: u64, max_queue_len: u32) -> SendMeta<'static> {
    SendMeta {
        sender_username: "alice",
        sender_device_id: 1,
        now_ms,
        expires_at_ms: now_ms + 1000,
        max_queue_len,
        max_per_sender: max_queue_len,
    }
}

fn page(now_ms: u64) -> FetchPage {
    FetchPage {
        limit: 100,
        max_bytes: 1 << 20,
        overhead: 10,
        now_ms,
    }
}

fn envelope(to: u64, body: &[u8]) -> OutgoingEnvelope {
    OutgoingEnvelope {
        recipient_device_id: to,
        ciphertext: bytes::Bytes::copy_from_slice(body),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_devices_and_recovery_codes() {
    for be in backends("accounts").await {
        let s = &*be.a;
        let alice = account(s, "alice").await;
        assert!(
            matches!(
                be.b.create_account(&NewAccount {
                    username: "alice",
                    password_hash: "x",
                    totp_secret: &[1; 20],
                    recovery_code_hashes: &[],
                    now_ms: 2,
                    bot: false,
                })
                .await,
                Err(StorageError::UsernameTaken)
            ),
            "{}",
            be.name
        );
        let record = be.b.account_by_username("alice").await.unwrap().unwrap();
        assert_eq!(
            (record.id, record.active, record.last_totp_step),
            (alice, true, -1)
        );
        assert_eq!(record.totp_secret.as_slice(), &[7; 20]);
        assert!(s.consume_recovery_code(alice, &[1; 32]).await.unwrap());
        assert!(
            !be.b.consume_recovery_code(alice, &[1; 32]).await.unwrap(),
            "{}: once",
            be.name
        );
        s.set_password_hash(alice, "new").await.unwrap();
        assert_eq!(
            be.b.account_by_id(alice)
                .await
                .unwrap()
                .unwrap()
                .password_hash,
            "new"
        );

        let d1 = device(s, alice).await;
        let d2 = device(&*be.b, alice).await;
        assert!(d2 > d1);
        s.record_login(d1, 55).await.unwrap();
        assert_eq!(be.b.device(d1).await.unwrap().unwrap().last_login_ms, 55);
        s.remove_device(alice, d1).await.unwrap();
        assert!(matches!(
            be.b.remove_device(alice, d1).await,
            Err(StorageError::DeviceRemoved(_))
        ));
        assert!(matches!(
            s.remove_device(alice + 100, d2).await,
            Err(StorageError::UnknownDevice(_))
        ));
        let live: Vec<u64> = s
            .account_devices(alice)
            .await
            .unwrap()
            .iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(live, vec![d2]);
        assert_eq!(s.delete_account(alice).await.unwrap(), vec![d2]);
        assert!(s.account_by_username("alice").await.unwrap().is_none());
        assert!(
            s.device(d2).await.unwrap().unwrap().removed,
            "{}: rows kept, ids never reused",
            be.name
        );
        let d3 = device(s, account(s, "bob").await).await;
        assert!(d3 > d2, "{}", be.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_steps_are_accepted_once_across_nodes() {
    for be in backends("totp").await {
        let alice = account(&*be.a, "alice").await;
        assert!(be.a.consume_totp_step(alice, 100).await.unwrap());
        assert!(
            !be.b.consume_totp_step(alice, 100).await.unwrap(),
            "{}: replay",
            be.name
        );
        assert!(
            !be.b.consume_totp_step(alice, 99).await.unwrap(),
            "{}: older",
            be.name
        );
        // Both nodes race for each of 20 fresh steps: exactly one wins each.
        for step in 101..121 {
            let barrier = Arc::new(Barrier::new(2));
            let racers: Vec<_> = [Arc::clone(&be.a), Arc::clone(&be.b)]
                .into_iter()
                .map(|s| {
                    let barrier = Arc::clone(&barrier);
                    tokio::spawn(async move {
                        barrier.wait().await;
                        s.consume_totp_step(alice, step).await.unwrap()
                    })
                })
                .collect();
            let mut wins = 0;
            for racer in racers {
                wins += usize::from(racer.await.unwrap());
            }
            assert_eq!(wins, 1, "{}: step {step}", be.name);
        }
    }
}

fn upload(n_one_time: u32, n_kem: u32) -> PrekeyUpload {
    PrekeyUpload {
        identity_key: Some(vec![1; 32]),
        signed_prekey: Some(SignedKey {
            id: 1,
            public_key: vec![2; 32],
            signature: vec![3; 64],
        }),
        one_time_prekeys: (1..=n_one_time)
            .map(|id| OneTimeKey {
                id,
                public_key: id.to_be_bytes().repeat(8),
            })
            .collect(),
        kem_prekeys: (1..=n_kem)
            .map(|id| SignedKey {
                id,
                public_key: vec![4; 8],
                signature: vec![5; 8],
            })
            .collect(),
        last_resort_kem_prekey: Some(SignedKey {
            id: 999,
            public_key: vec![6; 8],
            signature: vec![7; 8],
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_time_prekeys_are_handed_out_once_under_concurrency_across_nodes() {
    const KEYS: u32 = 40;
    for be in backends("prekeys").await {
        let bob = account(&*be.a, "bob").await;
        let dev = device(&*be.a, bob).await;
        assert!(matches!(
            be.a.upload_prekeys(dev, &PrekeyUpload::default()).await,
            Err(StorageError::NoPrekeys)
        ));
        be.a.upload_prekeys(dev, &upload(KEYS, 2)).await.unwrap();
        let stock = be.b.prekey_stock(dev).await.unwrap();
        assert_eq!(
            (stock.one_time, stock.kem, stock.signed_prekey_id),
            (KEYS, 2, 1)
        );
        // 8 threads on two "nodes" fetch 6 bundles each: 48 fetches for 40 keys.
        let barrier = Arc::new(Barrier::new(8));
        let fetchers: Vec<_> = (0..8)
            .map(|i| {
                let s = if i % 2 == 0 {
                    Arc::clone(&be.a)
                } else {
                    Arc::clone(&be.b)
                };
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    let mut fetched = Vec::new();
                    for _ in 0..6 {
                        fetched.push(s.take_bundles(&[dev]).await.unwrap());
                    }
                    fetched
                })
            })
            .collect();
        let mut handed = Vec::new();
        let mut without = 0;
        let mut kem_one_time = 0;
        let mut kem_last_resort = 0;
        for fetcher in fetchers {
            for bundles in fetcher.await.unwrap() {
                assert_eq!(bundles.len(), 1);
                let bundle = &bundles[0];
                match &bundle.one_time_prekey {
                    Some(key) => handed.push(key.id),
                    None => without += 1,
                }
                match &bundle.kem_prekey {
                    Some((key, false)) => {
                        assert!(key.id <= 2);
                        kem_one_time += 1;
                    }
                    Some((key, true)) => {
                        assert_eq!(key.id, 999);
                        kem_last_resort += 1;
                    }
                    None => panic!("{}: the last-resort KEM key is always there", be.name),
                }
            }
        }
        handed.sort_unstable();
        handed.dedup();
        assert_eq!(
            handed.len(),
            KEYS as usize,
            "{}: every key exactly once",
            be.name
        );
        assert_eq!(without, 48 - KEYS as usize, "{}", be.name);
        assert_eq!((kem_one_time, kem_last_resort), (2, 46), "{}", be.name);
        assert_eq!(be.a.prekey_stock(dev).await.unwrap().one_time, 0);
        be.a.remove_device(bob, dev).await.unwrap();
        assert!(
            be.b.take_bundles(&[dev]).await.unwrap().is_empty(),
            "{}: removed",
            be.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_store_all_or_nothing_page_and_expire() {
    for be in backends("queues").await {
        let (s, t) = (&*be.a, &*be.b);
        let bob = account(s, "bob").await;
        let d1 = device(s, bob).await;
        let d2 = device(s, bob).await;
        let ids = s
            .enqueue(
                &meta(1000, 3),
                &[envelope(d1, b"one"), envelope(d2, b"two")],
            )
            .await
            .unwrap();
        assert!(ids[0] < ids[1]);
        assert!(matches!(
            t.enqueue(
                &meta(1000, 3),
                &[envelope(d1, b"x"), envelope(424_242, b"y")]
            )
            .await,
            Err(StorageError::UnknownDevice(424_242))
        ));
        assert_eq!(
            t.queue_len(d1, 1000).await.unwrap(),
            1,
            "{}: nothing stored",
            be.name
        );
        t.enqueue(&meta(1001, 3), &[envelope(d1, b"three")])
            .await
            .unwrap();
        t.enqueue(&meta(1002, 3), &[envelope(d1, &[0xAB; 100])])
            .await
            .unwrap();
        match s
            .enqueue(
                &meta(1003, 3),
                &[envelope(d1, b"full"), envelope(d2, b"ok")],
            )
            .await
        {
            Err(StorageError::QueueFull(devices)) => assert_eq!(devices, vec![d1]),
            other => panic!("{}: {other:?}", be.name),
        }
        let (all, more) = t.fetch_envelopes(d1, 0, page(1500)).await.unwrap();
        assert!(!more);
        let bodies: Vec<&[u8]> = all.iter().map(|e| e.ciphertext.as_ref()).collect();
        assert_eq!(
            bodies,
            vec![&b"one"[..], b"three", &[0xAB; 100][..]],
            "{}",
            be.name
        );
        assert_eq!(all[0].sender_username, "alice");
        assert_eq!(all[1].server_timestamp_ms, 1001);
        assert!(all.iter().all(|e| e.group_id.is_none()));
        // A byte budget that fits two small envelopes but not the third.
        let small = FetchPage {
            max_bytes: 40,
            ..page(1500)
        };
        let (first, more) = s.fetch_envelopes(d1, 0, small).await.unwrap();
        assert_eq!((first.len(), more), (2, true), "{}", be.name);
        let (rest, more) = s.fetch_envelopes(d1, first[1].id, small).await.unwrap();
        assert_eq!(
            (rest.len(), more),
            (1, false),
            "{}: first always fits",
            be.name
        );
        let limited = FetchPage {
            limit: 1,
            ..page(1500)
        };
        assert_eq!(s.fetch_envelopes(d1, 0, limited).await.unwrap().0.len(), 1);

        assert_eq!(
            t.ack_envelopes(d1, &[all[0].id, all[0].id, 999_999])
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            s.ack_envelopes(d2, &[all[1].id]).await.unwrap(),
            0,
            "{}: not d2's",
            be.name
        );
        assert_eq!(s.total_queued(1500).await.unwrap(), 3);
        assert_eq!(
            s.queue_len(d1, 2001).await.unwrap(),
            1,
            "{}: two expired at 2001",
            be.name
        );
        assert_eq!(
            s.fetch_envelopes(d1, 0, page(2001)).await.unwrap().0.len(),
            1
        );
        assert_eq!(t.purge_expired(2001).await.unwrap(), 2);
        assert_eq!(s.total_queued(0).await.unwrap(), 1);
        s.remove_device(bob, d2).await.unwrap();
        assert!(matches!(
            t.enqueue(&meta(1000, 3), &[envelope(d2, b"x")]).await,
            Err(StorageError::DeviceRemoved(_))
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_cap_holds_under_concurrent_senders_on_two_nodes() {
    for be in backends("cap").await {
        let bob = account(&*be.a, "bob").await;
        let dev = device(&*be.a, bob).await;
        let barrier = Arc::new(Barrier::new(6));
        let senders: Vec<_> = (0..6)
            .map(|i| {
                let s = if i % 2 == 0 {
                    Arc::clone(&be.a)
                } else {
                    Arc::clone(&be.b)
                };
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    let mut stored = 0;
                    for _ in 0..10 {
                        stored += usize::from(
                            s.enqueue(&meta(1000, 25), &[envelope(dev, b"m")])
                                .await
                                .is_ok(),
                        );
                    }
                    stored
                })
            })
            .collect();
        let mut stored = 0;
        for sender in senders {
            stored += sender.await.unwrap();
        }
        assert_eq!(stored, 25, "{}", be.name);
        let (queued, _) = be.a.fetch_envelopes(dev, 0, page(1000)).await.unwrap();
        assert_eq!(queued.len(), 25);
        assert!(queued.windows(2).all(|w| w[0].id < w[1].id));
    }
}

/// Sends and acknowledgements submitted together from async callers on
/// two nodes (PostgreSQL commits them in shared batches, SQLite in its
/// group commit): each sender's share of another account's queue holds,
/// the sends of one batch count against each other, a device's ids
/// increase in queue order, and the queue length matches what is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_async_sends_keep_shares_order_and_counts() {
    for be in backends("batched").await {
        let bob = account(&*be.a, "bob").await;
        let dev = device(&*be.a, bob).await;
        let alice = account(&*be.a, "alice").await;
        let mallory = account(&*be.a, "mallory").await;
        let (alice_dev, mallory_dev) = (device(&*be.a, alice).await, device(&*be.a, mallory).await);
        let send = |i: usize| {
            let node = Arc::clone(if i.is_multiple_of(2) { &be.a } else { &be.b });
            let (name, from) = if i % 4 < 2 {
                ("alice", alice_dev)
            } else {
                ("mallory", mallory_dev)
            };
            let meta = OwnedSendMeta {
                sender_username: name.to_owned(),
                sender_device_id: from,
                now_ms: 1000,
                expires_at_ms: 10_000,
                max_queue_len: 30,
                max_per_sender: 12,
            };
            async move {
                node.enqueue(&meta.borrowed(), &[envelope(dev, name.as_bytes())])
                    .await
            }
        };
        let tasks: Vec<_> = (0..48).map(|i| tokio::spawn(send(i))).collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        let stored = outcomes.iter().filter(|o| o.is_ok()).count();
        assert_eq!(stored, 24, "{}: 12 from each sender", be.name);
        assert!(
            outcomes
                .iter()
                .filter_map(|o| o.as_ref().err())
                .all(|e| matches!(e, StorageError::QueueFull(d) if d == &vec![dev])),
            "{}: {outcomes:?}",
            be.name
        );
        let (queued, _) = be.a.fetch_envelopes(dev, 0, page(1000)).await.unwrap();
        assert_eq!(queued.len(), 24, "{}", be.name);
        assert!(queued.windows(2).all(|w| w[0].id < w[1].id));
        for name in ["alice", "mallory"] {
            let n = queued.iter().filter(|e| e.sender_username == name).count();
            assert_eq!(n, 12, "{}: {name}", be.name);
        }
        // Acknowledgements from both nodes at once, one id listed twice
        // and one of another device: each existing envelope counts once.
        let ids: Vec<u64> = queued.iter().map(|e| e.id).collect();
        let halves = [ids[..12].to_vec(), [&ids[11..], &[ids[0]]].concat()];
        let (a, b, other) = tokio::join!(
            be.a.ack_envelopes(dev, &halves[0]),
            be.b.ack_envelopes(dev, &halves[1]),
            be.a.ack_envelopes(alice_dev, &ids),
        );
        let acked = (a.unwrap(), b.unwrap(), other.unwrap());
        assert_eq!(acked.0 + acked.1, 24, "{}: {acked:?}", be.name);
        assert_eq!(acked.2, 0, "{}: not alice's queue", be.name);
        assert_eq!(be.b.queue_len(dev, 1000).await.unwrap(), 0, "{}", be.name);
        assert_eq!(be.a.total_queued(1000).await.unwrap(), 0, "{}", be.name);
        // The freed queue takes a sender's full share again.
        let tasks: Vec<_> = (0..12).map(|i| tokio::spawn(send(i * 4))).collect();
        let mut again = 0;
        for task in tasks {
            again += usize::from(task.await.unwrap().is_ok());
        }
        assert_eq!(again, 12, "{}", be.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_versioned_and_fan_out_once() {
    let gid = [7u8; 16];
    for be in backends("groups").await {
        let (s, t) = (&*be.a, &*be.b);
        let alice = account(s, "alice").await;
        let bob = account(s, "bob").await;
        let carol = account(s, "carol").await;
        let (a1, b1, b2, c1) = (
            device(s, alice).await,
            device(s, bob).await,
            device(s, bob).await,
            device(s, carol).await,
        );
        let created = s
            .create_group(&gid, alice, &["bob".to_owned()], b"meta", 10, 5)
            .await
            .unwrap();
        assert_eq!(created.group.version, 1);
        assert_eq!(created.notify_devices, vec![a1, b1, b2]);
        assert!(matches!(
            t.create_group(&gid, bob, &[], b"", 10, 5).await,
            Err(StorageError::GroupExists)
        ));
        assert!(matches!(
            t.change_group(
                &gid,
                bob,
                Some(1),
                &GroupChange::Add(vec!["carol".into()]),
                10
            )
            .await,
            Err(StorageError::NotGroupAdmin)
        ));
        assert!(matches!(
            t.change_group(
                &gid,
                alice,
                None,
                &GroupChange::Add(vec!["nobody".into()]),
                10
            )
            .await,
            Err(StorageError::UnknownAccount(_))
        ));
        // Both nodes race a change with the same expected version: one wins.
        let barrier = Arc::new(Barrier::new(2));
        let racers: Vec<_> = [Arc::clone(&be.a), Arc::clone(&be.b)]
            .into_iter()
            .enumerate()
            .map(|(i, st)| {
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    st.change_group(
                        &gid,
                        alice,
                        Some(1),
                        &GroupChange::SetMetadata(vec![u8::try_from(i).unwrap(); 4]),
                        10,
                    )
                    .await
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for racer in racers {
            outcomes.push(racer.await.unwrap());
        }
        assert_eq!(
            outcomes.iter().filter(|o| o.is_ok()).count(),
            1,
            "{}",
            be.name
        );
        assert!(
            outcomes
                .iter()
                .any(|o| matches!(o, Err(StorageError::StaleGroupVersion(2)))),
            "{}",
            be.name
        );
        let added = t
            .change_group(
                &gid,
                alice,
                Some(2),
                &GroupChange::Add(vec!["carol".into()]),
                10,
            )
            .await
            .unwrap();
        assert_eq!(added.group.version, 3);
        let carol_member = added
            .group
            .members
            .iter()
            .find(|m| m.account_id == carol)
            .unwrap();
        assert_eq!(
            (carol_member.role, carol_member.joined_at_version),
            (GroupRole::Member, 3)
        );
        assert!(matches!(
            s.change_group(&gid, alice, None, &GroupChange::Add(Vec::new()), 2)
                .await,
            Err(StorageError::InvalidGroupChange(_))
        ));

        let meta_a = SendMeta {
            sender_username: "alice",
            sender_device_id: a1,
            ..meta(1000, 100)
        };
        let fan = s
            .enqueue_group(&gid, alice, &meta_a, b"group ciphertext")
            .await
            .unwrap()
            .delivered;
        let mut targets: Vec<u64> = fan.iter().map(|f| f.device_id).collect();
        targets.sort_unstable();
        assert_eq!(
            targets,
            vec![b1, b2, c1],
            "{}: not the sender's device",
            be.name
        );
        let (got, _) = t.fetch_envelopes(c1, 0, page(1000)).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].ciphertext.as_ref(), b"group ciphertext");
        assert_eq!(got[0].group_id.as_deref(), Some(&gid[..]));
        for f in &fan {
            assert_eq!(
                t.ack_envelopes(f.device_id, &[f.envelope_id])
                    .await
                    .unwrap(),
                1
            );
        }
        assert!(matches!(
            s.enqueue_group(&gid, 424_242, &meta_a, b"x").await,
            Err(StorageError::NotGroupMember)
        ));
        let left = t
            .change_group(&gid, alice, None, &GroupChange::Leave, 10)
            .await
            .unwrap();
        assert_eq!(left.group.version, 4);
        let bob_now = left
            .group
            .members
            .iter()
            .find(|m| m.account_id == bob)
            .unwrap();
        assert_eq!(
            bob_now.role,
            GroupRole::Admin,
            "{}: the admin role is handed on",
            be.name
        );
        assert!(matches!(
            s.group(&gid, alice).await,
            Err(StorageError::NotGroupMember)
        ));
        assert_eq!(s.group(&gid, carol).await.unwrap().version, 4);
        s.delete_account(bob).await.unwrap();
        s.delete_account(carol).await.unwrap();
        assert!(
            matches!(s.group(&gid, carol).await, Err(StorageError::UnknownGroup)),
            "{}",
            be.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachment_records_quota_commits_and_expiry() {
    for be in backends("attachments").await {
        let (s, t) = (&*be.a, &*be.b);
        let alice = account(s, "alice").await;
        let record = |id: u8, size: u64| AttachmentRecord {
            id: [id; 16],
            account_id: alice,
            token_hash: [id; 32],
            size,
            committed: 0,
            expires_at_ms: 5000,
        };
        s.create_attachment(&record(1, 600), 1000, 10)
            .await
            .unwrap();
        assert!(matches!(
            t.create_attachment(&record(2, 500), 1000, 10).await,
            Err(StorageError::QuotaExceeded)
        ));
        t.create_attachment(&record(3, 400), 1000, 10)
            .await
            .unwrap();
        t.commit_attachment(&[1; 16], 300).await.unwrap();
        s.commit_attachment(&[1; 16], 200).await.unwrap();
        s.commit_attachment(&[1; 16], 700).await.unwrap();
        let stored = t.attachment(&[1; 16], 10).await.unwrap().unwrap();
        assert_eq!(
            (stored.committed, stored.complete()),
            (300, false),
            "{}",
            be.name
        );
        let replaced = s
            .replace_upload_token(&[1; 16], alice, &[9; 32], 10)
            .await
            .unwrap();
        assert_eq!(replaced.token_hash, [9; 32]);
        assert!(matches!(
            s.replace_upload_token(&[1; 16], alice + 1, &[9; 32], 10)
                .await,
            Err(StorageError::UnknownAttachment)
        ));
        assert!(
            t.attachment(&[1; 16], 5000).await.unwrap().is_none(),
            "{}: expired",
            be.name
        );
        let mut purged = s.purge_expired_attachments(5000).await.unwrap();
        purged.sort_unstable();
        assert_eq!(purged, vec![[1; 16], [3; 16]]);
        assert!(t.purge_expired_attachments(5000).await.unwrap().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nodes_starting_together_migrate_once_and_refuse_a_newer_schema() {
    let Ok(url) = std::env::var("MICROBOT_TEST_POSTGRES") else {
        eprintln!("storage_backends::migrations: MICROBOT_TEST_POSTGRES is not set, skipped");
        return;
    };
    let schema = Schema::new(&url, "t_migrate");
    let (name, scoped) = (schema.name().to_owned(), schema.url.clone());
    // Three nodes open the empty schema at once: every one succeeds (a
    // second application of version 1 would fail on its primary key).
    let barrier = Arc::new(Barrier::new(3));
    let nodes: Vec<_> = (0..3)
        .map(|_| {
            let (barrier, scoped) = (Arc::clone(&barrier), scoped.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                PostgresStorage::open(&scoped, 2).await.map(|_| ())
            })
        })
        .collect();
    for node in nodes {
        node.await.unwrap().unwrap();
    }
    admin(
        &url,
        &format!("INSERT INTO {name}.microbot_schema (version) VALUES (99)"),
    )
    .unwrap();
    match PostgresStorage::open(&scoped, 2).await {
        Err(microbot_server::testing::storage::postgres::PostgresOpenError::TooNew {
            found,
            supported,
        }) => {
            assert_eq!(
                (found, supported),
                (
                    99,
                    microbot_server::testing::storage::postgres::schema::schema_version()
                )
            );
        }
        other => panic!("{other:?}"),
    }
}
