//! The request side of one connection, without I/O (SPEC.md §12.3, §12.4,
//! §12.8): the Hello → login → requests state machine, the limits in
//! front of every request, and the dispatch to the handlers. Hello first
//! and once, version negotiation, frame validation and the framing of
//! answers are the protocol crate's connection machine ([`ServerConn`]),
//! which the handler drives; login and dispatch are the server's own.
//!
//! A [`RequestHandler`] takes the request stream's bytes (QUIC) or one
//! message at a time (WebSocket) and answers each frame, in request order,
//! with the `ServerFrame` to write back, or with the [`Close`] that ends the
//! connection. Sends, acknowledgements and (where storage keeps them in
//! order) group sends are pipelined: handed to storage in order without
//! waiting for each other's commit, their answers come out of
//! [`RequestHandler::next_wake`] when ready. After login it holds
//! the device's bus subscription, so the pushes for the connection come
//! out of `next_wake` too. Because it does no I/O, both connection tasks
//! (connection.rs, websocket.rs) and the fuzz target `server_handler`
//! drive the same code.
//!
//! Not owned here: reading and writing the QUIC streams and closing the
//! connection (connection.rs); what each request does (auth/, keys.rs,
//! queues.rs, groups.rs, attachments.rs).

use std::collections::VecDeque;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use microbot_protocol::conn::{self, Incoming, ServerConfig, ServerConn, ServerConnError};
use microbot_protocol::transport::{
    self, ChallengeResponse, ClientFrame, EnrolDeviceResponse, ErrorCode, HelloResponse,
    LoginResponse, Ok as OkResult, ServerFrame, ServerLimits, client_frame::Request, response,
    server_frame,
};

use crate::auth::accounts;
use crate::auth::devices::{self, CHALLENGE_LEN, Caller};
use crate::bus::{BusEvent, Subscription};
use crate::error::ApiError;
use crate::limits::CredentialAttempt;
use crate::metrics::request_kind;
use crate::state::ServerState;
use crate::{attachments, groups, keys, provisioning, queues, sealed};

/// Bus events a connection takes in one turn of its loop: the one it woke
/// for and those already waiting, so that their pushes leave together (one
/// write, shared packets) instead of a turn, a write and a packet each.
pub const PUSHES_PER_TURN: usize = 64;
/// Bytes waiting to be written above which a turn takes no further event.
pub const PUSH_TURN_BYTES: usize = 16 * 1024;

/// Sends and acknowledgements of one connection that may be in storage's
/// hands at once (SPEC.md §12.4): a connection that pipelines them has
/// them stored together, in one commit, instead of a commit each.
pub const PIPELINED_WRITES: usize = 32;

/// The answer to a request still in storage's hands.
type PendingAnswer = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// What a send or acknowledgement does once it has been checked: its
/// storage write, already queued, then its pushes and its answer.
type StoredWrite = Pin<Box<dyn Future<Output = Result<response::Result, ApiError>> + Send>>;

/// The push frame of a bus event, or the close it asks for.
///
/// # Errors
/// The close of a `Disconnect` event.
pub fn push_of(event: BusEvent) -> Result<ServerFrame, Close> {
    match event {
        BusEvent::Push(push) => Ok(conn::push_frame(*push)),
        BusEvent::Disconnect(code) => Err(Close::new(code, "disconnected by the server")),
    }
}

/// Why a connection ends: what goes into its `ServerFrame.closing` and its
/// QUIC application close code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Close {
    /// The close code (also the QUIC application error code).
    pub code: ErrorCode,
    /// Human-readable detail.
    pub message: String,
    /// When non-zero: when a reconnect can succeed.
    pub retry_after_ms: u64,
    /// With `UNSUPPORTED_VERSION`: the versions this server speaks.
    pub supported_versions: Vec<u32>,
}

