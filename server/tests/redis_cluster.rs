//! Cluster mode (SPEC.md §18.6): two `microbot-server` processes share
//! PostgreSQL and a Redis Cluster of 3 primaries and 3 replicas that this
//! test starts for itself with scripts/redis-cluster.sh (its own ports and
//! directory, `cluster-node-timeout` 1000 ms), so killing a primary cannot
//! disturb other tests.
//!
//! Alice is behind node A, Bob behind node B. A message crosses the nodes
//! as a push on a sharded channel (Bob does not reconnect); each node's
//! presence set is in the cluster; two nodes' limits share a bucket. Then,
//! with Alice and Bob sending to each other every 100 ms, the primary that
//! holds the presence sets' slot is killed (SIGKILL): its replica is
//! promoted, both nodes lose and re-establish their link, and every
//! acknowledged message is delivered exactly once.
//! Needs `MICROBOT_TEST_POSTGRES`, `MICROBOT_TEST_REDIS` and the
//! `redis-server` / `redis-cli` binaries (7 or newer).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::cluster as support;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use microbot_client::{ConnectionState, Conversation, Event, ServerConfig};
use microbot_protocol::transport::RegisterRequest;
use microbot_protocol::transport::client_frame::Request;
use microbot_server::Config;
use microbot_server::testing::limits::Limits;
use microbot_server::testing::limits::shared::SharedLimits;
use microbot_server::testing::metrics::Metrics;
use support::{ClusterSpec, Ledger, Node, Schema, services, user, wait_for};

/// A Redis Cluster started by scripts/redis-cluster.sh, stopped on drop.
struct RedisCluster {
    port: u16,
    dir: tempfile::TempDir,
    url: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/redis-cluster.sh")
}

impl RedisCluster {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_ports();
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .env("REDIS_CLUSTER_PORT", port.to_string())
            .env("REDIS_CLUSTER_DIR", dir.path())
            .env("REDIS_CLUSTER_NODE_TIMEOUT", "1000")
            .output()
            .unwrap();
        let mut cluster = Self {
            port,
            dir,
            url: String::new(),
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "redis-cluster.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.url = stdout
            .trim()
            .strip_prefix("export MICROBOT_TEST_REDIS_CLUSTER=")
            .unwrap()
            .to_owned();
        cluster
    }

