//! The reading side of a connection: bytes from the QUIC request stream
//! or WebSocket messages go into the connection machine, and its events
//! are routed — an answer to the request waiting for it, a push to the
//! channel; when the connection ends, every waiting request is failed.
//!
//! Not owned here: sending requests and connecting (transport.rs).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use microbot_protocol::conn::{AnswerError, ClientConn, ClientConnError, ClientEvent, WireError};
use microbot_protocol::transport::{Push, response};
use tokio::sync::{mpsc, oneshot};

use crate::error::{ServerError, TransportError};
use crate::websocket;

/// What a request gets back: the server's answer or why there is none.
pub(super) type Reply = Result<response::Result, TransportError>;

/// Requests waiting for their response; `None` once the connection ended.
pub(super) type Pending = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<Reply>>>>>;

/// The connection machine, shared by the requests and the reader.
pub(super) type Machine = Arc<Mutex<ClientConn>>;

/// Ends every waiting request: the connection is gone (`reason`).
pub(super) fn fail_all(pending: &Pending, reason: &str) {
    fail_all_with(pending, || {
        TransportError::ConnectionLost(reason.to_owned())
    });
}

/// Ends every waiting request with `error()`; no request waits afterwards.
fn fail_all_with(pending: &Pending, error: impl Fn() -> TransportError) {
    let waiting = pending.lock().ok().and_then(|mut p| p.take());
    for (_, tx) in waiting.into_iter().flatten() {
        let _ = tx.send(Err(error()));
    }
}

fn closed_reason(error: WireError) -> String {
    format!(
        "server closed the connection: {}",
        ServerError::from_proto(error.to_proto())
    )
}

/// Why the reader stops.
enum Stop {
    /// The connection ended; waiting requests get `ConnectionLost(reason)`.
    Lost(String),
    /// Hello failed; waiting requests (the Hello) get this error.
    Hello(fn() -> TransportError),
}

/// Wakes the waiter of one answer.
fn answer(pending: &Pending, request_id: u64, reply: Reply) {
    let waiter = pending
        .lock()
        .ok()
        .and_then(|mut p| p.as_mut().and_then(|p| p.remove(&request_id)));
    if let Some(tx) = waiter {
        let _ = tx.send(reply);
    }
}

/// Takes every event the machine has and routes it: an answer to its
/// waiter, a push to the channel. `Some` when the connection ends.
fn route(
    machine: &Machine,
    pending: &Pending,
    pushes: &mpsc::UnboundedSender<Push>,
) -> Option<Stop> {
    loop {
        let event = match machine.lock() {
            Ok(mut machine) => machine.poll_event(),
            Err(_) => return Some(Stop::Lost("connection state poisoned".into())),
        };
        match event {
            Ok(None) => return None,
            Ok(Some(ClientEvent::Hello {
                request_id,
                response,
            })) => answer(pending, request_id, Ok(response::Result::Hello(response))),
            Ok(Some(ClientEvent::Answer { request_id, result })) => {
                let reply = match result {
                    Ok(result) => Ok(result),
                    Err(AnswerError::Refused(error)) => Err(TransportError::Server(
                        ServerError::from_proto(error.to_proto()),
                    )),
                    Err(AnswerError::NoResult) => Err(TransportError::UnexpectedResponse {
                        expected: "a result",
                    }),
                };
                answer(pending, request_id, reply);
            }
            Ok(Some(ClientEvent::Push(push))) => {
                let _ = pushes.send(push);
            }
            Ok(Some(ClientEvent::Closing { error, .. })) => {
                return Some(Stop::Lost(closed_reason(error)));
            }
            Err(
                ClientConnError::UnsupportedVersion(_) | ClientConnError::VersionNotOffered { .. },
            ) => return Some(Stop::Hello(|| TransportError::UnsupportedVersion)),
            Err(ClientConnError::UnexpectedHelloAnswer) => {
                return Some(Stop::Hello(|| TransportError::UnexpectedResponse {
                    expected: "Hello",
                }));
            }
            Err(ClientConnError::HelloRefused(error)) => {
                return Some(Stop::Lost(closed_reason(error)));
            }
            // A late answer to a request that timed out; an empty frame.
            Err(error) if !error.is_fatal() => {}
            Err(error) => return Some(Stop::Lost(error.to_string())),
        }
    }
}

/// Fails the waiting requests as `stop` says; returns the reason to log.
fn stop(pending: &Pending, stop: Stop) -> String {
    match stop {
        Stop::Lost(reason) => {
            fail_all(pending, &reason);
            reason
        }
        Stop::Hello(error) => {
            let reason = error().to_string();
            fail_all_with(pending, error);
            reason
        }
    }
}

/// Reads WebSocket messages (one `ServerFrame` body each) into the
/// machine until the socket ends; routes answers and pushes.
pub(super) async fn read_loop_ws(
    mut source: websocket::Source,
    machine: Machine,
    pending: Pending,
    pushes: mpsc::UnboundedSender<Push>,
    closed: Arc<std::sync::atomic::AtomicBool>,
) {
    let ended = loop {
        match websocket::next_body(&mut source).await {
            Ok(body) => {
                let handled = match machine.lock() {
                    Ok(mut machine) => machine.handle_message(body),
                    Err(_) => break Stop::Lost("connection state poisoned".into()),
                };
                if let Err(error) = handled {
                    break Stop::Lost(error.to_string());
                }
                if let Some(ended) = route(&machine, &pending, &pushes) {
                    break ended;
                }
            }
            Err(reason) => break Stop::Lost(reason),
        }
    };
    closed.store(true, Ordering::Relaxed);
    let reason = stop(&pending, ended);
    tracing::debug!(%reason, "websocket ended");
}

/// Reads the request stream into the machine until it ends; routes
/// answers and pushes.
pub(super) async fn read_loop(
    mut recv: quinn::RecvStream,
    machine: Machine,
    pending: Pending,
    pushes: mpsc::UnboundedSender<Push>,
) {
    let ended = loop {
        if let Some(ended) = route(&machine, &pending, &pushes) {
            break ended;
        }
        match recv.read_chunk(64 * 1024, true).await {
            Ok(Some(chunk)) => {
                let handled = match machine.lock() {
                    Ok(mut machine) => machine.handle_stream_bytes(&chunk.bytes),
                    Err(_) => break Stop::Lost("connection state poisoned".into()),
                };
                if let Err(error) = handled {
                    break Stop::Lost(error.to_string());
                }
            }
            Ok(None) => break Stop::Lost("server ended the stream".to_owned()),
            Err(error) => break Stop::Lost(error.to_string()),
        }
    };
    let reason = stop(&pending, ended);
    tracing::debug!(%reason, "request stream ended");
}
