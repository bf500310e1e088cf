//! The WebSocket listener's address (SPEC.md §12.13, §18.1 `ws_listen`).

use std::net::SocketAddr;

use super::{Config, ConfigError};

/// Where the WebSocket listener binds (SPEC.md §12.13).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsListen {
    /// No WebSocket listener.
    Off,
    /// TCP on the QUIC endpoint's address and (bound) port number.
    SameAsQuic,
    /// TCP on this address.
    At(SocketAddr),
}

impl Config {
    /// Where the WebSocket listener binds.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] unless `ws_listen` is unset, `off` or an `ip:port`.
    pub fn ws_listen(&self) -> Result<WsListen, ConfigError> {
        match self.ws_listen.as_deref() {
            None => Ok(WsListen::SameAsQuic),
            Some("off") => Ok(WsListen::Off),
            Some(addr) => addr
                .parse()
                .map(WsListen::At)
                .map_err(|_| ConfigError::Invalid("ws_listen must be \"off\" or ip:port")),
        }
    }
}