impl Close {
    /// A close with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_ms: 0,
            supported_versions: Vec::new(),
        }
    }

    /// The close for a frame the connection machine refused.
    pub fn from_conn_error(error: &ServerConnError) -> Self {
        let wire = error.to_wire();
        Self {
            code: wire.code,
            message: wire.message,
            retry_after_ms: wire.retry_after_ms,
            supported_versions: wire.supported_versions,
        }
    }

    /// The `ServerFrame.closing` frame announcing this close.
    pub fn frame(&self) -> ServerFrame {
        ServerFrame {
            kind: Some(server_frame::Kind::Closing(transport::Error {
                code: self.code as i32,
                message: self.message.clone(),
                retry_after_ms: self.retry_after_ms,
                supported_versions: self.supported_versions.clone(),
                current_group_version: 0,
                device_ids: Vec::new(),
            })),
        }
    }
}

/// Whether a response completes a step towards login (`register`,
/// `confirm_registration` and `enrol_device` succeeding): it restarts
/// the login deadline, so a client may register, confirm and enrol on one
/// connection; each is costly or rate-limited, so it cannot be used to
/// idle.
pub(crate) fn progress_towards_login(frame: &ServerFrame) -> bool {
    matches!(
        &frame.kind,
        Some(server_frame::Kind::Response(r))
            if matches!(
                r.result,
                Some(response::Result::Register(_) | response::Result::EnrolDevice(_) | response::Result::Ok(_))
            )
    )
}

/// A connection task as the outlet of its handler: where its answers and
/// pushes go (QUIC: the outbox; WebSocket: the writer task). How they are
/// taken is written once, here, for both transports.
pub trait Outlet {
    /// The connection's request handler.
    fn handler(&mut self) -> &mut RequestHandler;
    /// Bytes handed over and not yet written to the client.
    fn unwritten(&self) -> usize;
    /// Unwritten bytes over which the client is taken not to read.
    fn backlog_cap(&self) -> usize;
    /// Hands one frame over for writing.
    ///
    /// # Errors
    /// The close for a frame that cannot be written.
    fn enqueue(&mut self, frame: &ServerFrame) -> Result<(), Close>;

    /// Whether the client takes what it is sent: the unwritten bytes are
    /// within the backlog cap.
    fn within_cap(&self) -> bool {
        self.unwritten() <= self.backlog_cap()
    }

    /// Hands a response over (one that completes a login step ends the
    /// login deadline), or returns the close the reply asks for.
    ///
    /// # Errors
    /// The close of a `Reply::Close`, or of a frame that cannot be written.
    fn take_reply(
        &mut self,
        reply: Reply,
        login_deadline: &mut Option<tokio::time::Instant>,
    ) -> Result<(), Close> {
        match reply {
            Reply::Respond(response) => {
                if progress_towards_login(&response) {
                    *login_deadline = None;
                }
                self.enqueue(&response)
            }
            Reply::Close(close) => Err(close),
        }
    }

    /// Hands a bus event's push over.
    ///
    /// # Errors
    /// The close for a disconnect, or for a push that takes the backlog
    /// over its cap ([`RequestHandler::backlog_within`]).
    fn take_event(&mut self, event: BusEvent) -> Result<(), Close> {
        self.enqueue(&push_of(event)?)?;
        let (unwritten, cap) = (self.unwritten(), self.backlog_cap());
        self.handler().backlog_within(unwritten, cap)
    }

    /// Takes what woke the connection: an answer, or a bus event together
    /// with those already waiting ([`RequestHandler::waiting_event`]), so
    /// that their pushes leave together (one write, shared packets).
    ///
    /// # Errors
    /// The close one of them asks for.
    fn take_wake(
        &mut self,
        wake: Wake,
        login_deadline: &mut Option<tokio::time::Instant>,
    ) -> Result<(), Close> {
        match wake {
            Wake::Answer(reply) => self.take_reply(reply, login_deadline),
            Wake::Event(event) => {
                let mut next = Some(event);
                let mut taken = 0;
                while let Some(event) = next.take() {
                    self.take_event(event)?;
                    taken += 1;
                    let unwritten = self.unwritten();
                    next = self.handler().waiting_event(taken, unwritten);
                }
                Ok(())
            }
        }
    }
}

