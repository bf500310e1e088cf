//! Crash safety (issue 7; SPEC.md §12.5 "a send is acknowledged after a
//! durable commit"): the server binary runs as a child process while
//! senders and receivers work against it; it is killed with SIGKILL at
//! random moments (seeded; the seed is printed, `CRASH_SEED=<n>` replays
//! it), restarted on the same data directory and port (same certificate,
//! so the pin holds), and at the end:
//!
//! - every send the server acknowledged was delivered to each of its
//!   recipients (after de-duplication by message id: a sender that lost
//!   the connection before the acknowledgement sends the same message
//!   again, as the client SDK's outbox does);
//! - nothing was delivered that was not sent, and its bytes are intact;
//! - the server stored a message no more often than it was attempted, so
//!   every duplicate comes from a client retry, never from the server;
//! - after the receivers acknowledged everything the queues are empty.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{enrol, login_signature, register_active};
use ed25519_dalek::SigningKey;
use microbot_protocol::codec::{FrameDecoder, encode_frame};
use microbot_protocol::transport::{
    self, ClientFrame, Hello, LoginRequest, Push, ServerFrame, client_frame::Request, push,
    response, server_frame,
};
use rand::{RngExt as _, SeedableRng as _};

const SENDERS: usize = 3;
const RECEIVERS: usize = 2;
const KILLS: usize = 4;
/// How long a request may take before the connection counts as lost.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
/// Bound of the whole test after the last restart.
const DRAIN_DEADLINE: Duration = Duration::from_secs(20);

/// The server binary on a fixed data directory and UDP port.
struct ChildServer {
    child: Child,
    fingerprint: String,
}

impl ChildServer {
    fn start(dir: &std::path::Path, listen: SocketAddr) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_microbot-server"))
            .arg("--data-dir")
            .arg(dir)
            .arg("--listen")
            .arg(listen.to_string())
            .args(["--argon2-memory-kib", "64", "--argon2-iterations", "1"])
            .args(["--totp-skew-steps", "10", "--rate-send-per-account", "0"])
            .args(["--rate-login-per-ip", "0", "--rate-login-per-account", "0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let fingerprint = loop {
            let line = lines
                .next()
                .expect("server exited before printing its fingerprint")
                .unwrap();
            if let Some(f) = line.strip_prefix("certificate SHA-256 fingerprint: ") {
                break f.to_owned();
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, fingerprint }
    }

    /// SIGKILL: no shutdown code runs.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The connection died, timed out or was refused: reconnect and retry.
#[derive(Debug)]
struct Lost;

/// A logged-in connection whose every operation can fail (the server may
/// be dead), unlike the panicking test client in `common`.
struct Conn {
    _endpoint: quinn::Endpoint,
    connection: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
    pushes: VecDeque<Push>,
    next_id: u64,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.connection.close(0u32.into(), b"");
    }
}

impl Conn {
    async fn login(
        addr: SocketAddr,
        fingerprint: &str,
        device_id: u64,
        key: &SigningKey,
    ) -> Result<Self, Lost> {
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(common::client_config(fingerprint));
        let connecting = endpoint.connect(addr, "localhost").map_err(|_| Lost)?;
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| Lost)?
            .map_err(|_| Lost)?;
        let (send, recv) = tokio::time::timeout(CONNECT_TIMEOUT, connection.open_bi())
            .await
            .map_err(|_| Lost)?
            .map_err(|_| Lost)?;
        let mut conn = Self {
            _endpoint: endpoint,
            connection,
            send,
            recv,
            decoder: FrameDecoder::new(16 * 1024 * 1024),
            pushes: VecDeque::new(),
            next_id: 1,
        };
        let challenge = match conn
            .request(Request::Hello(Hello {
                versions: vec![1],
                client_agent: "crash-test".into(),
            }))
            .await?
        {
            response::Result::Hello(h) => h.challenge,
            _ => return Err(Lost),
        };
        match conn
            .request(Request::Login(LoginRequest {
                device_id,
                signature: login_signature(key, &challenge, device_id),
            }))
            .await?
        {
            response::Result::Login(_) => Ok(conn),
            other => panic!("login refused after a restart: {other:?}"),
        }
    }

    async fn read_frame(&mut self) -> Result<ServerFrame, Lost> {
        loop {
            if let Some(frame) = self
                .decoder
                .next_message::<ServerFrame>()
                .map_err(|_| Lost)?
            {
                return Ok(frame);
            }
            match self.recv.read_chunk(64 * 1024, true).await {
                Ok(Some(chunk)) => self.decoder.push(&chunk.bytes).map_err(|_| Lost)?,
                Ok(None) | Err(_) => return Err(Lost),
            }
        }
    }

