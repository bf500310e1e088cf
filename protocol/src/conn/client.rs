//! The client role of the connection machine (SPEC.md §12.3, §12.4).
//!
//! Requests go in through [`ClientConn::request`], which gives each a fresh
//! id and queues its frame ([`ClientConn::poll_transmit`]). Received bytes
//! go in through [`ClientConn::handle_stream_bytes`] (QUIC) or
//! [`ClientConn::handle_message`] (one WebSocket message); events come out
//! of [`ClientConn::poll_event`], one frame at a time, so a bad frame is
//! reported exactly where it is and the frames before it are already taken.
//!
//! The first Hello sent is the connection's Hello: its answer is checked
//! (a `HelloResponse` naming a version that was offered) and opens the
//! connection; a refusal is [`ClientConnError::UnsupportedVersion`] or
//! [`ClientConnError::HelloRefused`]. Requests may be queued before the
//! answer (the server answers in order).
//!
//! Invariant: an id is pending from its request until its answer, a
//! [`ClientConn::cancel`] or the closing frame; never two at once.

use std::collections::{BTreeSet, VecDeque};

use bytes::{Bytes, BytesMut};

use crate::codec::{FrameDecoder, FrameError, encode_frame};
use crate::transport::{
    ClientFrame, ErrorCode, HelloResponse, Push, ServerFrame, client_frame::Request, response,
    server_frame,
};

use super::{AnswerError, ClientConnError, WireError};

/// One frame to write, as a QUIC stream carries it (length prefix, then the
/// body); [`Transmit::body`] is the WebSocket message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The request id the frame carries.
    pub request_id: u64,
    frame: Bytes,
    prefix_len: usize,
}

impl Transmit {
    /// The whole frame: length prefix and body (for a byte stream).
    pub fn stream_bytes(&self) -> &Bytes {
        &self.frame
    }

    /// The frame body without its prefix (one WebSocket message).
    pub fn body(&self) -> Bytes {
        self.frame.slice(self.prefix_len.min(self.frame.len())..)
    }
}

/// What the client machine makes of the server's frames.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientEvent {
    /// The server accepted Hello; the connection is open.
    Hello {
        /// The id the Hello was sent under.
        request_id: u64,
        /// The server's answer.
        response: HelloResponse,
    },
    /// The answer to a pending request.
    Answer {
        /// The request answered.
        request_id: u64,
        /// Its result, or why there is none.
        result: Result<response::Result, AnswerError>,
    },
    /// An unsolicited event.
    Push(Push),
    /// The server is closing the connection with this error; the requests
    /// still pending will not be answered.
    Closing {
        /// The server's reason.
        error: WireError,
        /// The ids that were pending, in increasing order.
        abandoned: Vec<u64>,
    },
}

/// Where the connection is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    /// No Hello sent yet.
    Start,
    /// Hello sent as `request_id`, offering `offered`.
    Hello { request_id: u64, offered: Vec<u32> },
    /// Hello answered with `version`.
    Open { version: u32 },
    /// Ended by a closing frame or a fatal Hello error.
    Closed,
}

/// The client side of one connection; see the module documentation.
#[derive(Debug)]
pub struct ClientConn {
    decoder: FrameDecoder,
    /// Whole WebSocket messages not yet turned into events.
    messages: VecDeque<Bytes>,
    transmits: VecDeque<Transmit>,
    pending: BTreeSet<u64>,
    next_id: u64,
    phase: Phase,
}

impl ClientConn {
    /// A machine accepting server frames of at most `max_frame_len` bytes.
    /// Request ids start at 1.
    pub fn new(max_frame_len: usize) -> Self {
        Self {
            decoder: FrameDecoder::new(max_frame_len),
            messages: VecDeque::new(),
            transmits: VecDeque::new(),
            pending: BTreeSet::new(),
            next_id: 1,
            phase: Phase::Start,
        }
    }

    /// Queues `request` under a fresh id and returns the id. The first
    /// `Hello` becomes the connection's Hello.
    ///
    /// # Errors
    /// [`ClientConnError::Closed`] after the connection ended;
    /// [`ClientConnError::Encode`] for a request over the frame limit
    /// (nothing is queued, no id is used).
    pub fn request(&mut self, request: Request) -> Result<u64, ClientConnError> {
        if self.phase == Phase::Closed {
            return Err(ClientConnError::Closed);
        }
        let request_id = self.free_id();
        let offered = match (&request, &self.phase) {
            (Request::Hello(hello), Phase::Start) => Some(hello.versions.clone()),
            _ => None,
        };
        let frame = ClientFrame {
            request_id,
            request: Some(request),
        };
        let mut buf = BytesMut::new();
        encode_frame(&frame, &mut buf).map_err(ClientConnError::Encode)?;
        let body_len = prost::Message::encoded_len(&frame);
        self.transmits.push_back(Transmit {
            request_id,
            prefix_len: buf.len().saturating_sub(body_len),
            frame: buf.freeze(),
        });
        self.next_id = request_id.wrapping_add(1);
        match offered {
            Some(offered) => {
                self.phase = Phase::Hello {
                    request_id,
                    offered,
                }
            }
            None => {
                self.pending.insert(request_id);
            }
        }
        Ok(request_id)
    }

    /// The next id not pending (ids wrap around after `u64::MAX`).
    fn free_id(&self) -> u64 {
        let mut id = self.next_id;
        while self.pending.contains(&id) || self.hello_id() == Some(id) {
            id = id.wrapping_add(1);
        }
        id
    }

    fn hello_id(&self) -> Option<u64> {
        match self.phase {
            Phase::Hello { request_id, .. } => Some(request_id),
            _ => None,
        }
    }

