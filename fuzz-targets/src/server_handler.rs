//! Target `server_handler` (issue 7): the server's request handler
//! ([`microbot_server::testing::dispatch::RequestHandler`], SPEC.md §12.3–§12.12) fed
//! arbitrary frame sequences on up to four connections at once, before and
//! after login, against a real server state (SQLite in memory, the
//! in-process bus, limits off).
//!
//! Each input starts from the same fixture: three active accounts with one
//! device each and uploaded prekeys. `alice` and `bob` can be logged in by
//! the input; `carol` is a bystander whose credentials the input never gets.
//!
//! Input: a sequence of operations, each `op` byte choosing a connection
//! slot (`op & 3`) and an action (`(op >> 2) & 7`):
//! - 0..=3: a frame body (`len u16 LE ‖ body`), taken as one WebSocket
//!   message (`accept_message`) and answered (`next_reply`, `next_wake`)
//!   as the WebSocket connection task does;
//! - 4: log the slot in as fixture device `next byte % 2` (alice, bob);
//! - 5: the client goes away (the handler is dropped);
//! - 6: take the slot's pending pushes;
//! - 7: a frame body as in 0..=3, after substituting the harness's
//!   secrets: a `LoginRequest` with an empty signature is signed with the
//!   device's key over the slot's current challenge; an `EnrolDeviceRequest`
//!   with an empty key gets a fresh harness key (so the new device can log
//!   in); a TOTP code `"totp"` becomes a valid code and a password
//!   `"password"` the fixture password of the account concerned (never
//!   carol's).
//!
//! With bit `0x20` of `op` set, a frame body (0..=3, 7) is not handled at
//! once but queued on the slot; the next operation on the slot without it
//! (and the end of the input) hands every queued frame to the handler as
//! one write of the request stream (`handle_stream_bytes`), as a client
//! that pipelines requests would, and takes the answers with
//! `next_reply` and `next_wake`, so pipelined sends and acknowledgements
//! are in storage's hands together. Each answer gets the same checks.
//!
//! Invariants (a breach panics):
//! - no panic in the server code;
//! - every frame gets a `Response` with its `request_id` and a result, or a
//!   close, and a close happens exactly when SPEC §12.8 says so (undecodable
//!   body, no Hello first, Hello twice, no common version);
//! - a success has the result kind of its request, an error a known
//!   non-zero code; requests that need login answer `NOT_AUTHENTICATED`
//!   before it, `LOGIN`/`ENROL` answer `ALREADY_AUTHENTICATED` after it;
//! - fetched pages are in `envelope_id` order after the cursor, within the
//!   limit, and every envelope (fetched or pushed) names as sender a device
//!   that logged in during the run; an ack deletes at most what it named;
//! - at the end, every device's queue length equals what a full fetch
//!   returns; carol's account, device, key and password are untouched and
//!   her queue holds at most one envelope per successful send.
//!
//! Not owned here: the QUIC I/O around the handler (server tests).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};
use ed25519_dalek::{Signer as _, SigningKey};
use microbot_protocol::transport::{
    self, ClientFrame, ErrorCode, Hello, LoginRequest, ServerFrame, client_frame::Request, push,
    response, second_factor, server_frame,
};
use microbot_server::Config;
use microbot_server::testing::attachments::UploadsInProgress;
use microbot_server::testing::auth::devices::login_message;
use microbot_server::testing::auth::login_records::CountedToday;
use microbot_server::testing::auth::password::PasswordHasher;
use microbot_server::testing::bus::BusEvent;
use microbot_server::testing::bus::local::LocalBus;
use microbot_server::testing::clock::{Clock, ManualClock, SeededRng};
use microbot_server::testing::dispatch::{Reply, RequestHandler, Wake};
use microbot_server::testing::limits::Limits;
use microbot_server::testing::metrics::Metrics;
use microbot_server::testing::state::ServerState;
use microbot_server::testing::storage::sqlite::SqliteStorage;
use microbot_server::testing::storage::{FetchPage, NewAccount};
use prost::Message as _;

/// Connection slots.
const SLOTS: usize = 4;
/// Bit of an operation byte that queues its frame on the slot's stream.
const STREAMED: u8 = 0x20;
/// How long a frame may go unanswered before the run fails.
const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Operations run per input (the rest is ignored).
const MAX_OPS: usize = 64;
/// Fixture accounts: alice and bob may be logged in by the input.
const NAMES: [&str; 3] = ["alice", "bob", "carol"];
const CAROL: usize = 2;
/// The TOTP code the harness replaces with a valid one.
const MAGIC_TOTP: &str = "totp";
/// Where the run's clock starts (2027-01-15), whenever the fuzzer runs.
const START_MS: u64 = 1_800_000_000_000;
/// The password the harness replaces with the fixture password.
const MAGIC_PASSWORD: &str = "password";

/// What every input starts from: built once per process.
struct Fixture {
    runtime: tokio::runtime::Runtime,
    config: Config,
    password_hash: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let config = Config {
            data_dir: std::env::temp_dir().join("microbot-fuzz-server-handler-unused"),
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            argon2_parallelism: 1,
            totp_skew_steps: 10,
            max_queue_len: 40,
            max_envelope_len: 4096,
            max_group_members: 8,
            max_attachment_len: 1 << 20,
            attachment_quota_bytes: 4 << 20,
            rate_login_per_ip: 0,
            rate_login_per_account: 0,
            rate_register_per_ip: 0,
            rate_send_per_account: 0,
            rate_prekey_fetch_per_account: 0,
            rate_upload_per_account: 0,
            ..Config::default()
        };
        assert!(config.validate().is_ok(), "fixture config");
        let hasher = PasswordHasher::new(64, 1, 1).expect("argon2 parameters");
        let password_hash = hasher.hash(&fixture_password()).expect("hash");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        Fixture {
            runtime,
            config,
            password_hash,
        }
    })
}