    async fn request(&mut self, request: Request) -> Result<response::Result, Lost> {
        let id = self.next_id;
        self.next_id += 1;
        let mut buf = BytesMut::new();
        encode_frame(
            &ClientFrame {
                request_id: id,
                request: Some(request),
            },
            &mut buf,
        )
        .unwrap();
        tokio::time::timeout(REQUEST_TIMEOUT, async {
            self.send.write_all(&buf).await.map_err(|_| Lost)?;
            loop {
                match self.read_frame().await?.kind {
                    Some(server_frame::Kind::Response(r)) => {
                        assert_eq!(r.request_id, id, "responses come in request order");
                        return r.result.ok_or(Lost);
                    }
                    Some(server_frame::Kind::Push(p)) => self.pushes.push_back(p),
                    // Closing (e.g. a shutdown) or an unknown frame.
                    _ => return Err(Lost),
                }
            }
        })
        .await
        .map_err(|_| Lost)?
    }
}

/// Logs in, retrying until the server is back.
async fn connect(addr: SocketAddr, fingerprint: &str, device_id: u64, key: &SigningKey) -> Conn {
    let deadline = tokio::time::Instant::now() + DRAIN_DEADLINE;
    loop {
        if let Ok(conn) = Conn::login(addr, fingerprint, device_id, key).await {
            return conn;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server did not come back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A message id: (sender, sequence number). Its bytes name it and carry a
/// checkable body, as the ciphertext would.
type MessageId = (usize, u32);

/// `"sender NN message NNNNN "`.
const HEADER_LEN: usize = 24;

fn ciphertext(id: MessageId) -> Bytes {
    let mut ct = format!("sender {:02} message {:05} ", id.0, id.1).into_bytes();
    assert_eq!(ct.len(), HEADER_LEN);
    let fill = u8::try_from((id.0 * 31 + id.1 as usize) % 251).unwrap();
    ct.resize(ct.len() + 200, fill);
    Bytes::from(ct)
}

fn message_id(ct: &[u8]) -> MessageId {
    let header = ct
        .get(..HEADER_LEN)
        .expect("delivered bytes were never sent");
    let text = std::str::from_utf8(header).expect("delivered bytes were never sent");
    let mut words = text.split(' ');
    assert_eq!(words.next(), Some("sender"), "{text}");
    let sender = words.next().unwrap().parse().unwrap();
    assert_eq!(words.next(), Some("message"), "{text}");
    let seq = words.next().unwrap().parse().unwrap();
    let id = (sender, seq);
    assert_eq!(
        ct,
        ciphertext(id),
        "delivered bytes differ from the sent ones"
    );
    id
}

#[derive(Default)]
struct Ledger {
    /// Send attempts per message (retries after a lost connection included).
    attempts: BTreeMap<MessageId, u32>,
    /// Messages whose send the server acknowledged.
    acked: BTreeSet<MessageId>,
    /// Sends that were in flight when the connection was lost.
    unacknowledged: u32,
    /// Per receiver: message id -> distinct envelope ids it arrived in.
    delivered: Vec<BTreeMap<MessageId, BTreeSet<u64>>>,
}

struct Identity {
    device_id: u64,
    key: SigningKey,
}

/// Sends messages 0, 1, ... to every receiver until `stop`; a send whose
/// acknowledgement did not arrive is sent again (same message id).
async fn sender(
    index: usize,
    me: Identity,
    receivers: Vec<u64>,
    addr: SocketAddr,
    fingerprint: String,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
) {
    let mut conn = connect(addr, &fingerprint, me.device_id, &me.key).await;
    let mut seq = 0u32;
    while !stop.load(Ordering::SeqCst) {
        let id = (index, seq);
        *ledger.lock().unwrap().attempts.entry(id).or_default() += 1;
        let request = Request::Send(transport::SendRequest {
            envelopes: receivers
                .iter()
                .map(|&device| transport::OutgoingEnvelope {
                    recipient_device_id: device,
                    ciphertext: ciphertext(id),
                })
                .collect(),
            complete_accounts: Vec::new(),
        });
        match conn.request(request).await {
            Ok(response::Result::Send(_)) => {
                ledger.lock().unwrap().acked.insert(id);
                seq += 1;
            }
            Ok(response::Result::Error(e)) => {
                // A typed refusal (e.g. UNAVAILABLE while shutting down):
                // not sent; retry the same message.
                assert!(
                    e.code == transport::ErrorCode::Unavailable as i32,
                    "unexpected refusal {e:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(other) => panic!("unexpected answer to a send: {other:?}"),
            Err(Lost) => {
                ledger.lock().unwrap().unacknowledged += 1;
                conn = connect(addr, &fingerprint, me.device_id, &me.key).await;
            }
        }
    }
}

/// Fetches, records and acknowledges until `stop`; also takes pushes.
async fn receiver(
    index: usize,
    me: Identity,
    addr: SocketAddr,
    fingerprint: String,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
) {
    let mut conn = connect(addr, &fingerprint, me.device_id, &me.key).await;
    while !stop.load(Ordering::SeqCst) {
        let page = conn
            .request(Request::FetchEnvelopes(transport::FetchEnvelopesRequest {
                after_envelope_id: 0,
                limit: 200,
            }))
            .await;
        let mut envelopes = match page {
            Ok(response::Result::Envelopes(e)) => e.envelopes,
            Ok(other) => panic!("unexpected answer to a fetch: {other:?}"),
            Err(Lost) => {
                conn = connect(addr, &fingerprint, me.device_id, &me.key).await;
                continue;
            }
        };
        envelopes.extend(conn.pushes.drain(..).filter_map(|p| match p.event {
            Some(push::Event::Envelope(e)) => Some(e),
            _ => None,
        }));
        if envelopes.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        // Stored before acknowledged, as a client does.
        {
            let mut ledger = ledger.lock().unwrap();
            for e in &envelopes {
                let id = message_id(&e.ciphertext);
                ledger.delivered[index]
                    .entry(id)
                    .or_default()
                    .insert(e.envelope_id);
            }
        }
        let ids = envelopes.iter().map(|e| e.envelope_id).collect();
        let acked = conn
            .request(Request::AckEnvelopes(transport::AckEnvelopesRequest {
                envelope_ids: ids,
            }))
            .await;
        if acked.is_err() {
            conn = connect(addr, &fingerprint, me.device_id, &me.key).await;
        }
    }
}

fn free_udp_port() -> SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_sends_survive_sigkill_and_are_delivered_once_after_dedup() {
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("crash_sigkill seed: {seed} (replay with CRASH_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let dir = tempfile::tempdir().unwrap();
    let addr = free_udp_port();
    let mut server = ChildServer::start(dir.path(), addr);
    let fingerprint = server.fingerprint.clone();

    // Accounts: one device each, enrolled with real TOTP codes.
    let mut setup = common::Client::connect(addr, &fingerprint).await;
    let mut identities = Vec::new();
    for name in (0..SENDERS)
        .map(|i| format!("sender{i}"))
        .chain((0..RECEIVERS).map(|i| format!("receiver{i}")))
    {
        let mut account = register_active(&mut setup, &name).await;
        let (device_id, key) = enrol(&mut setup, &mut account).await;
        identities.push(Identity { device_id, key });
    }
    drop(setup);
    let receivers_identities = identities.split_off(SENDERS);
    let receiver_devices: Vec<u64> = receivers_identities.iter().map(|r| r.device_id).collect();
    let receiver_keys: Vec<(u64, SigningKey)> = receivers_identities
        .iter()
        .map(|r| (r.device_id, r.key.clone()))
        .collect();

    let ledger = Arc::new(Mutex::new(Ledger {
        delivered: vec![BTreeMap::new(); RECEIVERS],
        ..Ledger::default()
    }));
    let stop_senders = Arc::new(AtomicBool::new(false));
    let stop_receivers = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for (i, me) in identities.into_iter().enumerate() {
        senders.push(tokio::spawn(sender(
            i,
            me,
            receiver_devices.clone(),
            addr,
            fingerprint.clone(),
            Arc::clone(&ledger),
            Arc::clone(&stop_senders),
        )));
    }
    let mut receivers = Vec::new();
    for (i, me) in receivers_identities.into_iter().enumerate() {
        receivers.push(tokio::spawn(receiver(
            i,
            me,
            addr,
            fingerprint.clone(),
            Arc::clone(&ledger),
            Arc::clone(&stop_receivers),
        )));
    }

    // Kill at random moments while traffic flows; restart on the same
    // directory and port.
    for kill in 0..KILLS {
        let acked_before = ledger.lock().unwrap().acked.len();
        // Let traffic resume after the previous restart, then a random delay.
        let resumed = tokio::time::Instant::now() + DRAIN_DEADLINE;
        while ledger.lock().unwrap().acked.len() < acked_before + 5 {
            assert!(
                tokio::time::Instant::now() < resumed,
                "no sends acknowledged after restart {kill}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..400))).await;
        let acked = ledger.lock().unwrap().acked.len();
        eprintln!("kill {kill}: SIGKILL after {acked} acknowledged sends");
        server.kill();
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
        server = ChildServer::start(dir.path(), addr);
        assert_eq!(
            server.fingerprint, fingerprint,
            "same data dir, same certificate"
        );
    }

    // Let the senders get a few more through, then stop them (each finishes
    // its current message, retrying until it is acknowledged).
    let acked_before = ledger.lock().unwrap().acked.len();
    let deadline = tokio::time::Instant::now() + DRAIN_DEADLINE;
    while ledger.lock().unwrap().acked.len() < acked_before + 10 {
        assert!(tokio::time::Instant::now() < deadline, "senders stalled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop_senders.store(true, Ordering::SeqCst);
    for s in senders {
        tokio::time::timeout(DRAIN_DEADLINE, s)
            .await
            .expect("senders stopped")
            .unwrap();
    }

    // Wait until every acknowledged message reached every receiver.
    let all_delivered = || {
        let ledger = ledger.lock().unwrap();
        ledger
            .delivered
            .iter()
            .all(|d| ledger.acked.iter().all(|id| d.contains_key(id)))
    };
    let deadline = tokio::time::Instant::now() + DRAIN_DEADLINE;
    while !all_delivered() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_receivers.store(true, Ordering::SeqCst);
    for r in receivers {
        tokio::time::timeout(DRAIN_DEADLINE, r)
            .await
            .expect("receivers stopped")
            .unwrap();
    }

    let attempted: BTreeSet<MessageId> = {
        let ledger = ledger.lock().unwrap();
        for (r, delivered) in ledger.delivered.iter().enumerate() {
            let missing: Vec<_> = ledger
                .acked
                .iter()
                .filter(|id| !delivered.contains_key(id))
                .collect();
            assert!(
                missing.is_empty(),
                "receiver {r}: acknowledged sends never delivered: {missing:?} (seed {seed})"
            );
            for (id, envelopes) in delivered {
                let attempts = ledger.attempts.get(id).copied().unwrap_or(0);
                assert!(attempts > 0, "receiver {r}: {id:?} was never sent");
                assert!(
                    u32::try_from(envelopes.len()).unwrap() <= attempts,
                    "receiver {r}: {id:?} stored {} times but sent {attempts} times (seed {seed})",
                    envelopes.len()
                );
            }
        }
        let copies: usize = ledger
            .delivered
            .iter()
            .flat_map(|d| d.values())
            .map(BTreeSet::len)
            .sum();
        let distinct: usize = ledger.delivered.iter().map(BTreeMap::len).sum();
        eprintln!(
            "{} messages acknowledged, {} sends lost in flight and retried, {} deliveries of {} distinct messages after de-duplication",
            ledger.acked.len(),
            ledger.unacknowledged,
            copies,
            distinct
        );
        ledger.attempts.keys().copied().collect()
    };

    // The receivers acknowledged everything they got; what is left in their
    // queues can only be further copies of sent messages, and once those
    // are acknowledged the queues are empty.
    for (device_id, key) in &receiver_keys {
        let mut conn = connect(addr, &fingerprint, *device_id, key).await;
        for round in 0..2 {
            let page = match conn
                .request(Request::FetchEnvelopes(transport::FetchEnvelopesRequest {
                    after_envelope_id: 0,
                    limit: 1000,
                }))
                .await
                .unwrap()
            {
                response::Result::Envelopes(e) => e,
                other => panic!("{other:?}"),
            };
            if round == 1 {
                assert!(
                    page.envelopes.is_empty(),
                    "queue not empty after the final ack"
                );
                break;
            }
            for e in &page.envelopes {
                assert!(attempted.contains(&message_id(&e.ciphertext)));
            }
            let ids = page.envelopes.iter().map(|e| e.envelope_id).collect();
            conn.request(Request::AckEnvelopes(transport::AckEnvelopesRequest {
                envelope_ids: ids,
            }))
            .await
            .unwrap();
        }
    }
    server.kill();
}
