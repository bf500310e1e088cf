//! Test harness: an in-process server on loopback (port 0) with its SQLite
//! file in a temp dir, and a small QUIC client that pins the server's
//! certificate fingerprint, speaks the transport frames, and computes real
//! TOTP codes with totp-rs.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ed25519_dalek::{Signer as _, SigningKey};
use microbot_protocol::codec::{FrameDecoder, encode_frame};
use microbot_protocol::transport::{
    self, ClientFrame, EnrolDeviceRequest, Hello, LoginRequest, Push, SecondFactor, ServerFrame,
    client_frame::Request, response, second_factor, server_frame,
};
use microbot_server::{Config, Server, ShutdownHandle};

pub mod attachments;

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A config for tests: temp data dir, port 0, cheap argon2, a wide TOTP
/// window so a test can use several fresh steps in a row.
pub fn test_config(dir: &std::path::Path) -> Config {
    Config {
        data_dir: dir.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        argon2_memory_kib: 64,
        argon2_iterations: 1,
        argon2_parallelism: 1,
        totp_skew_steps: 10,
        ..Config::default()
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub fingerprint: String,
    pub dir: tempfile::TempDir,
    /// The server's limiter state, for tests that measure it.
    pub limits: std::sync::Arc<microbot_server::testing::limits::Limits>,
    handle: ShutdownHandle,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), tweak).await
    }

    /// Starts a server on an existing data directory.
    pub async fn start_in(dir: tempfile::TempDir, tweak: impl FnOnce(&mut Config)) -> Self {
        Self::launch(dir, None, tweak).await
    }

    /// Starts a server whose handlers read `clock`.
    #[allow(dead_code)]
    pub async fn start_with_clock(
        clock: std::sync::Arc<dyn microbot_server::testing::clock::Clock>,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        Self::launch(tempfile::tempdir().unwrap(), Some(clock), tweak).await
    }

    async fn launch(
        dir: tempfile::TempDir,
        clock: Option<std::sync::Arc<dyn microbot_server::testing::clock::Clock>>,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let server = match clock {
            Some(clock) => Server::bind_with_clock(config, clock).await.unwrap(),
            None => Server::bind(config).await.unwrap(),
        };
        let addr = server.local_addr().unwrap();
        let metrics_addr = server.metrics_addr();
        let fingerprint = server.fingerprint().to_owned();
        let limits = server.limits();
        let (handle, rx) = server.handle();
        let task = tokio::spawn(server.run(rx));
        Self {
            addr,
            metrics_addr,
            fingerprint,
            dir,
            limits,
            handle,
            task: Some(task),
        }
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr, &self.fingerprint).await
    }

    pub fn db_path(&self) -> std::path::PathBuf {
        self.dir.path().join("microbot.sqlite3")
    }

    pub async fn stop(self) {
        drop(self.stop_keep_dir().await);
    }

    /// Stops the server and hands back its data directory.
    pub async fn stop_keep_dir(mut self) -> tempfile::TempDir {
        self.handle.shutdown();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .unwrap()
                .unwrap();
        }
        self.dir
    }
}

/// The pinned-certificate QUIC config the client SDK uses (SPEC.md §12).
pub fn client_config(fingerprint: &str) -> quinn::ClientConfig {
    let server =
        microbot_client::ServerConfig::new("127.0.0.1:1".parse().unwrap(), fingerprint).unwrap();
    microbot_client::quic_client_config(&server).unwrap()
}

/// What the server said when it ended the connection.
#[derive(Debug)]
pub struct Closed {
    /// The `ServerFrame.closing` error, if it arrived.
    pub closing: Option<transport::Error>,
    /// The QUIC application close code, if the connection was closed by the server.
    pub close_code: Option<u64>,
}

pub struct Client {
    pub endpoint: quinn::Endpoint,
    pub connection: quinn::Connection,
    pub send: quinn::SendStream,
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
    pushes: VecDeque<Push>,
    next_id: u64,
    pub challenge: Bytes,
}

impl Client {
    /// Connects and opens the request stream, without sending Hello.
    pub async fn connect_raw(addr: SocketAddr, fingerprint: &str) -> Self {
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(client_config(fingerprint));
        let connection = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
        let (send, recv) = connection.open_bi().await.unwrap();
        Self {
            endpoint,
            connection,
            send,
            recv,
            decoder: FrameDecoder::new(16 * 1024 * 1024),
            pushes: VecDeque::new(),
            next_id: 1,
            challenge: Bytes::new(),
        }
    }