/// Every fixture account has the same password (one argon2 hash per process).
fn fixture_password() -> String {
    "fixture password, never sent by the fuzzer".to_owned()
}

fn fixture_secret(account: usize) -> Vec<u8> {
    (0..20u8)
        .map(|i| {
            i.wrapping_mul(7)
                .wrapping_add(u8::try_from(account).unwrap_or(0))
        })
        .collect()
}

fn fixture_key(account: usize) -> SigningKey {
    SigningKey::from_bytes(&[u8::try_from(account).unwrap_or(0).wrapping_add(1); 32])
}

/// What the harness knows about the run.
struct Run {
    state: Arc<ServerState>,
    /// The server's clock: it stands still except where a TOTP code is
    /// made, so a run replays the same way whenever it runs.
    clock: Arc<ManualClock>,
    slots: Vec<Option<Slot>>,
    /// Device id -> signing key, for devices the input may log in.
    keys: BTreeMap<u64, SigningKey>,
    /// Username -> TOTP secret, for accounts the input may use (not carol).
    secrets: BTreeMap<String, Vec<u8>>,
    /// (username, device id) of every login of the run.
    senders: BTreeSet<(String, u64)>,
    fixture_devices: Vec<u64>,
    carol_before: CarolState,
    successful_sends: u32,
    outcomes: Outcomes,
    next_totp_step: u64,
    next_key: u8,
}

struct Slot {
    handler: RequestHandler,
    challenge: Option<Bytes>,
    /// Frame bodies queued for the next write of the request stream.
    streamed: Vec<Bytes>,
    /// Bus events taken while waiting for a streamed frame's answer.
    woken: Vec<BusEvent>,
}

impl Slot {
    fn new(state: &Arc<ServerState>) -> Self {
        Self {
            handler: RequestHandler::new(Arc::clone(state), IpAddr::V4(Ipv4Addr::LOCALHOST)),
            challenge: None,
            streamed: Vec::new(),
            woken: Vec::new(),
        }
    }

    /// The answer to the next frame handed over, as a connection task
    /// takes it: at once, or once storage has it (bus events taken
    /// meanwhile are kept for `drain`).
    async fn next_answer(&mut self) -> Reply {
        loop {
            if let Some(reply) = self.handler.next_reply().await {
                return reply;
            }
            let wake = tokio::time::timeout(ANSWER_TIMEOUT, self.handler.next_wake())
                .await
                .expect("a whole frame got no answer");
            match wake {
                Wake::Answer(reply) => return reply,
                Wake::Event(event) => self.woken.push(event),
            }
        }
    }

    /// What the checks of a frame need from before it is handled.
    fn before(&self) -> Before {
        Before {
            awaiting_hello: self.handler.awaiting_hello(),
            caller: self.handler.caller().cloned(),
        }
    }
}

/// A slot's state just before one of its frames is handled.
struct Before {
    awaiting_hello: bool,
    caller: Option<microbot_server::testing::auth::devices::Caller>,
}

/// Carol's account as the fixture left it.
#[derive(Debug, PartialEq, Eq)]
struct CarolState {
    account_id: i64,
    password_hash: String,
    active: bool,
    devices: Vec<(u64, Vec<u8>, bool)>,
}

async fn carol_state(state: &ServerState) -> CarolState {
    let account = state
        .storage
        .account_by_username(NAMES[CAROL])
        .await
        .expect("storage")
        .expect("carol's account exists");
    let devices = state
        .storage
        .account_devices(account.id)
        .await
        .expect("storage")
        .into_iter()
        .map(|d| (d.id, d.public_key, d.removed))
        .collect();
    CarolState {
        account_id: account.id,
        password_hash: account.password_hash.clone(),
        active: account.active,
        devices,
    }
}

/// The target.
pub fn server_handler(data: &[u8]) {
    outcomes(data);
}

/// What an input made the handler do (for tests that check the seeds reach
/// deep states).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcomes {
    /// Successful responses by request kind (the `ClientFrame` oneof name).
    pub successes: BTreeMap<&'static str, u32>,
    /// Error responses by error code.
    pub errors: BTreeMap<i32, u32>,
    /// Connections the handler closed.
    pub closes: u32,
    /// Envelopes received (fetched or pushed).
    pub envelopes: u32,
}

/// Runs the target on `data` and returns what happened.
pub fn outcomes(data: &[u8]) -> Outcomes {
    let fixture = fixture();
    fixture.runtime.block_on(run(fixture, data))
}

async fn run(fixture: &Fixture, data: &[u8]) -> Outcomes {
    let mut run = setup(fixture).await;
    let mut input = data;
    for _ in 0..MAX_OPS {
        let Some((&op, rest)) = input.split_first() else {
            break;
        };
        input = rest;
        let slot = usize::from(op & 3);
        let action = (op >> 2) & 7;
        let streamed = op & STREAMED != 0 && matches!(action, 0..=3 | 7);
        if !streamed {
            run.flush_stream(slot).await;
        }
        match action {
            0..=3 => {
                let body = take_body(&mut input);
                run.frame(slot, body, streamed).await;
            }
            4 => {
                let Some((&who, rest)) = input.split_first() else {
                    break;
                };
                input = rest;
                run.login(slot, usize::from(who % 2)).await;
            }
            5 => run.slots[slot] = None,
            6 => run.drain(slot),
            _ => {
                let body = take_body(&mut input);
                let body = run.substitute(slot, body);
                run.frame(slot, body, streamed).await;
            }
        }
    }
    for slot in 0..SLOTS {
        run.flush_stream(slot).await;
        run.drain(slot);
    }
    run.slots.clear();
    run.check_end().await;
    run.outcomes
}

