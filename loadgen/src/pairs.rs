//! Workload (a), transport path: devices in pairs, each sending `messages`
//! payloads to its partner as one-envelope `SendRequest`s (pre-encrypted:
//! the bytes are opaque to the server, so this measures the server alone).
//! Device `i` pairs with device `i ^ 1`. Spread over `n > 1` cluster
//! nodes (`provision::login_spread`: device `i` on node `i % n`), partners
//! always sit on different nodes (`i` and `i ^ 1` are consecutive
//! integers), so every message crosses the bus between nodes.
//!
//! The same plans run against the microbot server and the relay floor.
//! Not owned here: the engine (driver.rs); the SDK path with crypto (sdk.rs).

use std::sync::Arc;

use microbot_protocol::transport::{OutgoingEnvelope, SendRequest, client_frame::Request};

use crate::driver::{DriveConfig, DriveReport, Plan, drive};
use crate::error::{LoadError, LoadResult};
use crate::wire::RequestChannel;

/// One plan per device: `messages` sends to the partner's device id.
///
/// # Errors
/// [`LoadError::Invalid`] for an odd or empty device list.
pub fn plans(device_ids: &[u64], messages: u64) -> LoadResult<Vec<Plan>> {
    if device_ids.is_empty() || !device_ids.len().is_multiple_of(2) {
        return Err(LoadError::Invalid(
            "pairs need an even, non-zero device count",
        ));
    }
    Ok((0..device_ids.len())
        .map(|i| {
            let partner = device_ids.get(i ^ 1).copied().unwrap_or(0);
            Plan {
                sends: messages,
                fan_out: 1,
                build: Arc::new(move |ciphertext| {
                    Request::Send(SendRequest {
                        envelopes: vec![OutgoingEnvelope {
                            recipient_device_id: partner,
                            ciphertext,
                        }],
                        complete_accounts: Vec::new(),
                    })
                }),
            }
        })
        .collect())
}

/// Runs the pairs workload on logged-in channels of `device_ids` (same order).
///
/// # Errors
/// As [`drive`].
pub async fn run(
    channels: Vec<RequestChannel>,
    device_ids: &[u64],
    messages: u64,
    config: &DriveConfig,
) -> LoadResult<DriveReport> {
    drive(channels, plans(device_ids, messages)?, config).await
}

#[cfg(test)]
mod tests {
    use crate::provision::node_of;

    #[test]
    fn partners_sit_on_different_nodes_in_every_cluster() {
        for nodes in 2..=8 {
            for i in 0..256 {
                assert_ne!(node_of(i, nodes), node_of(i ^ 1, nodes), "{i} on {nodes}");
            }
        }
        assert!((0..8).all(|i| node_of(i, 1) == 0));
    }
}
