//! Issue 14, the quota buckets across nodes: two `Limits` (two nodes) on one
//! Redis namespace share the send fan-out weight and the group and prekey
//! quotas, so a sender cannot multiply its allowance by spreading its sends
//! over the nodes (SPEC.md §12.12). Needs `MICROBOT_TEST_REDIS`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::engines;

use microbot_protocol::transport::ErrorCode;
use microbot_server::Config;
use microbot_server::testing::error::ApiError;
use microbot_server::testing::limits::Limits;
use microbot_server::testing::limits::shared::SharedLimits;
use microbot_server::testing::metrics::Metrics;

fn node(redis: &str, namespace: &str) -> Limits {
    let config = Config {
        rate_send_per_account: 6,
        rate_prekey_fetch_per_target: 2,
        ..Config::default()
    };
    Limits::with_shared(&config, Some(SharedLimits::new(redis, namespace).unwrap()))
}

#[test]
fn the_fan_out_weight_and_quotas_hold_across_nodes() {
    let Some(redis) = std::env::var("MICROBOT_TEST_REDIS")
        .ok()
        .filter(|r| !r.is_empty())
    else {
        eprintln!("review_shared_quotas: MICROBOT_TEST_REDIS is not set, skipped");
        return;
    };
    let namespace = format!("q{}", engines::random_hex(6));
    let (a, b) = (node(&redis, &namespace), node(&redis, &namespace));
    let metrics = Metrics::default();
    // Four recipient devices on node a leave two tokens for node b.
    a.charge_fan_out(&metrics, 7, 4).unwrap();
    let refused = ApiError::from(b.charge_fan_out(&metrics, 7, 4).unwrap_err());
    assert_eq!(refused.code, ErrorCode::RateLimited);
    assert!(refused.retry_after_ms >= 1);
    b.charge_fan_out(&metrics, 7, 2).unwrap();
    // A group send settled on one node puts the account in debt on both.
    let group = [8u8; 16];
    let reserved = a.admit_group_fan_out(&metrics, 8, &group).unwrap();
    a.settle_group_fan_out(8, &group, reserved, 20);
    assert!(b.admit_group_fan_out(&metrics, 8, &group).is_err());
    // Prekey fetches of one target by one fetcher, spread over the nodes.
    a.check_prekey_fetch(&metrics, 1, 2).unwrap();
    b.check_prekey_fetch(&metrics, 1, 2).unwrap();
    assert!(a.check_prekey_fetch(&metrics, 1, 2).is_err());
    assert!(
        b.check_prekey_fetch(&metrics, 3, 2).is_ok(),
        "another fetcher"
    );
}