fn take_body(input: &mut &[u8]) -> Bytes {
    let len = match input {
        [a, b, ..] => usize::from(u16::from_le_bytes([*a, *b])),
        _ => 0,
    };
    let rest = input.get(2..).unwrap_or_default();
    let len = len.min(rest.len());
    let (body, rest) = rest.split_at(len);
    *input = rest;
    Bytes::copy_from_slice(body)
}

fn encode(frame: &ClientFrame) -> Bytes {
    let mut buf = BytesMut::new();
    frame
        .encode(&mut buf)
        .expect("encoding to a growable buffer");
    buf.freeze()
}

async fn setup(fixture: &Fixture) -> Run {
    let storage = SqliteStorage::open(std::path::Path::new(":memory:")).expect("in-memory db");
    let clock = Arc::new(ManualClock::new(START_MS));
    let state = Arc::new(ServerState {
        storage: Arc::new(storage),
        bus: Arc::new(LocalBus::new()),
        passwords: PasswordHasher::new(64, 1, 1).expect("argon2 parameters"),
        limits: Arc::new(Limits::new(&fixture.config)),
        metrics: Metrics::default(),
        webhooks: None,
        uploads: UploadsInProgress::default(),
        counted_today: CountedToday::default(),
        clock: Arc::clone(&clock) as Arc<dyn Clock>,
        rng: Arc::new(SeededRng::new(START_MS)),
        config: fixture.config.clone(),
    });
    let mut keys = BTreeMap::new();
    let mut secrets = BTreeMap::new();
    let mut fixture_devices = Vec::new();
    for (i, name) in NAMES.iter().enumerate() {
        let secret = fixture_secret(i);
        let account_id = state
            .storage
            .create_account(&NewAccount {
                username: name,
                password_hash: &fixture.password_hash,
                totp_secret: &secret,
                recovery_code_hashes: &[],
                now_ms: clock.now_ms(),
                bot: false,
            })
            .await
            .expect("fixture account");
        state
            .storage
            .activate_account(account_id)
            .await
            .expect("activate");
        let key = fixture_key(i);
        let device_id = state
            .storage
            .create_device(
                account_id,
                key.verifying_key().as_bytes(),
                "fixture",
                clock.now_ms(),
            )
            .await
            .expect("fixture device");
        fixture_devices.push(device_id);
        // Upload prekeys through the handler, as a client does.
        let mut slot = Slot::new(&state);
        let hello = slot
            .handler
            .handle(ClientFrame {
                request_id: 1,
                request: Some(Request::Hello(Hello {
                    versions: vec![1],
                    client_agent: "fuzz".into(),
                })),
            })
            .await;
        let challenge = match hello {
            Reply::Respond(ServerFrame {
                kind:
                    Some(server_frame::Kind::Response(transport::Response {
                        result: Some(response::Result::Hello(h)),
                        ..
                    })),
            }) => h.challenge,
            other => panic!("fixture hello: {other:?}"),
        };
        let login = slot
            .handler
            .handle(ClientFrame {
                request_id: 2,
                request: Some(Request::Login(LoginRequest {
                    device_id,
                    signature: sign(&key, &challenge, device_id),
                })),
            })
            .await;
        assert!(
            is_result(&login, |r| matches!(r, response::Result::Login(_))),
            "{login:?}"
        );
        let upload = slot
            .handler
            .handle(ClientFrame {
                request_id: 3,
                request: Some(Request::UploadPrekeys(prekeys(i))),
            })
            .await;
        assert!(
            is_result(&upload, |r| matches!(r, response::Result::Ok(_))),
            "{upload:?}"
        );
        if i != CAROL {
            keys.insert(device_id, key);
            secrets.insert((*name).to_owned(), secret);
        }
    }
    let carol_before = carol_state(&state).await;
    Run {
        slots: (0..SLOTS).map(|_| None).collect(),
        state,
        keys,
        secrets,
        senders: BTreeSet::new(),
        fixture_devices,
        carol_before,
        successful_sends: 0,
        outcomes: Outcomes::default(),
        next_totp_step: clock.now_secs() / 30,
        clock,
        next_key: 0,
    }
}

fn sign(key: &SigningKey, challenge: &[u8], device_id: u64) -> Bytes {
    let Ok(challenge) = <[u8; 32]>::try_from(challenge) else {
        return Bytes::new();
    };
    let message = login_message(&challenge, device_id);
    Bytes::copy_from_slice(&key.sign(&message).to_bytes())
}

/// Fixture prekeys: lengths the server checks, bytes it never interprets.
fn prekeys(account: usize) -> transport::UploadPrekeysRequest {
    let b = u8::try_from(account).unwrap_or(0);
    let key = |len: usize, salt: u8| Bytes::from(vec![b.wrapping_mul(16).wrapping_add(salt); len]);
    transport::UploadPrekeysRequest {
        identity_key: key(32, 1),
        signed_prekey: Some(transport::SignedPrekey {
            id: 1,
            public_key: key(32, 2),
            signature: key(64, 3),
        }),
        one_time_prekeys: (1..=3)
            .map(|id| transport::OneTimePrekey {
                id,
                public_key: key(32, 4),
            })
            .collect(),
        kem_prekeys: (1..=2)
            .map(|id| transport::SignedKemPrekey {
                id,
                public_key: key(1184, 5),
                signature: key(64, 6),
            })
            .collect(),
        last_resort_kem_prekey: Some(transport::SignedKemPrekey {
            id: 1000,
            public_key: key(1184, 7),
            signature: key(64, 8),
        }),
    }
}

