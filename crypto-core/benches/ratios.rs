//! Interleaved ratios to the floors (BENCHMARKS.md), for a machine that
//! others are using: criterion measures an operation and its floor minutes
//! apart, under different load. Here each round times a batch of the floor
//! and a batch of the operation back to back (in alternating order), and the
//! report is the median of the per-round ratios with its spread.
//!
//! Run: `cargo bench -p microbot-crypto --bench ratios` (optional argument:
//! rounds, default 41).

use std::hint::black_box;
use std::time::{Duration, Instant};

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use ed25519_dalek::{Signer, SigningKey, Verifier};
use microbot_crypto::attachment::{AttachmentDecryptor, AttachmentEncryptor};
use microbot_crypto::kdf::{hkdf_sha256, hmac_sha256};
use microbot_crypto::labels;
use microbot_crypto::sender_key::{GroupId, InboundSenderKey, OutboundSenderKey};
use sha2::{Digest, Sha256};

const ATTACHMENT_LEN: usize = 4 * 1024 * 1024;

fn time(iterations: u32, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed() / iterations
}

/// Median of per-round `operation / floor`, with the 10th and 90th
/// percentiles, and the medians of the two times.
fn compare(
    name: &str,
    rounds: usize,
    iterations: u32,
    mut floor: impl FnMut(),
    mut operation: impl FnMut(),
) {
    let mut ratios = Vec::with_capacity(rounds);
    let mut floors = Vec::with_capacity(rounds);
    let mut operations = Vec::with_capacity(rounds);
    time(iterations, &mut floor);
    time(iterations, &mut operation);
    for round in 0..rounds {
        let (f, o) = if round % 2 == 0 {
            let f = time(iterations, &mut floor);
            (f, time(iterations, &mut operation))
        } else {
            let o = time(iterations, &mut operation);
            (time(iterations, &mut floor), o)
        };
        ratios.push(o.as_secs_f64() / f.as_secs_f64());
        floors.push(f);
        operations.push(o);
    }
    ratios.sort_by(f64::total_cmp);
    floors.sort();
    operations.sort();
    let at = |q: usize| ratios[(rounds - 1) * q / 100];
    println!(
        "{name}: operation {:?}, floor {:?} (medians); ratio median {:.3}× (p10 {:.3}×, p90 {:.3}×), {rounds} rounds",
        operations[rounds / 2],
        floors[rounds / 2],
        at(50),
        at(10),
        at(90),
    );
}

/// One chain step on one side: KDF_CK (2 × HMAC) and the message-key HKDF.
fn chain_step(chain_key: &[u8; 32]) -> [u8; 32] {
    let message_key = hmac_sha256(chain_key, &[1]);
    black_box(hkdf_sha256::<44>(
        &[],
        message_key.as_ref(),
        labels::SENDER_KEY_MESSAGE_INFO,
    ));
    *hmac_sha256(chain_key, &[2])
}

