//! Pipelined requests on one connection (SPEC.md §12.4): a client that
//! writes many requests without waiting gets one response per request, in
//! request order; sends and acknowledgements in a row are handed to
//! storage together, and are still stored in request order; any other
//! request sees the effects of every request before it. On SQLite, and on
//! PostgreSQL when `MICROBOT_TEST_POSTGRES` is set (two writer tasks there:
//! a later batch must not overtake an earlier one of the same connection).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::{Bytes, BytesMut};
use microbot_protocol::codec::encode_frame;
use microbot_protocol::transport::{
    self, ClientFrame, ErrorCode, client_frame::Request, response, server_frame,
};

use crate::common::*;
use crate::support::backends::backends;

/// More sends than one connection may have in storage's hands at once
/// (32), so the pipeline fills and drains while the stream is read.
const SENDS: u64 = 75;
/// The request id of the send addressed to a device that does not exist.
const BAD_SEND: u64 = 40;
/// The request id of the device listing written between the sends.
const LISTING: u64 = 20;

fn send_request(recipient: u64, ciphertext: Bytes) -> Request {
    Request::Send(transport::SendRequest {
        envelopes: vec![transport::OutgoingEnvelope {
            recipient_device_id: recipient,
            ciphertext,
        }],
        complete_accounts: Vec::new(),
    })
}

fn numbered(i: u64) -> Bytes {
    Bytes::from(format!("message {i:03}").into_bytes())
}

/// Writes every request in one write, ids from `first_id` on.
async fn write_all(client: &mut Client, first_id: u64, requests: Vec<Request>) {
    let mut bytes = BytesMut::new();
    for (id, request) in (first_id..).zip(requests) {
        encode_frame(
            &ClientFrame {
                request_id: id,
                request: Some(request),
            },
            &mut bytes,
        )
        .unwrap();
    }
    client.send_raw(&bytes).await;
}

/// The next `n` responses, with their request ids, in the order they came
/// (pushes in between are kept by the client).
async fn responses(client: &mut Client, n: usize) -> Vec<(u64, response::Result)> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let frame = client.read_frame().await.expect("connection ended");
        match frame.kind {
            Some(server_frame::Kind::Response(r)) => {
                out.push((r.request_id, r.result.expect("response without result")));
            }
            Some(server_frame::Kind::Push(_)) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
    out
}

/// Writes every request at once (ids from `first_id` on) and reads their
/// answers, asserting one per request in request order.
async fn answered_in_order(
    client: &mut Client,
    first_id: u64,
    requests: Vec<Request>,
    backend: &str,
) -> Vec<(u64, response::Result)> {
    let ids: Vec<u64> = (first_id..).take(requests.len()).collect();
    write_all(client, first_id, requests).await;
    let answers = responses(client, ids.len()).await;
    let got: Vec<u64> = answers.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        got, ids,
        "{backend}: one response per request, in request order"
    );
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_sends_and_acks_are_answered_and_stored_in_request_order() {
    for backend in backends("pipelined") {
        let server = backend.start(|_| {}).await;
        let mut alice = new_device(&server, "alice").await;
        let mut bob = new_device(&server, "bob").await;

        // Alice writes 75 sends to Bob at once; request 40 names a device
        // that does not exist, request 20 is not a send (it waits for the
        // sends before it and holds back those after it).
        let requests = (1..=SENDS)
            .map(|id| match id {
                BAD_SEND => send_request(u64::MAX >> 1, numbered(id)),
                LISTING => Request::ListDevices(transport::ListDevicesRequest {}),
                _ => send_request(bob.device_id, numbered(id)),
            })
            .collect();
        let answers = answered_in_order(&mut alice.client, 1, requests, backend.name).await;
        for (id, result) in &answers {
            match (*id, result) {
                (BAD_SEND, response::Result::Error(e)) => {
                    assert_eq!(code(e), ErrorCode::UnknownDevice, "{}", backend.name);
                }
                (LISTING, response::Result::DeviceList(list)) => {
                    assert_eq!(list.devices.len(), 1, "{}", backend.name);
                }
                (_, response::Result::Send(_)) if *id != BAD_SEND && *id != LISTING => {}
                (id, other) => panic!("{}: request {id} answered {other:?}", backend.name),
            }
        }

        // Bob's queue holds the 73 messages in the order they were sent,
        // under increasing ids.
        let mut queued = Vec::new();
        loop {
            let page = fetch_after(
                &mut bob.client,
                queued
                    .last()
                    .map_or(0, |e: &transport::Envelope| e.envelope_id),
            )
            .await;
            let more = page.more;
            queued.extend(page.envelopes);
            if !more {
                break;
            }
        }
        let sent: Vec<Bytes> = (1..=SENDS)
            .filter(|id| *id != BAD_SEND && *id != LISTING)
            .map(numbered)
            .collect();
        let got: Vec<Bytes> = queued.iter().map(|e| e.ciphertext.clone()).collect();
        assert_eq!(got, sent, "{}: stored in request order", backend.name);
        assert!(
            queued
                .windows(2)
                .all(|w| w[0].envelope_id < w[1].envelope_id),
            "{}: ids increase in request order",
            backend.name
        );

        // Bob acknowledges the first 50 in five pipelined acks, then asks
        // for his queue in the same write: the fetch sees every ack before
        // it, and a second ack of the same ids deletes nothing.
        let acked: Vec<u64> = queued.iter().take(50).map(|e| e.envelope_id).collect();
        let mut requests: Vec<Request> = acked
            .chunks(10)
            .map(|ids| {
                Request::AckEnvelopes(transport::AckEnvelopesRequest {
                    envelope_ids: ids.to_vec(),
                })
            })
            .collect();
        requests.push(Request::FetchEnvelopes(
            transport::FetchEnvelopesRequest::default(),
        ));
        requests.push(Request::AckEnvelopes(transport::AckEnvelopesRequest {
            envelope_ids: acked.clone(),
        }));
        let answers = answered_in_order(&mut bob.client, 1000, requests, backend.name).await;
        assert_eq!(answers.len(), 7, "{}", backend.name);
        for (_, result) in &answers[..5] {
            assert!(
                matches!(result, response::Result::Ack(a) if a.deleted == 10),
                "{}: {result:?}",
                backend.name
            );
        }
        let response::Result::Envelopes(page) = &answers[5].1 else {
            panic!("{}: fetch answered {:?}", backend.name, answers[5].1);
        };
        let left: Vec<Bytes> = page
            .envelopes
            .iter()
            .map(|e| e.ciphertext.clone())
            .collect();
        assert_eq!(
            left,
            sent[50..].to_vec(),
            "{}: the fetch saw the acks",
            backend.name
        );
        assert!(
            matches!(&answers[6].1, response::Result::Ack(a) if a.deleted == 0),
            "{}: {:?}",
            backend.name,
            answers[6].1
        );
        server.stop().await;
    }
}