fn is_result(reply: &Reply, ok: impl Fn(&response::Result) -> bool) -> bool {
    match reply {
        Reply::Respond(ServerFrame {
            kind:
                Some(server_frame::Kind::Response(transport::Response {
                    result: Some(result),
                    ..
                })),
        }) => ok(result),
        _ => false,
    }
}

/// Whether a request needs a logged-in connection.
fn needs_login(request: &Request) -> bool {
    !matches!(
        request,
        Request::Hello(_)
            | Request::Register(_)
            | Request::ConfirmRegistration(_)
            | Request::EnrolDevice(_)
            | Request::Challenge(_)
            | Request::Login(_)
    )
}

/// Whether `result` is the success kind of `request`.
fn result_matches(request: &Request, result: &response::Result) -> bool {
    use response::Result as R;
    match request {
        Request::Hello(_) => matches!(result, R::Hello(_)),
        Request::Register(_) => matches!(result, R::Register(_)),
        Request::EnrolDevice(_) => matches!(result, R::EnrolDevice(_)),
        Request::Challenge(_) => matches!(result, R::Challenge(_)),
        Request::Login(_) => matches!(result, R::Login(_)),
        Request::ConfirmRegistration(_)
        | Request::ChangePassword(_)
        | Request::RemoveDevice(_)
        | Request::DeleteAccount(_)
        | Request::UploadPrekeys(_)
        | Request::UploadDeviceList(_)
        | Request::LeaveGroup(_) => matches!(result, R::Ok(_)),
        Request::ListDevices(_) => matches!(result, R::DeviceList(_)),
        Request::FetchPrekeys(_) => matches!(result, R::PrekeyBundles(_)),
        Request::PrekeyStatus(_) => matches!(result, R::PrekeyStatus(_)),
        Request::Send(_) | Request::SendGroup(_) => matches!(result, R::Send(_)),
        Request::FetchEnvelopes(_) => matches!(result, R::Envelopes(_)),
        Request::AckEnvelopes(_) => matches!(result, R::Ack(_)),
        Request::CreateGroup(_)
        | Request::AddGroupMembers(_)
        | Request::RemoveGroupMembers(_)
        | Request::SetGroupRole(_)
        | Request::GetGroup(_)
        | Request::SetGroupMetadata(_) => matches!(result, R::Group(_)),
        Request::AttachmentUpload(_) => matches!(result, R::AttachmentUpload(_)),
        Request::AttachmentDownload(_) => matches!(result, R::AttachmentDownload(_)),
        Request::CreateProvisioningSlot(_) => matches!(result, R::ProvisioningSlot(_)),
        Request::FetchProvisioningSlot(_) => matches!(result, R::ProvisioningMessage(_)),
        Request::PutProvisioningSlot(_) => matches!(result, R::Ok(_)),
        Request::GetSenderCertificate(_) => matches!(result, R::SenderCertificate(_)),
        Request::SetUnidentifiedAccess(_) => matches!(result, R::Ok(_)),
        Request::SendSealed(_) => matches!(result, R::Send(_)),
    }
}

impl Run {
    /// Replaces the magic values of a frame with the harness's secrets.
    fn substitute(&mut self, slot: usize, body: Bytes) -> Bytes {
        let Ok(mut frame) = ClientFrame::decode(body.clone()) else {
            return body;
        };
        let challenge = self.slots[slot]
            .as_ref()
            .and_then(|s| s.challenge.clone())
            .unwrap_or_default();
        match &mut frame.request {
            Some(Request::Login(r)) if r.signature.is_empty() => {
                if let Some(key) = self.keys.get(&r.device_id) {
                    r.signature = sign(key, &challenge, r.device_id);
                }
            }
            Some(Request::EnrolDevice(r)) => {
                if r.device_public_key.is_empty() {
                    let key = SigningKey::from_bytes(&[self.next_key.wrapping_add(100); 32]);
                    self.next_key = self.next_key.wrapping_add(1);
                    r.device_public_key = Bytes::copy_from_slice(key.verifying_key().as_bytes());
                }
                self.password(&r.username, &mut r.password);
                if let Some(transport::SecondFactor {
                    factor: Some(second_factor::Factor::TotpCode(code)),
                }) = &mut r.second_factor
                {
                    self.totp(&r.username, code);
                }
            }
            Some(Request::ConfirmRegistration(r)) => {
                self.password(&r.username, &mut r.password);
                self.totp(&r.username, &mut r.totp_code);
            }
            Some(Request::ChangePassword(r)) => {
                if let Some(user) = self.caller(slot) {
                    self.password(&user, &mut r.current_password);
                    self.totp(&user, &mut r.totp_code);
                }
            }
            Some(Request::RemoveDevice(r)) => {
                if let Some(user) = self.caller(slot) {
                    self.password(&user, &mut r.password);
                    self.totp(&user, &mut r.totp_code);
                }
            }
            Some(Request::DeleteAccount(r)) => {
                if let Some(user) = self.caller(slot) {
                    self.password(&user, &mut r.password);
                    self.totp(&user, &mut r.totp_code);
                }
            }
            _ => {}
        }
        encode(&frame)
    }

    fn caller(&self, slot: usize) -> Option<String> {
        self.slots[slot]
            .as_ref()?
            .handler
            .caller()
            .map(|s| s.username.clone())
    }

    /// The fixture password for `"password"` (alice and bob only: a
    /// password changed by the input is the input's own).
    fn password(&self, username: &str, password: &mut String) {
        if password == MAGIC_PASSWORD && NAMES[..CAROL].contains(&username) {
            *password = fixture_password();
        }
    }