/// Takes every reply the handler has ready (in request order), as long as
/// the outlet's backlog is within its cap; returns whether it took any.
///
/// # Errors
/// The close a reply asks for, or of a frame that cannot be written.
pub async fn take_ready_replies<O: Outlet>(
    outlet: &mut O,
    login_deadline: &mut Option<tokio::time::Instant>,
) -> Result<bool, Close> {
    let mut took = false;
    while outlet.within_cap() {
        let Some(reply) = outlet.handler().next_reply().await else {
            break;
        };
        took = true;
        outlet.take_reply(reply, login_deadline)?;
    }
    Ok(took)
}

/// What woke a connection waiting on its handler.
#[derive(Debug)]
pub enum Wake {
    /// A bus event for the connection.
    Event(BusEvent),
    /// The answer to a pipelined request, in request order.
    Answer(Reply),
}

/// What to do after one request frame.
#[derive(Debug)]
pub enum Reply {
    /// Write this response frame and go on.
    Respond(ServerFrame),
    /// End the connection.
    Close(Close),
}

/// The request state machine of one connection.
///
/// Dropping it ends its bus subscription.
pub struct RequestHandler {
    state: Arc<ServerState>,
    /// Hello and frame validation (the protocol crate's machine).
    conn: ServerConn,
    /// The logged-in device.
    caller: Option<Caller>,
    challenge: Option<[u8; CHALLENGE_LEN]>,
    subscription: Option<Subscription>,
    remote_ip: IpAddr,
    /// Answers of sends and acknowledgements handed to storage, oldest
    /// first (answers go out in request order).
    pipeline: VecDeque<PendingAnswer>,
    /// The next request (or the close of a bad frame), taken from the
    /// stream but held until every answer in `pipeline` is out, because
    /// it is not a write this connection pipelines.
    held: Option<Result<Incoming, Close>>,
    /// A WebSocket message accepted and not yet handled (at most one: the
    /// connection reads the next only once this is taken).
    message: Option<Result<Incoming, Close>>,
}

impl std::fmt::Debug for RequestHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestHandler")
            .field("caller", &self.caller())
            .field("remote_ip", &self.remote_ip)
            .finish_non_exhaustive()
    }
}

impl Drop for RequestHandler {
    fn drop(&mut self) {
        self.unsubscribe();
        // Sends and acknowledgements already in storage's hands finish
        // without the connection, in request order: what is stored is
        // pushed to its recipients even though its answer can no longer
        // be written.
        if self.pipeline.is_empty() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let pipeline = std::mem::take(&mut self.pipeline);
            runtime.spawn(async move {
                for answer in pipeline {
                    answer.await;
                }
            });
        }
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

impl RequestHandler {
    /// A handler for a new connection from `remote_ip` (the address the
    /// per-IP limits key on), waiting for Hello.
    pub fn new(state: Arc<ServerState>, remote_ip: IpAddr) -> Self {
        let max_frame_len = usize::try_from(state.config.max_frame_len).unwrap_or(usize::MAX);
        Self {
            state,
            conn: ServerConn::new(ServerConfig::new(max_frame_len)),
            caller: None,
            challenge: None,
            subscription: None,
            remote_ip,
            pipeline: VecDeque::new(),
            held: None,
            message: None,
        }
    }

    /// Whether Hello has not been received yet.
    pub fn awaiting_hello(&self) -> bool {
        self.conn.awaiting_hello()
    }

    /// The logged-in device, if any.
    pub fn caller(&self) -> Option<&Caller> {
        self.caller.as_ref()
    }

    /// Checks a connection's backlog after a push: over `cap` unwritten
    /// bytes, the client does not read, and the connection is closed (its
    /// envelopes stay queued; it reconnects and fetches).
    ///
    /// # Errors
    /// The close with `UNAVAILABLE`, counted as rate-limited `push_backlog`.
    pub fn backlog_within(&self, unwritten: usize, cap: usize) -> Result<(), Close> {
        if unwritten > cap {
            self.state.metrics.rate_limited("push_backlog");
            return Err(Close::new(
                ErrorCode::Unavailable,
                "push backlog full: the client does not read; reconnect and fetch",
            ));
        }
        Ok(())
    }