fn main() {
    let rounds = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(41);
    let aead = ChaCha20Poly1305::new(&Key::from([9u8; 32]));
    let nonce = Nonce::from([7u8; 12]);

    // Group message, 100 B: the floor of benches/crypto.rs
    // (floor/group_message/100), and the same with strict verification.
    let signing = SigningKey::generate(&mut rand::rng());
    let verifying = signing.verifying_key();
    let plaintext = vec![0x42u8; 100];
    let group_floor = |strict: bool| {
        let aead = aead.clone();
        let plaintext = plaintext.clone();
        let signing = signing.clone();
        move || {
            black_box(chain_step(&[1u8; 32]));
            let mut sealed = plaintext.clone();
            let tag = aead
                .encrypt_inout_detached(&nonce, b"ad", sealed.as_mut_slice().into())
                .expect("seal");
            sealed.extend_from_slice(&tag);
            let signature = signing.sign(&sealed);
            black_box(chain_step(&[1u8; 32]));
            let ok = if strict {
                verifying.verify_strict(&sealed, &signature).is_ok()
            } else {
                verifying.verify(&sealed, &signature).is_ok()
            };
            assert!(ok);
            let (body, tag) = sealed.split_at(sealed.len() - 16);
            let mut opened = body.to_vec();
            let tag = chacha20poly1305::Tag::try_from(tag).expect("tag");
            aead.decrypt_inout_detached(&nonce, b"ad", opened.as_mut_slice().into(), &tag)
                .expect("open");
            black_box(opened);
        }
    };
    let group_id = GroupId::new(b"bench group").expect("group id");
    let mut outbound = OutboundSenderKey::create(&mut rand::rng(), group_id.clone());
    let mut inbound = InboundSenderKey::new(group_id, &outbound.distribution());
    let mut group_message = || {
        let message = outbound.encrypt(&plaintext).expect("encrypt");
        black_box(inbound.decrypt(&message).expect("decrypt"));
    };
    compare(
        "group message 100 B vs floor (verify)",
        rounds,
        200,
        group_floor(false),
        &mut group_message,
    );
    compare(
        "group message 100 B vs floor (verify_strict)",
        rounds,
        200,
        group_floor(true),
        &mut group_message,
    );

    // Attachments, 4 MiB: the floors of floor/attachment_{en,de}crypt_4MiB.
    let plaintext = vec![0x42u8; ATTACHMENT_LEN];
    let (encryptor, key) = AttachmentEncryptor::new(&mut rand::rng());
    let mut ciphertext = Vec::new();
    let mut encryptor = encryptor;
    encryptor
        .update(&plaintext, &mut ciphertext)
        .expect("encrypt");
    encryptor.finish(&mut ciphertext).expect("finish");
    let sealed: Vec<Vec<u8>> = plaintext
        .chunks(labels::ATTACHMENT_SEGMENT_LEN)
        .map(|chunk| {
            let mut buffer = chunk.to_vec();
            let tag = aead
                .encrypt_inout_detached(&nonce, &[], buffer.as_mut_slice().into())
                .expect("seal");
            buffer.extend_from_slice(&tag);
            buffer
        })
        .collect();
    let mut buffer = Vec::with_capacity(labels::ATTACHMENT_SEGMENT_LEN + labels::TAG_LEN);
    let mut out = Vec::with_capacity(ciphertext.len());
    compare(
        "attachment encrypt 4 MiB vs floor (seal + SHA-256)",
        rounds,
        4,
        || {
            let mut hasher = Sha256::new();
            for chunk in plaintext.chunks(labels::ATTACHMENT_SEGMENT_LEN) {
                buffer.clear();
                buffer.extend_from_slice(chunk);
                let tag = aead
                    .encrypt_inout_detached(&nonce, &[], buffer.as_mut_slice().into())
                    .expect("seal");
                buffer.extend_from_slice(&tag);
                hasher.update(&buffer);
                black_box(&buffer);
            }
            black_box(hasher.finalize());
        },
        || {
            out.clear();
            let mut encryptor = AttachmentEncryptor::with_key(&key);
            encryptor.update(&plaintext, &mut out).expect("encrypt");
            black_box(encryptor.finish(&mut out).expect("finish"));
        },
    );
    let mut buffer = Vec::with_capacity(labels::ATTACHMENT_SEGMENT_LEN + labels::TAG_LEN);
    let mut out = Vec::with_capacity(ATTACHMENT_LEN);
    compare(
        "attachment decrypt 4 MiB vs floor (SHA-256 + open)",
        rounds,
        4,
        || {
            let mut hasher = Sha256::new();
            for segment in &sealed {
                hasher.update(segment);
                let (body, tag) = segment.split_at(segment.len() - labels::TAG_LEN);
                buffer.clear();
                buffer.extend_from_slice(body);
                let tag = chacha20poly1305::Tag::try_from(tag).expect("tag");
                aead.decrypt_inout_detached(&nonce, &[], buffer.as_mut_slice().into(), &tag)
                    .expect("open");
                black_box(&buffer);
            }
            black_box(hasher.finalize());
        },
        || {
            out.clear();
            let mut decryptor = AttachmentDecryptor::new(&key);
            decryptor.update(&ciphertext, &mut out).expect("decrypt");
            black_box(decryptor.finish(&mut out).expect("finish"));
        },
    );
}