    /// The next frame to write, oldest first.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Forgets a pending request (its caller gave up); a later answer to it
    /// is [`ClientConnError::UnknownRequestId`]. Whether it was pending.
    pub fn cancel(&mut self, request_id: u64) -> bool {
        self.pending.remove(&request_id)
    }

    /// Bytes received on the request stream.
    ///
    /// # Errors
    /// [`ClientConnError::Frame`] for an oversize or invalid length prefix;
    /// none of `bytes` is kept and the machine is as before.
    pub fn handle_stream_bytes(&mut self, bytes: &[u8]) -> Result<(), ClientConnError> {
        self.decoder.push(bytes).map_err(ClientConnError::Frame)
    }

    /// One whole frame body (a WebSocket message).
    ///
    /// # Errors
    /// [`ClientConnError::Frame`] with [`FrameError::Oversize`] for a body
    /// over the limit; it is not kept.
    pub fn handle_message(&mut self, body: Bytes) -> Result<(), ClientConnError> {
        let max = self.decoder.max_frame_len();
        if body.len() > max {
            return Err(ClientConnError::Frame(FrameError::Oversize {
                length: u64::try_from(body.len()).unwrap_or(u64::MAX),
                max,
            }));
        }
        self.messages.push_back(body);
        Ok(())
    }

    /// The next event from the frames received so far; `Ok(None)` when more
    /// bytes are needed.
    ///
    /// # Errors
    /// See [`ClientConnError`]; [`ClientConnError::is_fatal`] says whether
    /// to go on. The offending frame is consumed either way.
    pub fn poll_event(&mut self) -> Result<Option<ClientEvent>, ClientConnError> {
        let body = match self.messages.pop_front() {
            Some(body) => body,
            None => match self.decoder.next_frame().map_err(ClientConnError::Frame)? {
                Some(body) => body,
                None => return Ok(None),
            },
        };
        let frame: ServerFrame =
            prost::Message::decode(body).map_err(ClientConnError::Malformed)?;
        match frame.kind {
            None => Err(ClientConnError::EmptyFrame),
            Some(server_frame::Kind::Push(push)) => Ok(Some(ClientEvent::Push(push))),
            Some(server_frame::Kind::Closing(error)) => self.closing(error.into()).map(Some),
            Some(server_frame::Kind::Response(r)) => {
                if self.hello_id() == Some(r.request_id) {
                    return self.hello_answer(r.result).map(Some);
                }
                if !self.pending.remove(&r.request_id) {
                    return Err(ClientConnError::UnknownRequestId {
                        request_id: r.request_id,
                        result: r.result.map(Box::new),
                    });
                }
                let result = match r.result {
                    Some(response::Result::Error(error)) => Err(AnswerError::Refused(error.into())),
                    Some(result) => Ok(result),
                    None => Err(AnswerError::NoResult),
                };
                Ok(Some(ClientEvent::Answer {
                    request_id: r.request_id,
                    result,
                }))
            }
        }
    }

    fn closing(&mut self, error: WireError) -> Result<ClientEvent, ClientConnError> {
        if self.hello_id().is_some() {
            return Err(self.refuse_hello(error));
        }
        self.phase = Phase::Closed;
        let abandoned = std::mem::take(&mut self.pending).into_iter().collect();
        Ok(ClientEvent::Closing { error, abandoned })
    }

    fn refuse_hello(&mut self, error: WireError) -> ClientConnError {
        self.phase = Phase::Closed;
        self.pending.clear();
        if error.code == ErrorCode::UnsupportedVersion {
            ClientConnError::UnsupportedVersion(error)
        } else {
            ClientConnError::HelloRefused(error)
        }
    }

    fn hello_answer(
        &mut self,
        result: Option<response::Result>,
    ) -> Result<ClientEvent, ClientConnError> {
        let (request_id, offered) = match &self.phase {
            Phase::Hello {
                request_id,
                offered,
            } => (*request_id, offered.clone()),
            _ => return Err(ClientConnError::UnexpectedHelloAnswer),
        };
        match result {
            Some(response::Result::Hello(hello)) if offered.contains(&hello.version) => {
                self.phase = Phase::Open {
                    version: hello.version,
                };
                Ok(ClientEvent::Hello {
                    request_id,
                    response: hello,
                })
            }
            Some(response::Result::Hello(hello)) => {
                self.phase = Phase::Closed;
                self.pending.clear();
                Err(ClientConnError::VersionNotOffered {
                    chosen: hello.version,
                })
            }
            Some(response::Result::Error(error)) => Err(self.refuse_hello(error.into())),
            _ => {
                self.phase = Phase::Closed;
                self.pending.clear();
                Err(ClientConnError::UnexpectedHelloAnswer)
            }
        }
    }

    /// The version the server chose, once Hello is answered.
    pub fn version(&self) -> Option<u32> {
        match self.phase {
            Phase::Open { version } => Some(version),
            _ => None,
        }
    }

    /// Whether the connection has ended (closing frame or fatal Hello error).
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether `request_id` waits for its answer (the Hello included).
    pub fn is_pending(&self, request_id: u64) -> bool {
        self.pending.contains(&request_id) || self.hello_id() == Some(request_id)
    }

    /// Requests waiting for their answer (the Hello included).
    pub fn pending_len(&self) -> usize {
        self.pending.len() + usize::from(self.hello_id().is_some())
    }

    /// Received bytes not yet turned into events.
    pub fn buffered_len(&self) -> usize {
        self.decoder.buffered_len() + self.messages.iter().map(Bytes::len).sum::<usize>()
    }
}
