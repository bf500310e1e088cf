//! Provisioning slots for device linking (SPEC.md §12.14) over the wire and
//! in both storage backends: one read, only ciphertext, gone when expired,
//! creation limited per address.

use crate::common;
use crate::support::engines;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use engines::Schema;
use microbot_protocol::transport::{
    CreateProvisioningSlotRequest, ErrorCode, FetchProvisioningSlotRequest,
    PutProvisioningSlotRequest, client_frame::Request, response,
};
use microbot_server::testing::provisioning::{MAX_SEALED_LEN, SLOT_TTL_MS};
use microbot_server::testing::storage::postgres::PostgresStorage;
use microbot_server::testing::storage::sqlite::SqliteStorage;
use microbot_server::testing::storage::{SlotRead, Storage};

async fn create_slot(client: &mut Client) -> Bytes {
    match client
        .request(Request::CreateProvisioningSlot(
            CreateProvisioningSlotRequest {},
        ))
        .await
    {
        response::Result::ProvisioningSlot(slot) => {
            assert_eq!(slot.slot_id.len(), 16);
            slot.slot_id
        }
        other => panic!("unexpected answer {other:?}"),
    }
}

fn fetch(slot_id: &Bytes) -> Request {
    Request::FetchProvisioningSlot(FetchProvisioningSlotRequest {
        slot_id: slot_id.clone(),
    })
}

