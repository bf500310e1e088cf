//! The `server_handler` target's seeds reach the states they are meant to
//! (so the fuzzer starts deep in the protocol), and its invariants hold on
//! hand-written hostile sequences.

use microbot_fuzz_targets::server_handler::{
    FIXTURE_DEVICE_IDS, Outcomes, Script, outcomes, seeds,
};
use microbot_protocol::transport::{self, ErrorCode, client_frame::Request};

fn seed(name: &str) -> Outcomes {
    let (_, bytes) = seeds()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no seed {name}"));
    outcomes(&bytes)
}

fn succeeded(o: &Outcomes, kinds: &[&str]) {
    for kind in kinds {
        assert!(
            o.successes.get(kind).copied().unwrap_or(0) > 0,
            "no successful {kind}: {o:?}"
        );
    }
}

#[test]
fn seeds_log_in_send_fetch_and_acknowledge() {
    let o = seed("login-prekeys-send-fetch-ack");
    succeeded(
        &o,
        &[
            "login",
            "upload_prekeys",
            "fetch_prekeys",
            "send",
            "fetch_envelopes",
            "ack_envelopes",
            "list_devices",
        ],
    );
    assert!(o.envelopes >= 3, "{o:?}");
    assert_eq!(o.closes, 0);
}

#[test]
fn pipelined_frames_are_answered_in_order_with_the_same_checks() {
    let o = seed("pipelined");
    succeeded(&o, &["send", "fetch_envelopes", "ack_envelopes"]);
    assert_eq!(o.successes.get("send").copied(), Some(8), "{o:?}");
    assert_eq!(
        o.successes.get("fetch_envelopes").copied(),
        Some(2),
        "{o:?}"
    );
    assert_eq!(o.successes.get("ack_envelopes").copied(), Some(3), "{o:?}");
    // The garbage frame after the last two sends closes the connection,
    // after their answers.
    assert_eq!(o.closes, 1, "{o:?}");
    // Bob's four arrive as pushes or in his fetch (carol is not connected).
    assert!(o.envelopes >= 4, "{o:?}");
    assert!(o.errors.is_empty(), "{o:?}");
}

#[test]
fn seeds_run_the_group_life_cycle() {
    let o = seed("groups");
    succeeded(
        &o,
        &[
            "create_group",
            "send_group",
            "get_group",
            "add_group_members",
            "set_group_role",
            "set_group_metadata",
            "remove_group_members",
            "leave_group",
        ],
    );
    assert!(o.envelopes >= 1, "{o:?}");
}

#[test]
fn seeds_register_enrol_and_manage_accounts_with_the_harness_secrets() {
    let o = seed("register-enrol-login-delete");
    succeeded(
        &o,
        &[
            "register",
            "confirm_registration",
            "enrol_device",
            "login",
            "send",
            "change_password",
            "delete_account",
        ],
    );
    let o = seed("second-device-removed");
    succeeded(&o, &["enrol_device", "remove_device", "list_devices"]);
    let o = seed("attachments");
    succeeded(&o, &["attachment_upload"]);
}

#[test]
fn protocol_violations_close_only_their_connection() {
    let o = seed("protocol-violations");
    // No Hello first, no common version, Hello twice, a bad body, an empty
    // body on a connection still waiting for Hello... each closes one slot.
    assert!(o.closes >= 4, "{o:?}");
    succeeded(&o, &["hello"]);
}

#[test]
fn requests_before_login_are_refused_and_carol_is_out_of_reach() {
    let [_, bob, carol] = FIXTURE_DEVICE_IDS;
    let mut s = Script::new();
    s.request(
        0,
        Request::Hello(transport::Hello {
            versions: vec![1],
            client_agent: String::new(),
        }),
    )
    .request(
        0,
        Request::Send(transport::SendRequest {
            envelopes: vec![transport::OutgoingEnvelope {
                recipient_device_id: bob,
                ciphertext: vec![1; 10].into(),
            }],
            complete_accounts: Vec::new(),
        }),
    )
    // The harness signs only for alice and bob: carol's login fails.
    .request(0, Request::Challenge(transport::ChallengeRequest {}))
    .magic(
        0,
        Request::Login(transport::LoginRequest {
            device_id: carol,
            signature: bytes::Bytes::new(),
        }),
    )
    // Nor does it know carol's TOTP secret or password.
    .magic(
        1,
        Request::EnrolDevice(transport::EnrolDeviceRequest {
            username: "carol".into(),
            password: "password".into(),
            second_factor: Some(transport::SecondFactor {
                factor: Some(transport::second_factor::Factor::TotpCode("totp".into())),
            }),
            device_public_key: bytes::Bytes::new(),
            device_name: String::new(),
        }),
    );
    let o = outcomes(&s.bytes());
    assert_eq!(
        o.errors.get(&(ErrorCode::NotAuthenticated as i32)),
        Some(&1),
        "{o:?}"
    );
    assert!(!o.successes.contains_key("login"), "{o:?}");
    assert!(!o.successes.contains_key("enrol_device"), "{o:?}");
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A few structured-looking and random inputs (the fuzzer does the rest).
    let mut inputs: Vec<Vec<u8>> = vec![Vec::new(), vec![0], vec![0xff; 64], (0..=255).collect()];
    for (_, seed) in seeds() {
        let mut cut = seed.clone();
        cut.truncate(seed.len() / 2);
        inputs.push(cut);
        let mut flipped = seed.clone();
        for b in flipped.iter_mut().step_by(7) {
            *b ^= 0x5a;
        }
        inputs.push(flipped);
    }
    for input in inputs {
        outcomes(&input);
    }
}
