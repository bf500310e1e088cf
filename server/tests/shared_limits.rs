//! Rate limits and login back-off hold across nodes when they share Redis:
//! two `Limits` (two nodes) on one Redis namespace share every bucket and
//! every back-off record. With Redis unreachable, each node still enforces
//! its own limits. Needs `MICROBOT_TEST_REDIS` for the shared half.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;

use microbot_protocol::transport::client_frame::Request;
use microbot_protocol::transport::{ConfirmRegistrationRequest, ErrorCode, RegisterRequest};
use microbot_server::Config;
use microbot_server::testing::error::ApiError;
use microbot_server::testing::limits::Limits;
use microbot_server::testing::limits::shared::SharedLimits;
use microbot_server::testing::metrics::Metrics;

fn config() -> Config {
    Config {
        rate_register_per_ip: 3,
        rate_login_per_ip: 0,
        rate_login_per_account: 0,
        login_backoff_after_failures: 2,
        login_backoff_base_ms: 60_000,
        ..Config::default()
    }
}

fn register() -> Request {
    Request::Register(RegisterRequest {
        username: "someone".into(),
        password: "whatever-password".into(),
        bot: false,
    })
}

fn confirm(username: &str) -> Request {
    Request::ConfirmRegistration(ConfirmRegistrationRequest {
        username: username.into(),
        password: "whatever-password".into(),
        totp_code: "123456".into(),
    })
}

fn allowed(limits: &Limits, ip: IpAddr, request: &Request) -> Result<(), u64> {
    match limits.check_request(&Metrics::default(), ip, None, request) {
        Ok(_attempt) => Ok(()),
        Err(e) => {
            let e = ApiError::from(e);
            assert_eq!(e.code, ErrorCode::RateLimited);
            assert!(e.retry_after_ms > 0);
            Err(e.retry_after_ms)
        }
    }
}

fn node(redis: &str, namespace: &str) -> Limits {
    Limits::with_shared(
        &config(),
        Some(SharedLimits::new(redis, namespace).unwrap()),
    )
}

#[test]
fn buckets_and_back_off_are_shared_by_the_nodes() {
    let Ok(redis) = std::env::var("MICROBOT_TEST_REDIS") else {
        eprintln!("shared_limits: MICROBOT_TEST_REDIS not set, skipped (scripts/services.sh)");
        return;
    };
    let mut tag = [0u8; 4];
    rand::fill(&mut tag);
    let namespace = format!("test-limits-{}", hex::encode(tag));
    let (a, b) = (node(&redis, &namespace), node(&redis, &namespace));
    let ip: IpAddr = "192.0.2.7".parse().unwrap();

    // 3 registrations per minute per IP, whichever node they reach.
    assert!(allowed(&a, ip, &register()).is_ok());
    assert!(allowed(&b, ip, &register()).is_ok());
    assert!(allowed(&a, ip, &register()).is_ok());
    let wait = allowed(&b, ip, &register()).unwrap_err();
    assert!((1..=20_000).contains(&wait), "{wait}");
    assert!(allowed(&a, ip, &register()).is_err());
    assert!(allowed(&a, "192.0.2.8".parse().unwrap(), &register()).is_ok());

    // Two failed credential checks on node A lock the account on node B.
    assert!(allowed(&b, ip, &confirm("carol")).is_ok());
    a.record_credentials(ip, "carol", Err(ErrorCode::InvalidCredentials))
        .unwrap();
    assert!(
        allowed(&b, ip, &confirm("carol")).is_ok(),
        "one failure: no lock"
    );
    b.record_credentials(ip, "carol", Err(ErrorCode::TotpReplayed))
        .unwrap();
    let locked = allowed(&a, ip, &confirm("carol")).unwrap_err();
    assert!((50_000..=60_000).contains(&locked), "{locked}");
    assert!(allowed(&b, ip, &confirm("carol")).is_err());
    assert!(allowed(&b, ip, &confirm("dave")).is_ok(), "per account");
    // The record is per source: carol from elsewhere is not locked.
    assert!(allowed(&b, "192.0.2.99".parse().unwrap(), &confirm("carol")).is_ok());
    // A success on one node clears it everywhere.
    a.record_credentials(ip, "frank", Err(ErrorCode::InvalidCredentials))
        .unwrap();
    b.record_credentials(ip, "frank", Ok(())).unwrap();
    a.record_credentials(ip, "frank", Err(ErrorCode::InvalidCredentials))
        .unwrap();
    assert!(allowed(&b, ip, &confirm("frank")).is_ok(), "cleared");
    // Attempts in flight count on every node: two reserved (the
    // threshold), a third is refused until one is settled.
    let first = a.check_request(&Metrics::default(), ip, None, &confirm("gina"));
    let second = b.check_request(&Metrics::default(), ip, None, &confirm("gina"));
    assert!(first.as_ref().is_ok_and(Option::is_some));
    assert!(second.as_ref().is_ok_and(Option::is_some));
    assert!(allowed(&a, ip, &confirm("gina")).is_err(), "two in flight");
    drop(first);
    assert!(allowed(&b, ip, &confirm("gina")).is_ok(), "one released");
    drop(second);

    // A third node with another namespace is another cluster.
    let other = node(&redis, &format!("{namespace}-other"));
    assert!(allowed(&other, ip, &register()).is_ok());
}

#[test]
fn with_redis_unreachable_each_node_keeps_its_own_limits() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let a = node(&format!("redis://127.0.0.1:{port}/"), "test-limits-down");
    let ip: IpAddr = "192.0.2.9".parse().unwrap();
    for _ in 0..3 {
        assert!(allowed(&a, ip, &register()).is_ok());
    }
    assert!(
        allowed(&a, ip, &register()).is_err(),
        "local bucket still applies"
    );
    a.record_credentials(ip, "erin", Err(ErrorCode::InvalidCredentials))
        .unwrap();
    a.record_credentials(ip, "erin", Err(ErrorCode::InvalidCredentials))
        .unwrap();
    assert!(allowed(&a, ip, &confirm("erin")).is_err(), "local back-off");
}
