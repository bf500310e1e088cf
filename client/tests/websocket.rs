//! The WebSocket transport through the SDK (SPEC.md §12.13): a QUIC client
//! and a WebSocket client chat through one server, and `Transport::Auto`
//! falls back to the WebSocket by itself when the QUIC port drops every
//! datagram, then keeps using it for that address.
use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use microbot_client::{
    AccountConfig, Conversation, IdentitySource, ServerConfig, StoreConfig, Transport,
};
use microbot_server::{Config, Server, ShutdownHandle};

/// Enrols and connects a device of `user` through `server`.
async fn online_via(server: &ServerConfig, user: &mut User, config: AccountConfig) -> Device {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreConfig::new(dir.path().join("client.sqlite3")).with_kdf(CHEAP_KDF);
    let (account, mut events) = try_enrol(server, &store, user, IdentitySource::New, config)
        .await
        .unwrap();
    account.connect();
    wait_connected(&mut events).await;
    Device {
        account,
        events,
        store,
        dir,
    }
}

/// Registers and confirms `username` through `server`.
async fn register_via(server: &ServerConfig, username: &str) -> User {
    let password = format!("pw-{username}-secret");
    let registration = microbot_client::register(server, username, &password)
        .await
        .unwrap();
    let mut auth = Authenticator::from_base32(&registration.totp_secret_base32);
    microbot_client::confirm_registration(server, username, &password, &auth.fresh())
        .await
        .unwrap();
    User {
        username: username.to_owned(),
        password,
        auth,
        recovery_codes: Vec::new(),
        otpauth_uri: String::new(),
    }
}

