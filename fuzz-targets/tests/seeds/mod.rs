//! Seed inputs for every target, built from real data: the fixtures' real
//! messages and states, encoded real frames and contents, and the JSON test
//! vectors in `test-vectors/vectors/`.
//!
//! `generate_seeds` (ignored) writes them to `fuzz/seeds/<target>/`;
//! `seeds_pass_their_targets` runs them in memory on every `cargo test`.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use microbot_crypto::ratchet::RatchetSession;
use microbot_fuzz_targets::fixtures;
use microbot_protocol::codec::encode_frame_to_vec;
use microbot_protocol::content::{
    AttachmentPointer, CallOffer, Content, GroupChange, GroupMetadata, ReplyTo, TypingAction,
    call_signal,
};
use microbot_protocol::padding::pad_to_bucket;
use microbot_protocol::transport::{
    self, ClientFrame, Envelope, Envelopes, Hello, OutgoingEnvelope, Push, Response, SendRequest,
    ServerFrame, client_frame::Request, push, response, server_frame,
};
use prost::Message;
use rand_core::Rng;
use serde_json::Value;

/// One seed: target, file name, bytes.
pub struct Seed {
    pub target: &'static str,
    pub name: String,
    pub bytes: Vec<u8>,
}

fn seed(target: &'static str, name: impl Into<String>, bytes: Vec<u8>) -> Seed {
    Seed {
        target,
        name: name.into(),
        bytes,
    }
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every vector of one JSON file in `test-vectors/vectors/`.
fn vectors(kind: &str) -> Vec<Value> {
    let path = repo_root().join(format!("test-vectors/vectors/{kind}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let file: Value = serde_json::from_str(&text).unwrap();
    file["vectors"].as_array().unwrap().clone()
}

fn hex_field(value: &Value, field: &str) -> Vec<u8> {
    hex::decode(value[field].as_str().unwrap_or_else(|| panic!("{field}"))).unwrap()
}

/// Every seed of every target.
pub fn all() -> Vec<Seed> {
    let mut seeds = Vec::new();
    seeds.extend(frame_decoder());
    seeds.extend(client_frames());
    seeds.extend(server_frames());
    seeds.extend(contents());
    seeds.extend(session_messages());
    seeds.extend(sender_key_messages());
    seeds.extend(sealed_envelopes());
    seeds.extend(attachments());
    seeds.extend(stored_states());
    seeds.extend(structured());
    seeds.extend(server_handler());
    seeds.extend(bot_inputs());
    seeds.extend(device_lists());
    seeds.extend(admin_inputs());
    seeds.extend(attachment_http_paths());
    seeds.extend(conn_machine());
    seeds
}

/// Attachment ids and `If-None-Match` values as HTTP requests carry them
/// (SPEC.md §12.16).
fn attachment_http_paths() -> Vec<Seed> {
    [
        ("id", &b"00112233445566778899aabbccddeeff"[..]),
        ("id-upper", b"00112233445566778899AABBCCDDEEFF"),
        (
            "if-none-match-list",
            b"\"ffff\", W/\"00112233445566778899aabbccddeeff\"",
        ),
        ("if-none-match-any", b"*"),
    ]
    .into_iter()
    .map(|(name, bytes)| seed("attachment_http_path", name, bytes.to_vec()))
    .collect()
}

/// Node snapshots as a node reads them from the bus (SPEC.md §18.7 Nodes).
fn admin_inputs() -> Vec<Seed> {
    let snapshot = br#"{"id":"00112233445566778899aabbccddeeff","address":"0.0.0.0:7447","version":"0.1.0","ready":true,"connections_quic":3,"connections_websocket":1,"connections_quic_total":9,"connections_websocket_total":2,"queued_envelopes":12,"memory_bytes":52428800,"cpu_seconds":12.5,"at_ms":1800000000000}"#;
    [
        ("node-snapshot", &snapshot[..]),
        ("rate-limit-name", b"rate_send_per_account"),
        ("range", b"30d"),
        ("stored-minute", br#"{"at":1800000000,"secs":60,"messages":120,"deliveries":240,"logins":2,"failed":1,"connection_secs":180,"queued_sum":600,"queued_secs":60,"attachment_in":1000,"attachment_out":3000,"cpu_ms":1500,"cpu_secs":60,"memory_sum":62914560,"memory_secs":60,"latency":[[0,3],[28,100],[40,2]]}"#),
        ("node-snapshot-nulls", br#"{"id":"local","address":"","version":"0","ready":false,"connections_quic":0,"connections_websocket":0,"connections_quic_total":0,"connections_websocket_total":0,"queued_envelopes":null,"memory_bytes":null,"cpu_seconds":null,"at_ms":0}"#),
        ("node-snapshot-empty-id", br#"{"id":"","address":"","version":"0","ready":false,"connections_quic":0,"connections_websocket":0,"connections_quic_total":0,"connections_websocket_total":0,"queued_envelopes":null,"memory_bytes":null,"cpu_seconds":null,"at_ms":0}"#),
    ]
    .into_iter()
    .map(|(name, bytes)| seed("admin_input", name, bytes.to_vec()))
    .collect()
}

/// Signed device lists (SPEC.md §20): the fixture's genuine list, and the
/// signed and refused lists of the `device_list` vectors.
fn device_lists() -> Vec<Seed> {
    let mut out = vec![seed(
        "device_list_parse",
        "genuine",
        microbot_fuzz_targets::device_list::fixture().signed.clone(),
    )];
    for vector in vectors("device_list") {
        let name = vector["name"].as_str().unwrap_or("vector").to_owned();
        let field = if vector["input"]["op"] == "sign" {
            &vector["output"]
        } else {
            &vector["input"]
        };
        let bytes = hex_field(field, "signed_device_list");
        if !bytes.is_empty() {
            out.push(seed("device_list_parse", name, bytes));
        }
    }
    out
}

/// Frame sequences for the server's request handler (built by the target's
/// own `Script`, so they follow its input format).
fn conn_machine() -> Vec<Seed> {
    microbot_fuzz_targets::conn_machine::seeds()
        .into_iter()
        .map(|(name, bytes)| seed("conn_machine", name, bytes))
        .collect()
}

fn server_handler() -> Vec<Seed> {
    microbot_fuzz_targets::server_handler::seeds()
        .into_iter()
        .map(|(name, bytes)| seed("server_handler", name, bytes))
        .collect()
}

fn frame_decoder() -> Vec<Seed> {
    let mut seeds = Vec::new();
    for vector in vectors("framing") {
        let input = &vector["input"];
        if input["op"] != "decode" {
            continue;
        }
        let name = vector["name"].as_str().unwrap();
        let max = input["max_frame_len"].as_u64().unwrap();
        let client = u8::from(input["as_client_frames"].as_bool().unwrap_or(false));
        let (mode, max) = match u16::try_from(max) {
            Ok(max) => (client, max),
            Err(_) => (client | 2, 0),
        };
        let stream = hex_field(input, "stream");
        for (suffix, chunks) in [
            ("whole", &[][..]),
            ("bytewise", &[1][..]),
            ("cut-3-7", &[3, 7][..]),
        ] {
            let mut bytes = vec![mode];
            bytes.extend_from_slice(&max.to_le_bytes());
            bytes.push(chunks.len() as u8);
            bytes.extend_from_slice(chunks);
            bytes.extend_from_slice(&stream);
            seeds.push(seed("frame_decoder", format!("{name}-{suffix}"), bytes));
        }
    }
    // Real client frames back to back, default limit, cut in 5s.
    let mut stream = Vec::new();
    for frame in sample_client_frames().iter().take(8) {
        stream.extend(encode_frame_to_vec(frame).unwrap());
    }
    let mut bytes = vec![3, 0, 0, 1, 5];
    bytes.extend(stream);
    seeds.push(seed("frame_decoder", "client-frames-default-limit", bytes));
    seeds
}

fn sample_client_frames() -> Vec<ClientFrame> {
    let frame = |request_id, request| ClientFrame {
        request_id,
        request: Some(request),
    };
    let mut frames = vec![
        frame(
            1,
            Request::Hello(Hello {
                versions: vec![1, 2],
                client_agent: "microbot-fuzz/1".into(),
            }),
        ),
        frame(
            2,
            Request::Send(SendRequest {
                envelopes: vec![OutgoingEnvelope {
                    recipient_device_id: 7,
                    ciphertext: Bytes::from(fixtures::conversation().pending[3].bytes.clone()),
                }],
                complete_accounts: Vec::new(),
            }),
        ),
        frame(
            3,
            Request::Login(transport::LoginRequest {
                device_id: 9,
                signature: Bytes::from(vec![0x42; 64]),
            }),
        ),
        frame(
            4,
            Request::AckEnvelopes(transport::AckEnvelopesRequest {
                envelope_ids: vec![1, 2, u64::MAX],
            }),
        ),
        frame(
            5,
            Request::UploadPrekeys(transport::UploadPrekeysRequest {
                identity_key: Bytes::from(vec![1; 32]),
                signed_prekey: Some(transport::SignedPrekey {
                    id: 1,
                    public_key: Bytes::from(vec![2; 32]),
                    signature: Bytes::from(vec![3; 64]),
                }),
                one_time_prekeys: vec![transport::OneTimePrekey {
                    id: 4,
                    public_key: Bytes::from(vec![5; 32]),
                }],
                ..Default::default()
            }),
        ),
    ];
    // Every other request kind with default fields: the tags alone.
    let defaults = [
        Request::Register(Default::default()),
        Request::ConfirmRegistration(Default::default()),
        Request::EnrolDevice(Default::default()),
        Request::Challenge(Default::default()),
        Request::ChangePassword(Default::default()),
        Request::RemoveDevice(Default::default()),
        Request::DeleteAccount(Default::default()),
        Request::ListDevices(Default::default()),
        Request::FetchPrekeys(Default::default()),
        Request::PrekeyStatus(Default::default()),
        Request::FetchEnvelopes(Default::default()),
        Request::SendGroup(Default::default()),
        Request::CreateGroup(Default::default()),
        Request::AddGroupMembers(Default::default()),
        Request::RemoveGroupMembers(Default::default()),
        Request::LeaveGroup(Default::default()),
        Request::SetGroupRole(Default::default()),
        Request::GetGroup(Default::default()),
        Request::SetGroupMetadata(Default::default()),
        Request::AttachmentUpload(Default::default()),
        Request::AttachmentDownload(Default::default()),
    ];
    frames.extend(defaults.into_iter().zip(10..).map(|(r, id)| frame(id, r)));
    frames
}

fn client_frames() -> Vec<Seed> {
    let mut seeds: Vec<Seed> = sample_client_frames()
        .iter()
        .map(|frame| {
            let name = format!("request-{}", frame.request_id);
            seed("client_frame", name, frame.encode_to_vec())
        })
        .collect();
    for vector in vectors("framing") {
        let name = vector["name"].as_str().unwrap();
        if let Some(frames) = vector["output"]["frames"].as_array() {
            for (i, frame) in frames.iter().enumerate() {
                let body = hex::decode(frame.as_str().unwrap()).unwrap();
                seeds.push(seed("client_frame", format!("vector-{name}-{i}"), body));
            }
        }
    }
    seeds
}

fn server_frames() -> Vec<Seed> {
    let response = |request_id, result| ServerFrame {
        kind: Some(server_frame::Kind::Response(Response {
            request_id,
            result: Some(result),
        })),
    };
    let envelope = Envelope {
        envelope_id: 12,
        sender_username: "alice".into(),
        sender_device_id: 3,
        server_timestamp_ms: 1_700_000_000_000,
        ciphertext: Bytes::from(fixtures::conversation().pending[0].bytes.clone()),
        group_id: Bytes::new(),
    };
    let frames = vec![
        response(
            1,
            response::Result::Hello(transport::HelloResponse {
                version: 1,
                server_agent: "microbot-server/0.1.0".into(),
                challenge: Bytes::from(vec![9; 32]),
                limits: Some(transport::ServerLimits {
                    max_frame_len: 1 << 20,
                    max_envelope_len: 1 << 18,
                    max_queue_len: 10_000,
                    envelope_ttl_ms: 30 * 24 * 3600 * 1000,
                    prekey_low_stock_threshold: 10,
                }),
            }),
        ),
        response(
            2,
            response::Result::Error(transport::Error {
                code: transport::ErrorCode::UnsupportedVersion.into(),
                message: "no common version".into(),
                supported_versions: vec![1],
                ..Default::default()
            }),
        ),
        response(
            3,
            response::Result::Envelopes(Envelopes {
                envelopes: vec![envelope.clone()],
                more: true,
            }),
        ),
        response(4, response::Result::Ok(Default::default())),
        response(5, response::Result::PrekeyBundles(Default::default())),
        response(6, response::Result::Group(Default::default())),
        ServerFrame {
            kind: Some(server_frame::Kind::Push(Push {
                event: Some(push::Event::Envelope(envelope)),
            })),
        },
        ServerFrame {
            kind: Some(server_frame::Kind::Push(Push {
                event: Some(push::Event::PrekeyLowStock(Default::default())),
            })),
        },
        ServerFrame {
            kind: Some(server_frame::Kind::Closing(transport::Error {
                code: transport::ErrorCode::MalformedFrame.into(),
                message: "bad frame".into(),
                ..Default::default()
            })),
        },
    ];
    frames
        .iter()
        .enumerate()
        .map(|(i, f)| seed("server_frame", format!("frame-{i}"), f.encode_to_vec()))
        .collect()
}

fn contents() -> Vec<Seed> {
    let id = |n: u8| [n; 16];
    let distribution = fixtures::sender_keys().distributions[0].clone();
    let change = GroupChange {
        group_id: Bytes::from(id(9).to_vec()),
        version: 3,
        kind: 1,
        usernames: vec!["carol".into()],
        role: 1,
        metadata: Some(GroupMetadata {
            name: "fuzzers".into(),
            ..Default::default()
        }),
        metadata_key: Bytes::from(vec![7; 32]),
    };
    let contents = [
        ("text", Content::text(id(1), 1, "hello")),
        (
            "reply",
            Content::reply(id(2), 2, "yes", ReplyTo::new(id(1), "alice", "hello")),
        ),
        ("reaction", Content::reaction(id(3), 3, id(1), "👍", false)),
        ("edit", Content::edit(id(4), 4, id(1), 1, "hello!")),
        ("delete", Content::delete(id(5), 5, id(1))),
        ("read", Content::read_receipt(id(6), 6, [id(1), id(2)])),
        ("delivered", Content::delivery_receipt(id(7), 7, [id(1)])),
        ("typing", Content::typing(id(8), 8, TypingAction::Started)),
        (
            "attachment",
            Content::attachment(
                id(10),
                10,
                AttachmentPointer {
                    attachment_id: Bytes::from(id(11).to_vec()),
                    key: Bytes::from(vec![1; 32]),
                    digest: Bytes::from(fixtures::attachments()[1].digest.to_bytes().to_vec()),
                    size: 1,
                    content_type: "text/plain".into(),
                    file_name: "a.txt".into(),
                    ..Default::default()
                },
            ),
        ),
        ("group-change", Content::group_change(id(12), 12, change)),
        (
            "distribution",
            Content::sender_key_distribution(id(13), 13, id(9), distribution),
        ),
        (
            "call-offer",
            Content::call_signal(
                id(14),
                14,
                id(15),
                call_signal::Signal::Offer(CallOffer {
                    sdp: "v=0".into(),
                    video: true,
                }),
            ),
        ),
        (
            "group-text",
            Content::text(id(16), 16, "hi all").in_group(id(9)),
        ),
    ];
    let mut seeds = Vec::new();
    for (name, mut content) in contents {
        seeds.push(seed("content", name, content.encode_to_vec()));
        pad_to_bucket(&mut content);
        seeds.push(seed(
            "content",
            format!("{name}-padded"),
            content.encode_to_vec(),
        ));
    }
    seeds
}

fn session_messages() -> Vec<Seed> {
    let conversation = fixtures::conversation();
    let mut seeds: Vec<Seed> = conversation
        .pending
        .iter()
        .chain(&conversation.delivered)
        .map(|s| seed("session_decrypt", s.name, s.bytes.clone()))
        .collect();
    for sample in fixtures::initial_messages() {
        seeds.push(seed("prekey_message", sample.name, sample.bytes.clone()));
        seeds.push(seed(
            "session_decrypt",
            format!("initial-{}", sample.name),
            sample.bytes.clone(),
        ));
    }
    for vector in vectors("ratchet") {
        for (i, message) in vector["output"]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            if i % 5 != 0 {
                continue;
            }
            let mut bytes = vec![microbot_crypto::session::MESSAGE_TYPE_RATCHET];
            bytes.extend(hex_field(message, "message"));
            seeds.push(seed(
                "session_decrypt",
                format!("vector-ratchet-{i}"),
                bytes,
            ));
        }
    }
    seeds
}

fn sender_key_messages() -> Vec<Seed> {
    let keys = fixtures::sender_keys();
    let mut seeds: Vec<Seed> = keys
        .pending
        .iter()
        .chain(&keys.second_generation)
        .chain(&keys.delivered)
        .map(|s| seed("sender_key_decrypt", s.name, s.bytes.clone()))
        .collect();
    for vector in vectors("sender_key") {
        for (i, message) in vector["output"]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            let bytes = hex_field(message, "message");
            seeds.push(seed("sender_key_decrypt", format!("vector-{i}"), bytes));
        }
    }
    seeds
}

fn sealed_envelopes() -> Vec<Seed> {
    let f = microbot_fuzz_targets::sealed_sender::fixture();
    let envelope = &f.envelope;
    vec![
        seed("sealed_sender_open", "genuine", envelope.clone()),
        seed("sealed_sender_open", "certificate", f.certificate.clone()),
        seed("sealed_sender_open", "header-only", envelope[..81].to_vec()),
        seed(
            "sealed_sender_open",
            "last-byte-flipped",
            envelope
                .iter()
                .enumerate()
                .map(|(i, b)| if i + 1 == envelope.len() { b ^ 1 } else { *b })
                .collect(),
        ),
    ]
}

/// Commands, delays and a reminder file as the bot framework reads them.
fn bot_inputs() -> Vec<Seed> {
    let file = br#"{"version":1,"next_id":3,"reminders":[{"id":2,"conversation":"u:alice","author":"alice","due_ms":1800000000000,"text":"tea"}]}"#;
    [
        ("command", &br#"/remind 10m "oat \"milk\" \\" now"#[..]),
        ("addressed", b"/help@fuzzbot"),
        ("unterminated", br#"/say "open"#),
        ("delay", b"1h30m"),
        ("reminder-file", file),
    ]
    .into_iter()
    .map(|(name, bytes)| seed("bot_command", name, bytes.to_vec()))
    .collect()
}

fn attachments() -> Vec<Seed> {
    let mut seeds = Vec::new();
    let key = fixtures::attachment_key();
    for attachment in fixtures::attachments().iter().take(3) {
        for (suffix, chunk) in [("whole", 0u16), ("chunks-7", 7)] {
            let mut bytes = chunk.to_le_bytes().to_vec();
            bytes.extend_from_slice(key.as_bytes());
            bytes.extend_from_slice(&attachment.ciphertext);
            let name = format!("fixture-{}-{suffix}", attachment.plaintext.len());
            seeds.push(seed("attachment_decrypt", name, bytes));
        }
    }
    for vector in vectors("attachment") {
        let input = &vector["input"];
        let length = input["length"].as_u64().unwrap() as usize;
        if length > 70_000 {
            continue;
        }
        let pattern = hex_field(input, "pattern");
        let plaintext: Vec<u8> = pattern.iter().copied().cycle().take(length).collect();
        let key_bytes = hex_field(input, "key");
        let key = microbot_crypto::attachment::AttachmentKey::from_bytes(&key_bytes).unwrap();
        let (ciphertext, digest) = fixtures::encrypt_attachment(&key, &plaintext);
        assert_eq!(
            digest.to_bytes().to_vec(),
            hex_field(&vector["output"], "digest")
        );
        let mut bytes = 4096u16.to_le_bytes().to_vec();
        bytes.extend_from_slice(&key_bytes);
        bytes.extend(ciphertext);
        seeds.push(seed(
            "attachment_decrypt",
            format!("vector-{}", vector["name"].as_str().unwrap()),
            bytes,
        ));
    }
    seeds
}

fn stored_states() -> Vec<Seed> {
    let keys = fixtures::sender_keys();
    let with_selector = |selector: u8, bytes: &[u8]| {
        let mut out = vec![selector];
        out.extend_from_slice(bytes);
        out
    };
    // A bare ratchet that has sent, received and skipped.
    let (mut alice, mut bob) = fixtures::ratchet_pair();
    let mut rng = fixtures::rng(900);
    let first = alice.encrypt(&mut rng, b"one").unwrap();
    let _skipped = alice.encrypt(&mut rng, b"two").unwrap();
    let third = alice.encrypt(&mut rng, b"three").unwrap();
    bob.decrypt(&mut rng, &first).unwrap();
    bob.decrypt(&mut rng, &third).unwrap();
    let reply = bob.encrypt(&mut rng, b"four").unwrap();
    alice.decrypt(&mut rng, &reply).unwrap();
    let ratchets: [(&str, &RatchetSession); 2] = [("ratchet-alice", &alice), ("ratchet-bob", &bob)];
    let mut seeds: Vec<Seed> = ratchets
        .iter()
        .map(|(name, r)| seed("stored_state", *name, with_selector(0, &r.to_bytes())))
        .collect();
    seeds.push(seed(
        "stored_state",
        "session-bob",
        with_selector(1, &fixtures::conversation().bob_session),
    ));
    seeds.push(seed(
        "stored_state",
        "prekeys-bob",
        with_selector(2, &fixtures::devices().bob_prekeys.to_bytes()),
    ));
    seeds.push(seed(
        "stored_state",
        "inbound",
        with_selector(3, &keys.inbound),
    ));
    seeds.push(seed(
        "stored_state",
        "outbound",
        with_selector(4, &keys.outbound),
    ));
    seeds.push(seed(
        "stored_state",
        "record",
        with_selector(5, &keys.record),
    ));
    for (i, distribution) in keys.distributions.iter().enumerate() {
        seeds.push(seed(
            "stored_state",
            format!("distribution-{i}"),
            with_selector(6, distribution),
        ));
    }
    for vector in vectors("sender_key") {
        let distribution = hex_field(&vector["output"], "distribution");
        seeds.push(seed(
            "stored_state",
            "distribution-vector",
            with_selector(6, &distribution),
        ));
    }
    seeds
}

/// Targets whose input is decoded with `arbitrary`: any bytes make a valid
/// case, so their seeds are deterministic pseudo-random strings of a few sizes.
fn structured() -> Vec<Seed> {
    let targets = [
        "convergence",
        "ratchet_mutated",
        "ratchet_conversation",
        "prekey_mutated",
        "sender_key_mutated",
        "attachment_mutated",
    ];
    let mut rng = fixtures::rng(901);
    let mut seeds = Vec::new();
    for target in targets {
        for len in [8usize, 64, 256, 1024] {
            let mut bytes = vec![0u8; len];
            rng.fill_bytes(&mut bytes);
            seeds.push(seed(target, format!("random-{len}"), bytes));
        }
        seeds.push(seed(target, "zeros-64", vec![0; 64]));
    }
    seeds
}
