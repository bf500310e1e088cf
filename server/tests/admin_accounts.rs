//! Admin accounts end to end (SPEC.md §18.7): `microbot-server admin add`
//! (the real binary) prints a TOTP secret and activates the admin on a
//! right first code; the API logs in with password + TOTP (one use per
//! step, back-off on failures), sets an HttpOnly SameSite=Strict cookie,
//! refuses mutating requests without the custom header, keeps an audit
//! log, and forgets the session at logout; `admin remove` ends it too.
//! Dashboard changes: IP deny rules and suspensions of accounts and devices.

use crate::common;
use crate::support::engines;

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use common::*;
use microbot_protocol::transport::response as server_response;
use microbot_protocol::transport::{LoginRequest, client_frame};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

struct Answer {
    status: u16,
    head: String,
    body: String,
}

async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> Answer {
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
    Answer {
        status: head.split(' ').nth(1).unwrap().parse().unwrap(),
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

/// Runs `microbot-server admin ...` on `dir` with `stdin`; (success, stdout, stderr).
fn admin_cli(dir: &std::path::Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_microbot-server"))
        .arg("--data-dir")
        .arg(dir)
        .args(["--argon2-memory-kib", "8192", "--argon2-iterations", "1"])
        .arg("admin")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Adds an admin through the binary; its authenticator.
fn add_admin(dir: &std::path::Path, name: &str, role: &str, password: &str) -> Authenticator {
    // The first code is not known before the secret is printed: run once
    // with wrong codes to see the command refuse, then for real with a
    // code computed from the secret it prints (a second process reading
    // the secret from the first one's output would need a pty).
    let (ok, out, err) = admin_cli(
        dir,
        &["add", name, "--role", role],
        &format!("{password}\n000000\n000000\n000000\n"),
    );
    assert!(!ok, "{out}");
    assert!(err.contains("no correct TOTP code"), "{err}");
    assert!(out.contains("otpauth://totp/"), "{out}");
    // Not added: the name is free again.
    let mut child = Command::new(env!("CARGO_BIN_EXE_microbot-server"))
        .arg("--data-dir")
        .arg(dir)
        .args(["--argon2-memory-kib", "8192", "--argon2-iterations", "1"])
        .args(["admin", "add", name, "--role", role])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{password}\n").as_bytes()).unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let secret = loop {
        let mut buf = [0u8; 256];
        let n = std::io::Read::read(&mut stdout, &mut buf).unwrap();
        assert!(
            n > 0,
            "no secret printed: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        if let Some(line) = text
            .lines()
            .find_map(|l| l.strip_prefix("TOTP secret (base32): "))
            && text.contains("first code: ")
        {
            break line.trim().to_owned();
        }
    };
    let mut auth = Authenticator::from_base32(&secret);
    stdin
        .write_all(format!("{}\n", auth.fresh()).as_bytes())
        .unwrap();
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(child.wait().unwrap().success(), "{rest}");
    assert!(
        rest.contains(&format!("admin {name} added (role {role})")),
        "{rest}"
    );
    auth
}

fn cookie_of(answer: &Answer) -> String {
    let line = answer
        .head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .unwrap_or_else(|| panic!("no cookie: {}", answer.head));
    line.split(';').next().unwrap().to_owned()
}

fn login_body(name: &str, password: &str, code: &str) -> String {
    format!(r#"{{"name":"{name}","password":"{password}","totp":"{code}"}}"#)
}

const CSRF: &str = "X-Microbot-Admin: 1";

#[tokio::test]
async fn an_admin_logs_in_with_totp_and_every_change_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let mut ops = add_admin(dir.path(), "ops", "admin", "correct horse battery");
    let (ok, _, err) = admin_cli(
        dir.path(),
        &["add", "ops", "--role", "viewer"],
        "another password\n",
    );
    assert!(!ok && err.contains("exists already"), "{err}");
    let (ok, _, err) = admin_cli(dir.path(), &["add", "x", "--role", "root"], "");
    assert!(!ok && err.contains("invalid role"), "{err}");
    let server = TestServer::start_in(dir, |c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        c.login_backoff_after_failures = 3;
    })
    .await;
    let addr = server.metrics_addr.unwrap();

    // Unauthenticated: every API path is refused.
    for path in [
        "/admin/api/session",
        "/admin/api/audit",
        "/admin/api/anything",
    ] {
        assert_eq!(
            request(addr, "GET", path, &[], "").await.status,
            401,
            "{path}"
        );
    }
    // Login needs the custom header (CSRF), the right code, and uses a step once.
    let code = ops.fresh();
    let body = login_body("ops", "correct horse battery", &code);
    let refused = request(addr, "POST", "/admin/api/login", &[], &body).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("missing_csrf_header"));
    let wrong = request(
        addr,
        "POST",
        "/admin/api/login",
        &[CSRF],
        &login_body("ops", "wrong password!", &code),
    )
    .await;
    assert_eq!(wrong.status, 401);
    let ok = request(addr, "POST", "/admin/api/login", &[CSRF], &body).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.body.contains(r#""role":"admin""#), "{}", ok.body);
    assert!(
        ok.head.contains("httponly") && ok.head.contains("samesite=strict"),
        "{}",
        ok.head
    );
    assert!(
        ok.head.contains("path=/admin") && ok.head.contains("max-age=43200"),
        "{}",
        ok.head
    );
    assert!(
        !ok.head.contains("secure"),
        "plain HTTP on loopback: no Secure flag"
    );
    let cookie = format!("Cookie: {}", cookie_of(&ok));
    let replay = request(addr, "POST", "/admin/api/login", &[CSRF], &body).await;
    assert_eq!(replay.status, 401);
    assert!(replay.body.contains("totp_replayed"), "{}", replay.body);

    let me = request(addr, "GET", "/admin/api/session", &[&cookie], "").await;
    assert_eq!(me.status, 200);
    assert!(me.body.contains(r#""name":"ops""#), "{}", me.body);
    assert_eq!(
        request(addr, "GET", "/admin/api/nope", &[&cookie], "")
            .await
            .status,
        404
    );
    // A forged cookie is nobody.
    let forged = format!("Cookie: microbot_admin={}", "ab".repeat(32));
    assert_eq!(
        request(addr, "GET", "/admin/api/session", &[&forged], "")
            .await
            .status,
        401
    );

    // Logout needs the header, then the cookie is dead.
    assert_eq!(
        request(addr, "POST", "/admin/api/logout", &[&cookie], "")
            .await
            .status,
        403
    );
    let out = request(addr, "POST", "/admin/api/logout", &[&cookie, CSRF], "").await;
    assert_eq!(out.status, 200);
    assert!(out.head.contains("max-age=0"));
    assert_eq!(
        request(addr, "GET", "/admin/api/session", &[&cookie], "")
            .await
            .status,
        401
    );

    // Back-off: failures beyond the threshold lock the name for a while.
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let bad = login_body("ops", "wrong password!", &ops.fresh());
        statuses.push(
            request(addr, "POST", "/admin/api/login", &[CSRF], &bad)
                .await
                .status,
        );
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    let locked = request(
        addr,
        "POST",
        "/admin/api/login",
        &[CSRF],
        &login_body("ops", "correct horse battery", &ops.fresh()),
    )
    .await;
    assert_eq!(locked.status, 429, "{}", locked.body);
    assert!(locked.body.contains("retry_after_ms"));

    // The audit log (read with a fresh session once the lock ran out is
    // slow; read the store directly instead) names who did what.
    let log = server_audit(&server).await;
    let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["logout", "login"], "{log:?}");
    assert!(log.iter().all(|e| e.admin == "ops" && e.at_ms > 0));
    server.stop().await;
}

async fn server_audit(
    server: &TestServer,
) -> Vec<microbot_server::testing::storage::admin::AuditEntry> {
    use microbot_server::testing::storage::admin::AdminStorage as _;
    microbot_server::testing::storage::sqlite::SqliteStorage::open(&server.db_path())
        .unwrap()
        .audit_log(50)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_viewer_reads_and_a_removed_admin_is_signed_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut watch = add_admin(dir.path(), "watch", "viewer", "viewer password");
    let data = dir.path().to_owned();
    let server = TestServer::start_in(dir, |c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let addr = server.metrics_addr.unwrap();
    let ok = request(
        addr,
        "POST",
        "/admin/api/login",
        &[CSRF],
        &login_body("watch", "viewer password", &watch.fresh()),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.body.contains(r#""role":"viewer""#));
    let cookie = format!("Cookie: {}", cookie_of(&ok));
    let audit = request(addr, "GET", "/admin/api/audit", &[&cookie], "").await;
    assert_eq!(audit.status, 200);
    assert!(audit.body.contains(r#""action":"login""#), "{}", audit.body);
    let (ok, out, err) = admin_cli(&data, &["remove", "watch"], "");
    assert!(ok, "{out}{err}");
    assert_eq!(
        request(addr, "GET", "/admin/api/session", &[&cookie], "")
            .await
            .status,
        401
    );
    let (ok, _, err) = admin_cli(&data, &["remove", "watch"], "");
    assert!(!ok && err.contains("no admin called"), "{err}");
    server.stop().await;
}

/// Signs `name` in; the `Cookie:` header of its session.
async fn sign_in(addr: SocketAddr, name: &str, password: &str, auth: &mut Authenticator) -> String {
    let ok = request(
        addr,
        "POST",
        "/admin/api/login",
        &[CSRF],
        &login_body(name, password, &auth.fresh()),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    format!("Cookie: {}", cookie_of(&ok))
}

#[tokio::test]
async fn the_chart_series_follow_the_counters_over_a_chosen_range() {
    let dir = tempfile::tempdir().unwrap();
    let mut watch = add_admin(dir.path(), "watch", "viewer", "viewer password");
    let server = TestServer::start_in(dir, |c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let addr = server.metrics_addr.unwrap();
    assert_eq!(
        request(addr, "GET", "/admin/api/series", &[], "")
            .await
            .status,
        401
    );
    let cookie = sign_in(addr, "watch", "viewer password", &mut watch).await;
    // The sampler runs once a second: wait for two samples.
    let mut tries = 0;
    let series = loop {
        tries += 1;
        assert!(tries < 50, "no samples after 15 s");
        let answer = request(addr, "GET", "/admin/api/series?range=5m", &[&cookie], "").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let json: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        if json["t"].as_array().unwrap().len() >= 2 {
            break json;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    };
    assert_eq!(series["range_secs"], 300);
    assert_eq!(series["step_secs"], 1);
    let len = series["t"].as_array().unwrap().len();
    for key in [
        "messages_per_s",
        "deliveries_per_s",
        "logins_per_s",
        "failed_logins_per_s",
        "connections",
        "queued_envelopes",
        "attachment_in_bytes_per_s",
        "attachment_out_bytes_per_s",
        "cpu_percent",
        "memory_bytes",
    ] {
        assert_eq!(series[key].as_array().unwrap().len(), len, "{key}");
    }
    assert!(series["since"].as_u64().unwrap() <= series["t"][0].as_u64().unwrap());
    // This process's resident memory is in every point (Linux: /proc/self).
    assert!(
        series["memory_bytes"][0].as_f64().unwrap() > 1_000_000.0,
        "{series}"
    );
    // A device login shows as a login in the next samples, its connection as open.
    let device = new_device(&server, "alice").await;
    let mut tries = 0;
    let logins = loop {
        tries += 1;
        assert!(tries < 50, "the login did not show in 15 s");
        let answer = request(addr, "GET", "/admin/api/series?range=1m", &[&cookie], "").await;
        let json: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        let sum: f64 = json["logins_per_s"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .sum();
        let open = json["connections"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .as_f64();
        if sum > 0.0 && open == Some(1.0) {
            break sum;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    };
    // One login; a sample that covered two seconds shows it as 0.5/s.
    assert!(logins > 0.0 && logins <= 1.0 + 1e-9, "one login: {logins}");
    drop(device);
    // Longer ranges use minute rollups; bad ranges are refused with the reason.
    let month = request(addr, "GET", "/admin/api/series?range=30d", &[&cookie], "").await;
    assert_eq!(month.status, 200);
    assert!(month.body.contains(r#""step_secs":2160"#), "{}", month.body);
    for bad in ["45d", "10s", "5x", "-1m"] {
        let answer = request(
            addr,
            "GET",
            &format!("/admin/api/series?range={bad}"),
            &[&cookie],
            "",
        )
        .await;
        assert_eq!(answer.status, 400, "{bad}: {}", answer.body);
        assert!(answer.body.contains("range must be"), "{}", answer.body);
    }
    server.stop().await;
}

#[tokio::test]
async fn each_admin_saves_their_own_layout_and_a_viewer_may_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut ops = add_admin(dir.path(), "ops", "admin", "correct horse battery");
    let mut watch = add_admin(dir.path(), "watch", "viewer", "viewer password");
    let server = TestServer::start_in(dir, |c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let addr = server.metrics_addr.unwrap();
    let layout = r#"{"panels":[{"id":"chart:messages","width":2,"height":2},{"id":"table:audit","width":1,"height":1}]}"#;
    assert_eq!(
        request(addr, "PUT", "/admin/api/layout", &[CSRF], layout)
            .await
            .status,
        401
    );
    let admin = sign_in(addr, "ops", "correct horse battery", &mut ops).await;
    let viewer = sign_in(addr, "watch", "viewer password", &mut watch).await;
    let none = request(addr, "GET", "/admin/api/layout", &[&admin], "").await;
    assert_eq!(
        (none.status, none.body.as_str()),
        (200, r#"{"layout":null}"#)
    );
    // The CSRF header is required; bad shapes are refused with the reason.
    let no_header = request(addr, "PUT", "/admin/api/layout", &[&admin], layout).await;
    assert_eq!(no_header.status, 403);
    for (bad, why) in [
        (
            r#"{"panels":[{"id":"a","width":4,"height":1}]}"#,
            "width must be",
        ),
        (
            r#"{"panels":[{"id":"a","width":1,"height":1},{"id":"a","width":1,"height":1}]}"#,
            "appears twice",
        ),
        (
            r#"{"panels":[{"id":"A b","width":1,"height":1}]}"#,
            "panel ids",
        ),
        (r#"{"panels":"all"}"#, "panels"),
    ] {
        let answer = request(addr, "PUT", "/admin/api/layout", &[&admin, CSRF], bad).await;
        assert_eq!(answer.status, 400, "{bad}: {}", answer.body);
        assert!(answer.body.contains(why), "{bad}: {}", answer.body);
    }
    let saved = request(addr, "PUT", "/admin/api/layout", &[&admin, CSRF], layout).await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    let read = request(addr, "GET", "/admin/api/layout", &[&admin], "").await;
    assert_eq!(read.body, format!(r#"{{"layout":{layout}}}"#));
    // The viewer's layout is their own: none yet, then saved without touching the admin's.
    let theirs = request(addr, "GET", "/admin/api/layout", &[&viewer], "").await;
    assert_eq!(theirs.body, r#"{"layout":null}"#);
    let small = r#"{"panels":[{"id":"table:nodes","width":3,"height":1}]}"#;
    let saved = request(addr, "PUT", "/admin/api/layout", &[&viewer, CSRF], small).await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    let theirs = request(addr, "GET", "/admin/api/layout", &[&viewer], "").await;
    assert_eq!(theirs.body, format!(r#"{{"layout":{small}}}"#));
    let read = request(addr, "GET", "/admin/api/layout", &[&admin], "").await;
    assert_eq!(read.body, format!(r#"{{"layout":{layout}}}"#));
    let log = server_audit(&server).await;
    let layouts: Vec<(&str, &str)> = log
        .iter()
        .filter(|e| e.action == "layout")
        .map(|e| (e.admin.as_str(), e.detail.as_str()))
        .collect();
    assert_eq!(
        layouts,
        [
            ("watch", "saved a layout of 1 panels: table:nodes"),
            (
                "ops",
                "saved a layout of 2 panels: chart:messages, table:audit"
            ),
        ]
    );
    server.stop().await;
}

async fn try_connect(server: &TestServer) -> Result<quinn::Connection, quinn::ConnectionError> {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(client_config(&server.fingerprint));
    let connecting = endpoint.connect(server.addr, "localhost").unwrap();
    tokio::time::timeout(TIMEOUT, connecting).await.unwrap()
}

#[tokio::test]
async fn an_admin_denies_and_allows_addresses_and_new_connections_follow() {
    let dir = tempfile::tempdir().unwrap();
    let mut ops = add_admin(dir.path(), "ops", "admin", "correct horse battery");
    let mut watch = add_admin(dir.path(), "watch", "viewer", "viewer password");
    let server = TestServer::start_in(dir, |c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        c.deny_ips = vec!["192.0.2.0/24".parse().unwrap()];
    })
    .await;
    let addr = server.metrics_addr.unwrap();
    let admin = sign_in(addr, "ops", "correct horse battery", &mut ops).await;
    let viewer = sign_in(addr, "watch", "viewer password", &mut watch).await;
    let open = try_connect(&server).await.expect("allowed before the rule");
    let rule = r#"{"kind":"deny","cidr":"127.0.0.1"}"#;

    // Everyone reads the rules; only an admin, with the header, changes them.
    let list = request(addr, "GET", "/admin/api/ip-rules", &[&viewer], "").await;
    assert_eq!(list.status, 200);
    assert_eq!(
        list.body,
        r#"{"rules":[{"kind":"deny","cidr":"192.0.2.0/24","source":"config"}]}"#
    );
    let refused = request(addr, "POST", "/admin/api/ip-rules", &[&viewer, CSRF], rule).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("forbidden"));
    let no_header = request(addr, "POST", "/admin/api/ip-rules", &[&admin], rule).await;
    assert_eq!(no_header.status, 403);
    for (bad, why) in [
        (r#"{"kind":"deny","cidr":"not an address"}"#, "not an IP"),
        (
            r#"{"kind":"permit","cidr":"10.0.0.0/8"}"#,
            "\\\"deny\\\" or \\\"allow\\\"",
        ),
        (r#"{"kind":"deny"}"#, "cidr"),
    ] {
        let answer = request(addr, "POST", "/admin/api/ip-rules", &[&admin, CSRF], bad).await;
        assert_eq!(answer.status, 400, "{bad}: {}", answer.body);
        assert!(answer.body.contains(why), "{bad}: {}", answer.body);
    }
    assert!(try_connect(&server).await.is_ok(), "nothing changed yet");

    // The admin denies 127.0.0.1: new connections are refused, the open one stays.
    let added = request(addr, "POST", "/admin/api/ip-rules", &[&admin, CSRF], rule).await;
    assert_eq!(added.status, 200, "{}", added.body);
    assert!(
        added.body.contains(
            r#"{"kind":"deny","cidr":"127.0.0.1/32","source":"dashboard","created_by":"ops""#
        ),
        "{}",
        added.body
    );
    let again = request(addr, "POST", "/admin/api/ip-rules", &[&admin, CSRF], rule).await;
    assert_eq!(again.status, 400);
    assert!(again.body.contains("has a rule already"), "{}", again.body);
    assert!(try_connect(&server).await.is_err(), "denied");
    assert!(open.close_reason().is_none(), "open connections stay open");
    let overview = request(addr, "GET", "/admin/api/overview", &[&viewer], "").await;
    assert!(
        overview
            .body
            .contains(r#"{"kind":"deny","cidr":"127.0.0.1/32","source":"dashboard"}"#),
        "{}",
        overview.body
    );

    // The viewer cannot remove it; the admin can, and connections are back.
    let path = "/admin/api/ip-rules?cidr=127.0.0.1%2F32";
    assert_eq!(
        request(addr, "DELETE", path, &[&viewer, CSRF], "")
            .await
            .status,
        403
    );
    assert!(try_connect(&server).await.is_err(), "still denied");
    let removed = request(addr, "DELETE", path, &[&admin, CSRF], "").await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert!(!removed.body.contains("127.0.0.1"), "{}", removed.body);
    assert!(try_connect(&server).await.is_ok(), "allowed again");
    let gone = request(addr, "DELETE", path, &[&admin, CSRF], "").await;
    assert_eq!(gone.status, 404, "{}", gone.body);
    // Allow rules make an allow list: one for another block refuses
    // loopback; one for loopback too lets it in again; removing both
    // leaves no list (everyone allowed).
    let allow = |cidr: &str| format!(r#"{{"kind":"allow","cidr":"{cidr}"}}"#);
    let elsewhere = request(
        addr,
        "POST",
        "/admin/api/ip-rules",
        &[&admin, CSRF],
        &allow("10.0.0.0/8"),
    )
    .await;
    assert_eq!(elsewhere.status, 200, "{}", elsewhere.body);
    assert!(
        elsewhere
            .body
            .contains(r#"{"kind":"allow","cidr":"10.0.0.0/8","source":"dashboard""#),
        "{}",
        elsewhere.body
    );
    assert!(try_connect(&server).await.is_err(), "not on the allow list");
    let loopback = request(
        addr,
        "POST",
        "/admin/api/ip-rules",
        &[&admin, CSRF],
        &allow("127.0.0.0/8"),
    )
    .await;
    assert_eq!(loopback.status, 200, "{}", loopback.body);
    assert!(try_connect(&server).await.is_ok(), "on the allow list");
    // A denied block stays denied inside an allowed one.
    let deny_one = request(addr, "POST", "/admin/api/ip-rules", &[&admin, CSRF], rule).await;
    assert_eq!(deny_one.status, 200, "{}", deny_one.body);
    assert!(try_connect(&server).await.is_err(), "deny wins");
    for cidr in ["127.0.0.1%2F32", "127.0.0.0%2F8", "10.0.0.0%2F8"] {
        let path = format!("/admin/api/ip-rules?cidr={cidr}");
        let removed = request(addr, "DELETE", &path, &[&admin, CSRF], "").await;
        assert_eq!(removed.status, 200, "{}", removed.body);
    }
    assert!(try_connect(&server).await.is_ok(), "no list any more");
    // A config rule is not the dashboard's to remove.
    let config = request(
        addr,
        "DELETE",
        "/admin/api/ip-rules?cidr=192.0.2.0/24",
        &[&admin, CSRF],
        "",
    )
    .await;
    assert_eq!(config.status, 404);

    let log = server_audit(&server).await;
    let changes: Vec<(&str, &str)> = log
        .iter()
        .filter(|e| e.action == "ip_rule")
        .map(|e| (e.admin.as_str(), e.detail.as_str()))
        .collect();
    assert_eq!(
        changes,
        [
            ("ops", "removed the allow rule for 10.0.0.0/8"),
            ("ops", "removed the allow rule for 127.0.0.0/8"),
            ("ops", "removed the deny rule for 127.0.0.1/32"),
            ("ops", "denied 127.0.0.1/32"),
            ("ops", "allowed 127.0.0.0/8"),
            ("ops", "allowed 10.0.0.0/8"),
            ("ops", "removed the deny rule for 127.0.0.1/32"),
            ("ops", "denied 127.0.0.1/32"),
        ]
    );
    drop(open);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_rule_reaches_every_node_sharing_the_database() {
    use microbot_server::testing::storage::admin::{AdminStorage as _, IpRuleRecord};
    let pg = match std::env::var("MICROBOT_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            eprintln!(
                "admin_accounts::a_dashboard_rule_reaches_every_node: MICROBOT_TEST_POSTGRES is not set, skipped"
            );
            return;
        }
    };
    let schema = engines::Schema::new(&pg, "admin_rule_nodes");
    let on_schema = |c: &mut microbot_server::Config| {
        c.storage = Some(microbot_server::config::SecretUrl::new(schema.url.clone()));
        c.storage_pool_size = 2;
    };
    let a = TestServer::start_with(on_schema).await;
    let b = TestServer::start_with(on_schema).await;
    assert!(try_connect(&a).await.is_ok() && try_connect(&b).await.is_ok());
    // Another node's dashboard stores a rule: both nodes refuse within the refresh period.
    let url = schema.url.clone();
    let other = tokio::spawn(async move {
        microbot_server::testing::storage::postgres::PostgresStorage::open(&url, 1)
            .await
            .unwrap()
    })
    .await
    .unwrap();
    let other = std::sync::Arc::new(other);
    let store = std::sync::Arc::clone(&other);
    tokio::spawn(async move {
        store
            .add_ip_rule(&IpRuleRecord {
                kind: "deny".into(),
                cidr: "127.0.0.0/8".into(),
                created_by: "ops".into(),
                created_at_ms: 1,
            })
            .await
    })
    .await
    .unwrap()
    .unwrap();
    for node in [&a, &b] {
        let mut tries = 0;
        while try_connect(node).await.is_ok() {
            tries += 1;
            assert!(tries < 40, "the rule did not reach a node in 10 s");
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }
    let store = std::sync::Arc::clone(&other);
    tokio::spawn(async move { store.remove_ip_rule("127.0.0.0/8").await })
        .await
        .unwrap()
        .unwrap();
    for node in [&a, &b] {
        let mut tries = 0;
        while try_connect(node).await.is_err() {
            tries += 1;
            assert!(tries < 40, "the removal did not reach a node in 10 s");
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }
    a.stop().await;
    b.stop().await;
}

/// A login of `device_id` on a new connection; the error it gets.
async fn refused_login(
    server: &TestServer,
    device_id: u64,
    key: &ed25519_dalek::SigningKey,
) -> microbot_protocol::transport::Error {
    let mut client = server.client().await;
    let signature = login_signature(key, &client.challenge.clone(), device_id);
    client
        .request_err(client_frame::Request::Login(LoginRequest {
            device_id,
            signature,
        }))
        .await
}

#[tokio::test]
async fn an_admin_suspends_a_device_and_an_account_and_lifts_it() {
    use microbot_protocol::transport::ErrorCode;
    let dir = tempfile::tempdir().unwrap();
    let mut ops = add_admin(dir.path(), "ops", "admin", "correct horse battery");
    let mut watch = add_admin(dir.path(), "watch", "viewer", "viewer password");
    let server = TestServer::start_in(dir, |c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let addr = server.metrics_addr.unwrap();
    let admin = sign_in(addr, "ops", "correct horse battery", &mut ops).await;
    let viewer = sign_in(addr, "watch", "viewer password", &mut watch).await;
    let mut bob = new_device(&server, "bob").await;
    let mut bob_phone = server.client().await;
    let (phone_id, phone_key) = enrol(&mut bob_phone, &mut bob.account).await;
    login(&mut bob_phone, phone_id, &phone_key).await;
    let mut alice = new_device(&server, "alice").await;
    let path = "/admin/api/suspensions";
    let phone = format!(r#"{{"kind":"device","username":"bob","device_id":{phone_id}}}"#);

    // Viewers read and change nothing; bad targets are typed errors.
    let list = request(addr, "GET", path, &[&viewer], "").await;
    assert_eq!(
        (list.status, list.body.as_str()),
        (200, r#"{"suspensions":[]}"#)
    );
    let refused = request(addr, "POST", path, &[&viewer, CSRF], &phone).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(
        request(addr, "POST", path, &[&admin], &phone).await.status,
        403
    );
    for (bad, status, why) in [
        (
            r#"{"kind":"account","username":"nobody"}"#.to_owned(),
            404,
            "no account",
        ),
        (
            format!(r#"{{"kind":"device","username":"alice","device_id":{phone_id}}}"#),
            404,
            "has no device",
        ),
        (
            r#"{"kind":"device","username":"bob"}"#.to_owned(),
            400,
            "needs device_id",
        ),
        (
            r#"{"kind":"group","username":"bob"}"#.to_owned(),
            400,
            "account or device",
        ),
    ] {
        let answer = request(addr, "POST", path, &[&admin, CSRF], &bad).await;
        assert_eq!(answer.status, status, "{bad}: {}", answer.body);
        assert!(answer.body.contains(why), "{bad}: {}", answer.body);
    }

    // Bob's phone is suspended: its connection closes with ACCOUNT_SUSPENDED,
    // its login is refused; Bob's other device carries on.
    let added = request(addr, "POST", path, &[&admin, CSRF], &phone).await;
    assert_eq!(added.status, 200, "{}", added.body);
    assert!(
        added.body.contains(&format!(
            r#"{{"kind":"device","username":"bob","device_id":{phone_id},"created_by":"ops""#
        )),
        "{}",
        added.body
    );
    let closed = bob_phone.closed().await;
    assert_eq!(closed.close_code, Some(ErrorCode::AccountSuspended as u64));
    assert_eq!(
        closed.closing.map(|e| e.code),
        Some(ErrorCode::AccountSuspended as i32)
    );
    let error = refused_login(&server, phone_id, &phone_key).await;
    assert_eq!(code(&error), ErrorCode::AccountSuspended);
    assert!(error.message.contains("device"), "{}", error.message);
    let again = request(addr, "POST", path, &[&admin, CSRF], &phone).await;
    assert_eq!(again.status, 400);
    assert!(again.body.contains("suspended already"), "{}", again.body);
    assert!(matches!(
        bob.client
            .request(client_frame::Request::ListDevices(Default::default()))
            .await,
        server_response::Result::DeviceList(_)
    ));

    // Alice's account: every device, and the error says so.
    let account = r#"{"kind":"account","username":"alice"}"#;
    assert_eq!(
        request(addr, "POST", path, &[&admin, CSRF], account)
            .await
            .status,
        200
    );
    let closed = alice.client.closed().await;
    assert_eq!(closed.close_code, Some(ErrorCode::AccountSuspended as u64));
    let error = refused_login(&server, alice.device_id, &alice.key).await;
    assert_eq!(code(&error), ErrorCode::AccountSuspended);
    assert!(error.message.contains("account"), "{}", error.message);

    // Lifting: viewers may not; the admin may, and the phone logs in again.
    let lift = format!("{path}?kind=device&username=bob&device_id={phone_id}");
    assert_eq!(
        request(addr, "DELETE", &lift, &[&viewer, CSRF], "")
            .await
            .status,
        403
    );
    let lifted = request(addr, "DELETE", &lift, &[&admin, CSRF], "").await;
    assert_eq!(lifted.status, 200, "{}", lifted.body);
    assert!(
        !lifted.body.contains(r#""kind":"device""#),
        "{}",
        lifted.body
    );
    assert!(
        lifted
            .body
            .contains(r#""kind":"account","username":"alice""#)
    );
    reconnect(&server, phone_id, &phone_key).await;
    assert_eq!(
        request(addr, "DELETE", &lift, &[&admin, CSRF], "")
            .await
            .status,
        404
    );

    let log = server_audit(&server).await;
    let changes: Vec<(&str, String)> = log
        .iter()
        .filter(|e| e.action == "suspension")
        .map(|e| (e.admin.as_str(), e.detail.clone()))
        .collect();
    assert_eq!(
        changes,
        [
            (
                "ops",
                format!("lifted the suspension of device {phone_id} of bob")
            ),
            ("ops", "suspended account alice".to_owned()),
            ("ops", format!("suspended device {phone_id} of bob")),
        ]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_on_one_node_closes_the_device_on_another() {
    use microbot_protocol::transport::ErrorCode;
    use microbot_server::testing::storage::admin::{AdminRole, AdminStorage as _};
    let Some((pg, redis)) = engines::services("admin_accounts::a_suspension_on_one_node") else {
        return;
    };
    let schema = engines::Schema::new(&pg, "admin_suspend_nodes");
    let namespace = format!("test-suspend-{}", engines::random_hex(4));
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
    // An admin in the shared database (what `admin add --storage …` makes).
    let url = schema.url.clone();
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
    let mut ops = Authenticator::from_base32(&secret);
    let admin = sign_in(
        a.metrics_addr.unwrap(),
        "ops",
        "correct horse battery",
        &mut ops,
    )
    .await;
    // Bob's device is connected to node B; node A's dashboard suspends it.
    let mut bob = new_device(&b, "bob").await;
    let body = format!(
        r#"{{"kind":"device","username":"bob","device_id":{}}}"#,
        bob.device_id
    );
    let added = request(
        a.metrics_addr.unwrap(),
        "POST",
        "/admin/api/suspensions",
        &[&admin, CSRF],
        &body,
    )
    .await;
    assert_eq!(added.status, 200, "{}", added.body);
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), bob.client.closed())
        .await
        .expect("node B closed the suspended device's connection");
    assert_eq!(closed.close_code, Some(ErrorCode::AccountSuspended as u64));
    // And node B refuses its login (the table is shared).
    let error = refused_login(&b, bob.device_id, &bob.key).await;
    assert_eq!(code(&error), ErrorCode::AccountSuspended);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn the_report_counts_what_was_sent_for_any_role() {
    let dir = tempfile::tempdir().unwrap();
    let mut watch = add_admin(dir.path(), "watch", "viewer", "viewer password");
    let server = TestServer::start_in(dir, |c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let addr = server.metrics_addr.unwrap();
    let today = microbot_server::testing::storage::analytics::format_day(
        microbot_server::testing::storage::analytics::day_of(
            microbot_server::testing::clock::system_now_ms(),
        ),
    );
    let path = format!("/admin/api/report?since={today}&format=json");
    assert_eq!(request(addr, "GET", &path, &[], "").await.status, 401);
    let viewer = sign_in(addr, "watch", "viewer password", &mut watch).await;
    let mut alice = new_device(&server, "alice").await;
    let bob = new_device(&server, "bob").await;
    // Three one-to-one messages, one of them to two devices: four envelopes.
    let mut bob_laptop = server.client().await;
    let mut bob_account = bob.account;
    let (laptop, _) = enrol(&mut bob_laptop, &mut bob_account).await;
    for targets in [
        vec![bob.device_id],
        vec![bob.device_id],
        vec![bob.device_id, laptop],
    ] {
        let envelopes: Vec<_> = targets.iter().map(|d| (*d, random_bytes(64))).collect();
        assert!(matches!(
            send_to(&mut alice.client, &envelopes).await,
            server_response::Result::Send(_)
        ));
    }
    // The report adds this node's pending counts first: no waiting.
    let answer = request(addr, "GET", &path, &[&viewer], "").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer.head.contains(&format!(
            "content-disposition: attachment; filename=\"microbot-report-{today}-{today}.json\""
        )),
        "{}",
        answer.head
    );
    let report: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    let day = &report["days"][0];
    assert_eq!(day["start"], today.as_str());
    assert_eq!(day["messages"], 4, "{}", answer.body);
    assert_eq!(day["group_messages"], 0);
    assert_eq!(day["active_accounts"], 2, "{}", answer.body);
    assert_eq!(day["active_devices"], 2, "{}", answer.body);
    assert!(!answer.body.contains("alice") && !answer.body.contains("bob"));
    let csv = request(
        addr,
        "GET",
        &format!("/admin/api/report?since={today}&format=csv"),
        &[&viewer],
        "",
    )
    .await;
    assert_eq!(csv.status, 200);
    assert!(csv.head.contains("content-type: text/csv"), "{}", csv.head);
    assert!(
        csv.body
            .lines()
            .any(|l| l == format!("day,{today},messages,4")),
        "{}",
        csv.body
    );
    for bad in [
        "/admin/api/report?since=yesterday",
        "/admin/api/report",
        &format!("/admin/api/report?since={today}&format=xml"),
        "/admin/api/report?since=2999-01-01",
    ] {
        let answer = request(addr, "GET", bad, &[&viewer], "").await;
        assert_eq!(answer.status, 400, "{bad}: {}", answer.body);
        assert!(
            answer.body.contains("bad_request"),
            "{bad}: {}",
            answer.body
        );
    }
    server.stop().await;
}
