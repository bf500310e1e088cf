//! Issue 14, the kept queue length under concurrency: two handles on one
//! store ("two nodes") race sends, group fan-out, acknowledgements and the
//! sweep; afterwards every device's kept length (the queue cap and the
//! gauge read it) equals what its queue really holds. SQLite always,
//! PostgreSQL when `MICROBOT_TEST_POSTGRES` is set.

use crate::support::engines;

use std::sync::Arc;

use tokio::sync::Barrier;

use microbot_server::testing::storage::postgres::PostgresStorage;
use microbot_server::testing::storage::sqlite::SqliteStorage;
use microbot_server::testing::storage::{
    FetchPage, NewAccount, OutgoingEnvelope, SendMeta, Storage,
};

/// A backend's name, two handles on one store, and what keeps it alive.
type Store = (
    &'static str,
    Arc<dyn Storage>,
    Arc<dyn Storage>,
    Box<dyn std::any::Any>,
);

async fn stores(test: &str) -> Vec<Store> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite3");
    let mut out: Vec<Store> = vec![(
        "sqlite",
        Arc::new(SqliteStorage::open(&path).unwrap()),
        Arc::new(SqliteStorage::open(&path).unwrap()),
        Box::new(dir),
    )];
    match std::env::var("MICROBOT_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => {
            let schema = engines::Schema::new(&url, &format!("s_{test}"));
            out.push((
                "postgres",
                Arc::new(PostgresStorage::open(&schema.url, 4).await.unwrap()),
                Arc::new(PostgresStorage::open(&schema.url, 4).await.unwrap()),
                Box::new(schema),
            ));
        }
        _ => eprintln!("{test}: MICROBOT_TEST_POSTGRES is not set, skipped the PostgreSQL half"),
    }
    out
}

async fn account(s: &dyn Storage, name: &str) -> (i64, u64) {
    let id = s
        .create_account(&NewAccount {
            username: name,
            password_hash: "h",
            totp_secret: &[1; 20],
            recovery_code_hashes: &[],
            now_ms: 0,
            bot: false,
        })
        .await
        .unwrap();
    s.activate_account(id).await.unwrap();
    (id, s.create_device(id, &[2; 32], "d", 0).await.unwrap())
}

fn meta(sender: &'static str, device: u64, now_ms: u64, ttl_ms: u64) -> SendMeta<'static> {
    SendMeta {
        sender_username: sender,
        sender_device_id: device,
        now_ms,
        expires_at_ms: now_ms + ttl_ms,
        max_queue_len: 10_000,
        max_per_sender: 10_000,
    }
}

/// Every envelope in the queue of `device`, expired or not (`now_ms` 0).
async fn held(s: &dyn Storage, device: u64) -> Vec<u64> {
    let page = FetchPage {
        limit: 1000,
        max_bytes: 1 << 24,
        overhead: 0,
        now_ms: 0,
    };
    let mut ids = Vec::new();
    let mut after = 0;
    loop {
        let (rows, more) = s.fetch_envelopes(device, after, page).await.unwrap();
        after = rows.last().map_or(after, |e| e.id);
        ids.extend(rows.iter().map(|e| e.id));
        if !more {
            return ids;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_sends_acks_and_sweeps_keep_the_queue_length_exact() {
    for (name, a, b, _keep) in stores("race").await {
        let (_, alice) = account(&*a, "alice").await;
        let (_, bob) = account(&*a, "bob").await;
        let (_, carol) = account(&*a, "carol").await;
        let barrier = Arc::new(Barrier::new(4));
        let mut threads = Vec::new();
        // Two senders on two handles: half of their envelopes expire at
        // time 500, the rest live on.
        for (store, sender, device) in [(&a, "alice", alice), (&b, "carol", carol)] {
            let (store, barrier) = (Arc::clone(store), Arc::clone(&barrier));
            threads.push(tokio::spawn(async move {
                barrier.wait().await;
                for i in 0..200u64 {
                    let ttl = if i % 2 == 0 { 400 } else { 1_000_000 };
                    let envelope = OutgoingEnvelope {
                        recipient_device_id: bob,
                        ciphertext: bytes::Bytes::from_static(b"x"),
                    };
                    store
                        .enqueue(&meta(sender, device, 100, ttl), &[envelope])
                        .await
                        .unwrap();
                }
            }));
        }
        // The recipient acks what it sees on one handle while the sweep
        // runs on the other.
        for (store, sweeper) in [(&a, false), (&b, true)] {
            let (store, barrier) = (Arc::clone(store), Arc::clone(&barrier));
            threads.push(tokio::spawn(async move {
                barrier.wait().await;
                for _ in 0..100 {
                    if sweeper {
                        store.purge_expired(500).await.unwrap();
                    } else {
                        let ids: Vec<u64> = held(&*store, bob).await.into_iter().take(3).collect();
                        store.ack_envelopes(bob, &ids).await.unwrap();
                    }
                }
            }));
        }
        for t in threads {
            t.await.unwrap();
        }
        let left = held(&*a, bob).await.len() as u64;
        assert_eq!(
            a.total_queued(0).await.unwrap(),
            left,
            "{name}: after the race"
        );
        a.purge_expired(500).await.unwrap();
        let left = held(&*a, bob).await.len() as u64;
        assert_eq!(
            b.total_queued(0).await.unwrap(),
            left,
            "{name}: after a last sweep"
        );
        let all = held(&*a, bob).await;
        assert_eq!(
            a.ack_envelopes(bob, &all).await.unwrap() as usize,
            all.len()
        );
        assert_eq!(a.total_queued(0).await.unwrap(), 0, "{name}: all acked");
    }
}