    fn totp(&mut self, username: &str, code: &mut String) {
        if code != MAGIC_TOTP {
            return;
        }
        let Some(secret) = self.secrets.get(username) else {
            return;
        };
        let Ok(totp) = totp_rs::Builder::new().with_secret(secret.clone()).build() else {
            return;
        };
        let step = self.next_totp_step.max(self.clock.now_secs() / 30);
        self.next_totp_step = step + 1;
        *code = totp.generate(step * 30).to_string();
        // The next code is of the next step: time moves with it, so the
        // server's window follows.
        self.clock.advance(30_000);
    }

    /// Hello (if needed), a challenge and a signed login for a fixture device.
    async fn login(&mut self, slot: usize, who: usize) {
        let Some(&device_id) = self.fixture_devices.get(who) else {
            return;
        };
        let state = Arc::clone(&self.state);
        let s = self.slots[slot].get_or_insert_with(|| Slot::new(&state));
        if s.handler.awaiting_hello() {
            let hello = encode(&ClientFrame {
                request_id: 0,
                request: Some(Request::Hello(Hello {
                    versions: vec![1],
                    client_agent: String::new(),
                })),
            });
            self.frame(slot, hello, false).await;
        }
        let challenge = encode(&ClientFrame {
            request_id: 0,
            request: Some(Request::Challenge(transport::ChallengeRequest {})),
        });
        self.frame(slot, challenge, false).await;
        let login = encode(&ClientFrame {
            request_id: 0,
            request: Some(Request::Login(LoginRequest {
                device_id,
                signature: Bytes::new(),
            })),
        });
        let login = self.substitute(slot, login);
        self.frame(slot, login, false).await;
    }

    /// One frame body through the slot's handler, and the checks; or,
    /// when `streamed`, queued for the slot's next stream write.
    async fn frame(&mut self, slot: usize, body: Bytes, streamed: bool) {
        let state = Arc::clone(&self.state);
        let s = self.slots[slot].get_or_insert_with(|| Slot::new(&state));
        if streamed {
            s.streamed.push(body);
            return;
        }
        let before = s.before();
        s.handler.accept_message(body.clone());
        let reply = s.next_answer().await;
        self.check(slot, &body, before, reply);
    }

    /// Hands the slot's queued frames to its handler as one write of the
    /// request stream and checks each answer, in request order.
    async fn flush_stream(&mut self, slot: usize) {
        let Some(s) = self.slots[slot].as_mut() else {
            return;
        };
        let bodies = std::mem::take(&mut s.streamed);
        if bodies.is_empty() {
            return;
        }
        let mut bytes = BytesMut::new();
        for body in &bodies {
            prost::encoding::encode_varint(body.len() as u64, &mut bytes);
            bytes.extend_from_slice(body);
        }
        if let Err(close) = s.handler.handle_stream_bytes(&bytes) {
            panic!("frames under the size limit were refused: {close:?}");
        }
        for body in bodies {
            let Some(s) = self.slots[slot].as_mut() else {
                return;
            };
            let before = s.before();
            let reply = s.next_answer().await;
            self.check(slot, &body, before, reply);
        }
    }

    /// The checks of one frame's reply; a close ends the slot.
    fn check(&mut self, slot: usize, body: &Bytes, before: Before, reply: Reply) {
        let Before {
            awaiting_hello,
            caller: caller_before,
        } = before;
        let caller_after = self.slots[slot]
            .as_ref()
            .and_then(|s| s.handler.caller().cloned());
        let decoded = ClientFrame::decode(body.clone());
        let Ok(request) = decoded else {
            match reply {
                Reply::Close(close) => {
                    assert_eq!(close.code, ErrorCode::MalformedFrame);
                    self.outcomes.closes += 1;
                }
                other => panic!("an undecodable frame was answered: {other:?}"),
            }
            self.slots[slot] = None;
            return;
        };
        let must_close = match (&request.request, awaiting_hello) {
            (Some(Request::Hello(h)), true) => {
                (!h.versions.contains(&1)).then_some(ErrorCode::UnsupportedVersion)
            }
            (_, true) | (Some(Request::Hello(_)), false) => Some(ErrorCode::ProtocolViolation),
            _ => None,
        };
        let result = match reply {
            Reply::Close(close) => {
                assert_eq!(Some(close.code), must_close, "unexpected close {close:?}");
                self.outcomes.closes += 1;
                self.slots[slot] = None;
                return;
            }
            Reply::Respond(ServerFrame {
                kind: Some(server_frame::Kind::Response(response)),
            }) => {
                assert_eq!(must_close, None, "{request:?} must close the connection");
                assert_eq!(response.request_id, request.request_id);
                response.result.expect("a response carries a result")
            }
            Reply::Respond(other) => panic!("a request was answered with {other:?}"),
        };
        let Some(inner) = request.request else {
            match &result {
                response::Result::Error(e) => assert_eq!(e.code, ErrorCode::UnknownRequest as i32),
                other => panic!("an empty request succeeded: {other:?}"),
            }
            return;
        };
        match &result {
            response::Result::Error(e) => {
                *self.outcomes.errors.entry(e.code).or_default() += 1;
                let code = ErrorCode::try_from(e.code).expect("a known error code");
                assert_ne!(code, ErrorCode::Unspecified);
                assert_ne!(code, ErrorCode::Internal, "internal error on {inner:?}");
                if caller_before.is_none() && needs_login(&inner) {
                    assert_eq!(code, ErrorCode::NotAuthenticated, "{inner:?}");
                }
                if caller_before.is_some()
                    && matches!(inner, Request::Login(_) | Request::EnrolDevice(_))
                {
                    assert_eq!(code, ErrorCode::AlreadyAuthenticated);
                }
                assert_eq!(
                    caller_before, caller_after,
                    "a failed request changed the login"
                );
            }
            ok => {
                assert!(result_matches(&inner, ok), "{inner:?} answered with {ok:?}");
                *self
                    .outcomes
                    .successes
                    .entry(microbot_server::testing::metrics::request_kind(&inner))
                    .or_default() += 1;
                assert!(caller_before.is_some() || !needs_login(&inner));
                self.on_success(slot, &inner, ok, caller_after.as_ref());
            }
        }
    }

