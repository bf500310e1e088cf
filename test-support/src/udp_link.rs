//! A network link the test controls, between one QUIC client and a
//! server: a UDP relay on loopback that forwards both ways, can be cut
//! (from then on every datagram is dropped, as by a host that died or a
//! partition) and can have a slow uplink (client to server paced to a
//! rate; what does not fit the socket's buffer is dropped by the kernel,
//! as on a congested link). Real datagrams over real sockets: the client's
//! QUIC stack sees loss and delay, not a mock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use microbot_client::{ServerConfig, Transport};
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// A running relay; its tasks end with the test's runtime.
pub struct UdpLink {
    /// Where the client connects instead of the server.
    pub addr: SocketAddr,
    alive: Arc<AtomicBool>,
}

impl UdpLink {
    /// A link to `upstream` that forwards everything at once.
    pub async fn start(upstream: SocketAddr) -> Self {
        Self::spawn(upstream, None).await
    }

    /// A link to `upstream` whose uplink (client to server) carries at
    /// most `bytes_per_sec`; the downlink is not limited.
    pub async fn with_slow_uplink(upstream: SocketAddr, bytes_per_sec: u64) -> Self {
        assert!(bytes_per_sec > 0, "a rate of 0 is a cut link: use cut()");
        Self::spawn(upstream, Some(bytes_per_sec)).await
    }

    /// Drops every datagram from now on, both ways.
    pub fn cut(&self) {
        self.alive.store(false, Ordering::SeqCst);
    }

    /// The client configuration that reaches `server` through this link
    /// (QUIC only: the link carries no TCP, so no WebSocket fallback).
    pub fn server_config(&self, server: &ServerConfig) -> ServerConfig {
        ServerConfig::new(self.addr, &server.fingerprint_hex())
            .unwrap()
            .with_transport(Transport::Quic)
    }

    async fn spawn(upstream: SocketAddr, uplink_rate: Option<u64>) -> Self {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        back.connect(upstream).await.unwrap();
        let addr = front.local_addr().unwrap();
        let alive = Arc::new(AtomicBool::new(true));
        let client: Arc<std::sync::Mutex<Option<SocketAddr>>> = Arc::default();
        {
            let (front, back, alive, client) = (
                Arc::clone(&front),
                Arc::clone(&back),
                Arc::clone(&alive),
                Arc::clone(&client),
            );
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65_536];
                let mut pace = uplink_rate.map(Pace::new);
                while let Ok((n, from)) = front.recv_from(&mut buf).await {
                    *client.lock().unwrap() = Some(from);
                    if let Some(pace) = &mut pace {
                        pace.wait_for_room(n).await;
                    }
                    if alive.load(Ordering::SeqCst) {
                        let _ = back.send(&buf[..n]).await;
                    }
                }
            });
        }
        {
            let alive = Arc::clone(&alive);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65_536];
                while let Ok(n) = back.recv(&mut buf).await {
                    let to = *client.lock().unwrap();
                    if let Some(to) = to
                        && alive.load(Ordering::SeqCst)
                    {
                        let _ = front.send_to(&buf[..n], to).await;
                    }
                }
            });
        }
        Self { addr, alive }
    }
}

/// Spaces datagrams so that they leave at no more than a byte rate.
struct Pace {
    bytes_per_sec: u64,
    next_free: Instant,
}

impl Pace {
    fn new(bytes_per_sec: u64) -> Self {
        Self {
            bytes_per_sec,
            next_free: Instant::now(),
        }
    }

    /// Waits until the link is free, then books it for `len` bytes.
    async fn wait_for_room(&mut self, len: usize) {
        let now = Instant::now();
        if self.next_free > now {
            tokio::time::sleep_until(self.next_free).await;
        }
        let busy = Duration::from_secs_f64(len as f64 / self.bytes_per_sec as f64);
        self.next_free = self.next_free.max(now) + busy;
    }
}