    fn cli(&self, port: u16, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The port of the primary serving `slot`, asked of a node that is up.
    fn primary_of(&self, slot: u16, ask: u16) -> Option<u16> {
        self.cli(ask, &["cluster", "nodes"]).lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let master = fields.get(2)?.contains("master") && !fields[2].contains("fail");
            let serves = fields.iter().skip(8).any(|range| {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                matches!((lo.parse::<u16>(), hi.parse::<u16>()), (Ok(lo), Ok(hi)) if (lo..=hi).contains(&slot))
            });
            (master && serves).then(|| {
                let addr = fields[1].split('@').next()?;
                addr.rsplit(':').next()?.parse().ok()
            })?
        })
    }

    fn kill(&self, port: u16) {
        let pid =
            std::fs::read_to_string(self.dir.path().join(format!("redis-{port}.pid"))).unwrap();
        let status = Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .env("REDIS_CLUSTER_PORT", self.port.to_string())
            .env("REDIS_CLUSTER_DIR", self.dir.path())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// A first port with it and the next five free, and their cluster bus
/// ports (+10000).
fn free_ports() -> u16 {
    for _ in 0..100 {
        let base = 20_000 + u16::from(rand::random::<u8>()) * 30;
        let free = (0..6).all(|i| {
            [base + i, base + i + 10_000]
                .iter()
                .all(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        });
        if free {
            return base;
        }
    }
    panic!("no six free ports");
}

/// A node's limits on the cluster: 2 registrations a minute per address.
fn limits(url: &str, namespace: &str) -> Limits {
    let config = Config {
        rate_register_per_ip: 2,
        ..Config::default()
    };
    Limits::with_shared(&config, Some(SharedLimits::new(url, namespace).unwrap()))
}

fn register_allowed(limits: &Limits, ip: IpAddr) -> bool {
    let request = Request::Register(RegisterRequest {
        username: "someone".into(),
        password: "whatever-password".into(),
        bot: false,
    });
    limits
        .check_request(&Metrics::default(), ip, None, &request)
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_primary_fails_over_and_no_acknowledged_message_is_lost_or_repeated() {
    let Some((pg, _)) = services("redis_cluster") else {
        return;
    };
    let redis = RedisCluster::start();
    let schema = Schema::new(&pg, "rcluster");
    let shared = tempfile::tempdir().unwrap();
    let namespace = format!("test-rcluster-{}", support::random_hex(4));
    let mut spec = ClusterSpec {
        storage_url: schema.url.clone(),
        redis_url: redis.url.clone(),
        namespace: namespace.clone(),
        attachments: shared.path().to_owned(),
        cert: None,
    };
    let node_a = Node::start(&mut spec);
    let node_b = Node::start(&mut spec);
    let pin = node_a.fingerprint.clone();
    let logs = || format!("node A:\n{}\nnode B:\n{}", node_a.log(), node_b.log());
    let mut alice = user(&ServerConfig::new(node_a.addr, &pin).unwrap(), "alice").await;
    let mut bob = user(&ServerConfig::new(node_b.addr, &pin).unwrap(), "bob").await;
    let to_bob = Conversation::Direct("bob".to_owned());
    let to_alice = Conversation::Direct("alice".to_owned());

    // Across the nodes by a push: Bob does not log in again.
    let mut bob_events = bob.events.take().unwrap();
    alice.account.send_text(&to_bob, "via the cluster").unwrap();
    let mut logins = 0;
    let text = loop {
        let event = wait_for(&mut bob_events, Duration::from_secs(20), |e| match e {
            Event::Message(m) => Some(Ok(m.text.clone())),
            Event::Connection(ConnectionState::Connected) => Some(Err(())),
            _ => None,
        })
        .await;
        match event {
            Ok(text) => break text,
            Err(()) => logins += 1,
        }
    };
    assert_eq!(
        (text.as_str(), logins),
        ("via the cluster", 0),
        "{}",
        logs()
    );

    // Presence: one set per node, all in the slot of `{namespace}`, each
    // holding its node's one connected device.
    let presence_slot: u16 = redis
        .cli(
            redis.port,
            &["cluster", "keyslot", &format!("{{{namespace}}}")],
        )
        .trim()
        .parse()
        .unwrap();
    let holder = redis.primary_of(presence_slot, redis.port).unwrap();
    let keys = redis.cli(
        holder,
        &["--scan", "--pattern", &format!("{{{namespace}}}:node:*")],
    );
    let keys: Vec<&str> = keys.lines().collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    for key in keys {
        assert_eq!(redis.cli(holder, &["scard", key]).trim(), "1", "{key}");
    }

    // A limit's bucket is shared by the nodes, through the cluster.
    let url = redis.url.clone();
    let ns = namespace.clone();
    tokio::task::spawn_blocking(move || {
        let (a, b) = (limits(&url, &ns), limits(&url, &ns));
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(register_allowed(&a, ip) && register_allowed(&b, ip));
        assert!(!register_allowed(&a, ip) && !register_allowed(&b, ip));
        assert!(register_allowed(&b, "192.0.2.8".parse().unwrap()));
    })
    .await
    .unwrap();

    // Steady traffic both ways; the presence slot's primary dies.
    let mut ledger = Ledger::default();
    let a = ledger.record(alice.events.take().unwrap());
    let b = ledger.record(bob_events);
    let mut round = 0;
    let mut send_round = |ledger: &mut Ledger| {
        round += 1;
        let id = alice
            .account
            .send_text(&to_bob, &format!("a->b #{round}"))
            .unwrap();
        ledger.sent(a, id, [b]);
        let id = bob
            .account
            .send_text(&to_alice, &format!("b->a #{round}"))
            .unwrap();
        ledger.sent(b, id, [a]);
    };
    for _ in 0..5 {
        send_round(&mut ledger);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    redis.kill(holder);
    let other = (redis.port..redis.port + 6).find(|p| *p != holder).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let relinked = |log: String| log.matches("Redis bus linked").count() >= 2;
    loop {
        send_round(&mut ledger);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let promoted = redis
            .primary_of(presence_slot, other)
            .is_some_and(|p| p != holder);
        if promoted && relinked(node_a.log()) && relinked(node_b.log()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no failover and relink: {}",
            logs()
        );
    }
    for _ in 0..5 {
        send_round(&mut ledger);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ledger
        .assert_exactly_once(Duration::from_secs(30), logs)
        .await;
    for log in [node_a.log(), node_b.log()] {
        assert!(
            log.contains("Redis link lost"),
            "the node saw the failover: {log}"
        );
    }
    // At once, from the cluster connection's report of the dropped node
    // connection, not only later from a command that timed out.
    assert!(
        [node_a.log(), node_b.log()]
            .iter()
            .any(|log| log.contains("lost the connection to a Redis Cluster node")),
        "{}",
        logs()
    );
    // The bus works again: pushes cross the nodes without a new login.
    let logins = (ledger.logins(a), ledger.logins(b));
    send_round(&mut ledger);
    ledger
        .assert_exactly_once(Duration::from_secs(20), logs)
        .await;
    assert_eq!(logins, (ledger.logins(a), ledger.logins(b)), "{}", logs());
    alice.account.disconnect().await;
    bob.account.disconnect().await;
}
