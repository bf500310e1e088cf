//! Target `conn_machine` (SPEC.md §12.3, §12.4, §12.8): the sans-I/O
//! connection machine ([`microbot_protocol::conn`]), client and server role
//! side by side, fed a mix of well-formed traffic (the client's own frames
//! piped to the server, the server's answers piped back) and arbitrary bytes
//! on either side.
//!
//! Input: a sequence of operations (at most 256), each an `op` byte
//! (`op % 8`) and its arguments:
//! - 0: the client sends a request: `kind (1)`; an odd kind is a Hello
//!   offering version `kind >> 1 & 3`, an even one a challenge request;
//! - 1: arbitrary bytes on the client's stream: `len (1) ‖ bytes`;
//! - 2: an arbitrary WebSocket message to the client: `len (1) ‖ bytes`;
//! - 3: the client cancels request `id (1)`;
//! - 4: arbitrary bytes on the server's stream: `len (1) ‖ bytes`;
//! - 5: an arbitrary WebSocket message to the server: `len (1) ‖ bytes`;
//! - 6: the client's queued frames go to the server's stream;
//! - 7: the server answers every request it took since the last 7, and the
//!   answers go to the client's stream.
//!
//! Invariants (a breach panics):
//! - no panic on any input;
//! - bytes refused by either side leave its buffered bytes unchanged, and a
//!   refused client frame that is not fatal leaves its pending requests as
//!   they were; a refused server frame leaves the server's phase as it was;
//! - an answer event names a request that was pending and no longer is; an
//!   unknown-id error names one that was not pending;
//! - while the server's stream carried only the client's frames, the server
//!   takes them with the ids the client gave them, in order.

use bytes::{Bytes, BytesMut};
use microbot_protocol::codec::encode_frame;
use microbot_protocol::conn::{
    ClientConn, ClientConnError, ClientEvent, Incoming, ServerConfig, ServerConn, WireError,
    answer_frame,
};
use microbot_protocol::transport::{
    ChallengeRequest, ErrorCode, Hello, HelloResponse, Ok as OkResult, client_frame::Request,
    response,
};

/// The frame limit of both sides: small, so oversize frames are reachable.
const MAX_FRAME_LEN: usize = 512;
/// Most operations run per input.
const MAX_OPS: usize = 256;

/// Reads `len (1) ‖ bytes`.
fn take_bytes<'a>(data: &mut &'a [u8]) -> &'a [u8] {
    let Some((&len, rest)) = data.split_first() else {
        return &[];
    };
    let len = usize::from(len).min(rest.len());
    let (bytes, rest) = rest.split_at(len);
    *data = rest;
    bytes
}

fn take_byte(data: &mut &[u8]) -> u8 {
    match data.split_first() {
        Some((&byte, rest)) => {
            *data = rest;
            byte
        }
        None => 0,
    }
}

/// Both roles and what the harness knows about the traffic between them.
struct Harness {
    client: ClientConn,
    server: ServerConn,
    /// Ids piped to the server and not yet taken by it.
    piped: std::collections::VecDeque<u64>,
    /// Requests the server took and has not answered.
    taken: Vec<Incoming>,
    /// The server's stream carried bytes that were not the client's frames.
    server_dirty: bool,
}

impl Harness {
    fn client_events(&mut self) {
        loop {
            let pending_before = self.client.pending_len();
            match self.client.poll_event() {
                Ok(None) => return,
                Ok(Some(ClientEvent::Answer { request_id, .. })) => {
                    assert!(!self.client.is_pending(request_id));
                    assert_eq!(self.client.pending_len() + 1, pending_before);
                }
                Ok(Some(_)) => {}
                Err(error) => {
                    if let ClientConnError::UnknownRequestId { request_id, .. } = &error {
                        assert!(!self.client.is_pending(*request_id));
                    }
                    if !error.is_fatal() {
                        assert_eq!(self.client.pending_len(), pending_before);
                    }
                    if matches!(error, ClientConnError::Frame(_)) {
                        return;
                    }
                }
            }
        }
    }

    fn server_requests(&mut self) {
        loop {
            let phase = (self.server.awaiting_hello(), self.server.version());
            match self.server.poll_request() {
                Ok(None) => return,
                Ok(Some(incoming)) => {
                    let id = match &incoming {
                        Incoming::Hello { request_id, .. }
                        | Incoming::Request { request_id, .. }
                        | Incoming::Unknown { request_id } => *request_id,
                    };
                    if !self.server_dirty {
                        assert_eq!(self.piped.pop_front(), Some(id));
                    }
                    self.taken.push(incoming);
                }
                Err(error) => {
                    assert_eq!(phase, (self.server.awaiting_hello(), self.server.version()));
                    // Only protocol errors can come from the client's own frames.
                    if !self.server_dirty {
                        self.piped.pop_front();
                    }
                    let _ = error.to_wire();
                    if matches!(error, microbot_protocol::conn::ServerConnError::Frame(_)) {
                        return;
                    }
                }
            }
        }
    }

    fn client_stream(&mut self, bytes: &[u8]) {
        let before = self.client.buffered_len();
        if self.client.handle_stream_bytes(bytes).is_err() {
            assert_eq!(self.client.buffered_len(), before);
        }
        self.client_events();
    }

