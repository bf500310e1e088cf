//! Criterion benchmarks of crypto-core (BENCHMARKS.md), each next to its
//! floor: the same machine's cost of exactly the bare primitives the
//! operation needs, so every figure reads as a ratio to its floor.
//!
//! Run: `cargo bench -p microbot-crypto --bench crypto`
//! (quick: append `-- --warm-up-time 1 --measurement-time 3`).

use std::hint::black_box;

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::{Signer, SigningKey, Verifier};
use microbot_crypto::attachment::{AttachmentDecryptor, AttachmentEncryptor};
use microbot_crypto::handshake;
use microbot_crypto::kdf::{hkdf_sha256, hmac_sha256};
use microbot_crypto::prekeys::{KemPreKey, LocalPreKeys, PreKeyBundle, SignedPreKey};
use microbot_crypto::ratchet::RatchetSession;
use microbot_crypto::sender_key::{GroupId, InboundSenderKey, OutboundSenderKey};
use microbot_crypto::{IdentityKeyPair, labels};
use ml_kem::{Decapsulate, Encapsulate, FromSeed, Kem, MlKem768};
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey, StaticSecret};

const SMALL: usize = 100;
const LARGE: usize = 16 * 1024;
const ATTACHMENT_BENCH_LEN: usize = 4 * 1024 * 1024;

fn seal(key: &ChaCha20Poly1305, plaintext: &[u8]) -> Vec<u8> {
    let mut buffer = plaintext.to_vec();
    let tag = key
        .encrypt_inout_detached(&Nonce::from([7u8; 12]), b"ad", buffer.as_mut_slice().into())
        .expect("seal");
    buffer.extend_from_slice(&tag);
    buffer
}

fn open(key: &ChaCha20Poly1305, sealed: &[u8]) -> Vec<u8> {
    let (body, tag) = sealed.split_at(sealed.len() - 16);
    let mut buffer = body.to_vec();
    let tag = chacha20poly1305::Tag::try_from(tag).expect("tag");
    key.decrypt_inout_detached(
        &Nonce::from([7u8; 12]),
        b"ad",
        buffer.as_mut_slice().into(),
        &tag,
    )
    .expect("open");
    buffer
}

/// One chain step on one side: KDF_CK (2 × HMAC) and the message-key HKDF.
fn chain_step(chain_key: &[u8; 32]) -> [u8; 32] {
    let message_key = hmac_sha256(chain_key, &[1]);
    black_box(hkdf_sha256::<44>(
        &[],
        message_key.as_ref(),
        labels::RATCHET_MESSAGE_INFO,
    ));
    *hmac_sha256(chain_key, &[2])
}

