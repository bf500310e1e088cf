//! One client connection (SPEC.md §12.3, §12.4): the request stream, the
//! Hello → login → requests state machine, pushes, and closing with a code.
//!
//! The client opens one bidirectional stream. The server reads
//! `ClientFrame`s from it and writes `ServerFrame`s back: responses in
//! request order (requests are handled one at a time), pushes in between.
//! A frame that cannot be decoded, an oversize frame, or a protocol
//! violation ends only this connection: the server writes a
//! `ServerFrame.closing` error, finishes the stream and closes the QUIC
//! connection with the error code as application close code.
//!
//! Not owned here: what each request does (auth/, keys.rs, queues.rs).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use microbot_protocol::codec::{FrameDecoder, FrameError, encode_frame_with_limit};
use microbot_protocol::transport::{
    self, ChallengeResponse, ClientFrame, EnrolDeviceResponse, ErrorCode, HelloResponse,
    LoginResponse, Ok as OkResult, Push, Response, ServerFrame, ServerLimits,
    client_frame::Request, response, server_frame,
};
use prost::Message as _;
use tokio::sync::watch;

use crate::auth::accounts;
use crate::auth::devices::{self, CHALLENGE_LEN, DeviceSession};
use crate::bus::{BusEvent, Subscription};
use crate::error::ApiError;
use crate::limits::{ConnectionSlot, credential_subject};
use crate::metrics::request_kind;
use crate::state::{ServerState, now_ms};
use crate::{attachments, groups, keys, queues};

/// Protocol versions this server speaks.
pub const SUPPORTED_VERSIONS: &[u32] = &[1];
/// Time a client has to open its request stream and send Hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Time given to the peer to receive a closing frame before the close.
const CLOSE_LINGER: Duration = Duration::from_millis(500);
/// Bytes read from the stream at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Retry hint sent when the server shuts down.
pub const SHUTDOWN_RETRY_AFTER_MS: u64 = 1000;

/// Where the connection is in its life.
enum Phase {
    AwaitHello,
    Open,
    LoggedIn(DeviceSession),
}

/// Why the connection loop ended.
struct Close {
    code: ErrorCode,
    message: String,
    retry_after_ms: u64,
    supported_versions: Vec<u32>,
}

impl Close {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_ms: 0,
            supported_versions: Vec::new(),
        }
    }
}

/// What the loop should do after an event.
enum Flow {
    Continue,
    Close(Close),
}

struct Conn {
    state: Arc<ServerState>,
    connection: quinn::Connection,
    send: quinn::SendStream,
    phase: Phase,
    challenge: Option<[u8; CHALLENGE_LEN]>,
    subscription: Option<Subscription>,
    max_frame_len: usize,
    remote: std::net::SocketAddr,
}

/// Keeps the open-connections gauge right however the task ends.
struct OpenGauge(Arc<ServerState>);

impl Drop for OpenGauge {
    fn drop(&mut self) {
        self.0.metrics.connections_open.dec();
    }
}

/// Serves one incoming connection until it ends or `shutdown` fires;
/// `slot` is its place under the connection caps, released at the end.
pub async fn serve(
    state: Arc<ServerState>,
    incoming: quinn::Incoming,
    mut shutdown: watch::Receiver<bool>,
    slot: ConnectionSlot,
) {
    let _slot = slot;
    state.metrics.connections_total.inc();
    state.metrics.connections_open.inc();
    let _gauge = OpenGauge(Arc::clone(&state));
    let connection = match incoming.await {
        Ok(connection) => connection,
        Err(error) => {
            tracing::debug!(%error, "handshake failed");
            return;
        }
    };
    let remote = connection.remote_address();
    tracing::debug!(%remote, "connection open");
    let streams = tokio::select! {
        s = tokio::time::timeout(HELLO_TIMEOUT, connection.accept_bi()) => s,
        _ = shutdown.changed() => {
            connection.close(code(ErrorCode::Unavailable), b"server shutting down");
            return;
        }
    };
    let (send, recv) = match streams {
        Ok(Ok(streams)) => streams,
        Ok(Err(error)) => {
            tracing::debug!(%remote, %error, "connection ended before a stream");
            return;
        }
        Err(_) => {
            connection.close(code(ErrorCode::ProtocolViolation), b"no request stream");
            return;
        }
    };
    let max_frame_len = usize::try_from(state.config.max_frame_len).unwrap_or(usize::MAX);
    let mut conn = Conn {
        state,
        connection,
        send,
        phase: Phase::AwaitHello,
        challenge: None,
        subscription: None,
        max_frame_len,
        remote,
    };
    let outcome = conn.run(recv, &mut shutdown).await;
    conn.unsubscribe();
    match outcome {
        Some(close) => conn.close(close).await,
        None => {
            let _ = conn.send.finish();
            let _ = tokio::time::timeout(CLOSE_LINGER, conn.send.stopped()).await;
            conn.connection.close(0u32.into(), b"done");
        }
    }
    tracing::debug!(%remote, "connection closed");
}

