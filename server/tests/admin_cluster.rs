//! The dashboard sees and steers the whole cluster (SPEC.md §18.7 Nodes,
//! Rate limits): two nodes on one PostgreSQL schema and one Redis publish
//! their snapshots on the bus; node A's overview lists node B with its
//! open connections, charts B's and the cluster's connections from the
//! points B publishes (and, over three days, from the minutes two earlier
//! nodes stored), and marks B stale once B has stopped. A send rate
//! lowered on node A's dashboard refuses sends on node B within the refresh
//! period, and removing it lets them through again; the same for the
//! group-change rate (editable since issue 19's second point), lowered in
//! the same test so that both share one wait for the reload. Skipped without
//! `MICROBOT_TEST_POSTGRES` / `MICROBOT_TEST_REDIS`.

use crate::common;
use crate::support::engines;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// One HTTP/1.1 request; (status, body).
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut text = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        text.push_str(h);
        text.push_str("\r\n");
    }
    if !body.is_empty() {
        text.push_str("Content-Type: application/json\r\n");
    }
    text.push_str("\r\n");
    text.push_str(body);
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    if head.to_ascii_lowercase().contains("set-cookie: ") {
        let cookie = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .starts_with("set-cookie: ")
                    .then(|| l[12..].to_owned())
            })
            .unwrap();
        return (status, cookie.split(';').next().unwrap().to_owned());
    }
    (status, body.to_owned())
}

/// An active admin `ops` in the shared database; the session cookie header.
async fn admin_session(url: String, addr: SocketAddr) -> String {
    use microbot_server::testing::storage::admin::{AdminRole, AdminStorage as _};
    let secret = tokio::spawn(async move {
        let store = microbot_server::testing::storage::postgres::PostgresStorage::open(&url, 1)
            .await
            .unwrap();
        let hash = microbot_server::testing::auth::password::PasswordHasher::new(8192, 1, 1)
            .unwrap()
            .hash("correct horse battery")
            .unwrap();
        let secret = microbot_server::testing::auth::totp::new_secret(
            &microbot_server::testing::clock::SystemRng,
        );
        assert!(
            store
                .create_admin("ops", AdminRole::Admin, &hash, &secret, 1)
                .await
                .unwrap()
        );
        let id = store.admin_by_name("ops").await.unwrap().unwrap().id;
        store.activate_admin(id).await.unwrap();
        microbot_server::testing::auth::totp::enrolment(&secret, "ops")
            .unwrap()
            .1
    })
    .await
    .unwrap();
    let mut auth = Authenticator::from_base32(&secret);
    let body = format!(
        r#"{{"name":"ops","password":"correct horse battery","totp":"{}"}}"#,
        auth.fresh()
    );
    let (status, cookie) = request(
        addr,
        "POST",
        "/admin/api/login",
        &["X-Microbot-Admin: 1"],
        &body,
    )
    .await;
    assert_eq!(status, 200, "{cookie}");
    format!("Cookie: {cookie}")
}

/// Two hours of stored minutes of two nodes that ran two days ago,
/// `ghost-1` at 1 message/s with 3 connections, `ghost-2` at 2/s with 5
/// (as every node stores its closed minutes, SPEC.md §18.7 Charts); the
/// first minute, on a 4-minute step of a 3-day chart.
async fn seed_minutes(url: String) -> u64 {
    use microbot_server::testing::storage::admin::{AdminStorage as _, NodeMinuteRecord};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let first = (now - 2 * 86_400) / 240 * 240;
    tokio::spawn(async move {
        let store = microbot_server::testing::storage::postgres::PostgresStorage::open(&url, 1)
            .await
            .unwrap();
        for m in 0..120u64 {
            let minute = first + m * 60;
            for (node, rate, connections) in [("ghost-1", 1u64, 3u64), ("ghost-2", 2, 5)] {
                let rollup = serde_json::json!({
                    "at": minute, "secs": 60, "messages": rate * 60,
                    "deliveries": rate * 60, "logins": 0, "failed": 0,
                    "connection_secs": connections * 60, "queued_sum": 0,
                    "queued_secs": 0, "attachment_in": 0, "attachment_out": 0,
                    "cpu_ms": 0, "cpu_secs": 0, "memory_sum": 0,
                    "memory_secs": 0, "latency": [[40, 60]],
                });
                let record = NodeMinuteRecord {
                    node: node.to_owned(),
                    minute,
                    rollup: rollup.to_string(),
                };
                store
                    .put_node_minute(&record, now - 30 * 86_400)
                    .await
                    .unwrap();
            }
        }
    })
    .await
    .unwrap();
    first
}