    /// Connects and completes Hello.
    pub async fn connect(addr: SocketAddr, fingerprint: &str) -> Self {
        let mut client = Self::connect_raw(addr, fingerprint).await;
        let hello = client
            .request(Request::Hello(Hello {
                versions: vec![1],
                client_agent: "server-tests".into(),
            }))
            .await;
        match hello {
            response::Result::Hello(h) => {
                assert_eq!(h.version, 1);
                assert_eq!(h.challenge.len(), 32);
                client.challenge = h.challenge;
            }
            other => panic!("unexpected hello answer {other:?}"),
        }
        client
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.send.write_all(bytes).await.unwrap();
    }

    pub async fn send_frame(&mut self, frame: &ClientFrame) {
        let mut buf = BytesMut::new();
        encode_frame(frame, &mut buf).unwrap();
        self.send_raw(&buf).await;
    }

    /// Reads the next server frame; None when the stream or connection ended.
    pub async fn read_frame(&mut self) -> Option<ServerFrame> {
        loop {
            if let Some(frame) = self.decoder.next_message::<ServerFrame>().unwrap() {
                return Some(frame);
            }
            match tokio::time::timeout(TIMEOUT, self.recv.read_chunk(64 * 1024, true))
                .await
                .unwrap()
            {
                Ok(Some(chunk)) => self.decoder.push(&chunk.bytes).unwrap(),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Sends a request and returns its result (pushes are kept for later).
    pub async fn request(&mut self, request: Request) -> response::Result {
        let id = self.next_id;
        self.next_id += 1;
        self.send_frame(&ClientFrame {
            request_id: id,
            request: Some(request),
        })
        .await;
        loop {
            match self
                .read_frame()
                .await
                .expect("connection ended before the response")
                .kind
            {
                Some(server_frame::Kind::Response(r)) => {
                    assert_eq!(r.request_id, id, "responses come in request order");
                    return r.result.expect("response without result");
                }
                Some(server_frame::Kind::Push(p)) => self.pushes.push_back(p),
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// The error code of a request expected to fail.
    pub async fn request_err(&mut self, request: Request) -> transport::Error {
        match self.request(request).await {
            response::Result::Error(e) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    /// The next push, waiting up to `TIMEOUT`.
    pub async fn next_push(&mut self) -> Push {
        if let Some(p) = self.pushes.pop_front() {
            return p;
        }
        match self
            .read_frame()
            .await
            .expect("connection ended while waiting for a push")
            .kind
        {
            Some(server_frame::Kind::Push(p)) => p,
            other => panic!("unexpected frame {other:?}"),
        }
    }

    /// Waits briefly and returns whether a push arrived.
    pub async fn push_within(&mut self, wait: Duration) -> Option<Push> {
        if let Some(p) = self.pushes.pop_front() {
            return Some(p);
        }
        match tokio::time::timeout(wait, self.read_frame()).await {
            Ok(Some(ServerFrame {
                kind: Some(server_frame::Kind::Push(p)),
            })) => Some(p),
            Ok(other) => panic!("unexpected frame {other:?}"),
            Err(_) => None,
        }
    }

    /// Reads until the server ends the connection; returns how it did.
    pub async fn closed(&mut self) -> Closed {
        let mut closing = None;
        while let Some(frame) = self.read_frame().await {
            if let Some(server_frame::Kind::Closing(e)) = frame.kind {
                closing = Some(e);
            }
        }
        let reason = tokio::time::timeout(TIMEOUT, self.connection.closed())
            .await
            .unwrap();
        let close_code = match reason {
            quinn::ConnectionError::ApplicationClosed(close) => Some(close.error_code.into_inner()),
            _ => None,
        };
        Closed {
            closing,
            close_code,
        }
    }
}

/// The authenticator app: codes from the secret the server returned.
#[allow(unused_imports)] // not every test binary reads the clock
pub use microbot_test_support::{Authenticator, now_secs};

pub struct Account {
    pub username: String,
    pub password: String,
    pub auth: Authenticator,
    pub recovery_codes: Vec<String>,
    pub otpauth_uri: String,
}

pub async fn register(client: &mut Client, username: &str) -> Account {
    let password = format!("pw-{username}-secret");
    let reply = client
        .request(Request::Register(transport::RegisterRequest {
            username: username.into(),
            password: password.clone(),
            bot: false,
        }))
        .await;
    let response::Result::Register(r) = reply else {
        panic!("register failed: {reply:?}")
    };
    Account {
        username: username.into(),
        password,
        auth: Authenticator::from_base32(&r.totp_secret_base32),
        recovery_codes: r.recovery_codes,
        otpauth_uri: r.otpauth_uri,
    }
}

pub async fn register_active(client: &mut Client, username: &str) -> Account {
    let mut account = register(client, username).await;
    let code = account.auth.fresh();
    let reply = client
        .request(Request::ConfirmRegistration(
            transport::ConfirmRegistrationRequest {
                username: username.into(),
                password: account.password.clone(),
                totp_code: code,
            },
        ))
        .await;
    assert!(matches!(reply, response::Result::Ok(_)), "{reply:?}");
    account
}

pub fn device_key() -> SigningKey {
    let mut seed = [0u8; 32];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut seed);
    SigningKey::from_bytes(&seed)
}

pub fn enrol_request(
    account: &Account,
    key: &SigningKey,
    factor: second_factor::Factor,
) -> Request {
    Request::EnrolDevice(EnrolDeviceRequest {
        username: account.username.clone(),
        password: account.password.clone(),
        second_factor: Some(SecondFactor {
            factor: Some(factor),
        }),
        device_public_key: Bytes::copy_from_slice(key.verifying_key().as_bytes()),
        device_name: "test device".into(),
    })
}

pub async fn enrol(client: &mut Client, account: &mut Account) -> (u64, SigningKey) {
    let key = device_key();
    let code = account.auth.fresh();
    let reply = client
        .request(enrol_request(
            account,
            &key,
            second_factor::Factor::TotpCode(code),
        ))
        .await;
    let response::Result::EnrolDevice(r) = reply else {
        panic!("enrol failed: {reply:?}")
    };
    (r.device_id, key)
}

pub fn login_signature(key: &SigningKey, challenge: &[u8], device_id: u64) -> Bytes {
    let mut message = b"Microbot device login v1\x00".to_vec();
    message.extend_from_slice(challenge);
    message.extend_from_slice(&device_id.to_be_bytes());
    Bytes::copy_from_slice(&key.sign(&message).to_bytes())
}

pub async fn login(
    client: &mut Client,
    device_id: u64,
    key: &SigningKey,
) -> transport::LoginResponse {
    let signature = login_signature(key, &client.challenge.clone(), device_id);
    let reply = client
        .request(Request::Login(LoginRequest {
            device_id,
            signature,
        }))
        .await;
    let response::Result::Login(r) = reply else {
        panic!("login failed: {reply:?}")
    };
    r
}

/// A logged-in device of a fresh account on its own connection.
pub struct Device {
    pub client: Client,
    pub account: Account,
    pub device_id: u64,
    pub key: SigningKey,
}

pub async fn new_device(server: &TestServer, username: &str) -> Device {
    let mut client = server.client().await;
    let mut account = register_active(&mut client, username).await;
    let (device_id, key) = enrol(&mut client, &mut account).await;
    login(&mut client, device_id, &key).await;
    Device {
        client,
        account,
        device_id,
        key,
    }
}

/// Another connection logged in as the same device.
pub async fn reconnect(server: &TestServer, device_id: u64, key: &SigningKey) -> Client {
    let mut client = server.client().await;
    login(&mut client, device_id, key).await;
    client
}

pub fn code(e: &transport::Error) -> transport::ErrorCode {
    transport::ErrorCode::try_from(e.code).unwrap()
}

pub fn random_bytes(n: usize) -> Bytes {
    let mut v = vec![0u8; n];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut v);
    Bytes::from(v)
}

/// An upload with `one_time` X25519 and `kem` ML-KEM one-time keys (random
/// bytes of the right lengths: the server checks lengths only).
pub fn prekey_upload(first_id: u32, one_time: u32, kem: u32) -> transport::UploadPrekeysRequest {
    transport::UploadPrekeysRequest {
        identity_key: random_bytes(32),
        signed_prekey: Some(transport::SignedPrekey {
            id: 1,
            public_key: random_bytes(32),
            signature: random_bytes(64),
        }),
        one_time_prekeys: (first_id..first_id + one_time)
            .map(|id| transport::OneTimePrekey {
                id,
                public_key: random_bytes(32),
            })
            .collect(),
        kem_prekeys: (first_id..first_id + kem)
            .map(|id| transport::SignedKemPrekey {
                id,
                public_key: random_bytes(1184),
                signature: random_bytes(64),
            })
            .collect(),
        last_resort_kem_prekey: Some(transport::SignedKemPrekey {
            id: 999_999,
            public_key: random_bytes(1184),
            signature: random_bytes(64),
        }),
    }
}

pub async fn send_to(client: &mut Client, envelopes: &[(u64, Bytes)]) -> response::Result {
    client
        .request(Request::Send(transport::SendRequest {
            envelopes: envelopes
                .iter()
                .map(|(device, ct)| transport::OutgoingEnvelope {
                    recipient_device_id: *device,
                    ciphertext: ct.clone(),
                })
                .collect(),
            complete_accounts: Vec::new(),
        }))
        .await
}

pub async fn fetch(client: &mut Client) -> transport::Envelopes {
    match client
        .request(Request::FetchEnvelopes(
            transport::FetchEnvelopesRequest::default(),
        ))
        .await
    {
        response::Result::Envelopes(e) => e,
        other => panic!("fetch failed: {other:?}"),
    }
}

pub async fn ack(client: &mut Client, ids: Vec<u64>) -> u32 {
    match client
        .request(Request::AckEnvelopes(transport::AckEnvelopesRequest {
            envelope_ids: ids,
        }))
        .await
    {
        response::Result::Ack(a) => a.deleted,
        other => panic!("ack failed: {other:?}"),
    }
}

impl Client {
    /// Connects from the local address `local` (e.g. `127.0.0.2:0`, another
    /// source address on loopback) and completes Hello.
    pub async fn connect_from(local: SocketAddr, addr: SocketAddr, fingerprint: &str) -> Self {
        let mut endpoint = quinn::Endpoint::client(local).unwrap();
        endpoint.set_default_client_config(client_config(fingerprint));
        let connection = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
        let (send, recv) = connection.open_bi().await.unwrap();
        let mut client = Self {
            endpoint,
            connection,
            send,
            recv,
            decoder: FrameDecoder::new(16 * 1024 * 1024),
            pushes: VecDeque::new(),
            next_id: 1,
            challenge: Bytes::new(),
        };
        let hello = client
            .request(Request::Hello(Hello {
                versions: vec![1],
                client_agent: "server-tests".into(),
            }))
            .await;
        let response::Result::Hello(h) = hello else {
            panic!("unexpected hello answer {hello:?}")
        };
        client.challenge = h.challenge;
        client
    }
}

/// A plain HTTP/1.1 GET on `addr` (the admin listener on loopback):
/// (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let answer = http_request(addr, "GET", path, &[]).await;
    (answer.status, String::from_utf8(answer.body).unwrap())
}

/// An HTTP/1.1 answer read to the end of the connection.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    /// Header lines as (lowercase name, value).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpAnswer {
    /// The value of header `name` (lowercase), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One plain HTTP/1.1 request on a fresh connection that is closed after
/// the answer; `headers` are extra `Name: value` lines.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> HttpAnswer {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    http_exchange(stream, method, path, headers).await
}

/// One HTTP/1.1 request with `Connection: close` over `stream` (plain TCP
/// or TLS), the answer read to the end.
pub async fn http_exchange(
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> HttpAnswer {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    // A TLS peer may end without close_notify: what arrived is the answer.
    let _ = tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut all))
        .await
        .unwrap();
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8(all[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    HttpAnswer {
        status,
        headers,
        body: all[split + 4..].to_vec(),
    }
}

/// The value of the unlabelled series `name` in a Prometheus text body.
pub fn metric(body: &str, name: &str) -> Option<String> {
    body.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .map(str::to_owned)
}

/// Polls `/metrics` on `metrics` until the series `name` reads `value`;
/// panics after [`TIMEOUT`] with the last body.
pub async fn wait_for_metric(metrics: SocketAddr, name: &str, value: &str) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let (_, body) = http_get(metrics, "/metrics").await;
        if metric(&body, name).as_deref() == Some(value) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never read {value}:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