/// `from` sends a file of a little over 1 MiB (several messages and a
/// partial last one) to `to`, which downloads it: identical bytes.
async fn send_and_fetch_file(from: &Device, to: &mut Device, name: &str) {
    let data: Vec<u8> = (0..(1024 * 1024 + 4321u32))
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let path = from.dir.path().join(name);
    std::fs::write(&path, &data).unwrap();
    let peer = to.account.username().to_owned();
    let id = from
        .account
        .send_file(&Conversation::Direct(peer), &path, |_| {})
        .await
        .unwrap();
    let got = next_text(&mut to.events).await;
    assert_eq!(got.message_id, id);
    let dest = to.dir.path().join(format!("got-{name}"));
    let len = to
        .account
        .download_attachment(&id, &dest, |_| {})
        .await
        .unwrap();
    assert_eq!(len, data.len() as u64);
    assert!(std::fs::read(&dest).unwrap() == data, "identical bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quic_client_and_a_websocket_client_chat_both_ways() {
    let server = TestServer::start().await;
    let quic = server.config.clone().with_transport(Transport::Quic);
    let ws = server.config.clone().with_transport(Transport::WebSocket);
    let mut alice_user = register_via(&quic, "alice").await;
    // Registration, confirmation and enrolment work over the WebSocket too.
    let mut bob_user = register_via(&ws, "bob").await;
    let mut alice = online_via(&quic, &mut alice_user, fast_config()).await;
    let mut bob = online_via(&ws, &mut bob_user, fast_config()).await;
    assert_eq!(alice.account.connected_transport(), Some(Transport::Quic));
    assert_eq!(
        bob.account.connected_transport(),
        Some(Transport::WebSocket)
    );

    let to_bob = Conversation::Direct("bob".into());
    let to_alice = Conversation::Direct("alice".into());
    let sent = alice.account.send_text(&to_bob, "over QUIC").unwrap();
    let got = next_text(&mut bob.events).await;
    assert_eq!(
        (got.author.as_str(), got.text.as_str()),
        ("alice", "over QUIC")
    );
    assert_eq!(got.message_id, sent);
    let sent = bob.account.send_text(&to_alice, "over WebSocket").unwrap();
    let got = next_text(&mut alice.events).await;
    assert_eq!(
        (got.author.as_str(), got.text.as_str()),
        ("bob", "over WebSocket")
    );
    assert_eq!(got.message_id, sent);
    // Several in a row keep their order across the transports.
    for i in 0..5 {
        bob.account.send_text(&to_alice, &format!("n{i}")).unwrap();
    }
    for i in 0..5 {
        assert_eq!(next_text(&mut alice.events).await.text, format!("n{i}"));
    }

    // Attachments both ways: uploaded over one transport, downloaded over
    // the other.
    send_and_fetch_file(&alice, &mut bob, "q.bin").await;
    send_and_fetch_file(&bob, &mut alice, "w.bin").await;
    server.stop().await;
}

/// A UDP socket that takes every datagram and never answers (UDP blocked),
/// counting what it got.
fn black_hole(port: u16) -> (Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let socket = std::net::UdpSocket::bind(("127.0.0.1", port)).unwrap();
    socket.set_nonblocking(true).unwrap();
    let socket = tokio::net::UdpSocket::from_std(socket).unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while socket.recv_from(&mut buf).await.is_ok() {
            seen.fetch_add(1, Ordering::Relaxed);
        }
    });
    (count, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_falls_back_to_websocket_when_udp_is_dropped_and_delivers() {
    let dir = tempfile::tempdir().unwrap();
    // QUIC on some UDP port; the WebSocket on TCP port P; on UDP port P
    // nothing but a socket that drops everything.
    let config = Config {
        data_dir: dir.path().to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        ws_listen: Some("127.0.0.1:0".to_owned()),
        argon2_memory_kib: 64,
        argon2_iterations: 1,
        argon2_parallelism: 1,
        totp_skew_steps: 10,
        shutdown_grace_secs: 1,
        ..Config::default()
    };
    let server = Server::bind(config).await.unwrap();
    let quic_addr = server.local_addr().unwrap();
    let ws_addr: SocketAddr = server.websocket_addr().unwrap();
    let (dropped, hole) = black_hole(ws_addr.port());
    let fingerprint = server.fingerprint().to_owned();
    let (handle, rx): (ShutdownHandle, _) = server.handle();
    let task = tokio::spawn(server.run(rx));

    // Auto is the default transport.
    let blocked = ServerConfig::new(ws_addr, &fingerprint).unwrap();
    assert_eq!(blocked.transport, Transport::Auto);
    let direct = ServerConfig::new(quic_addr, &fingerprint).unwrap();

    let mut alice_user = register_via(&blocked, "alice").await;
    assert!(
        dropped.load(Ordering::Relaxed) > 0,
        "the first attempt went to QUIC"
    );
    let mut bob_user = register_via(&direct, "bob").await;
    let mut alice = online_via(&blocked, &mut alice_user, fast_config()).await;
    let mut bob = online_via(&direct, &mut bob_user, fast_config()).await;
    assert_eq!(
        alice.account.connected_transport(),
        Some(Transport::WebSocket)
    );
    assert_eq!(bob.account.connected_transport(), Some(Transport::Quic));

    let to_bob = Conversation::Direct("bob".into());
    let to_alice = Conversation::Direct("alice".into());
    alice
        .account
        .send_text(&to_bob, "UDP is blocked here")
        .unwrap();
    assert_eq!(next_text(&mut bob.events).await.text, "UDP is blocked here");
    bob.account
        .send_text(&to_alice, "still reaches you")
        .unwrap();
    assert_eq!(next_text(&mut alice.events).await.text, "still reaches you");

    // The address is remembered: a registration, confirmation, enrolment
    // and account connection after the first fallback send QUIC nothing.
    let before = dropped.load(Ordering::Relaxed);
    let mut carol_user = register_via(&blocked, "carol").await;
    let carol = online_via(&blocked, &mut carol_user, fast_config()).await;
    assert_eq!(
        carol.account.connected_transport(),
        Some(Transport::WebSocket)
    );
    assert_eq!(
        dropped.load(Ordering::Relaxed),
        before,
        "no QUIC attempt once the fallback is remembered"
    );

    handle.shutdown();
    tokio::time::timeout(std::time::Duration::from_secs(20), task)
        .await
        .unwrap()
        .unwrap();
    hole.abort();
}

/// A server with its QUIC and WebSocket listeners on one port number
/// below the ephemeral range, so a restart on it cannot find the TCP port
/// taken by some outgoing connection; `port` 0 picks one.
async fn bind_fixed(dir: &std::path::Path, port: u16) -> (Server, u16) {
    let mut tries = 0u32;
    loop {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let candidate = if port == 0 {
            20_000 + u16::try_from((nanos ^ (tries * 7919)) % 10_000).unwrap()
        } else {
            port
        };
        let addr: SocketAddr = ([127, 0, 0, 1], candidate).into();
        let config = Config {
            data_dir: dir.to_owned(),
            listen: addr,
            ws_listen: Some(addr.to_string()),
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            argon2_parallelism: 1,
            totp_skew_steps: 10,
            shutdown_grace_secs: 1,
            ..Config::default()
        };
        match Server::bind(config).await {
            Ok(server) => return (server, candidate),
            Err(error) if port == 0 && tries < 50 => {
                tries += 1;
                let _ = error;
            }
            // The stopped server's listeners may take a moment to close.
            Err(_) if port != 0 && tries < 30 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(error) => panic!("cannot bind {addr}: {error}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_client_reconnects_by_itself_after_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (server, port) = bind_fixed(dir.path(), 0).await;
    let fingerprint = server.fingerprint().to_owned();
    let (handle, rx) = server.handle();
    let task = tokio::spawn(server.run(rx));
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let quic = ServerConfig::new(addr, &fingerprint)
        .unwrap()
        .with_transport(Transport::Quic);
    let ws = quic.clone().with_transport(Transport::WebSocket);
    let mut alice_user = register_via(&ws, "alice").await;
    let mut bob_user = register_via(&quic, "bob").await;
    let mut alice = online_via(&ws, &mut alice_user, fast_config()).await;
    let mut bob = online_via(&quic, &mut bob_user, fast_config()).await;
    let to_alice = Conversation::Direct("alice".into());
    bob.account.send_text(&to_alice, "before").unwrap();
    assert_eq!(next_text(&mut alice.events).await.text, "before");

    // The server shuts down (the WebSocket gets its Close 4051) and comes
    // back on the same port; the WebSocket client reconnects by itself.
    handle.shutdown();
    task.await.unwrap();
    let (server, _) = bind_fixed(dir.path(), port).await;
    let (handle, rx) = server.handle();
    let task = tokio::spawn(server.run(rx));
    wait_connected(&mut alice.events).await;
    wait_connected(&mut bob.events).await;
    assert_eq!(
        alice.account.connected_transport(),
        Some(Transport::WebSocket)
    );
    bob.account.send_text(&to_alice, "after").unwrap();
    assert_eq!(next_text(&mut alice.events).await.text, "after");
    handle.shutdown();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_three_spans_both_transports() {
    let server = TestServer::start().await;
    let quic = server.config.clone().with_transport(Transport::Quic);
    let ws = server.config.clone().with_transport(Transport::WebSocket);
    let mut alice_user = register_via(&quic, "alice").await;
    let mut bob_user = register_via(&ws, "bob").await;
    let mut carol_user = register_via(&ws, "carol").await;
    let mut alice = online_via(&quic, &mut alice_user, fast_config()).await;
    let mut bob = online_via(&ws, &mut bob_user, fast_config()).await;
    let mut carol = online_via(&quic, &mut carol_user, fast_config()).await;
    // The group is created by a WebSocket member.
    let id = bob
        .account
        .create_group("mixed", &["alice", "carol"])
        .await
        .unwrap();
    let group = Conversation::Group(id);
    let sent = bob.account.send_text(&group, "from the websocket").unwrap();
    for device in [&mut alice, &mut carol] {
        let got = next_text(&mut device.events).await;
        assert_eq!(
            (got.author.as_str(), got.text.as_str()),
            ("bob", "from the websocket")
        );
        assert_eq!(got.conversation, group);
        assert_eq!(got.message_id, sent);
    }
    let sent = alice.account.send_text(&group, "from QUIC").unwrap();
    for device in [&mut bob, &mut carol] {
        let got = next_text(&mut device.events).await;
        assert_eq!(
            (got.author.as_str(), got.text.as_str()),
            ("alice", "from QUIC")
        );
        assert_eq!(got.message_id, sent);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_over_websocket_interrupted_midway_resumes_and_arrives_intact() {
    let server = TestServer::start().await;
    let ws = server.config.clone().with_transport(Transport::WebSocket);
    let mut alice_user = register_via(&ws, "alice").await;
    let mut bob_user = register_via(&server.config, "bob").await;
    let mut config = fast_config();
    microbot_client::fault_injection::interrupt_upload_at(&mut config, 1536 * 1024);
    let alice = online_via(&ws, &mut alice_user, config).await;
    let mut bob = online_via(&server.config, &mut bob_user, fast_config()).await;
    let data: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let path = alice.dir.path().join("big.bin");
    std::fs::write(&path, &data).unwrap();
    let id = alice
        .account
        .send_file(&Conversation::Direct("bob".into()), &path, |_| {})
        .await
        .unwrap();
    let got = next_text(&mut bob.events).await;
    assert_eq!(got.message_id, id);
    let dest = bob.dir.path().join("big.bin");
    bob.account
        .download_attachment(&id, &dest, |_| {})
        .await
        .unwrap();
    assert!(
        std::fs::read(&dest).unwrap() == data,
        "the resumed file arrives intact"
    );
    // One attachment on the server: the same upload was continued.
    let files = std::fs::read_dir(server.dir.path().join("attachments"))
        .unwrap()
        .count();
    assert_eq!(files, 1);
    server.stop().await;
}
