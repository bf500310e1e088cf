//! Issue 14, queue flooding: a sender may fill only its share of a device
//! queue, a group send reaches the queues with room and names the full ones,
//! and a send is charged one token per recipient device (SPEC.md §12.7,
//! §12.10, §12.12). The storage stories run on SQLite and on PostgreSQL
//! (when `MICROBOT_TEST_POSTGRES` is set).

use crate::common;
use crate::support::backends;

use backends::backends;
use bytes::Bytes;
use common::*;
use microbot_protocol::transport::{
    CreateGroupRequest, ErrorCode, SendGroupRequest, SendResponse, client_frame::Request, response,
};

pub async fn create_group(client: &mut Client, members: &[&str]) -> Bytes {
    let group_id = random_bytes(16);
    let reply = client
        .request(Request::CreateGroup(CreateGroupRequest {
            group_id: group_id.clone(),
            members: members.iter().map(|m| (*m).to_owned()).collect(),
            encrypted_metadata: Bytes::from_static(b"name"),
        }))
        .await;
    assert!(matches!(reply, response::Result::Group(_)), "{reply:?}");
    group_id
}

pub async fn send_group(client: &mut Client, group_id: &Bytes) -> response::Result {
    client
        .request(Request::SendGroup(SendGroupRequest {
            group_id: group_id.clone(),
            ciphertext: Bytes::from_static(b"group message"),
            ..SendGroupRequest::default()
        }))
        .await
}

fn sent(reply: response::Result) -> SendResponse {
    match reply {
        response::Result::Send(s) => s,
        other => panic!("expected a send response, got {other:?}"),
    }
}

/// Sends 1:1 envelopes to `to` until the server refuses; returns how many
/// were stored and the refusal.
async fn flood(client: &mut Client, to: u64) -> (u32, ErrorCode) {
    for stored in 0..1000 {
        match send_to(client, &[(to, Bytes::from_static(b"spam"))]).await {
            response::Result::Send(_) => {}
            response::Result::Error(e) => return (stored, code(&e)),
            other => panic!("unexpected {other:?}"),
        }
    }
    panic!("the flood was never refused");
}