async fn fetch_after(client: &mut Client, after: u64) -> transport::Envelopes {
    match client
        .request(Request::FetchEnvelopes(transport::FetchEnvelopesRequest {
            after_envelope_id: after,
            ..Default::default()
        }))
        .await
    {
        response::Result::Envelopes(e) => e,
        other => panic!("fetch failed: {other:?}"),
    }
}

/// A client that pipelines sends and goes away before their answers: every
/// send the server stored is still pushed to the connected recipient (the
/// answers' work finishes without the connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_stored_after_the_sender_left_are_still_pushed() {
    let server = crate::common::TestServer::start().await;
    let alice = new_device(&server, "alice").await;
    let mut bob = new_device(&server, "bob").await;
    let mut sender = alice.client;
    let requests = (1..=30)
        .map(|id| send_request(bob.device_id, numbered(id)))
        .collect();
    write_all(&mut sender, 1, requests).await;
    // The first answer means the server has read the sends and handed
    // them to storage; the client leaves without the others.
    responses(&mut sender, 1).await;
    sender.connection.close(0u32.into(), b"gone");
    // Whatever was stored arrives as a push; the queue, once it stops
    // growing, says what was stored.
    let mut queued = fetch(&mut bob.client).await.envelopes;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let again = fetch(&mut bob.client).await.envelopes;
        if again.len() == queued.len() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the queue never settled"
        );
        queued = again;
    }
    let mut pushed = Vec::new();
    while let Some(push) = bob
        .client
        .push_within(std::time::Duration::from_millis(500))
        .await
    {
        if let Some(transport::push::Event::Envelope(e)) = push.event {
            pushed.push(e.envelope_id);
        }
    }
    let stored: Vec<u64> = queued.iter().map(|e| e.envelope_id).collect();
    eprintln!("stored {} of 30 before the sender left", stored.len());
    assert!(!stored.is_empty(), "the answered send was stored");
    assert_eq!(pushed, stored, "every stored send was pushed, in order");
    server.stop().await;
}