    /// The next bus event already waiting, for a connection that has taken
    /// `taken` in this turn of its loop and has `unwritten` bytes waiting
    /// to be written: `None` once the turn has taken [`PUSHES_PER_TURN`],
    /// once [`PUSH_TURN_BYTES`] wait (a large backlog is written first),
    /// or when nothing waits. Pushes taken together leave together.
    pub fn waiting_event(&mut self, taken: usize, unwritten: usize) -> Option<BusEvent> {
        if taken >= PUSHES_PER_TURN || unwritten >= PUSH_TURN_BYTES {
            return None;
        }
        self.try_next_event()
    }

    /// An event already waiting, without blocking; `None` when there is none
    /// (or before login). A dropped subscription gives
    /// `Disconnect(UNAVAILABLE)`.
    pub fn try_next_event(&mut self) -> Option<BusEvent> {
        let sub = self.subscription.as_mut()?;
        match sub.events.try_recv() {
            Ok(event) => Some(event),
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => None,
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                Some(BusEvent::Disconnect(ErrorCode::Unavailable))
            }
        }
    }

    /// Ends the bus subscription (idempotent); no push arrives afterwards.
    pub fn unsubscribe(&mut self) {
        if let Some(sub) = self.subscription.take() {
            self.state.bus.unsubscribe(sub.device_id, sub.id);
        }
    }

    /// Bytes of the request stream (QUIC), into the connection machine.
    ///
    /// # Errors
    /// The close for an oversize or invalid length prefix; none of `bytes`
    /// is kept.
    pub fn handle_stream_bytes(&mut self, bytes: &[u8]) -> Result<(), Close> {
        self.conn
            .handle_stream_bytes(bytes)
            .map_err(|e| Close::from_conn_error(&e))
    }

    /// Bytes of the request stream received and not yet answered as frames.
    pub fn buffered_len(&self) -> usize {
        self.conn.buffered_len()
    }

    /// At the end of the request stream: the close for a frame cut short.
    ///
    /// # Errors
    /// `MALFORMED_FRAME` when part of a frame is buffered.
    pub fn finish_stream(&self) -> Result<(), Close> {
        self.conn.finish().map_err(|e| Close::from_conn_error(&e))
    }

    /// Answers the next whole frame of the request stream, in request
    /// order; `None` when more bytes are needed, or when the next answer
    /// waits for storage ([`RequestHandler::next_wake`] brings it).
    ///
    /// Sends, acknowledgements and (where storage keeps them in order) group
    /// sends are pipelined (SPEC.md §12.4): each is
    /// checked and handed to storage in request order, up to
    /// [`PIPELINED_WRITES`] at once, without waiting for the ones before
    /// it to commit, so the storage writer stores those of every
    /// connection together. Any other request (or a bad frame's close)
    /// waits until every answer before it is out, so it sees their
    /// effects, as if each request had waited for the one before it.
    pub async fn next_reply(&mut self) -> Option<Reply> {
        loop {
            if let Some(front) = self.pipeline.front_mut()
                && let Poll::Ready(reply) = poll_once(front).await
            {
                self.pipeline.pop_front();
                return Some(reply);
            }
            let next = match self.held.take() {
                Some(next) => Some(next),
                None if self.pipeline.len() < PIPELINED_WRITES => match self.message.take() {
                    Some(message) => Some(message),
                    None => match self.conn.poll_request() {
                        Ok(next) => next.map(Ok),
                        Err(error) => Some(Err(Close::from_conn_error(&error))),
                    },
                },
                None => None,
            };
            match next {
                Some(Ok(Incoming::Request {
                    request_id,
                    request,
                })) if self.caller.is_some() && self.is_stored_write(&request) => {
                    let answer = self.start_stored_write(request_id, request).await;
                    self.pipeline.push_back(answer);
                }
                Some(next) if self.pipeline.is_empty() => {
                    return Some(match next {
                        Ok(incoming) => self.answer(incoming).await,
                        Err(close) => Reply::Close(close),
                    });
                }
                Some(next) => {
                    self.held = Some(next);
                    return None;
                }
                None => return None,
            }
        }
    }

    /// Whether the connection may read more requests: no request is held
    /// behind pending answers or waiting to be taken, and the pipeline has
    /// room (so what is buffered stays within one read or one message).
    pub fn takes_requests(&self) -> bool {
        self.held.is_none() && self.message.is_none() && self.pipeline.len() < PIPELINED_WRITES
    }

