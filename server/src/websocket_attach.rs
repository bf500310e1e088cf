//! Attachment transfers over WebSocket (SPEC.md §12.13 "Attachments"):
//! one WebSocket per transfer at [`ATTACH_PATH`], logged in like a request
//! socket (Hello, then `login`; nothing else is answered), then the same
//! byte streams as a QUIC attachment stream (§12.11), carried in binary
//! messages of at most [`attachments::CHUNK`] bytes whose boundaries mean
//! nothing. An empty binary message ends the client's bytes; the server
//! ends its bytes with a Close (1000).
//!
//! The transfer itself is attachments.rs's ([`attachments::serve_transfer`]),
//! the login the one [`RequestHandler`]'s; this module only moves bytes.
//! Memory: one message (≤ 64 KiB) per direction at a time.
//!
//! Not owned here: the request socket (websocket.rs).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use microbot_protocol::transport::{ClientFrame, ErrorCode, client_frame::Request};
use prost::Message as _;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::Message;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::attachments::{self, CHUNK, TransferStream};
use crate::auth::devices::Caller;
use crate::dispatch::{Close, Reply, RequestHandler};
use crate::state::ServerState;
use crate::websocket::{Sink, Source, close_code};

/// The request path of attachment sockets.
pub const ATTACH_PATH: &str = "/v1/ws/attachment";
/// Largest message on an attachment socket.
pub const MAX_MESSAGE: usize = CHUNK;
/// Time given to the client to answer the server's Close.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Serves one attachment socket: login, one transfer, Close.
pub(crate) async fn serve(
    state: Arc<ServerState>,
    mut sink: Sink,
    mut source: Source,
    remote: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let deadline = Duration::from_secs(state.config.login_timeout_secs)
        .saturating_add(crate::connection::HELLO_TIMEOUT);
    let login = tokio::select! {
        login = tokio::time::timeout(deadline, log_in(&state, remote, &mut sink, &mut source)) => {
            login.unwrap_or_else(|_| Err(Close::new(ErrorCode::NotAuthenticated, "no login in time")))
        }
        _ = shutdown.changed() => Err(Close::new(ErrorCode::Unavailable, "server shutting down")),
    };
    let caller = match login {
        Ok(caller) => caller,
        Err(close) => {
            let body = close.frame().encode_to_vec();
            let _ = sink.feed(Message::Binary(Bytes::from(body))).await;
            let reason: String = close.message.chars().take(60).collect();
            let frame = CloseFrame {
                code: CloseCode::from(close_code(close.code)),
                reason: reason.into(),
            };
            let _ = tokio::time::timeout(CLOSE_WAIT, sink.send(Message::Close(Some(frame)))).await;
            return;
        }
    };
    let idle = Duration::from_secs(state.config.idle_timeout_secs);
    let mut io = WsTransfer {
        sink,
        source,
        leftover: Bytes::new(),
        idle,
        close_code: 1000,
    };
    tokio::select! {
        () = attachments::serve_transfer(&state, Some(caller), &mut io) => {}
        _ = shutdown.changed() => {
            io.close_code = close_code(ErrorCode::Unavailable);
            io.finish().await;
        }
    }
}

