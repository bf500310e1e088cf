//! The floor: a plain QUIC relay with no storage and no authentication.
//!
//! It speaks just enough of the transport for the pairs and fan-out
//! workloads: Hello is answered, Login registers the connection under the
//! claimed device id (no signature check), a Send is pushed at once to the
//! recipient's connection and answered, an ack is answered without doing
//! anything. A group is every connection: CreateGroup is announced to every
//! other logged-in connection as the server announces it (every member
//! listed) and answered, and a SendGroup is pushed to every other
//! logged-in connection and answered.
//! So "client A → relay → client B" (or → every member) moves the very
//! same frames the microbot server moves, and the server's throughput
//! reads as a ratio to what this machine's QUIC stack can relay at all.
//!
//! Not owned here: the workload (pairs.rs) and the process that hosts the
//! relay (`microbot-loadgen relay-serve`, or in-process in tests).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use microbot_protocol::codec::{DEFAULT_MAX_FRAME_LEN, FrameDecoder, encode_frame};
use microbot_protocol::transport::{
    AckResponse, ClientFrame, CreateGroupRequest, Envelope, Error as WireError, ErrorCode,
    GroupInfo, GroupMember, GroupRole, HelloResponse, LoginResponse, Push, Response, SendResponse,
    ServerFrame, client_frame::Request, push, response, server_frame,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use crate::error::{LoadError, LoadResult};
use crate::wire::Target;

type Routes = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Bytes>>>>;

/// A bound relay.
#[derive(Debug)]
pub struct Relay {
    endpoint: quinn::Endpoint,
    target: Target,
}

impl Relay {
    /// Generates a self-signed certificate and binds `listen` (ALPN
    /// `microbot/1`, so the client SDK's pinned config connects unchanged).
    ///
    /// # Errors
    /// Certificate, TLS or socket failures.
    pub fn bind(listen: SocketAddr) -> LoadResult<Self> {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .map_err(|e| LoadError::Config(e.to_string()))?;
        let cert_der: CertificateDer<'static> = certified.cert.der().clone();
        let fingerprint = hex::encode(Sha256::digest(cert_der.as_ref()));
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| LoadError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(vec![cert_der], key)
            .map_err(|e| LoadError::Config(e.to_string()))?;
        tls.alpn_protocols = vec![microbot_client::ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .map_err(|e| LoadError::Config(e.to_string()))?;
        let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let endpoint =
            quinn::Endpoint::server(config, listen).map_err(LoadError::io("binding the relay"))?;
        let addr = endpoint
            .local_addr()
            .map_err(LoadError::io("reading the relay address"))?;
        Ok(Self {
            endpoint,
            target: Target { addr, fingerprint },
        })
    }

    /// Where clients connect, and the certificate pin.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Serves connections until the endpoint is closed.
    pub async fn run(self) {
        let routes: Routes = Arc::new(Mutex::new(HashMap::new()));
        let counter = Arc::new(AtomicU64::new(1));
        while let Some(incoming) = self.endpoint.accept().await {
            tokio::spawn(serve(incoming, Arc::clone(&routes), Arc::clone(&counter)));
        }
    }

    /// A handle that stops [`Relay::run`].
    pub fn closer(&self) -> quinn::Endpoint {
        self.endpoint.clone()
    }
}

fn encode(frame: &ServerFrame) -> Option<Bytes> {
    let mut buf = BytesMut::new();
    encode_frame(frame, &mut buf).ok()?;
    Some(buf.freeze())
}

fn respond(request_id: u64, result: response::Result) -> Option<Bytes> {
    encode(&ServerFrame {
        kind: Some(server_frame::Kind::Response(Response {
            request_id,
            result: Some(result),
        })),
    })
}

async fn serve(incoming: quinn::Incoming, routes: Routes, counter: Arc<AtomicU64>) {
    let Ok(connection) = incoming.await else {
        return;
    };
    let Ok((send, mut recv)) = connection.accept_bi().await else {
        return;
    };
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    tokio::spawn(write_loop(send, rx));
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
    let mut me: Option<u64> = None;
    'read: while let Ok(Some(chunk)) = recv.read_chunk(64 * 1024, true).await {
        if decoder.push(&chunk.bytes).is_err() {
            break;
        }
        loop {
            let frame = match decoder.next_message::<ClientFrame>() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => break 'read,
            };
            let id = frame.request_id;
            let result = match frame.request {
                Some(Request::Hello(_)) => response::Result::Hello(HelloResponse {
                    version: 1,
                    server_agent: "microbot-loadgen relay".to_owned(),
                    challenge: Bytes::from_static(&[0u8; 32]),
                    limits: None,
                }),
                Some(Request::Login(login)) => {
                    routes
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(login.device_id, tx.clone());
                    me = Some(login.device_id);
                    response::Result::Login(LoginResponse {
                        username: "relay".to_owned(),
                        queued_envelopes: 0,
                    })
                }
                Some(Request::Send(send)) => {
                    let now = now_ms();
                    for envelope in send.envelopes {
                        let route = routes
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .get(&envelope.recipient_device_id)
                            .cloned();
                        let pushed =
                            push_envelope(&counter, me, now, envelope.ciphertext, Bytes::new());
                        if let (Some(route), Some(bytes)) = (route, pushed) {
                            let _ = route.send(bytes);
                        }
                    }
                    sent(now)
                }
                Some(Request::CreateGroup(create)) => {
                    let info = announced_group(me, create);
                    let others = other_routes(&routes, me);
                    if let Some(bytes) = encode(&ServerFrame {
                        kind: Some(server_frame::Kind::Push(Push {
                            event: Some(push::Event::GroupChanged(info.clone())),
                        })),
                    }) {
                        for route in others {
                            let _ = route.send(bytes.clone());
                        }
                    }
                    response::Result::Group(info)
                }
                Some(Request::SendGroup(send)) => {
                    let now = now_ms();
                    for route in other_routes(&routes, me) {
                        let pushed = push_envelope(
                            &counter,
                            me,
                            now,
                            send.ciphertext.clone(),
                            send.group_id.clone(),
                        );
                        if let Some(bytes) = pushed {
                            let _ = route.send(bytes);
                        }
                    }
                    sent(now)
                }
                Some(Request::AckEnvelopes(ack)) => response::Result::Ack(AckResponse {
                    deleted: u32::try_from(ack.envelope_ids.len()).unwrap_or(u32::MAX),
                }),
                _ => response::Result::Error(WireError {
                    code: ErrorCode::UnsupportedRequest as i32,
                    message: "the relay only relays".to_owned(),
                    ..WireError::default()
                }),
            };
            if let Some(bytes) = respond(id, result) {
                let _ = tx.send(bytes);
            }
        }
    }
    if let Some(me) = me {
        // A later connection may have logged in under the same id.
        let mut routes = routes.lock().unwrap_or_else(PoisonError::into_inner);
        if routes.get(&me).is_some_and(|route| route.same_channel(&tx)) {
            routes.remove(&me);
        }
    }
}