fn code(code: ErrorCode) -> quinn::VarInt {
    quinn::VarInt::from(u32::try_from(code as i32).unwrap_or(0))
}

/// Waits for the next bus event; never resolves without a subscription.
async fn next_event(subscription: &mut Option<Subscription>) -> BusEvent {
    match subscription {
        Some(sub) => sub
            .events
            .recv()
            .await
            .unwrap_or(BusEvent::Disconnect(ErrorCode::Unavailable)),
        None => std::future::pending().await,
    }
}

fn is_credential_failure(outcome: Result<(), ErrorCode>) -> bool {
    matches!(
        outcome,
        Err(ErrorCode::InvalidCredentials
            | ErrorCode::InvalidSecondFactor
            | ErrorCode::TotpReplayed)
    )
}

fn frame_error_close(error: &FrameError) -> Close {
    match error {
        FrameError::Oversize { .. } => Close::new(ErrorCode::FrameTooLarge, error.to_string()),
        _ => Close::new(ErrorCode::MalformedFrame, error.to_string()),
    }
}

impl Conn {
    async fn run(
        &mut self,
        mut recv: quinn::RecvStream,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Close> {
        let mut decoder = FrameDecoder::new(self.max_frame_len);
        let hello_deadline = tokio::time::Instant::now() + HELLO_TIMEOUT;
        loop {
            // Handle every whole frame already buffered before reading more.
            loop {
                match decoder.next_frame() {
                    Ok(Some(frame)) => match self.handle_frame(frame).await {
                        Flow::Continue => {}
                        Flow::Close(close) => return Some(close),
                    },
                    Ok(None) => break,
                    Err(error) => return Some(frame_error_close(&error)),
                }
            }
            let awaiting_hello = matches!(self.phase, Phase::AwaitHello);
            tokio::select! {
                chunk = recv.read_chunk(READ_CHUNK, true) => match chunk {
                    Ok(Some(chunk)) => {
                        if let Err(error) = decoder.push(&chunk.bytes) {
                            return Some(frame_error_close(&error));
                        }
                    }
                    Ok(None) => {
                        return match decoder.finish() {
                            Ok(()) => None,
                            Err(error) => Some(frame_error_close(&error)),
                        };
                    }
                    Err(error) => {
                        tracing::debug!(%error, "request stream ended");
                        return None;
                    }
                },
                stream = self.connection.accept_bi() => match stream {
                    Ok((send, recv)) => {
                        let session = match &self.phase {
                            Phase::LoggedIn(s) => Some(s.clone()),
                            _ => None,
                        };
                        tokio::spawn(attachments::serve_stream(Arc::clone(&self.state), session, send, recv));
                    }
                    Err(error) => {
                        tracing::debug!(%error, "connection ended");
                        return None;
                    }
                },
                event = next_event(&mut self.subscription) => match event {
                    BusEvent::Push(push) => {
                        if let Err(close) = self.write_push(*push).await {
                            return Some(close);
                        }
                    }
                    BusEvent::Disconnect(code) => {
                        return Some(Close::new(code, "disconnected by the server"));
                    }
                },
                _ = tokio::time::sleep_until(hello_deadline), if awaiting_hello => {
                    return Some(Close::new(ErrorCode::ProtocolViolation, "no Hello in time"));
                }
                _ = shutdown.changed() => {
                    let mut close = Close::new(ErrorCode::Unavailable, "server shutting down");
                    close.retry_after_ms = SHUTDOWN_RETRY_AFTER_MS;
                    return Some(close);
                }
            }
        }
    }

    fn unsubscribe(&mut self) {
        if let Some(sub) = self.subscription.take() {
            self.state.bus.unsubscribe(sub.device_id, sub.id);
        }
    }

    async fn write(&mut self, frame: &ServerFrame) -> Result<(), Close> {
        let mut buf = BytesMut::new();
        encode_frame_with_limit(frame, &mut buf, self.max_frame_len)
            .map_err(|e| Close::new(ErrorCode::Internal, e.to_string()))?;
        self.send
            .write_all(&buf)
            .await
            .map_err(|e| Close::new(ErrorCode::Unavailable, e.to_string()))
    }

    async fn write_push(&mut self, push: Push) -> Result<(), Close> {
        self.write(&ServerFrame {
            kind: Some(server_frame::Kind::Push(push)),
        })
        .await
    }

    async fn close(&mut self, close: Close) {
        tracing::debug!(code = ?close.code, message = %close.message, "closing connection");
        let frame = ServerFrame {
            kind: Some(server_frame::Kind::Closing(transport::Error {
                code: close.code as i32,
                message: close.message.clone(),
                retry_after_ms: close.retry_after_ms,
                supported_versions: close.supported_versions.clone(),
                current_group_version: 0,
                device_ids: Vec::new(),
            })),
        };
        let wrote = tokio::time::timeout(CLOSE_LINGER, self.write(&frame)).await;
        if matches!(wrote, Ok(Ok(()))) {
            let _ = self.send.finish();
            let _ = tokio::time::timeout(CLOSE_LINGER, self.send.stopped()).await;
        }
        let reason: String = close.message.chars().take(100).collect();
        self.connection.close(code(close.code), reason.as_bytes());
    }

    async fn handle_frame(&mut self, frame: Bytes) -> Flow {
        let request = match ClientFrame::decode(frame) {
            Ok(request) => request,
            Err(error) => {
                return Flow::Close(Close::new(ErrorCode::MalformedFrame, error.to_string()));
            }
        };
        let request_id = request.request_id;
        let result = match (request.request, &self.phase) {
            (Some(Request::Hello(hello)), Phase::AwaitHello) => {
                let Some(version) = hello
                    .versions
                    .iter()
                    .copied()
                    .filter(|v| SUPPORTED_VERSIONS.contains(v))
                    .max()
                else {
                    let mut close = Close::new(
                        ErrorCode::UnsupportedVersion,
                        format!(
                            "no common protocol version; this server speaks {SUPPORTED_VERSIONS:?}"
                        ),
                    );
                    close.supported_versions = SUPPORTED_VERSIONS.to_vec();
                    return Flow::Close(close);
                };
                self.phase = Phase::Open;
                let challenge = devices::new_challenge();
                self.challenge = Some(challenge);
                Ok(response::Result::Hello(HelloResponse {
                    version,
                    server_agent: concat!("microbot-server/", env!("CARGO_PKG_VERSION")).to_owned(),
                    challenge: Bytes::copy_from_slice(&challenge),
                    limits: Some(self.limits()),
                }))
            }
            (_, Phase::AwaitHello) => {
                return Flow::Close(Close::new(
                    ErrorCode::ProtocolViolation,
                    "the first frame must be Hello",
                ));
            }
            (Some(Request::Hello(_)), _) => {
                return Flow::Close(Close::new(ErrorCode::ProtocolViolation, "Hello sent twice"));
            }
            (None, _) => Err(ApiError::new(
                ErrorCode::UnknownRequest,
                "empty or unknown request",
            )),
            (Some(request), _) => self.limited_dispatch(request).await,
        };
        let result = result.unwrap_or_else(|e| response::Result::Error(e.to_proto()));
        let frame = ServerFrame {
            kind: Some(server_frame::Kind::Response(Response {
                request_id,
                result: Some(result),
            })),
        };
        match self.write(&frame).await {
            Ok(()) => Flow::Continue,
            Err(close) => Flow::Close(close),
        }
    }

    fn limits(&self) -> ServerLimits {
        let config = &self.state.config;
        ServerLimits {
            max_frame_len: config.max_frame_len,
            max_envelope_len: config.max_envelope_len,
            max_queue_len: config.max_queue_len,
            envelope_ttl_ms: config.envelope_ttl_secs.saturating_mul(1000),
            prekey_low_stock_threshold: config.prekey_low_stock_threshold,
        }
    }

    fn session(&self) -> Result<DeviceSession, ApiError> {
        match &self.phase {
            Phase::LoggedIn(session) => Ok(session.clone()),
            _ => Err(ApiError::new(ErrorCode::NotAuthenticated, "log in first")),
        }
    }

    fn not_logged_in(&self) -> Result<(), ApiError> {
        match self.phase {
            Phase::LoggedIn(_) => Err(ApiError::new(
                ErrorCode::AlreadyAuthenticated,
                "already logged in",
            )),
            _ => Ok(()),
        }
    }

    /// Applies the limits, dispatches, and records metrics and the outcome
    /// of credential checks.
    async fn limited_dispatch(&mut self, request: Request) -> Result<response::Result, ApiError> {
        let state = Arc::clone(&self.state);
        let kind = request_kind(&request);
        let started = std::time::Instant::now();
        let session = match &self.phase {
            Phase::LoggedIn(s) => Some(s.clone()),
            _ => None,
        };
        let subject = credential_subject(&request, session.as_ref()).map(str::to_owned);
        let is_login = matches!(request, Request::Login(_));
        let result = match state.limits.check_request(
            &state.metrics,
            self.remote.ip(),
            session.as_ref(),
            &request,
        ) {
            Err(error) => Err(error),
            Ok(()) => {
                let result = self.dispatch(request).await;
                let outcome = result.as_ref().map(|_| ()).map_err(|e| e.code);
                if let Some(username) = subject {
                    state.limits.record_credentials(&username, outcome);
                    if is_credential_failure(outcome) {
                        state.metrics.logins_failed.inc();
                    }
                }
                if is_login {
                    match outcome {
                        Ok(()) => state.metrics.logins_ok.inc(),
                        Err(_) => state.metrics.logins_failed.inc(),
                    }
                }
                result
            }
        };
        state.metrics.observe_request(kind, started.elapsed());
        result
    }

    async fn dispatch(&mut self, request: Request) -> Result<response::Result, ApiError> {
        let state = Arc::clone(&self.state);
        let ok = || response::Result::Ok(OkResult {});
        match request {
            Request::Hello(_) => Err(ApiError::new(
                ErrorCode::ProtocolViolation,
                "Hello sent twice",
            )),
            Request::Register(r) => accounts::register(&state, r)
                .await
                .map(response::Result::Register),
            Request::ConfirmRegistration(r) => accounts::confirm(&state, r).await.map(|()| ok()),
            Request::EnrolDevice(r) => {
                self.not_logged_in()?;
                let device_id = devices::enrol(&state, r).await?;
                Ok(response::Result::EnrolDevice(EnrolDeviceResponse {
                    device_id,
                }))
            }
            Request::Challenge(_) => {
                let challenge = devices::new_challenge();
                self.challenge = Some(challenge);
                Ok(response::Result::Challenge(ChallengeResponse {
                    challenge: Bytes::copy_from_slice(&challenge),
                }))
            }
            Request::Login(r) => {
                self.not_logged_in()?;
                let challenge = self.challenge.take().ok_or_else(|| {
                    ApiError::new(ErrorCode::NoChallenge, "ask for a challenge first")
                })?;
                let session = devices::login(&state, challenge, r).await?;
                // Subscribe before answering: nothing queued from now on can
                // be missed between this response and the first fetch.
                self.subscription = Some(state.bus.subscribe(session.device_id));
                let device_id = session.device_id;
                let username = session.username.clone();
                self.phase = Phase::LoggedIn(session);
                let (queued, stock) = state
                    .blocking(move |s| {
                        Ok((
                            s.storage.queue_len(device_id, now_ms())?,
                            s.storage.prekey_stock(device_id)?,
                        ))
                    })
                    .await?;
                // A device that has uploaded keys learns at login that its
                // stock is low (it may have missed the push while offline).
                if stock.signed_prekey_id != 0
                    && let Some(push) = keys::low_stock_push(&state, stock)
                {
                    state.bus.publish(device_id, BusEvent::Push(Box::new(push)));
                }
                Ok(response::Result::Login(LoginResponse {
                    username,
                    queued_envelopes: queued,
                }))
            }
            Request::ChangePassword(r) => {
                let s = self.session()?;
                accounts::change_password(&state, s.account_id, r)
                    .await
                    .map(|()| ok())
            }
            Request::RemoveDevice(r) => {
                let s = self.session()?;
                devices::remove(&state, s.account_id, r)
                    .await
                    .map(|()| ok())
            }
            Request::DeleteAccount(r) => {
                let s = self.session()?;
                accounts::delete_account(&state, s.account_id, r)
                    .await
                    .map(|()| ok())
            }
            Request::ListDevices(_) => {
                let s = self.session()?;
                devices::list(&state, s.account_id)
                    .await
                    .map(response::Result::DeviceList)
            }
            Request::UploadPrekeys(r) => {
                let s = self.session()?;
                keys::upload(&state, &s, r).await.map(|()| ok())
            }
            Request::FetchPrekeys(r) => {
                self.session()?;
                keys::fetch(&state, r)
                    .await
                    .map(response::Result::PrekeyBundles)
            }
            Request::PrekeyStatus(_) => {
                let s = self.session()?;
                let stock = keys::status(&state, s.device_id).await?;
                Ok(response::Result::PrekeyStatus(keys::status_proto(stock)))
            }
            Request::Send(r) => {
                let s = self.session()?;
                queues::send(&state, &s, r)
                    .await
                    .map(response::Result::Send)
            }
            Request::FetchEnvelopes(r) => {
                let s = self.session()?;
                queues::fetch(&state, s.device_id, r)
                    .await
                    .map(response::Result::Envelopes)
            }
            Request::AckEnvelopes(r) => {
                let s = self.session()?;
                let deleted = queues::ack(&state, s.device_id, r).await?;
                Ok(response::Result::Ack(transport::AckResponse { deleted }))
            }
            Request::SendGroup(r) => {
                let s = self.session()?;
                groups::send(&state, &s, r)
                    .await
                    .map(response::Result::Send)
            }
            Request::CreateGroup(r) => {
                let s = self.session()?;
                groups::create(&state, &s, r)
                    .await
                    .map(response::Result::Group)
            }
            Request::AddGroupMembers(r) => {
                let s = self.session()?;
                groups::add(&state, &s, r)
                    .await
                    .map(response::Result::Group)
            }
            Request::RemoveGroupMembers(r) => {
                let s = self.session()?;
                groups::remove(&state, &s, r)
                    .await
                    .map(response::Result::Group)
            }
            Request::LeaveGroup(r) => {
                let s = self.session()?;
                groups::leave(&state, &s, r).await.map(|()| ok())
            }
            Request::SetGroupRole(r) => {
                let s = self.session()?;
                groups::set_role(&state, &s, r)
                    .await
                    .map(response::Result::Group)
            }
            Request::GetGroup(r) => {
                let s = self.session()?;
                groups::get(&state, &s, r)
                    .await
                    .map(response::Result::Group)
            }
            Request::SetGroupMetadata(r) => {
                let s = self.session()?;
                groups::set_metadata(&state, &s, r)
                    .await
                    .map(response::Result::Group)
            }
            Request::AttachmentUpload(r) => {
                let s = self.session()?;
                attachments::upload_request(&state, &s, r)
                    .await
                    .map(response::Result::AttachmentUpload)
            }
            Request::AttachmentDownload(r) => {
                self.session()?;
                attachments::download_request(&state, r)
                    .await
                    .map(response::Result::AttachmentDownload)
            }
        }
    }
}