    fn on_success(
        &mut self,
        slot: usize,
        request: &Request,
        result: &response::Result,
        caller: Option<&microbot_server::testing::auth::devices::Caller>,
    ) {
        match (request, result) {
            (Request::Hello(_), response::Result::Hello(h)) => {
                if let Some(s) = self.slots[slot].as_mut() {
                    s.challenge = Some(h.challenge.clone());
                }
            }
            (Request::Challenge(_), response::Result::Challenge(c)) => {
                if let Some(s) = self.slots[slot].as_mut() {
                    s.challenge = Some(c.challenge.clone());
                }
            }
            (Request::Login(r), response::Result::Login(l)) => {
                let caller = caller.expect("a successful login logs in");
                assert_eq!(caller.device_id, r.device_id);
                assert_eq!(caller.username, l.username);
                self.senders.insert((l.username.clone(), r.device_id));
            }
            (Request::Register(r), response::Result::Register(reg)) => {
                if let Ok(secret) = totp_rs::Secret::try_from_base32(&reg.totp_secret_base32) {
                    self.secrets
                        .insert(r.username.clone(), secret.as_bytes().to_vec());
                }
            }
            (Request::EnrolDevice(r), response::Result::EnrolDevice(d)) => {
                // A harness key (see `substitute`) can log the device in.
                for k in 0..=self.next_key {
                    let key = SigningKey::from_bytes(&[k.wrapping_add(100); 32]);
                    if key.verifying_key().as_bytes() == r.device_public_key.as_ref() {
                        self.keys.insert(d.device_id, key);
                    }
                }
            }
            (Request::Send(_) | Request::SendGroup(_), _) => self.successful_sends += 1,
            (Request::FetchEnvelopes(r), response::Result::Envelopes(page)) => {
                let limit = match r.limit {
                    0 => 100,
                    n => n.min(1000),
                };
                assert!(page.envelopes.len() <= usize::try_from(limit).unwrap_or(usize::MAX));
                let mut last = r.after_envelope_id;
                for e in &page.envelopes {
                    assert!(e.envelope_id > last, "fetch out of order");
                    self.outcomes.envelopes += 1;
                    last = e.envelope_id;
                    self.check_sender(&e.sender_username, e.sender_device_id);
                }
            }
            (Request::AckEnvelopes(r), response::Result::Ack(a)) => {
                let named: BTreeSet<u64> = r.envelope_ids.iter().copied().collect();
                assert!(usize::try_from(a.deleted).unwrap_or(usize::MAX) <= named.len());
            }
            _ => {}
        }
    }

    fn check_sender(&self, username: &str, device_id: u64) {
        assert!(
            self.senders.contains(&(username.to_owned(), device_id)),
            "an envelope names a sender that never logged in: {username}/{device_id}"
        );
    }

    /// Takes the pushes waiting for a slot; a disconnect order ends it.
    fn drain(&mut self, slot: usize) {
        let Some(s) = self.slots[slot].as_mut() else {
            return;
        };
        let mut envelopes = Vec::new();
        let mut disconnect = false;
        let woken = std::mem::take(&mut s.woken);
        let mut events = woken.into_iter();
        while let Some(event) = events.next().or_else(|| s.handler.try_next_event()) {
            match event {
                BusEvent::Push(p) => {
                    if let Some(push::Event::Envelope(e)) = p.event {
                        envelopes.push(e);
                    }
                }
                BusEvent::Disconnect(_) => {
                    disconnect = true;
                    break;
                }
            }
        }
        for e in envelopes {
            self.check_sender(&e.sender_username, e.sender_device_id);
            self.outcomes.envelopes += 1;
        }
        if disconnect {
            self.slots[slot] = None;
        }
    }

    /// Every envelope of a device's queue, through the storage API.
    async fn queue(
        &self,
        device_id: u64,
    ) -> Vec<microbot_server::testing::storage::StoredEnvelope> {
        let mut out: Vec<microbot_server::testing::storage::StoredEnvelope> = Vec::new();
        loop {
            let after = out.last().map_or(0, |e| e.id);
            let page = FetchPage {
                limit: 1000,
                max_bytes: usize::MAX,
                overhead: 0,
                now_ms: self.clock.now_ms(),
            };
            let (rows, more) = self
                .state
                .storage
                .fetch_envelopes(device_id, after, page)
                .await
                .expect("storage");
            out.extend(rows);
            if !more {
                return out;
            }
        }
    }

    async fn check_end(&self) {
        let mut devices: BTreeSet<u64> = self.keys.keys().copied().collect();
        devices.extend(self.fixture_devices.iter().copied());
        for &device in &devices {
            let queue = self.queue(device).await;
            let len = self
                .state
                .storage
                .queue_len(device, self.clock.now_ms())
                .await
                .expect("storage");
            assert_eq!(usize::try_from(len).unwrap_or(usize::MAX), queue.len());
            assert!(len <= self.state.config.max_queue_len);
            for e in &queue {
                self.check_sender(&e.sender_username, e.sender_device_id);
            }
        }
        assert_eq!(
            carol_state(&self.state).await,
            self.carol_before,
            "carol's account changed"
        );
        let carol = self.fixture_devices.get(CAROL).copied().unwrap_or_default();
        let carol_queue = self.queue(carol).await.len();
        assert!(carol_queue <= usize::try_from(self.successful_sends).unwrap_or(usize::MAX));
    }
}

