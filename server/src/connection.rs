//! One client connection (SPEC.md §12.3, §12.4, §12.7 "Push flow control",
//! §12.8): the request stream's I/O, pushes, the outgoing backlog, and
//! closing with a code.
//!
//! The client opens one bidirectional stream. The server reads
//! `ClientFrame`s from it and writes `ServerFrame`s back: responses in
//! request order, pushes in between. Sends and acknowledgements are
//! pipelined (dispatch.rs): while storage commits them the loop goes on
//! reading requests and writing pushes, and takes each answer when it is
//! ready ([`RequestHandler::next_wake`]).
//! A frame that cannot be decoded, an oversize frame, or a protocol
//! violation ends only this connection: the server writes a
//! `ServerFrame.closing` error, finishes the stream and closes the QUIC
//! connection with the error code as application close code.
//!
//! Outgoing frames wait in a per-connection outbox that is written as the
//! client's flow control allows, so a client that stops reading never
//! blocks the loop. The outbox is bounded ([`backlog_cap`]): while it is
//! over the cap the server reads no further requests, and a push that would
//! take it over the cap closes the connection with `ERROR_CODE_UNAVAILABLE`
//! (its envelopes stay queued; the client reconnects and fetches). The bus
//! bounds what waits before the outbox (1024 pushes, bus/).
//!
//! The bytes read go into the request handler's connection machine (the
//! protocol crate's `conn`, through dispatch.rs), which splits them into
//! frames and validates them; this file only moves bytes and keeps time.
//!
//! Not owned here: the request state machine and dispatch (dispatch.rs);
//! what each request does (auth/, keys.rs, queues.rs, ...).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use microbot_protocol::codec::{FrameError, encode_frame_with_limit};
use microbot_protocol::transport::{ErrorCode, ServerFrame};
use tokio::sync::watch;

use crate::attachments;
use crate::dispatch::{self, Close, Outlet, RequestHandler};
use crate::limits::{HandshakeSlot, Refusal};
use crate::state::ServerState;

/// Time a client has to open its request stream and send Hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Time given to the peer to take the frames still in the outbox and the
/// closing frame before the close.
const CLOSE_FLUSH: Duration = Duration::from_secs(2);
/// Time given to the peer to acknowledge the end of the stream.
const CLOSE_LINGER: Duration = Duration::from_millis(500);
/// Bytes read from the stream at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Smallest outbox cap.
pub const MIN_BACKLOG_BYTES: usize = 4 * 1024 * 1024;
/// Bytes of frames encoded back to back into one write.
const COALESCE_BYTES: usize = 16 * 1024;

/// Retry hint sent when the server shuts down.
pub const SHUTDOWN_RETRY_AFTER_MS: u64 = 1000;

/// Bytes of unsent frames one connection may hold: two largest frames, and
/// at least [`MIN_BACKLOG_BYTES`].
pub fn backlog_cap(max_frame_len: usize) -> usize {
    max_frame_len.saturating_mul(2).max(MIN_BACKLOG_BYTES)
}

/// Encoded frames waiting to be written, oldest first: sealed buffers,
/// then `tail`, into which the newest frames are encoded back to back
/// until it holds [`COALESCE_BYTES`]. Small frames (responses, pushes)
/// thus leave in one write, and QUIC packs them into as few packets as
/// they fit; each frame is encoded once and never copied.
#[derive(Default)]
struct Outbox {
    frames: VecDeque<Bytes>,
    tail: BytesMut,
    /// Bytes of the front frame already written.
    written: usize,
    /// Unwritten bytes in all frames and the tail.
    bytes: usize,
}

impl Outbox {
    /// Encodes `frame` behind the others; on error nothing is added.
    fn encode(&mut self, frame: &ServerFrame, max_frame_len: usize) -> Result<(), FrameError> {
        if self.tail.len() >= COALESCE_BYTES {
            self.seal_tail();
        }
        let before = self.tail.len();
        encode_frame_with_limit(frame, &mut self.tail, max_frame_len)?;
        self.bytes = self.bytes.saturating_add(self.tail.len() - before);
        Ok(())
    }

    fn seal_tail(&mut self) {
        if !self.tail.is_empty() {
            self.frames.push_back(self.tail.split().freeze());
        }
    }