fn primitives(c: &mut Criterion) {
    let mut rng = rand::rng();
    let mut group = c.benchmark_group("floor");
    let a = StaticSecret::random_from_rng(&mut rng);
    let b = PublicKey::from(&StaticSecret::random_from_rng(&mut rng));
    group.bench_function("x25519_dh", |bench| {
        bench.iter(|| black_box(a.diffie_hellman(&b)))
    });
    group.bench_function("x25519_keygen", |bench| {
        bench.iter(|| {
            let secret = StaticSecret::random_from_rng(&mut rng);
            black_box(PublicKey::from(&secret))
        })
    });
    let signing = SigningKey::generate(&mut rand::rng());
    let verifying = signing.verifying_key();
    let message = [5u8; 64];
    let signature = signing.sign(&message);
    group.bench_function("ed25519_sign_64B", |bench| {
        bench.iter(|| black_box(signing.sign(&message)))
    });
    group.bench_function("ed25519_verify_64B", |bench| {
        bench.iter(|| black_box(verifying.verify(&message, &signature).is_ok()))
    });
    // The verification SPEC.md §2 requires (what sender keys and identities
    // use): also decompresses R and checks R and A for small order.
    group.bench_function("ed25519_verify_strict_64B", |bench| {
        bench.iter(|| black_box(verifying.verify_strict(&message, &signature).is_ok()))
    });
    group.bench_function("hmac_sha256_32B", |bench| {
        bench.iter(|| black_box(hmac_sha256(&[1u8; 32], &[1])))
    });
    group.bench_function("hkdf_sha256_44B", |bench| {
        bench.iter(|| {
            black_box(hkdf_sha256::<44>(
                &[],
                &[3u8; 32],
                labels::RATCHET_MESSAGE_INFO,
            ))
        })
    });
    let aead = ChaCha20Poly1305::new(&Key::from([9u8; 32]));
    for size in [SMALL, LARGE] {
        let plaintext = vec![0x42u8; size];
        let sealed = seal(&aead, &plaintext);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::new("chacha20poly1305_seal", size),
            &plaintext,
            |bench, p| bench.iter(|| black_box(seal(&aead, p))),
        );
        group.bench_with_input(
            BenchmarkId::new("chacha20poly1305_open", size),
            &sealed,
            |bench, s| bench.iter(|| black_box(open(&aead, s))),
        );
        // Floor of one steady-chain ratchet message, send + receive: a chain
        // step on each side, one seal, one open.
        group.bench_with_input(
            BenchmarkId::new("ratchet_message", size),
            &plaintext,
            |bench, p| {
                bench.iter(|| {
                    black_box(chain_step(&[1u8; 32]));
                    let sealed = seal(&aead, p);
                    black_box(chain_step(&[1u8; 32]));
                    black_box(open(&aead, &sealed))
                })
            },
        );
    }
    group.throughput(Throughput::Elements(1));
    // Floor of a sender-key message, send + receive: the chain steps, seal,
    // open, one Ed25519 signature and one verification over the message.
    let plaintext = vec![0x42u8; SMALL];
    group.bench_function("group_message/100", |bench| {
        bench.iter(|| {
            black_box(chain_step(&[1u8; 32]));
            let sealed = seal(&aead, &plaintext);
            let signature = signing.sign(&sealed);
            black_box(chain_step(&[1u8; 32]));
            black_box(verifying.verify(&sealed, &signature).is_ok());
            black_box(open(&aead, &sealed))
        })
    });
    // Floor of a ratchet message with a DH ratchet step: the receiver's two
    // root steps (2 DH + 2 HKDF-64 + one key generation) on top of a message.
    group.bench_function("ratchet_message_dh_step/100", |bench| {
        bench.iter(|| {
            black_box(chain_step(&[1u8; 32]));
            let sealed = seal(&aead, &plaintext);
            let fresh = StaticSecret::random_from_rng(&mut rng);
            black_box(PublicKey::from(&fresh));
            for _ in 0..2 {
                let dh = a.diffie_hellman(&b);
                black_box(hkdf_sha256::<64>(
                    &[2u8; 32],
                    dh.as_bytes(),
                    labels::RATCHET_ROOT_INFO,
                ));
            }
            black_box(chain_step(&[1u8; 32]));
            black_box(open(&aead, &sealed))
        })
    });
    attachment_floors(&mut group);
    group.throughput(Throughput::Elements(1));
    let (dk, ek) = MlKem768::from_seed(&[4u8; 64].into());
    group.bench_function("ml_kem768_keygen", |bench| {
        bench.iter(|| black_box(MlKem768::generate_keypair_from_rng(&mut rand::rng())))
    });
    group.bench_function("ml_kem768_encaps", |bench| {
        bench.iter(|| black_box(ek.encapsulate_with_rng(&mut rand::rng())))
    });
    let (ciphertext, _) = ek.encapsulate_with_rng(&mut rand::rng());
    group.bench_function("ml_kem768_decaps", |bench| {
        bench.iter(|| black_box(dk.decapsulate(&ciphertext)))
    });
    group.finish();
}

/// Floors of attachment encryption and decryption of 4 MiB: per 64 KiB
/// segment one copy into a reused buffer, ChaCha20-Poly1305 in place, and
/// SHA-256 over the ciphertext (the pointer's digest, SPEC.md §7).
fn attachment_floors(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    let size = ATTACHMENT_BENCH_LEN;
    let plaintext = vec![0x42u8; size];
    let aead = ChaCha20Poly1305::new(&Key::from([9u8; 32]));
    let nonce = Nonce::from([7u8; 12]);
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
    group.throughput(Throughput::Bytes(size as u64));
    group.bench_function("attachment_encrypt_4MiB", |bench| {
        bench.iter(|| {
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
            black_box(hasher.finalize())
        })
    });
    group.bench_function("attachment_decrypt_4MiB", |bench| {
        bench.iter(|| {
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
            black_box(hasher.finalize())
        })
    });
}

fn responder(with_kem: bool) -> (IdentityKeyPair, LocalPreKeys, PreKeyBundle) {
    let mut rng = rand::rng();
    let identity = IdentityKeyPair::generate(&mut rng);
    let mut prekeys = LocalPreKeys::new();
    // A device without KEM prekeys signs its signed prekey with kem_flag 0
    // (SPEC.md §4.1); one signed with flag 1 and no KEM prekey is a
    // stripped bundle, which initiators refuse (HybridRequired).
    prekeys.add_signed(if with_kem {
        SignedPreKey::generate(&mut rng, &identity, 1)
    } else {
        SignedPreKey::generate_classical(&mut rng, &identity, 1)
    });
    if with_kem {
        prekeys.add_kem(KemPreKey::generate(&mut rng, &identity, 1));
    }
    let one_time = prekeys.generate_one_time(&mut rng, 1);
    let bundle = PreKeyBundle {
        identity: *identity.public(),
        signed_prekey: prekeys.latest_signed().expect("signed").public().clone(),
        one_time_prekey: Some(one_time[0]),
        kem_prekey: prekeys.latest_kem().map(|k| k.public().clone()),
    };
    (identity, prekeys, bundle)
}