    /// Takes one WebSocket message (a frame body) as the next request,
    /// answered through [`RequestHandler::next_reply`] and
    /// [`RequestHandler::next_wake`] like the request stream's frames. A
    /// body that is not a `ClientFrame` gives, in its turn, the close with
    /// `MALFORMED_FRAME`. Call only while [`RequestHandler::takes_requests`].
    pub fn accept_message(&mut self, body: Bytes) {
        debug_assert!(self.message.is_none(), "a message is waiting already");
        self.message = Some(
            self.conn
                .accept_body(body)
                .map_err(|error| Close::from_conn_error(&error)),
        );
    }

    /// The next bus event (a push, or a disconnect order; none before
    /// login; `Disconnect(UNAVAILABLE)` for good once the bus has dropped
    /// the subscription because its channel was full), or the oldest
    /// pending answer once storage has it, whichever comes first.
    /// Cancel-safe: an answer leaves the pipeline only when returned.
    ///
    /// Answers are taken even while the connection's backlog is over its
    /// cap: taking one is what pushes a stored send to its recipients, who
    /// must not wait for this client to read, and the pipeline bounds them
    /// (at most [`PIPELINED_WRITES`] small frames).
    pub async fn next_wake(&mut self) -> Wake {
        let pipeline = &mut self.pipeline;
        let answer = std::future::poll_fn(|cx| {
            let Some(front) = pipeline.front_mut() else {
                return Poll::Pending;
            };
            let reply = std::task::ready!(front.as_mut().poll(cx));
            pipeline.pop_front();
            Poll::Ready(reply)
        });
        let subscription = &mut self.subscription;
        tokio::select! {
            biased;
            reply = answer => Wake::Answer(reply),
            event = next_event_of(subscription) => Wake::Event(event),
        }
    }

    /// Whether a request is a write of the device queues that this
    /// connection may pipeline ([`PIPELINED_WRITES`]): a send or an
    /// acknowledgement, and a group send where storage keeps those in order
    /// with the rest ([`GroupStorage::orders_group_sends`](crate::storage::groups::GroupStorage::orders_group_sends)).
    fn is_stored_write(&self, request: &Request) -> bool {
        match request {
            Request::Send(_) | Request::AckEnvelopes(_) => true,
            Request::SendGroup(_) => self.state.storage.orders_group_sends(),
            _ => false,
        }
    }

    /// Checks a send, group send or acknowledgement and hands it to storage; the
    /// returned future answers it once stored (and pushed). The job is
    /// queued before this returns, behind those of earlier requests.
    async fn start_stored_write(&mut self, request_id: u64, request: Request) -> PendingAnswer {
        let state = Arc::clone(&self.state);
        let kind = request_kind(&request);
        let started = std::time::Instant::now();
        // Sends and acknowledgements carry no credentials: no attempt to
        // settle (one dropped unsettled counts nothing).
        let caller = self.logged_in();
        let write = match admit(&state, self.remote_ip, caller.as_ref().ok(), &request) {
            Ok(_attempt) => stored_write(Arc::clone(&state), caller, request).await,
            Err(error) => Err(error),
        };
        let mut answer: PendingAnswer = Box::pin(async move {
            let result = match write {
                Ok(write) => write.await,
                Err(error) => Err(error),
            };
            state.metrics.observe_request(kind, started.elapsed());
            respond(request_id, result)
        });
        // The first poll runs up to the storage job's queueing, so jobs are
        // queued in request order.
        match poll_once(&mut answer).await {
            Poll::Ready(reply) => Box::pin(std::future::ready(reply)),
            Poll::Pending => answer,
        }
    }

    /// Answers one decoded request: a `Response` with its `request_id`, or
    /// the close of a protocol violation (no Hello first, Hello twice, no
    /// common version).
    pub async fn handle(&mut self, request: ClientFrame) -> Reply {
        match self.conn.accept(request) {
            Ok(incoming) => self.answer(incoming).await,
            Err(error) => Reply::Close(Close::from_conn_error(&error)),
        }
    }