/// The nodes of A's overview.
async fn nodes(addr: SocketAddr, cookie: &str) -> Vec<serde_json::Value> {
    let (status, body) = request(addr, "GET", "/admin/api/overview", &[cookie], "").await;
    assert_eq!(status, 200, "{body}");
    let overview: serde_json::Value = serde_json::from_str(&body).unwrap();
    overview["nodes"].as_array().unwrap().clone()
}

/// Polls A's overview until `check` holds for node `id` (10 s at most).
async fn until(
    addr: SocketAddr,
    cookie: &str,
    id: &str,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let list = nodes(addr, cookie).await;
        if let Some(n) = list.iter().find(|n| n["id"] == id)
            && check(n)
        {
            return n.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {list:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_a_lists_node_b_with_its_connections_and_marks_it_stale_when_stopped() {
    let Some((pg, redis)) = engines::services("admin_cluster::node_a_lists_node_b") else {
        return;
    };
    let schema = engines::Schema::new(&pg, "admin_cluster_nodes");
    let namespace = format!("test-nodes-{}", engines::random_hex(4));
    let node = |admin: bool| {
        let (url, redis, namespace) = (schema.url.clone(), redis.clone(), namespace.clone());
        move |c: &mut microbot_server::Config| {
            c.storage = Some(microbot_server::config::SecretUrl::new(url));
            c.storage_pool_size = 2;
            c.redis = Some(microbot_server::config::SecretUrl::new(redis));
            c.redis_namespace = namespace;
            if admin {
                c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
            }
        }
    };
    let a = TestServer::start_with(node(true)).await;
    let b = TestServer::start_with(node(false)).await;
    let addr = a.metrics_addr.unwrap();
    let cookie = admin_session(schema.url.clone(), addr).await;
    // A knows its own id from its overview; B is the other node listed.
    let (_, body) = request(addr, "GET", "/admin/api/overview", &[&cookie], "").await;
    let own: serde_json::Value = serde_json::from_str(&body).unwrap();
    let a_id = own["node"]["id"].as_str().unwrap().to_owned();
    assert_eq!(a_id.len(), 32, "{a_id}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let b_id = loop {
        let list = nodes(addr, &cookie).await;
        if let Some(other) = list.iter().find(|n| n["id"] != a_id.as_str()) {
            assert!(list.iter().any(|n| n["id"] == a_id.as_str()), "{list:?}");
            break other["id"].as_str().unwrap().to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "B never listed: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Two devices connect to B: A's overview shows B with two QUIC connections.
    let bob = new_device(&b, "bob").await;
    let kim = new_device(&b, "kim").await;
    let seen = until(addr, &cookie, &b_id, "B with 2 connections", |n| {
        n["connections_quic"] == 2
    })
    .await;
    assert_eq!(seen["stale"], false);
    assert_eq!(seen["ready"], true);
    assert_eq!(seen["version"], env!("CARGO_PKG_VERSION"));
    assert!(seen["last_seen_ms"].as_u64().unwrap() > 0);
    // The charts of node B and of the cluster, from the points B publishes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for node in [b_id.as_str(), "cluster"] {
        loop {
            let path = format!("/admin/api/series?range=5m&node={node}");
            let (status, body) = request(addr, "GET", &path, &[&cookie], "").await;
            assert_eq!(status, 200, "{body}");
            let series: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(series["step_secs"], 1);
            let last = series["connections"]
                .as_array()
                .unwrap()
                .last()
                .and_then(serde_json::Value::as_f64);
            if last == Some(2.0) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{node}: {body}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Beyond the bus's 15 minutes: the minutes every node stored. Two
    // nodes that ran two days ago left two hours of minutes; the cluster's
    // 3-day chart sums them, each one's chart is its own.
    let day_ago_2 = seed_minutes(schema.url.clone()).await;
    for (node, messages, connections) in [("cluster", 3.0, 8.0), ("ghost-2", 2.0, 5.0)] {
        let path = format!("/admin/api/series?range=3d&node={node}");
        let (status, body) = request(addr, "GET", &path, &[&cookie], "").await;
        assert_eq!(status, 200, "{body}");
        let series: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(series["step_secs"], 240, "{node}");
        assert_eq!(series["range_secs"], 3 * 86_400);
        let t = series["t"].as_array().unwrap();
        let old: Vec<usize> = (0..t.len())
            .filter(|i| t[*i].as_u64().unwrap() < day_ago_2 + 86_400)
            .collect();
        assert_eq!(old.len(), 30, "{node}: {body}");
        assert_eq!(t[old[0]], day_ago_2, "{node}");
        for i in old {
            assert_eq!(series["messages_per_s"][i], messages, "{node}: {body}");
            assert_eq!(series["connections"][i], connections, "{node}: {body}");
        }
        if node != "cluster" {
            assert_eq!(series["since"], day_ago_2);
        }
    }
    let (status, _) = request(
        addr,
        "GET",
        "/admin/api/series?range=3d&node=no-such-node",
        &[&cookie],
        "",
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = request(
        addr,
        "GET",
        "/admin/api/series?node=no-such-node",
        &[&cookie],
        "",
    )
    .await;
    assert_eq!(status, 404);
    // A itself has none.
    let list = nodes(addr, &cookie).await;
    let mine = list.iter().find(|n| n["id"] == a_id.as_str()).unwrap();
    assert_eq!(mine["connections_quic"], 0);
    drop((bob, kim));
    // B stops: it falls silent and A marks it stale within a few seconds.
    b.stop().await;
    let stale = until(addr, &cookie, &b_id, "B stale", |n| n["stale"] == true).await;
    assert!(stale["last_seen_ms"].as_u64().unwrap() > 0);
    let mine = nodes(addr, &cookie).await;
    assert!(
        mine.iter()
            .any(|n| n["id"] == a_id.as_str() && n["stale"] == false)
    );
    a.stop().await;
}

/// A node's settings on the shared schema and Redis; `admin`: with an admin listener.
fn node_config(
    url: &str,
    redis: &str,
    namespace: &str,
    admin: bool,
) -> impl FnOnce(&mut microbot_server::Config) {
    let (url, redis, namespace) = (url.to_owned(), redis.to_owned(), namespace.to_owned());
    move |c: &mut microbot_server::Config| {
        c.storage = Some(microbot_server::config::SecretUrl::new(url));
        c.storage_pool_size = 2;
        c.redis = Some(microbot_server::config::SecretUrl::new(redis));
        c.redis_namespace = namespace;
        if admin {
            c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        }
    }
}

/// One send of one envelope from `from` to `to`; the error code, if refused.
async fn send_once(from: &mut Device, to: u64) -> Option<microbot_protocol::transport::ErrorCode> {
    use microbot_protocol::transport::response;
    match send_to(&mut from.client, &[(to, random_bytes(40))]).await {
        response::Result::Error(e) => Some(code(&e)),
        _ => None,
    }
}

/// Two nodes on one PostgreSQL schema and Redis namespace, A with an admin
/// listener and an admin session on it: the set-up of the rate-limit tests.
struct TwoNodes {
    /// Dropped last: the schema both nodes use.
    _schema: engines::Schema,
    a: TestServer,
    b: TestServer,
    /// Node A's admin listener.
    addr: SocketAddr,
    /// An admin session cookie on node A.
    cookie: String,
}

impl TwoNodes {
    /// Started, or `None` (skipped) without PostgreSQL and Redis.
    async fn start(test: &str, tag: &str) -> Option<Self> {
        let (pg, redis) = engines::services(test)?;
        let schema = engines::Schema::new(&pg, &format!("admin_cluster_{tag}"));
        let namespace = format!("test-{tag}-{}", engines::random_hex(4));
        let a = TestServer::start_with(node_config(&schema.url, &redis, &namespace, true)).await;
        let b = TestServer::start_with(node_config(&schema.url, &redis, &namespace, false)).await;
        let addr = a.metrics_addr.unwrap();
        let cookie = admin_session(schema.url.clone(), addr).await;
        Some(Self {
            _schema: schema,
            a,
            b,
            addr,
            cookie,
        })
    }

    async fn stop(self) {
        self.b.stop().await;
        self.a.stop().await;
    }
}

/// One group created by `by` (a fresh id each time, no other members); the
/// error code, if refused.
async fn create_group(by: &mut Device) -> Option<microbot_protocol::transport::ErrorCode> {
    use microbot_protocol::transport::{self, client_frame::Request, response};
    let request = Request::CreateGroup(transport::CreateGroupRequest {
        group_id: random_bytes(16),
        members: Vec::new(),
        encrypted_metadata: random_bytes(8),
    });
    match by.client.request(request).await {
        response::Result::Error(e) => Some(code(&e)),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rates_lowered_on_node_a_refuse_sends_and_group_changes_on_node_b() {
    use microbot_protocol::transport::ErrorCode;
    let Some(nodes) = TwoNodes::start("admin_cluster::a_send_rate_lowered", "rates").await else {
        return;
    };
    let (b, addr, cookie) = (&nodes.b, nodes.addr, nodes.cookie.clone());
    let mut ann = new_device(b, "ann").await;
    let ben = new_device(b, "ben").await;
    // The configured rates (1200 sends, 60 group changes a minute) let a burst through.
    for _ in 0..5 {
        assert_eq!(send_once(&mut ann, ben.device_id).await, None);
    }
    for _ in 0..3 {
        assert_eq!(create_group(&mut ann).await, None);
    }
    // Checked: unknown names, out-of-range rates, no CSRF header.
    let csrf = "X-Microbot-Admin: 1";
    for body in [
        r#"{"name":"max_connections","per_minute":1}"#,
        r#"{"name":"rate_send_per_account","per_minute":1000001}"#,
        r#"{"name":"rate_send_per_account","per_minute":-1}"#,
        r#"{"name":"rate_send_per_account","per_minute":1,"x":1}"#,
    ] {
        let (status, answer) = request(
            addr,
            "PUT",
            "/admin/api/rate-limits",
            &[&cookie, csrf],
            body,
        )
        .await;
        assert_eq!(status, 400, "{body}: {answer}");
    }
    let lower = r#"{"name":"rate_send_per_account","per_minute":2}"#;
    let (status, _) = request(addr, "PUT", "/admin/api/rate-limits", &[&cookie], lower).await;
    assert_eq!(status, 403);
    // Node A's dashboard lowers the group-change rate to 1 a minute
    // (editable since issue 19)...
    let (status, answer) = request(
        addr,
        "PUT",
        "/admin/api/rate-limits",
        &[&cookie, csrf],
        r#"{"name":"rate_group_change_per_account","per_minute":1}"#,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let listed: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let row = listed["limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "rate_group_change_per_account")
        .unwrap()
        .clone();
    assert_eq!(row["config"], 60);
    assert_eq!(row["effective"], 1);
    // ...then the send rate to 2 a minute.
    let (status, answer) = request(
        addr,
        "PUT",
        "/admin/api/rate-limits",
        &[&cookie, csrf],
        lower,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let listed: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let row = listed["limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "rate_send_per_account")
        .unwrap()
        .clone();
    assert_eq!(row["config"], 1200);
    assert_eq!(row["effective"], 2);
    assert_eq!(row["override"]["per_minute"], 2);
    assert_eq!(row["override"]["updated_by"], "ops");
    // Node B picks it up within its refresh period (5 s): ann's sends are refused.
    let started = tokio::time::Instant::now();
    loop {
        if send_once(&mut ann, ben.device_id).await == Some(ErrorCode::RateLimited) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "node B never applied the lowered rate"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The reload that lowered the send rate lowered the group-change rate
    // (stored first) too: at most one more group change gets through.
    if create_group(&mut ann).await.is_none() {
        assert_eq!(
            create_group(&mut ann).await,
            Some(ErrorCode::RateLimited),
            "node B did not apply the lowered group-change rate"
        );
    }
    // The change is audited.
    let (_, audit) = request(addr, "GET", "/admin/api/audit", &[&cookie], "").await;
    assert!(
        audit.contains("set rate_send_per_account to 2 per minute")
            && audit.contains("set rate_group_change_per_account to 1 per minute"),
        "{audit}"
    );
    // Removing the overrides goes back to the settings: B lets sends and
    // group changes through again.
    for name in ["rate_send_per_account", "rate_group_change_per_account"] {
        let (status, answer) = request(
            addr,
            "DELETE",
            &format!("/admin/api/rate-limits?name={name}"),
            &[&cookie, csrf],
            "",
        )
        .await;
        assert_eq!(status, 200, "{answer}");
    }
    let started = tokio::time::Instant::now();
    while send_once(&mut ann, ben.device_id).await.is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "node B never went back to the configured rate"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Refilled at the configured 60 a minute within a second or so.
    let started = tokio::time::Instant::now();
    while create_group(&mut ann).await.is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "node B never went back to the configured group-change rate"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, _) = request(
        addr,
        "DELETE",
        "/admin/api/rate-limits?name=rate_send_per_account",
        &[&cookie, csrf],
        "",
    )
    .await;
    assert_eq!(status, 404);
    drop((ann, ben));
    nodes.stop().await;
}
