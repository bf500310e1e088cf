//! Queues: durable before ack, push, ordered offline fetch, delete on ack,
//! authorisation, cap, TTL (issue 4 points 6, 7).

use crate::common;

use bytes::Bytes;
use common::*;
use microbot_protocol::transport::{
    ErrorCode, FetchEnvelopesRequest, LoginRequest, client_frame::Request, push, response,
};

fn msg(i: u32) -> Bytes {
    Bytes::from(format!("ciphertext #{i}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_sends_survive_a_restart_and_offline_devices_fetch_in_order() {
    let server = TestServer::start().await;
    let mut olga = new_device(&server, "olga").await;
    let pete = new_device(&server, "pete").await;
    let pete_id = pete.device_id;
    let pete_key = pete.key.clone();
    drop(pete.client); // offline
    for i in 0..5 {
        let reply = send_to(&mut olga.client, &[(pete_id, msg(i))]).await;
        assert!(matches!(reply, response::Result::Send(_)), "{reply:?}");
    }
    // Restart the server on the same data directory: every acknowledged
    // envelope is still there.
    let dir = server.stop_keep_dir().await;
    let server = TestServer::start_in(dir, |_| {}).await;
    let mut pete_client = server.client().await;
    let login = login(&mut pete_client, pete_id, &pete_key).await;
    assert_eq!(login.queued_envelopes, 5);
    let fetched = fetch(&mut pete_client).await;
    let bodies: Vec<Bytes> = fetched
        .envelopes
        .iter()
        .map(|e| e.ciphertext.clone())
        .collect();
    assert_eq!(bodies, (0..5).map(msg).collect::<Vec<_>>(), "queue order");
    let ids: Vec<u64> = fetched.envelopes.iter().map(|e| e.envelope_id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));

    // Paging.
    let response::Result::Envelopes(page) = pete_client
        .request(Request::FetchEnvelopes(FetchEnvelopesRequest {
            after_envelope_id: ids[1],
            limit: 2,
        }))
        .await
    else {
        panic!()
    };
    assert_eq!(
        page.envelopes
            .iter()
            .map(|e| e.envelope_id)
            .collect::<Vec<_>>(),
        ids[2..4].to_vec()
    );
    assert!(page.more);

    // Nothing is deleted without an ack; another device cannot ack them.
    let mut olga2 = reconnect(&server, olga.device_id, &olga.key).await;
    assert_eq!(
        ack(&mut olga2, ids.clone()).await,
        0,
        "acks only touch the caller's queue"
    );
    assert_eq!(fetch(&mut pete_client).await.envelopes.len(), 5);
    assert_eq!(ack(&mut pete_client, ids[..2].to_vec()).await, 2);
    assert_eq!(ack(&mut pete_client, ids[..2].to_vec()).await, 0);
    let rest = fetch(&mut pete_client).await;
    assert_eq!(
        rest.envelopes
            .iter()
            .map(|e| e.envelope_id)
            .collect::<Vec<_>>(),
        ids[2..].to_vec()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn multi_recipient_send_pushes_to_connected_devices_and_is_atomic() {
    let server = TestServer::start_with(|c| {
        c.max_queue_len = 3;
        // One sender fills the whole queue here (the share is tested in
        // review_quotas.rs).
        c.queue_sender_share_percent = 100;
    })
    .await;
    let mut quinn_ = new_device(&server, "quinn").await;
    let mut rosa = new_device(&server, "rosa").await;
    let mut sam = new_device(&server, "sam").await;

    let reply = send_to(
        &mut quinn_.client,
        &[(rosa.device_id, msg(1)), (sam.device_id, msg(2))],
    )
    .await;
    assert!(matches!(reply, response::Result::Send(_)), "{reply:?}");
    for (client, body) in [(&mut rosa.client, msg(1)), (&mut sam.client, msg(2))] {
        let p = client.next_push().await;
        let Some(push::Event::Envelope(e)) = p.event else {
            panic!("{p:?}")
        };
        assert_eq!(e.ciphertext, body);
    }

    // Fill rosa's queue (cap 3).
    for i in 0..2 {
        send_to(&mut quinn_.client, &[(rosa.device_id, msg(10 + i))]).await;
    }
    let response::Result::Error(err) = send_to(
        &mut quinn_.client,
        &[(sam.device_id, msg(20)), (rosa.device_id, msg(21))],
    )
    .await
    else {
        panic!()
    };
    assert_eq!(common::code(&err), ErrorCode::QueueFull);
    assert_eq!(err.device_ids, vec![rosa.device_id]);
    // Atomic: sam got nothing from the refused send.
    assert_eq!(fetch(&mut sam.client).await.envelopes.len(), 1);

    // Unknown recipient: nothing stored for the others either.
    let response::Result::Error(err) = send_to(
        &mut quinn_.client,
        &[(sam.device_id, msg(30)), (424_242, msg(31))],
    )
    .await
    else {
        panic!()
    };
    assert_eq!(common::code(&err), ErrorCode::UnknownDevice);
    assert_eq!(fetch(&mut sam.client).await.envelopes.len(), 1);

    // Duplicate recipients and empty/oversize ciphertexts are refused.
    let response::Result::Error(err) = send_to(
        &mut quinn_.client,
        &[(sam.device_id, msg(1)), (sam.device_id, msg(2))],
    )
    .await
    else {
        panic!()
    };
    assert_eq!(common::code(&err), ErrorCode::InvalidArgument);
    let response::Result::Error(err) =
        send_to(&mut quinn_.client, &[(sam.device_id, Bytes::new())]).await
    else {
        panic!()
    };
    assert_eq!(common::code(&err), ErrorCode::InvalidArgument);

    // Acking frees room in the capped queue.
    let ids: Vec<u64> = fetch(&mut rosa.client)
        .await
        .envelopes
        .iter()
        .map(|e| e.envelope_id)
        .collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(ack(&mut rosa.client, ids).await, 3);
    assert!(matches!(
        send_to(&mut quinn_.client, &[(rosa.device_id, msg(40))]).await,
        response::Result::Send(_)
    ));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_envelopes_are_not_delivered_and_are_purged() {
    // The server's clock moves when the test says so: the time-to-live
    // runs out without waiting for it.
    let clock = std::sync::Arc::new(microbot_server::testing::clock::ManualClock::at_system_time());
    let server = TestServer::start_with_clock(clock.clone(), |c| {
        c.envelope_ttl_secs = 60;
        c.purge_interval_secs = 1;
    })
    .await;
    let mut tom = new_device(&server, "tom").await;
    let mut uma = new_device(&server, "uma").await;
    send_to(&mut tom.client, &[(uma.device_id, msg(1))]).await;
    assert_eq!(fetch(&mut uma.client).await.envelopes.len(), 1);
    clock.advance(59_000);
    assert_eq!(fetch(&mut uma.client).await.envelopes.len(), 1, "not yet");
    clock.advance(1_000);
    assert!(fetch(&mut uma.client).await.envelopes.is_empty(), "expired");
    // The sweep runs every second of real time, at the server's time.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut again = server.client().await;
    let signature = login_signature(&uma.key, &again.challenge.clone(), uma.device_id);
    let response::Result::Login(l) = again
        .request(Request::Login(LoginRequest {
            device_id: uma.device_id,
            signature,
        }))
        .await
    else {
        panic!()
    };
    assert_eq!(l.queued_envelopes, 0);
    // The row itself is gone from the database file after the sweep.
    let conn = rusqlite::Connection::open(server.db_path()).unwrap();
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM envelopes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0);
    server.stop().await;
}