    /// Answers a frame the connection machine accepted.
    async fn answer(&mut self, incoming: Incoming) -> Reply {
        let (request_id, result) = match incoming {
            Incoming::Hello {
                request_id,
                version,
                ..
            } => (request_id, Ok(self.hello(version))),
            Incoming::Unknown { request_id } => (
                request_id,
                Err(ApiError::new(
                    ErrorCode::UnknownRequest,
                    "empty or unknown request",
                )),
            ),
            Incoming::Request {
                request_id,
                request,
            } => (request_id, self.limited_dispatch(request).await),
        };
        respond(request_id, result)
    }

    /// The answer to an accepted Hello: the version, a fresh challenge and
    /// the limits.
    fn hello(&mut self, version: u32) -> response::Result {
        let challenge = devices::new_challenge(&*self.state.rng);
        self.challenge = Some(challenge);
        response::Result::Hello(HelloResponse {
            version,
            server_agent: concat!("microbot-server/", env!("CARGO_PKG_VERSION")).to_owned(),
            challenge: Bytes::copy_from_slice(&challenge),
            limits: Some(self.limits()),
        })
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

    fn logged_in(&self) -> Result<Caller, ApiError> {
        self.caller()
            .cloned()
            .ok_or_else(|| ApiError::new(ErrorCode::NotAuthenticated, "log in first"))
    }

    fn not_logged_in(&self) -> Result<(), ApiError> {
        match self.caller {
            Some(_) => Err(ApiError::new(
                ErrorCode::AlreadyAuthenticated,
                "already logged in",
            )),
            None => Ok(()),
        }
    }

    /// Applies the limits, dispatches, and records metrics and the outcome
    /// of credential checks.
    async fn limited_dispatch(&mut self, request: Request) -> Result<response::Result, ApiError> {
        let state = Arc::clone(&self.state);
        let kind = request_kind(&request);
        let started = std::time::Instant::now();
        let caller = self.caller().cloned();
        let is_login = matches!(request, Request::Login(_));
        let checked = admit(&state, self.remote_ip, caller.as_ref(), &request);
        let result = match checked {
            Err(error) => Err(error),
            Ok(attempt) => {
                let result = self.dispatch(request).await;
                let outcome = result.as_ref().map(|_| ()).map_err(|e| e.code);
                if let Some(attempt) = attempt {
                    attempt.finish(outcome);
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

    async fn login(&mut self, r: transport::LoginRequest) -> Result<response::Result, ApiError> {
        let state = Arc::clone(&self.state);
        self.not_logged_in()?;
        let challenge = self
            .challenge
            .take()
            .ok_or_else(|| ApiError::new(ErrorCode::NoChallenge, "ask for a challenge first"))?;
        let caller = devices::login(&state, challenge, r).await?;
        // Subscribe before answering: nothing queued from now on can be
        // missed between this response and the first fetch.
        self.subscription = Some(state.bus.subscribe(caller.device_id));
        let device_id = caller.device_id;
        let username = caller.username.clone();
        // The device is checked again now that the subscription exists: a
        // removal that raced the check in `devices::login` published its
        // disconnect before we listened, but is visible here.
        let counts = async {
            if state
                .storage
                .device(device_id)
                .await?
                .is_none_or(|d| d.removed)
            {
                return Err(ApiError::new(
                    ErrorCode::DeviceRemoved,
                    "device was removed",
                ));
            }
            Ok((
                state.storage.queue_len(device_id, state.now_ms()).await?,
                state.storage.prekey_stock(device_id).await?,
            ))
        }
        .await;
        let (queued, stock) = match counts {
            Ok(counts) => counts,
            Err(error) => {
                self.unsubscribe();
                return Err(error);
            }
        };
        self.caller = Some(caller);
        // A device that has uploaded keys learns at login that its stock is
        // low (it may have missed the push while offline).
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

    async fn dispatch(&mut self, request: Request) -> Result<response::Result, ApiError> {
        let state = Arc::clone(&self.state);
        let ok = || response::Result::Ok(OkResult {});
        match request {
            Request::Hello(_) => Err(ApiError::new(
                ErrorCode::ProtocolViolation,
                "Hello sent twice",
            )),
            Request::Register(r) => Ok(response::Result::Register(
                accounts::register(&state, r).await?,
            )),
            Request::ConfirmRegistration(r) => {
                accounts::confirm(&state, r).await?;
                Ok(ok())
            }
            Request::EnrolDevice(r) => {
                self.not_logged_in()?;
                let device_id = devices::enrol(&state, r).await?;
                Ok(response::Result::EnrolDevice(EnrolDeviceResponse {
                    device_id,
                }))
            }
            Request::Challenge(_) => {
                let challenge = devices::new_challenge(&*self.state.rng);
                self.challenge = Some(challenge);
                Ok(response::Result::Challenge(ChallengeResponse {
                    challenge: Bytes::copy_from_slice(&challenge),
                }))
            }
            Request::Login(r) => self.login(r).await,
            Request::ChangePassword(r) => {
                let s = self.logged_in()?;
                accounts::change_password(&state, s.account_id, r).await?;
                Ok(ok())
            }
            Request::RemoveDevice(r) => {
                let s = self.logged_in()?;
                devices::remove(&state, s.account_id, r).await?;
                Ok(ok())
            }
            Request::DeleteAccount(r) => {
                let s = self.logged_in()?;
                accounts::delete_account(&state, s.account_id, r).await?;
                Ok(ok())
            }
            Request::ListDevices(_) => {
                let s = self.logged_in()?;
                Ok(response::Result::DeviceList(
                    devices::list(&state, s.account_id).await?,
                ))
            }
            Request::UploadDeviceList(r) => {
                let s = self.logged_in()?;
                crate::device_lists::upload(&state, &s, r).await?;
                Ok(ok())
            }
            Request::UploadPrekeys(r) => {
                let s = self.logged_in()?;
                keys::upload(&state, &s, r).await?;
                Ok(ok())
            }
            Request::FetchPrekeys(r) => {
                let s = self.logged_in()?;
                Ok(response::Result::PrekeyBundles(
                    keys::fetch(&state, &s, r).await?,
                ))
            }
            Request::PrekeyStatus(_) => {
                let s = self.logged_in()?;
                let stock = keys::status(&state, s.device_id).await?;
                Ok(response::Result::PrekeyStatus(keys::status_proto(stock)))
            }
            // A group send here when storage does not pipeline it
            // ([`RequestHandler::is_stored_write`]): the same write, awaited.
            Request::Send(_) | Request::SendGroup(_) | Request::AckEnvelopes(_) => {
                stored_write(state, self.logged_in(), request).await?.await
            }
            Request::FetchEnvelopes(r) => {
                let s = self.logged_in()?;
                Ok(response::Result::Envelopes(
                    queues::fetch(&state, s.device_id, r).await?,
                ))
            }
            Request::CreateGroup(r) => {
                let s = self.logged_in()?;
                Ok(response::Result::Group(
                    groups::create(&state, &s, r).await?,
                ))
            }
            Request::AddGroupMembers(r) => {
                let s = self.logged_in()?;
                Ok(response::Result::Group(groups::add(&state, &s, r).await?))
            }
            Request::RemoveGroupMembers(r) => {
                let s = self.logged_in()?;
                Ok(response::Result::Group(
                    groups::remove(&state, &s, r).await?,
                ))
            }
            Request::LeaveGroup(r) => {
                let s = self.logged_in()?;
                groups::leave(&state, &s, r).await?;
                Ok(ok())
            }
            Request::SetGroupRole(r) => {
                let s = self.logged_in()?;
                Ok(response::Result::Group(
                    groups::set_role(&state, &s, r).await?,
                ))
            }
            Request::GetGroup(r) => {
                let s = self.logged_in()?;
                Ok(response::Result::Group(groups::get(&state, &s, r).await?))
            }
            Request::SetGroupMetadata(r) => {
                let s = self.logged_in()?;
                Ok(response::Result::Group(
                    groups::set_metadata(&state, &s, r).await?,
                ))
            }
            Request::AttachmentUpload(r) => {
                let s = self.logged_in()?;
                Ok(response::Result::AttachmentUpload(
                    attachments::upload_request(&state, &s, r).await?,
                ))
            }
            Request::AttachmentDownload(r) => {
                self.logged_in()?;
                Ok(response::Result::AttachmentDownload(
                    attachments::download_request(&state, r).await?,
                ))
            }
            Request::CreateProvisioningSlot(_) => {
                self.not_logged_in()?;
                Ok(response::Result::ProvisioningSlot(
                    provisioning::create(&state).await?,
                ))
            }
            Request::FetchProvisioningSlot(r) => {
                self.not_logged_in()?;
                Ok(response::Result::ProvisioningMessage(
                    provisioning::fetch(&state, r).await?,
                ))
            }
            Request::PutProvisioningSlot(r) => {
                self.logged_in()?;
                provisioning::put(&state, r).await?;
                Ok(ok())
            }
            Request::GetSenderCertificate(_) => {
                let s = self.logged_in()?;
                Ok(response::Result::SenderCertificate(
                    sealed::certificate(&state, &s).await?,
                ))
            }
            Request::SetUnidentifiedAccess(r) => {
                let s = self.logged_in()?;
                sealed::set_access(&state, &s, r).await?;
                Ok(ok())
            }
            // A sealed send must not be tied to a login (SPEC.md §19.8).
            Request::SendSealed(r) => {
                self.not_logged_in()?;
                Ok(response::Result::Send(sealed::send(&state, r).await?))
            }
        }
    }
}

/// The next event of a subscription; never resolves without one (before
/// login). A dropped subscription gives `Disconnect(UNAVAILABLE)`.
async fn next_event_of(subscription: &mut Option<Subscription>) -> BusEvent {
    match subscription {
        Some(sub) => sub
            .events
            .recv()
            .await
            .unwrap_or(BusEvent::Disconnect(ErrorCode::Unavailable)),
        None => std::future::pending().await,
    }
}

/// The `Response` frame answering `request_id` with a result or its error.
fn respond(request_id: u64, result: Result<response::Result, ApiError>) -> Reply {
    let result = result.unwrap_or_else(|e| response::Result::Error(e.to_proto()));
    Reply::Respond(conn::answer_frame(request_id, result))
}

/// Polls `future` once, in the calling task's context.
async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *future).poll(cx))).await
}

/// A checked send, group send or acknowledgement of the logged-in `caller`
/// as the storage write it makes; nothing is queued until it is first
/// polled.
///
/// # Errors
/// Not logged in; a send's checks ([`queues::checked_send`],
/// [`groups::checked_send`]).
async fn stored_write(
    state: Arc<ServerState>,
    caller: Result<Caller, ApiError>,
    request: Request,
) -> Result<StoredWrite, ApiError> {
    let caller = caller?;
    match request {
        Request::Send(r) => {
            let envelopes = queues::checked_send(&state, &caller, r).await?;
            Ok(Box::pin(async move {
                let sent =
                    queues::store_and_push(&state, caller.username, caller.device_id, envelopes)
                        .await?;
                Ok(response::Result::Send(sent))
            }))
        }
        Request::SendGroup(r) => {
            let message = groups::checked_send(&state, &caller, r).await?;
            Ok(Box::pin(async move {
                let sent = groups::store_and_push(&state, &caller, message).await?;
                Ok(response::Result::Send(sent))
            }))
        }
        Request::AckEnvelopes(r) => Ok(Box::pin(async move {
            let deleted = queues::ack(&state, caller.device_id, r).await?;
            Ok(response::Result::Ack(transport::AckResponse { deleted }))
        })),
        _ => Err(ApiError::new(
            ErrorCode::UnknownRequest,
            "not a send, a group send or an acknowledgement",
        )),
    }
}

/// The checks in front of every request: its usernames first (nothing
/// below keys state on an invalid one), then the rate limits; returns the
/// credential attempt to settle, for requests that check one.
fn admit<'s>(
    state: &'s ServerState,
    ip: IpAddr,
    caller: Option<&Caller>,
    request: &Request,
) -> Result<Option<CredentialAttempt<'s>>, ApiError> {
    crate::auth::check_usernames(request, caller.is_some())?;
    Ok(state
        .limits
        .check_request(&state.metrics, ip, caller, request)?)
}