    fn server_stream(&mut self, bytes: &[u8]) {
        let before = self.server.buffered_len();
        if self.server.handle_stream_bytes(bytes).is_err() {
            assert_eq!(self.server.buffered_len(), before);
        }
        self.server_requests();
    }

    fn answer_all(&mut self) {
        let mut out = BytesMut::new();
        for incoming in std::mem::take(&mut self.taken) {
            let frame = match incoming {
                Incoming::Hello {
                    request_id,
                    version,
                    ..
                } => answer_frame(
                    request_id,
                    response::Result::Hello(HelloResponse {
                        version,
                        ..HelloResponse::default()
                    }),
                ),
                Incoming::Request { request_id, .. } => {
                    answer_frame(request_id, response::Result::Ok(OkResult {}))
                }
                Incoming::Unknown { request_id } => answer_frame(
                    request_id,
                    response::Result::Error(
                        WireError::new(ErrorCode::UnknownRequest, "unknown").to_proto(),
                    ),
                ),
            };
            assert!(encode_frame(&frame, &mut out).is_ok());
        }
        self.client_stream(&out);
    }
}

/// Runs one input; see the module documentation.
pub fn conn_machine(mut data: &[u8]) {
    let mut h = Harness {
        client: ClientConn::new(MAX_FRAME_LEN),
        server: ServerConn::new(ServerConfig::new(MAX_FRAME_LEN)),
        piped: std::collections::VecDeque::new(),
        taken: Vec::new(),
        server_dirty: false,
    };
    for _ in 0..MAX_OPS {
        let Some((&op, rest)) = data.split_first() else {
            return;
        };
        data = rest;
        match op % 8 {
            0 => {
                let kind = take_byte(&mut data);
                let request = if kind & 1 == 1 {
                    Request::Hello(Hello {
                        versions: vec![u32::from(kind >> 1 & 3)],
                        client_agent: "fuzz".into(),
                    })
                } else {
                    Request::Challenge(ChallengeRequest {})
                };
                let pending = h.client.pending_len();
                match h.client.request(request) {
                    Ok(id) => {
                        assert!(h.client.is_pending(id));
                        assert_eq!(h.client.pending_len(), pending + 1);
                    }
                    Err(error) => assert!(h.client.is_closed(), "{error}"),
                }
            }
            1 => {
                let bytes = take_bytes(&mut data);
                h.client_stream(bytes);
            }
            2 => {
                let body = Bytes::copy_from_slice(take_bytes(&mut data));
                let before = h.client.buffered_len();
                if h.client.handle_message(body).is_err() {
                    assert_eq!(h.client.buffered_len(), before);
                }
                h.client_events();
            }
            3 => {
                let id = u64::from(take_byte(&mut data));
                let was = h.client.is_pending(id);
                let cancelled = h.client.cancel(id);
                assert!(!cancelled || was);
            }
            4 => {
                h.server_dirty = true;
                let bytes = take_bytes(&mut data);
                h.server_stream(bytes);
            }
            5 => {
                let body = Bytes::copy_from_slice(take_bytes(&mut data));
                let phase = (h.server.awaiting_hello(), h.server.version());
                match h.server.accept_body(body) {
                    Ok(incoming) => h.taken.push(incoming),
                    Err(_) => {
                        assert_eq!(phase, (h.server.awaiting_hello(), h.server.version()))
                    }
                }
            }
            6 => {
                let mut out = Vec::new();
                while let Some(transmit) = h.client.poll_transmit() {
                    h.piped.push_back(transmit.request_id);
                    out.extend_from_slice(transmit.stream_bytes());
                }
                h.server_stream(&out);
            }
            _ => h.answer_all(),
        }
    }
}

/// Hand-written seeds: (file name, input).
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    vec![
        // Hello, a request, piped, answered.
        ("hello-request-answer".into(), vec![0, 3, 0, 0, 6, 7]),
        // Hello offering version 2: refused by the server.
        ("hello-unsupported-version".into(), vec![0, 5, 6, 7]),
        // A request before Hello.
        ("request-before-hello".into(), vec![0, 0, 6, 7]),
        // Hello twice.
        ("hello-twice".into(), vec![0, 3, 6, 7, 0, 3, 6, 7]),
        // An oversize prefix to each side after a good start.
        (
            "oversize-prefixes".into(),
            vec![0, 3, 6, 7, 1, 3, 0x80, 0x80, 0x04, 4, 3, 0x80, 0x80, 0x04],
        ),
        // A malformed body, then an answer to an unknown id.
        (
            "malformed-and-unknown-id".into(),
            vec![
                0, 3, 6, 7, 1, 3, 0x02, 0x08, 0x01, 1, 5, 0x04, 0x0a, 0x02, 0x08, 0x09,
            ],
        ),
        // A cancelled request's answer; a WebSocket closing frame.
        (
            "cancel-then-closing".into(),
            vec![0, 3, 6, 7, 0, 0, 3, 2, 6, 7, 2, 4, 0x1a, 0x02, 0x08, 0x33],
        ),
    ]
}