    /// The unwritten rest of the oldest buffer.
    fn front(&mut self) -> Option<Bytes> {
        if self.frames.is_empty() {
            self.seal_tail();
        }
        self.frames
            .front()
            .map(|f| f.slice(self.written.min(f.len())..))
    }

    fn advance(&mut self, n: usize) {
        self.bytes = self.bytes.saturating_sub(n);
        self.written = self.written.saturating_add(n);
        if let Some(front) = self.frames.front()
            && self.written >= front.len()
        {
            self.frames.pop_front();
            self.written = 0;
        }
    }

    fn clear(&mut self) {
        self.frames.clear();
        self.tail.clear();
        self.written = 0;
        self.bytes = 0;
    }
}

struct Conn {
    state: Arc<ServerState>,
    connection: quinn::Connection,
    send: quinn::SendStream,
    handler: RequestHandler,
    outbox: Outbox,
    max_frame_len: usize,
    backlog_cap: usize,
}

/// Keeps the open-connections gauge right however the task ends.
struct OpenGauge(Arc<ServerState>);

impl Drop for OpenGauge {
    fn drop(&mut self) {
        self.0.metrics.connections_open.dec();
    }
}

/// Serves one incoming connection until it ends or `shutdown` fires.
/// `handshake` counts its handshake, which must complete within
/// `handshake_timeout_secs`; only then does it take a place under the
/// connection caps (refused: closed with `ERROR_CODE_RATE_LIMITED`),
/// released at the end.
pub async fn serve(
    state: Arc<ServerState>,
    incoming: quinn::Incoming,
    mut shutdown: watch::Receiver<bool>,
    handshake: HandshakeSlot,
) {
    let deadline = Duration::from_secs(state.config.handshake_timeout_secs);
    let handshaken = match incoming.accept() {
        // Dropping an unfinished `Connecting` abandons the handshake.
        Ok(connecting) => tokio::time::timeout(deadline, connecting).await,
        Err(error) => Ok(Err(error)),
    };
    drop(handshake);
    let connection = match handshaken {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => {
            tracing::debug!(%error, "handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!("handshake not finished in time");
            return;
        }
    };
    let remote = connection.remote_address();
    let _slot = match state.limits.admit(remote.ip()) {
        Ok(slot) => slot,
        Err(refusal) => {
            state.metrics.connections_refused.inc();
            if refusal != Refusal::Blocked {
                state.metrics.rate_limited("connections");
            }
            tracing::debug!(?refusal, "connection refused after its handshake");
            connection.close(code(ErrorCode::RateLimited), b"too many connections");
            return;
        }
    };
    state.metrics.connections_total.inc();
    state.metrics.connections_open.inc();
    let _gauge = OpenGauge(Arc::clone(&state));
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
        handler: RequestHandler::new(Arc::clone(&state), remote.ip()),
        state,
        connection,
        send,
        outbox: Outbox::default(),
        max_frame_len,
        backlog_cap: backlog_cap(max_frame_len),
    };
    let outcome = conn.run(recv, &mut shutdown).await;
    conn.handler.unsubscribe();
    match outcome {
        Some(close) => conn.close(close).await,
        None => {
            let _ = tokio::time::timeout(CLOSE_FLUSH, conn.flush()).await;
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

impl Outlet for Conn {
    fn handler(&mut self) -> &mut RequestHandler {
        &mut self.handler
    }

    fn unwritten(&self) -> usize {
        self.outbox.bytes
    }

    fn backlog_cap(&self) -> usize {
        self.backlog_cap
    }

    /// Encodes a frame into the outbox.
    fn enqueue(&mut self, frame: &ServerFrame) -> Result<(), Close> {
        self.outbox
            .encode(frame, self.max_frame_len)
            .map_err(|e| Close::new(ErrorCode::Internal, e.to_string()))
    }
}

impl Conn {
    async fn run(
        &mut self,
        mut recv: quinn::RecvStream,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Close> {
        let hello_deadline = tokio::time::Instant::now() + HELLO_TIMEOUT;
        let login_timeout = Duration::from_secs(self.state.config.login_timeout_secs);
        let frame_timeout = Duration::from_secs(self.state.config.frame_timeout_secs);
        // Set once Hello is answered: the connection must log in by then.
        let mut login_deadline: Option<tokio::time::Instant> = None;
        // Set while a started frame is incomplete: it must be whole by then.
        let mut frame_deadline: Option<tokio::time::Instant> = None;
        loop {
            // Handle every whole frame already buffered before reading more,
            // as long as the client takes its responses.
            match dispatch::take_ready_replies(self, &mut login_deadline).await {
                Ok(true) => frame_deadline = None,
                Ok(false) => {}
                Err(close) => return Some(close),
            }
            let within_cap = self.within_cap();
            let read_requests = within_cap && self.handler.takes_requests();
            let awaiting_hello = self.handler.awaiting_hello();
            let awaiting_login = !awaiting_hello && self.handler.caller().is_none();
            if awaiting_login && login_deadline.is_none() {
                login_deadline = Some(tokio::time::Instant::now() + login_timeout);
            }
            // Only time a frame while this side reads (a full outbox is
            // not the client's delay).
            if !read_requests || self.handler.buffered_len() == 0 {
                frame_deadline = None;
            } else if frame_deadline.is_none() {
                frame_deadline = Some(tokio::time::Instant::now() + frame_timeout);
            }
            let login_by = login_deadline.unwrap_or_else(tokio::time::Instant::now);
            let frame_by = frame_deadline.unwrap_or_else(tokio::time::Instant::now);
            let front = self.outbox.front();
            let pending = front.as_deref().unwrap_or_default();
            tokio::select! {
                written = self.send.write(pending), if !pending.is_empty() => match written {
                    Ok(n) => self.outbox.advance(n),
                    Err(error) => {
                        tracing::debug!(%error, "request stream closed by the peer");
                        return None;
                    }
                },
                chunk = recv.read_chunk(READ_CHUNK, true), if read_requests => match chunk {
                    Ok(Some(chunk)) => {
                        if let Err(close) = self.handler.handle_stream_bytes(&chunk.bytes) {
                            return Some(close);
                        }
                    }
                    Ok(None) => return self.handler.finish_stream().err(),
                    Err(error) => {
                        tracing::debug!(%error, "request stream ended");
                        return None;
                    }
                },
                stream = self.connection.accept_bi() => match stream {
                    Ok((send, recv)) => {
                        let caller = self.handler.caller().cloned();
                        tokio::spawn(attachments::serve_stream(Arc::clone(&self.state), caller, send, recv));
                    }
                    Err(error) => {
                        tracing::debug!(%error, "connection ended");
                        return None;
                    }
                },
                wake = self.handler.next_wake() => {
                    if let Err(close) = self.take_wake(wake, &mut login_deadline) {
                        return Some(close);
                    }
                }
                _ = tokio::time::sleep_until(hello_deadline), if awaiting_hello => {
                    return Some(Close::new(ErrorCode::ProtocolViolation, "no Hello in time"));
                }
                _ = tokio::time::sleep_until(login_by), if awaiting_login => {
                    return Some(Close::new(ErrorCode::NotAuthenticated, "no login in time"));
                }
                _ = tokio::time::sleep_until(frame_by), if frame_deadline.is_some() => {
                    return Some(Close::new(ErrorCode::ProtocolViolation, "frame not completed in time"));
                }
                _ = shutdown.changed() => {
                    let mut close = Close::new(ErrorCode::Unavailable, "server shutting down");
                    close.retry_after_ms = SHUTDOWN_RETRY_AFTER_MS;
                    return Some(close);
                }
            }
        }
    }

    /// Writes everything in the outbox.
    async fn flush(&mut self) -> Result<(), quinn::WriteError> {
        while let Some(front) = self.outbox.front() {
            let n = self.send.write(&front).await?;
            self.outbox.advance(n);
        }
        Ok(())
    }

    async fn close(&mut self, close: Close) {
        tracing::debug!(code = ?close.code, message = %close.message, "closing connection");
        if close.code == ErrorCode::Unavailable && self.outbox.bytes > self.backlog_cap {
            // The client does not read: what is waiting is dropped (the
            // envelopes stay queued), only the closing frame is offered.
            self.outbox.clear();
        }
        let delivered = match self.enqueue(&close.frame()) {
            Ok(()) => matches!(
                tokio::time::timeout(CLOSE_FLUSH, self.flush()).await,
                Ok(Ok(()))
            ),
            Err(_) => false,
        };
        if delivered {
            let _ = self.send.finish();
            let _ = tokio::time::timeout(CLOSE_LINGER, self.send.stopped()).await;
        }
        let reason: String = close.message.chars().take(100).collect();
        self.connection.close(code(close.code), reason.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use microbot_protocol::conn::push_frame;
    use microbot_protocol::transport::{Envelope, Push, push};

    /// A push frame whose envelope carries `len` bytes of `byte`.
    fn push_of(byte: u8, len: usize) -> ServerFrame {
        push_frame(Push {
            event: Some(push::Event::Envelope(Envelope {
                envelope_id: u64::from(byte),
                ciphertext: vec![byte; len].into(),
                ..Envelope::default()
            })),
        })
    }

    fn encoded(frame: &ServerFrame) -> Vec<u8> {
        let mut buf = BytesMut::new();
        encode_frame_with_limit(frame, &mut buf, usize::MAX).unwrap();
        buf.to_vec()
    }

    /// Every write the outbox offers, in order, each taken whole.
    fn writes(outbox: &mut Outbox) -> Vec<Bytes> {
        let mut all = Vec::new();
        while let Some(front) = outbox.front() {
            outbox.advance(front.len());
            all.push(front);
        }
        all
    }

    #[test]
    fn small_frames_leave_as_one_write_in_order() {
        let mut outbox = Outbox::default();
        let frames: Vec<_> = (1..=3).map(|b| push_of(b, 100)).collect();
        for frame in &frames {
            outbox.encode(frame, usize::MAX).unwrap();
        }
        let expected: Vec<u8> = frames.iter().flat_map(encoded).collect();
        assert_eq!(outbox.bytes, expected.len());
        let writes = writes(&mut outbox);
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].to_vec(), expected);
        assert_eq!(outbox.bytes, 0);
    }

    #[test]
    fn a_partly_written_buffer_goes_on_from_where_it_stopped() {
        let mut outbox = Outbox::default();
        let (first, second) = (push_of(1, 100), push_of(2, 10));
        outbox.encode(&first, usize::MAX).unwrap();
        let front = outbox.front().unwrap();
        outbox.advance(40);
        outbox.encode(&second, usize::MAX).unwrap();
        let rest: Vec<u8> = writes(&mut outbox)
            .iter()
            .flat_map(|b| b.to_vec())
            .collect();
        let mut all = front[..40].to_vec();
        all.extend_from_slice(&rest);
        assert_eq!(all, [encoded(&first), encoded(&second)].concat());
        assert_eq!(outbox.bytes, 0);
    }

    #[test]
    fn writes_stop_growing_at_the_coalescing_size_and_nothing_is_lost() {
        let mut outbox = Outbox::default();
        let frames: Vec<_> = (0..40u8).map(|b| push_of(b, 1000)).collect();
        for frame in &frames {
            outbox.encode(frame, usize::MAX).unwrap();
        }
        let writes = writes(&mut outbox);
        assert!(writes.len() > 1, "{} writes", writes.len());
        let one = encoded(&frames[0]).len();
        assert!(writes.iter().all(|w| w.len() < COALESCE_BYTES + one));
        let all: Vec<u8> = writes.iter().flat_map(|b| b.to_vec()).collect();
        assert_eq!(all, frames.iter().flat_map(encoded).collect::<Vec<u8>>());
    }

    #[test]
    fn a_frame_over_the_limit_adds_nothing() {
        let mut outbox = Outbox::default();
        outbox.encode(&push_of(1, 10), usize::MAX).unwrap();
        let before = outbox.bytes;
        assert!(outbox.encode(&push_of(2, 5000), 1000).is_err());
        assert_eq!(outbox.bytes, before);
        let all: Vec<u8> = writes(&mut outbox)
            .iter()
            .flat_map(|b| b.to_vec())
            .collect();
        assert_eq!(all, encoded(&push_of(1, 10)));
    }
}