/// Builds inputs in the target's format (for seeds and tests).
#[derive(Clone, Debug, Default)]
pub struct Script {
    bytes: Vec<u8>,
    next_id: u64,
}

impl Script {
    /// An empty script.
    pub fn new() -> Self {
        Self::default()
    }

    fn body(&mut self, op: u8, body: &[u8]) {
        let len = u16::try_from(body.len()).unwrap_or(u16::MAX);
        self.bytes.push(op);
        self.bytes.extend_from_slice(&len.to_le_bytes());
        self.bytes
            .extend_from_slice(body.get(..usize::from(len)).unwrap_or_default());
    }

    fn frame(&mut self, slot: u8, request: Request, magic: bool) -> &mut Self {
        self.next_id += 1;
        let body = encode(&ClientFrame {
            request_id: self.next_id,
            request: Some(request),
        });
        self.body((slot & 3) | if magic { 7 << 2 } else { 0 }, &body);
        self
    }

    /// A request on `slot`, sent as is.
    pub fn request(&mut self, slot: u8, request: Request) -> &mut Self {
        self.frame(slot, request, false)
    }

    /// A request on `slot` after the harness's substitutions.
    pub fn magic(&mut self, slot: u8, request: Request) -> &mut Self {
        self.frame(slot, request, true)
    }

    /// Raw frame bytes on `slot`.
    pub fn raw(&mut self, slot: u8, body: &[u8]) -> &mut Self {
        self.body(slot & 3, body);
        self
    }

    /// A request on `slot`, queued for the slot's next stream write (the
    /// client pipelines it with the requests queued around it).
    pub fn streamed(&mut self, slot: u8, request: Request) -> &mut Self {
        self.next_id += 1;
        let body = encode(&ClientFrame {
            request_id: self.next_id,
            request: Some(request),
        });
        self.body((slot & 3) | STREAMED, &body);
        self
    }

    /// Raw frame bytes on `slot`, queued for the slot's next stream write.
    pub fn streamed_raw(&mut self, slot: u8, body: &[u8]) -> &mut Self {
        self.body((slot & 3) | STREAMED, body);
        self
    }

    /// Logs `slot` in as alice (0) or bob (1).
    pub fn login(&mut self, slot: u8, who: u8) -> &mut Self {
        self.bytes.extend_from_slice(&[(slot & 3) | (4 << 2), who]);
        self
    }

    /// The client of `slot` goes away.
    pub fn disconnect(&mut self, slot: u8) -> &mut Self {
        self.bytes.push((slot & 3) | (5 << 2));
        self
    }

    /// Takes the pushes of `slot`.
    pub fn drain(&mut self, slot: u8) -> &mut Self {
        self.bytes.push((slot & 3) | (6 << 2));
        self
    }

    /// The input.
    pub fn bytes(&self) -> Vec<u8> {
        self.bytes.clone()
    }
}

/// Fixture device ids in a fresh run (alice, bob, carol).
pub const FIXTURE_DEVICE_IDS: [u64; 3] = [1, 2, 3];

fn hello() -> Request {
    Request::Hello(Hello {
        versions: vec![1],
        client_agent: "seed".into(),
    })
}

fn ciphertext(n: u8) -> Bytes {
    Bytes::from(vec![n; 64 + usize::from(n)])
}

fn send(devices: &[u64], n: u8) -> Request {
    Request::Send(transport::SendRequest {
        envelopes: devices
            .iter()
            .map(|&d| transport::OutgoingEnvelope {
                recipient_device_id: d,
                ciphertext: ciphertext(n),
            })
            .collect(),
        complete_accounts: Vec::new(),
    })
}

fn fetch() -> Request {
    Request::FetchEnvelopes(transport::FetchEnvelopesRequest::default())
}