#[tokio::test(flavor = "multi_thread")]
async fn flooders_fill_only_their_share_and_honest_sends_get_through() {
    for be in backends("flood") {
        // 10 % of 100: each sender may hold 10 envelopes in one queue.
        let server = be
            .start(|c| {
                c.max_queue_len = 100;
                c.queue_sender_share_percent = 10;
                c.rate_register_per_ip = 0;
            })
            .await;
        let victim = new_device(&server, "victim").await;
        let third = new_device(&server, "third").await;
        let mut honest = new_device(&server, "honest").await;
        // Nine flooders fill 90 % of the victim's queue and no more.
        let mut flooders = Vec::new();
        for i in 0..10 {
            let mut f = new_device(&server, &format!("flooder{i}")).await;
            if i < 9 {
                let (stored, refusal) = flood(&mut f.client, victim.device_id).await;
                assert_eq!(
                    (stored, refusal),
                    (10, ErrorCode::QueueFull),
                    "{}: one sender's share",
                    be.name
                );
            }
            flooders.push(f);
        }
        // The honest user's 1:1 send still gets through.
        let reply = send_to(
            &mut honest.client,
            &[(victim.device_id, Bytes::from_static(b"hello"))],
        )
        .await;
        assert!(
            matches!(reply, response::Result::Send(_)),
            "{}: {reply:?}",
            be.name
        );
        // Ten flooders fill the third member's queue completely.
        for f in &mut flooders {
            assert_eq!(flood(&mut f.client, third.device_id).await.0, 10);
        }
        let full = send_to(
            &mut honest.client,
            &[(third.device_id, Bytes::from_static(b"hi"))],
        )
        .await;
        match full {
            response::Result::Error(e) => {
                assert_eq!(code(&e), ErrorCode::QueueFull);
                assert_eq!(e.device_ids, vec![third.device_id]);
            }
            other => panic!("{}: expected QUEUE_FULL, got {other:?}", be.name),
        }
        // A group send reaches the victim and names the full queue.
        let group = create_group(&mut honest.client, &["victim", "third"]).await;
        let response = sent(send_group(&mut honest.client, &group).await);
        assert_eq!(
            response.skipped_device_ids,
            vec![third.device_id],
            "{}",
            be.name
        );
        let mut victim_conn = reconnect(&server, victim.device_id, &victim.key).await;
        let mut queued = Vec::new();
        let mut after = 0;
        loop {
            let page = match victim_conn
                .request(Request::FetchEnvelopes(
                    microbot_protocol::transport::FetchEnvelopesRequest {
                        after_envelope_id: after,
                        limit: 1000,
                    },
                ))
                .await
            {
                response::Result::Envelopes(e) => e,
                other => panic!("fetch failed: {other:?}"),
            };
            after = page.envelopes.last().map_or(after, |e| e.envelope_id);
            queued.extend(page.envelopes);
            if !page.more {
                break;
            }
        }
        assert_eq!(queued.len(), 92, "{}: 90 spam, 1:1 and group", be.name);
        assert!(
            queued
                .iter()
                .any(|e| e.sender_username == "honest" && !e.group_id.is_empty()),
            "{}: the group message reached the victim",
            be.name
        );
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fan_out_counts_one_token_per_recipient_device() {
    let server = TestServer::start_with(|c| {
        c.rate_send_per_account = 6;
        c.rate_register_per_ip = 0;
    })
    .await;
    let mut alice = new_device(&server, "alice").await;
    let mut names = Vec::new();
    let mut members = Vec::new();
    for i in 0..6 {
        let name = format!("member{i}");
        members.push(new_device(&server, &name).await);
        names.push(name);
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let group = create_group(&mut alice.client, &names).await;
    // Six recipient devices: the first send takes the whole bucket.
    let first = sent(send_group(&mut alice.client, &group).await);
    assert!(first.skipped_device_ids.is_empty());
    match send_group(&mut alice.client, &group).await {
        response::Result::Error(e) => {
            assert_eq!(code(&e), ErrorCode::RateLimited);
            assert!(e.retry_after_ms >= 1);
        }
        other => panic!("the second fan-out of 6 should wait: {other:?}"),
    }
    // A 1:1 send to three devices at once also counts three.
    let mut bob = new_device(&server, "bob").await;
    let targets: Vec<(u64, Bytes)> = members
        .iter()
        .take(3)
        .map(|m| (m.device_id, Bytes::from_static(b"x")))
        .collect();
    let _ = send_to(&mut bob.client, &targets).await;
    let _ = send_to(&mut bob.client, &targets).await;
    match send_to(&mut bob.client, &targets).await {
        response::Result::Error(e) => assert_eq!(code(&e), ErrorCode::RateLimited),
        other => panic!("9 devices within a bucket of 6: {other:?}"),
    }
    server.stop().await;
}

async fn queued_gauge(addr: std::net::SocketAddr) -> Option<f64> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_string(&mut text))
        .await
        .unwrap()
        .unwrap();
    text.lines().find_map(|l| {
        l.strip_prefix("microbot_queued_envelopes ")
            .map(|v| v.parse().unwrap())
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scrape_does_not_count_every_envelope() {
    let server = TestServer::start_with(|c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let addr = server.metrics_addr.unwrap();
    let mut alice = new_device(&server, "alice").await;
    let bob = new_device(&server, "bob").await;
    assert_eq!(queued_gauge(addr).await, Some(0.0));
    let reply = send_to(&mut alice.client, &[(bob.device_id, random_bytes(8))]).await;
    assert!(matches!(reply, response::Result::Send(_)), "{reply:?}");
    // Scrapes right after serve the count taken before the send: the
    // queues are not walked again for every scrape.
    for _ in 0..20 {
        assert_eq!(queued_gauge(addr).await, Some(0.0));
    }
    // Within the bounded staleness the gauge catches up.
    let deadline = tokio::time::Instant::now()
        + microbot_server::testing::metrics::QUEUED_MAX_AGE
        + std::time::Duration::from_secs(10);
    while queued_gauge(addr).await != Some(1.0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gauge never moved"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    server.stop().await;
}

/// Whether one more 1:1 envelope from `client` to `to` is stored.
async fn room_for(client: &mut Client, to: u64) -> bool {
    match send_to(client, &[(to, random_bytes(8))]).await {
        response::Result::Send(_) => true,
        response::Result::Error(e) if code(&e) == ErrorCode::QueueFull => false,
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kept_queue_length_follows_sends_acks_and_expiry() {
    for be in backends("queue_len") {
        let server = be
            .start(|c| {
                c.max_queue_len = 3;
                c.queue_sender_share_percent = 100;
            })
            .await;
        let mut alice = new_device(&server, "alice").await;
        let mut bob = new_device(&server, "bob").await;
        let group = create_group(&mut alice.client, &["bob"]).await;
        for _ in 0..2 {
            assert!(room_for(&mut alice.client, bob.device_id).await);
        }
        assert!(
            sent(send_group(&mut alice.client, &group).await)
                .skipped_device_ids
                .is_empty()
        );
        assert!(
            !room_for(&mut alice.client, bob.device_id).await,
            "{}",
            be.name
        );
        let full = sent(send_group(&mut alice.client, &group).await);
        assert_eq!(full.skipped_device_ids, vec![bob.device_id], "{}", be.name);
        // Acks make room again, exactly as much as they delete.
        let queued = fetch(&mut bob.client).await.envelopes;
        assert_eq!(queued.len(), 3, "{}", be.name);
        let ids: Vec<u64> = queued.iter().map(|e| e.envelope_id).collect();
        assert_eq!(ack(&mut bob.client, ids[..2].to_vec()).await, 2);
        assert_eq!(
            ack(&mut bob.client, ids[..2].to_vec()).await,
            0,
            "acked twice"
        );
        assert!(room_for(&mut alice.client, bob.device_id).await);
        assert!(
            sent(send_group(&mut alice.client, &group).await)
                .skipped_device_ids
                .is_empty()
        );
        assert!(
            !room_for(&mut alice.client, bob.device_id).await,
            "{}",
            be.name
        );
        server.stop().await;

        // Expired envelopes stop counting once the sweep deletes them.
        let server = be
            .start(|c| {
                c.max_queue_len = 2;
                c.queue_sender_share_percent = 100;
                c.envelope_ttl_secs = 1;
                c.purge_interval_secs = 1;
            })
            .await;
        let mut carol = new_device(&server, "carol").await;
        let dave = new_device(&server, "dave").await;
        while room_for(&mut carol.client, dave.device_id).await {}
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
        while !room_for(&mut carol.client, dave.device_id).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: never swept",
                be.name
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        server.stop().await;
    }
}