fn put(slot_id: &Bytes, sealed: Bytes) -> Request {
    Request::PutProvisioningSlot(PutProvisioningSlotRequest {
        slot_id: slot_id.clone(),
        sealed,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_is_read_once_and_the_second_read_fails() {
    let server = TestServer::start().await;
    let mut old = new_device(&server, "alice").await;
    let mut new = server.client().await;
    let slot = create_slot(&mut new).await;
    match new.request(fetch(&slot)).await {
        response::Result::ProvisioningMessage(m) => assert!(!m.ready, "nothing posted yet"),
        other => panic!("unexpected answer {other:?}"),
    }
    let sealed = random_bytes(300);
    assert!(matches!(
        old.client.request(put(&slot, sealed.clone())).await,
        response::Result::Ok(_)
    ));
    // A slot takes one message.
    let again = old.client.request_err(put(&slot, random_bytes(10))).await;
    assert_eq!(code(&again), ErrorCode::UnknownProvisioningSlot);
    match new.request(fetch(&slot)).await {
        response::Result::ProvisioningMessage(m) => {
            assert!(m.ready);
            assert_eq!(m.sealed, sealed);
        }
        other => panic!("unexpected answer {other:?}"),
    }
    let second = new.request_err(fetch(&slot)).await;
    assert_eq!(code(&second), ErrorCode::UnknownProvisioningSlot);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posting_needs_login_and_the_size_cap_holds() {
    let server = TestServer::start().await;
    let mut old = new_device(&server, "alice").await;
    let mut new = server.client().await;
    let slot = create_slot(&mut new).await;
    let anonymous = new.request_err(put(&slot, random_bytes(10))).await;
    assert_eq!(code(&anonymous), ErrorCode::NotAuthenticated);
    let large = old
        .client
        .request_err(put(&slot, random_bytes(MAX_SEALED_LEN + 1)))
        .await;
    assert_eq!(code(&large), ErrorCode::ProvisioningMessageTooLarge);
    let empty = old.client.request_err(put(&slot, Bytes::new())).await;
    assert_eq!(code(&empty), ErrorCode::InvalidArgument);
    let short_id = new.request_err(fetch(&Bytes::from_static(b"short"))).await;
    assert_eq!(code(&short_id), ErrorCode::InvalidArgument);
    let unknown = new.request_err(fetch(&random_bytes(16))).await;
    assert_eq!(code(&unknown), ErrorCode::UnknownProvisioningSlot);
    // A logged-in device does not open or read slots.
    let logged_in = old.client.request_err(fetch(&slot)).await;
    assert_eq!(code(&logged_in), ErrorCode::AlreadyAuthenticated);
    // The slot is untouched by all of that.
    match new.request(fetch(&slot)).await {
        response::Result::ProvisioningMessage(m) => assert!(!m.ready),
        other => panic!("unexpected answer {other:?}"),
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_creation_is_rate_limited_per_address() {
    let server = TestServer::start_with(|c| c.rate_register_per_ip = 3).await;
    let mut client = server.client().await;
    for _ in 0..3 {
        create_slot(&mut client).await;
    }
    let refused = client
        .request_err(Request::CreateProvisioningSlot(
            CreateProvisioningSlotRequest {},
        ))
        .await;
    assert_eq!(code(&refused), ErrorCode::RateLimited);
    assert!(refused.retry_after_ms > 0);
    server.stop().await;
}

/// A backend's name, its store, and what keeps it alive.
type Backend = (&'static str, Arc<dyn Storage>, Box<dyn std::any::Any>);

async fn backends(test: &str) -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite3");
    let mut out: Vec<Backend> = vec![(
        "sqlite",
        Arc::new(SqliteStorage::open(&path).unwrap()),
        Box::new(dir),
    )];
    match std::env::var("MICROBOT_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => {
            let schema = Schema::new(&url, &format!("t_{test}"));
            let pg = PostgresStorage::open(&schema.url, 2)
                .await
                .expect("open postgres");
            out.push(("postgres", Arc::new(pg), Box::new(schema)));
        }
        _ => eprintln!("provisioning::{test}: MICROBOT_TEST_POSTGRES not set, PostgreSQL skipped"),
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_slot_is_gone_in_every_backend() {
    for (name, store, _keep) in backends("prov_expiry").await {
        let now = 1_000_000;
        let expires = now + SLOT_TTL_MS;
        let (a, b) = ([1u8; 16], [2u8; 16]);
        assert!(
            store
                .create_provisioning_slot(&a, expires, now, 10)
                .await
                .unwrap()
        );
        assert!(
            store
                .create_provisioning_slot(&b, expires, now, 10)
                .await
                .unwrap()
        );
        assert!(
            store
                .put_provisioning_message(&a, b"sealed", now)
                .await
                .unwrap(),
            "{name}"
        );
        assert_eq!(
            store.take_provisioning_message(&b, now).await.unwrap(),
            SlotRead::Waiting
        );
        // At the expiry both are gone, filled or not, and cannot be filled.
        assert_eq!(
            store.take_provisioning_message(&a, expires).await.unwrap(),
            SlotRead::Missing,
            "{name}"
        );
        assert!(
            !store
                .put_provisioning_message(&b, b"late", expires)
                .await
                .unwrap()
        );
        assert_eq!(
            store.take_provisioning_message(&b, expires).await.unwrap(),
            SlotRead::Missing
        );
        // Creating a slot purges the expired ones (the cap counts only live slots).
        assert!(
            store
                .create_provisioning_slot(&[3; 16], expires + SLOT_TTL_MS, expires, 1)
                .await
                .unwrap(),
            "{name}"
        );
        assert!(
            !store
                .create_provisioning_slot(&[4; 16], expires + SLOT_TTL_MS, expires, 1)
                .await
                .unwrap(),
            "{name}"
        );
        assert_eq!(
            store.take_provisioning_message(&a, now).await.unwrap(),
            SlotRead::Missing,
            "{name}: purged"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filled_slot_is_read_once_in_every_backend() {
    for (name, store, _keep) in backends("prov_once").await {
        let id = [9u8; 16];
        assert!(
            store
                .create_provisioning_slot(&id, 2_000, 1_000, 10)
                .await
                .unwrap()
        );
        assert!(
            store
                .put_provisioning_message(&id, b"ciphertext", 1_000)
                .await
                .unwrap()
        );
        assert!(
            !store
                .put_provisioning_message(&id, b"other", 1_000)
                .await
                .unwrap(),
            "{name}"
        );
        assert_eq!(
            store.take_provisioning_message(&id, 1_000).await.unwrap(),
            SlotRead::Ready(b"ciphertext".to_vec())
        );
        assert_eq!(
            store.take_provisioning_message(&id, 1_000).await.unwrap(),
            SlotRead::Missing,
            "{name}"
        );
    }
}