/// Real frame sequences: login, prekeys, sends, fetch and ack, groups,
/// account management, attachments and protocol violations.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let [alice, bob, carol] = FIXTURE_DEVICE_IDS;
    let mut seeds = Vec::new();

    let mut s = Script::new();
    s.login(0, 0)
        .request(0, Request::PrekeyStatus(transport::PrekeyStatusRequest {}))
        .request(0, Request::UploadPrekeys(prekeys(0)))
        .request(
            0,
            Request::FetchPrekeys(transport::FetchPrekeysRequest {
                username: "bob".into(),
                device_ids: Vec::new(),
            }),
        )
        .request(0, send(&[bob, carol], 1))
        .login(1, 1)
        .request(0, send(&[bob], 2))
        .drain(1)
        .request(1, fetch())
        .request(
            1,
            Request::AckEnvelopes(transport::AckEnvelopesRequest {
                envelope_ids: vec![1, 2, 3],
            }),
        )
        .request(1, fetch())
        .request(1, send(&[alice], 3))
        .drain(0)
        .request(0, Request::ListDevices(transport::ListDevicesRequest {}));
    seeds.push(("login-prekeys-send-fetch-ack", s.bytes()));

    let group_id = Bytes::from_static(&[7; 16]);
    let mut s = Script::new();
    s.login(0, 0).login(1, 1).request(
        0,
        Request::CreateGroup(transport::CreateGroupRequest {
            group_id: group_id.clone(),
            members: vec!["bob".into()],
            encrypted_metadata: Bytes::from_static(b"sealed name"),
        }),
    );
    s.request(
        0,
        Request::SendGroup(transport::SendGroupRequest {
            group_id: group_id.clone(),
            ciphertext: ciphertext(4),
            ..transport::SendGroupRequest::default()
        }),
    )
    .drain(1)
    .request(1, fetch())
    .request(
        1,
        Request::GetGroup(transport::GetGroupRequest {
            group_id: group_id.clone(),
        }),
    )
    .request(
        0,
        Request::AddGroupMembers(transport::AddGroupMembersRequest {
            group_id: group_id.clone(),
            expected_version: 1,
            usernames: vec!["carol".into()],
        }),
    )
    .request(
        0,
        Request::SetGroupRole(transport::SetGroupRoleRequest {
            group_id: group_id.clone(),
            expected_version: 2,
            username: "bob".into(),
            role: transport::GroupRole::Admin as i32,
        }),
    )
    .request(
        1,
        Request::SetGroupMetadata(transport::SetGroupMetadataRequest {
            group_id: group_id.clone(),
            expected_version: 3,
            encrypted_metadata: Bytes::from_static(b"new name"),
        }),
    )
    .request(
        1,
        Request::RemoveGroupMembers(transport::RemoveGroupMembersRequest {
            group_id: group_id.clone(),
            expected_version: 4,
            usernames: vec!["carol".into()],
        }),
    )
    .request(
        1,
        Request::LeaveGroup(transport::LeaveGroupRequest {
            group_id: group_id.clone(),
        }),
    )
    .drain(0)
    .drain(1);
    seeds.push(("groups", s.bytes()));

    let mut s = Script::new();
    s.request(0, hello())
        .request(
            0,
            Request::Register(transport::RegisterRequest {
                username: "dave".into(),
                password: "dave's password".into(),
                bot: false,
            }),
        )
        .magic(
            0,
            Request::ConfirmRegistration(transport::ConfirmRegistrationRequest {
                username: "dave".into(),
                password: "dave's password".into(),
                totp_code: MAGIC_TOTP.into(),
            }),
        )
        .magic(
            0,
            Request::EnrolDevice(transport::EnrolDeviceRequest {
                username: "dave".into(),
                password: "dave's password".into(),
                second_factor: Some(transport::SecondFactor {
                    factor: Some(second_factor::Factor::TotpCode(MAGIC_TOTP.into())),
                }),
                device_public_key: Bytes::new(),
                device_name: "dave's phone".into(),
            }),
        )
        .request(0, Request::Challenge(transport::ChallengeRequest {}))
        .magic(
            0,
            Request::Login(LoginRequest {
                device_id: 4,
                signature: Bytes::new(),
            }),
        )
        .request(0, send(&[alice], 5))
        .magic(
            0,
            Request::ChangePassword(transport::ChangePasswordRequest {
                current_password: "dave's password".into(),
                totp_code: MAGIC_TOTP.into(),
                new_password: "dave's new password".into(),
            }),
        )
        .login(1, 0)
        .request(1, fetch())
        .magic(
            0,
            Request::DeleteAccount(transport::DeleteAccountRequest {
                password: "dave's new password".into(),
                totp_code: MAGIC_TOTP.into(),
            }),
        )
        .drain(0);
    seeds.push(("register-enrol-login-delete", s.bytes()));

    let mut s = Script::new();
    s.request(0, hello())
        .magic(
            0,
            Request::EnrolDevice(transport::EnrolDeviceRequest {
                username: "bob".into(),
                password: MAGIC_PASSWORD.into(),
                second_factor: Some(transport::SecondFactor {
                    factor: Some(second_factor::Factor::TotpCode(MAGIC_TOTP.into())),
                }),
                device_public_key: Bytes::new(),
                device_name: "bob's second".into(),
            }),
        )
        .login(1, 1)
        .request(0, send(&[bob], 6))
        .magic(
            1,
            Request::RemoveDevice(transport::RemoveDeviceRequest {
                device_id: 4,
                password: MAGIC_PASSWORD.into(),
                totp_code: MAGIC_TOTP.into(),
                second_factor: None,
            }),
        )
        .request(1, Request::ListDevices(transport::ListDevicesRequest {}))
        .drain(1);
    seeds.push(("second-device-removed", s.bytes()));

    let mut s = Script::new();
    s.login(0, 0)
        .request(
            0,
            Request::AttachmentUpload(transport::AttachmentUploadRequest {
                size: 70_000,
                attachment_id: Bytes::new(),
            }),
        )
        .request(
            0,
            Request::AttachmentDownload(transport::AttachmentDownloadRequest {
                attachment_id: Bytes::from_static(&[1; 16]),
            }),
        );
    seeds.push(("attachments", s.bytes()));

    let mut s = Script::new();
    s.request(0, fetch())
        .request(
            1,
            Request::Hello(Hello {
                versions: vec![2, 3],
                client_agent: String::new(),
            }),
        )
        .request(2, hello())
        .request(2, hello())
        .request(3, hello())
        .raw(3, &[0x0a, 0xff])
        .request(0, hello())
        .raw(0, &[])
        .request(0, send(&[bob], 7))
        .request(0, Request::Login(LoginRequest::default()))
        .disconnect(0);
    seeds.push(("protocol-violations", s.bytes()));

    // A client that pipelines: sends with a fetch between them, acks and
    // a fetch after them, then sends followed by a frame that closes.
    let mut s = Script::new();
    s.login(0, 0).login(1, 1);
    // (Within the fixture's share of a queue per sender: 4.)
    for n in 1..=4 {
        s.streamed(0, send(&[bob], n));
    }
    s.streamed(0, fetch());
    for n in 5..=6 {
        s.streamed(0, send(&[carol], n));
    }
    s.drain(0);
    for first in [1u64, 4, 7] {
        s.streamed(
            1,
            Request::AckEnvelopes(transport::AckEnvelopesRequest {
                envelope_ids: (first..first + 3).collect(),
            }),
        );
    }
    s.streamed(1, fetch()).drain(1);
    s.streamed(0, send(&[carol], 7))
        .streamed(0, send(&[carol], 8))
        .streamed_raw(0, &[0xff, 0xff, 0xff])
        .drain(0);
    seeds.push(("pipelined", s.bytes()));
    seeds
}