/// The push of one envelope from `sender` (a fresh envelope id each).
fn push_envelope(
    counter: &AtomicU64,
    sender: Option<u64>,
    now: u64,
    ciphertext: Bytes,
    group_id: Bytes,
) -> Option<Bytes> {
    encode(&ServerFrame {
        kind: Some(server_frame::Kind::Push(Push {
            event: Some(push::Event::Envelope(Envelope {
                envelope_id: counter.fetch_add(1, Ordering::Relaxed),
                sender_username: "relay".to_owned(),
                sender_device_id: sender.unwrap_or(0),
                server_timestamp_ms: now,
                ciphertext,
                group_id,
            })),
        })),
    })
}

/// The routes of every logged-in connection but `me`'s: a group's members.
fn other_routes(routes: &Routes, me: Option<u64>) -> Vec<mpsc::UnboundedSender<Bytes>> {
    routes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|(device, _)| Some(**device) != me)
        .map(|(_, route)| route.clone())
        .collect()
}

/// The group a `CreateGroup` of `creator` makes, as the server announces
/// it to every member (`group_changed`): version 1, every member listed,
/// the creator as its admin.
fn announced_group(creator: Option<u64>, create: CreateGroupRequest) -> GroupInfo {
    let member = |username: String, role: GroupRole| GroupMember {
        username,
        role: role as i32,
        joined_at_version: 1,
    };
    let creator = format!("relay-{}", creator.unwrap_or(0));
    let members = std::iter::once(member(creator, GroupRole::Admin))
        .chain(
            create
                .members
                .into_iter()
                .map(|name| member(name, GroupRole::Member)),
        )
        .collect();
    GroupInfo {
        group_id: create.group_id,
        version: 1,
        members,
        encrypted_metadata: create.encrypted_metadata,
    }
}

/// The answer to a send or group send, stamped `now`.
fn sent(now: u64) -> response::Result {
    response::Result::Send(SendResponse {
        skipped_device_ids: Vec::new(),
        server_timestamp_ms: now,
    })
}

async fn write_loop(mut send: quinn::SendStream, mut rx: mpsc::UnboundedReceiver<Bytes>) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    while let Some(first) = rx.recv().await {
        buf.extend_from_slice(&first);
        while buf.len() < 64 * 1024 {
            match rx.try_recv() {
                Ok(more) => buf.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if send.write_all(&buf).await.is_err() {
            return;
        }
        buf.clear();
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