fn handshakes(c: &mut Criterion) {
    let mut group = c.benchmark_group("handshake");
    for (name, with_kem) in [("classical", false), ("hybrid", true)] {
        let alice = IdentityKeyPair::generate(&mut rand::rng());
        let (bob, prekeys, bundle) = responder(with_kem);
        group.bench_function(name, |bench| {
            bench.iter(|| {
                let (_, header) =
                    handshake::initiate(&mut rand::rng(), &alice, &bundle).expect("initiate");
                black_box(handshake::respond(&bob, &prekeys, &header).expect("respond"))
            })
        });
    }
    group.finish();
}

fn ratchet_pair() -> (RatchetSession, RatchetSession) {
    let mut rng = rand::rng();
    let bob_key = StaticSecret::random_from_rng(&mut rng);
    let alice =
        RatchetSession::new_initiator(&mut rng, &[7u8; 32], &[1u8; 64], &PublicKey::from(&bob_key))
            .expect("initiator");
    let bob = RatchetSession::new_responder(&[7u8; 32], &[1u8; 64], bob_key);
    (alice, bob)
}

fn ratchet(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratchet");
    for size in [SMALL, LARGE] {
        let plaintext = vec![0x42u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        let (mut alice, mut bob) = ratchet_pair();
        let mut rng = rand::rng();
        group.bench_with_input(
            BenchmarkId::new("steady_chain", size),
            &plaintext,
            |bench, p| {
                bench.iter(|| {
                    let message = alice.encrypt(&mut rng, p).expect("encrypt");
                    black_box(bob.decrypt(&mut rng, &message).expect("decrypt"))
                })
            },
        );
        let (mut alice, mut bob) = ratchet_pair();
        let first = alice.encrypt(&mut rng, &plaintext).expect("encrypt");
        bob.decrypt(&mut rng, &first).expect("decrypt");
        // Messages alternate direction, so every receive takes a DH ratchet
        // step; one iteration is two messages.
        group.bench_with_input(
            BenchmarkId::new("dh_step_every_message_x2", size),
            &plaintext,
            |bench, p| {
                bench.iter(|| {
                    let message = bob.encrypt(&mut rng, p).expect("encrypt");
                    black_box(alice.decrypt(&mut rng, &message).expect("decrypt"));
                    let message = alice.encrypt(&mut rng, p).expect("encrypt");
                    black_box(bob.decrypt(&mut rng, &message).expect("decrypt"))
                })
            },
        );
    }
    group.finish();
}

fn sender_keys(c: &mut Criterion) {
    let mut group = c.benchmark_group("group");
    let group_id = GroupId::new(b"bench group").expect("group id");
    let mut outbound = OutboundSenderKey::create(&mut rand::rng(), group_id.clone());
    let mut inbound = InboundSenderKey::new(group_id, &outbound.distribution());
    let plaintext = vec![0x42u8; SMALL];
    group.bench_function("sender_key_message/100", |bench| {
        bench.iter(|| {
            let message = outbound.encrypt(&plaintext).expect("encrypt");
            black_box(inbound.decrypt(&message).expect("decrypt"))
        })
    });
    group.finish();
}

fn attachments(c: &mut Criterion) {
    let mut group = c.benchmark_group("attachment");
    let size = ATTACHMENT_BENCH_LEN;
    let plaintext = vec![0x42u8; size];
    group.throughput(Throughput::Bytes(size as u64));
    group.sample_size(20);
    let (encryptor, key) = AttachmentEncryptor::new(&mut rand::rng());
    let mut ciphertext = Vec::with_capacity(size + size / 1000);
    let mut encryptor = encryptor;
    encryptor
        .update(&plaintext, &mut ciphertext)
        .expect("encrypt");
    encryptor.finish(&mut ciphertext).expect("finish");
    group.bench_function("encrypt_4MiB", |bench| {
        let mut out = Vec::with_capacity(ciphertext.len());
        bench.iter(|| {
            out.clear();
            let mut encryptor = AttachmentEncryptor::with_key(&key);
            encryptor.update(&plaintext, &mut out).expect("encrypt");
            black_box(encryptor.finish(&mut out).expect("finish"))
        })
    });
    group.bench_function("decrypt_4MiB", |bench| {
        let mut out = Vec::with_capacity(size);
        bench.iter(|| {
            out.clear();
            let mut decryptor = AttachmentDecryptor::new(&key);
            decryptor.update(&ciphertext, &mut out).expect("decrypt");
            black_box(decryptor.finish(&mut out).expect("finish"))
        })
    });
    let aead = ChaCha20Poly1305::new(&Key::from([9u8; 32]));
    group.bench_function("floor_chacha20poly1305_4MiB_in_64KiB_segments", |bench| {
        bench.iter(|| {
            for chunk in plaintext.chunks(labels::ATTACHMENT_SEGMENT_LEN) {
                black_box(seal(&aead, chunk));
            }
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    primitives,
    handshakes,
    ratchet,
    sender_keys,
    attachments
);
criterion_main!(benches);