/// Hello, then challenge / login requests through the one handler, until
/// logged in; anything else closes with `PROTOCOL_VIOLATION`.
async fn log_in(
    state: &Arc<ServerState>,
    remote: SocketAddr,
    sink: &mut Sink,
    source: &mut Source,
) -> Result<Caller, Close> {
    let mut handler = RequestHandler::new(Arc::clone(state), remote.ip());
    loop {
        let body = match source.next().await {
            Some(Ok(Message::Binary(body))) => body,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Text(_))) => {
                return Err(Close::new(ErrorCode::MalformedFrame, "text message"));
            }
            Some(Ok(_)) | None => {
                return Err(Close::new(
                    ErrorCode::ProtocolViolation,
                    "closed before login",
                ));
            }
            Some(Err(error)) => {
                return Err(Close::new(ErrorCode::MalformedFrame, error.to_string()));
            }
        };
        let frame = ClientFrame::decode(body)
            .map_err(|e| Close::new(ErrorCode::MalformedFrame, e.to_string()))?;
        if !matches!(
            frame.request,
            Some(Request::Hello(_) | Request::Challenge(_) | Request::Login(_))
        ) {
            return Err(Close::new(
                ErrorCode::ProtocolViolation,
                "an attachment socket answers Hello, challenge and login only",
            ));
        }
        match handler.handle(frame).await {
            Reply::Respond(response) => {
                let body = Bytes::from(response.encode_to_vec());
                sink.send(Message::Binary(body))
                    .await
                    .map_err(|e| Close::new(ErrorCode::Unavailable, e.to_string()))?;
            }
            Reply::Close(close) => return Err(close),
        }
        if let Some(caller) = handler.caller().cloned() {
            // No pushes on an attachment socket.
            handler.unsubscribe();
            return Ok(caller);
        }
    }
}

/// An attachment socket as the byte streams of a transfer.
struct WsTransfer {
    sink: Sink,
    source: Source,
    /// Client bytes received and not yet consumed.
    leftover: Bytes,
    /// Longest wait for the client to send or take a message.
    idle: Duration,
    /// The code of the final Close.
    close_code: u16,
}

impl WsTransfer {
    /// The next non-empty client bytes, `Ok(None)` at the empty message
    /// that ends them.
    async fn next_bytes(&mut self) -> Result<Option<Bytes>, String> {
        if !self.leftover.is_empty() {
            return Ok(Some(std::mem::take(&mut self.leftover)));
        }
        loop {
            let message = tokio::time::timeout(self.idle, self.source.next())
                .await
                .map_err(|_| "no bytes for the idle timeout".to_owned())?;
            match message {
                Some(Ok(Message::Binary(body))) if body.is_empty() => return Ok(None),
                Some(Ok(Message::Binary(body))) if body.len() > MAX_MESSAGE => {
                    return Err("attachment message over 65536 bytes".to_owned());
                }
                Some(Ok(Message::Binary(body))) => return Ok(Some(body)),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(_)) | None => return Err("socket closed inside the transfer".to_owned()),
                Some(Err(error)) => return Err(error.to_string()),
            }
        }
    }
}

impl TransferStream for WsTransfer {
    async fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), ()> {
        let mut filled = 0;
        while filled < buf.len() {
            let mut bytes = self.next_bytes().await.ok().flatten().ok_or(())?;
            let take = bytes.len().min(buf.len() - filled);
            let chunk = bytes.split_to(take);
            buf.get_mut(filled..filled + take)
                .ok_or(())?
                .copy_from_slice(&chunk);
            filled += take;
            self.leftover = bytes;
        }
        Ok(())
    }

    async fn read_chunk(&mut self) -> Result<Option<Bytes>, String> {
        self.next_bytes().await
    }

    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), ()> {
        for piece in bytes.chunks(MAX_MESSAGE) {
            let message = Message::Binary(Bytes::copy_from_slice(piece));
            match tokio::time::timeout(self.idle, self.sink.send(message)).await {
                Ok(Ok(())) => {}
                _ => return Err(()),
            }
        }
        Ok(())
    }

    fn stop(&mut self, code: ErrorCode) {
        // The client's further bytes are not read; the Close follows.
        self.close_code = close_code(code);
    }

    fn reset(&mut self, code: ErrorCode) {
        self.close_code = close_code(code);
    }

    async fn finish(&mut self) {
        let frame = CloseFrame {
            code: CloseCode::from(self.close_code),
            reason: "".into(),
        };
        let closed = async {
            if self.sink.send(Message::Close(Some(frame))).await.is_err() {
                return;
            }
            while let Some(Ok(message)) = self.source.next().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_WAIT, closed).await;
    }
}