/// Group messages written at once, between 1:1 sends and around a refused
/// group send: one answer per request in request order, and each member's
/// queue holds them in request order under increasing ids. On SQLite the
/// group sends are pipelined with the sends (storage keeps them in order);
/// on PostgreSQL each waits for the answers before it, and the order is
/// the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_group_sends_are_answered_and_stored_in_request_order() {
    /// Requests written at once; even ids are group messages, odd ids 1:1
    /// sends to Bob, and request 31 a group message to an unknown group.
    const REQUESTS: u64 = 60;
    const UNKNOWN_GROUP: u64 = 31;
    for backend in backends("pipelined_groups") {
        let server = backend.start(|_| {}).await;
        let mut alice = new_device(&server, "alice").await;
        let mut bob = new_device(&server, "bob").await;
        let mut carol = new_device(&server, "carol").await;
        let group = crate::review_quotas::create_group(&mut alice.client, &["bob", "carol"]).await;
        let requests = (1..=REQUESTS)
            .map(|id| match id {
                UNKNOWN_GROUP => Request::SendGroup(transport::SendGroupRequest {
                    group_id: Bytes::from_static(&[7; 16]),
                    ciphertext: numbered(id),
                    ..Default::default()
                }),
                _ if id.is_multiple_of(2) => Request::SendGroup(transport::SendGroupRequest {
                    group_id: group.clone(),
                    ciphertext: numbered(id),
                    ..Default::default()
                }),
                _ => send_request(bob.device_id, numbered(id)),
            })
            .collect();
        let answers = answered_in_order(&mut alice.client, 1, requests, backend.name).await;
        for (id, result) in &answers {
            match (*id, result) {
                (UNKNOWN_GROUP, response::Result::Error(e)) => {
                    assert_eq!(code(e), ErrorCode::UnknownGroup, "{}", backend.name);
                }
                (id, response::Result::Send(sent)) if id != UNKNOWN_GROUP => {
                    assert!(sent.skipped_device_ids.is_empty(), "{}", backend.name);
                }
                (id, other) => panic!("{}: request {id} answered {other:?}", backend.name),
            }
        }

        // Bob has every message but the refused one, Carol the group's,
        // each in request order under increasing ids; a group message says
        // its group.
        let to_bob: Vec<Bytes> = (1..=REQUESTS)
            .filter(|id| *id != UNKNOWN_GROUP)
            .map(numbered)
            .collect();
        let to_carol: Vec<Bytes> = (1..=REQUESTS)
            .filter(|id| id.is_multiple_of(2))
            .map(numbered)
            .collect();
        for (member, expected) in [(&mut bob, to_bob), (&mut carol, to_carol)] {
            let queued = fetch(&mut member.client).await.envelopes;
            let got: Vec<Bytes> = queued.iter().map(|e| e.ciphertext.clone()).collect();
            assert_eq!(got, expected, "{}: stored in request order", backend.name);
            assert!(
                queued
                    .windows(2)
                    .all(|w| w[0].envelope_id < w[1].envelope_id),
                "{}: ids increase in request order",
                backend.name
            );
            for envelope in &queued {
                let from_group = envelope.group_id.as_ref() == group.as_ref();
                assert_eq!(
                    from_group,
                    expected_is_group(&envelope.ciphertext),
                    "{}: {:?}",
                    backend.name,
                    envelope.ciphertext
                );
            }
        }
        server.stop().await;
    }
}

/// Whether the numbered message was sent to the group (even request ids).
fn expected_is_group(ciphertext: &Bytes) -> bool {
    let text = std::str::from_utf8(ciphertext).unwrap();
    let id: u64 = text.trim_start_matches("message ").parse().unwrap();
    id.is_multiple_of(2)
}

/// The fan-out limit holds for group sends written at once (SPEC.md
/// §12.12): each reserves what the group's last send reached, so the ones
/// behind it find the bucket as they would had each waited for the one
/// before. Bucket of 10, four recipient devices: after one send (6 left),
/// five written at once get two answers (6 → 2 → −2) and three refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_group_sends_stay_within_the_fan_out_limit() {
    for backend in backends("pipelined_fan_out") {
        let server = backend
            .start(|c| {
                c.rate_send_per_account = 10;
                c.rate_register_per_ip = 0;
            })
            .await;
        let mut alice = new_device(&server, "alice").await;
        let mut names = Vec::new();
        for i in 0..4 {
            let name = format!("member{i}");
            new_device(&server, &name).await;
            names.push(name);
        }
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let group = crate::review_quotas::create_group(&mut alice.client, &names).await;
        let first = crate::review_quotas::send_group(&mut alice.client, &group).await;
        assert!(
            matches!(&first, response::Result::Send(s) if s.skipped_device_ids.is_empty()),
            "{}: {first:?}",
            backend.name
        );
        let requests = (0..5)
            .map(|i| {
                Request::SendGroup(transport::SendGroupRequest {
                    group_id: group.clone(),
                    ciphertext: numbered(i),
                    ..Default::default()
                })
            })
            .collect();
        let answers = answered_in_order(&mut alice.client, 100, requests, backend.name).await;
        let verdicts: Vec<&str> = answers
            .iter()
            .map(|(_, result)| match result {
                response::Result::Send(_) => "sent",
                response::Result::Error(e) if code(e) == ErrorCode::RateLimited => "limited",
                other => panic!("{}: {other:?}", backend.name),
            })
            .collect();
        assert_eq!(
            verdicts,
            ["sent", "sent", "limited", "limited", "limited"],
            "{}",
            backend.name
        );
        server.stop().await;
    }
}
