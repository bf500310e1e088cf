//! A private `redis-server` on loopback for the tests that take Redis
//! away (redis_fallback.rs, health_checks.rs, ops_health.rs), killed on
//! drop.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A private `redis-server`, killed on drop.
pub struct RedisGuard(Child);

impl RedisGuard {
    /// Kills it (SIGKILL) and waits for the exit.
    pub fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for RedisGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A private redis-server on `port` without persistence, with `extra`
/// arguments (`--requirepass …`), once it accepts connections.
pub fn redis_server_with(port: u16, extra: &[&str]) -> RedisGuard {
    let mut child = RedisGuard(
        Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/services.sh installs it)"),
    );
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.stop();
    panic!("redis-server did not start on port {port}");
}

/// A private redis-server on `port` (see [`redis_server_with`]).
pub fn redis_server(port: u16) -> RedisGuard {
    redis_server_with(port, &[])
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
