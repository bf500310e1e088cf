//! Attachment STREAM encryption through the public API (SPEC.md §7).

use microbot_crypto::attachment::{
    AttachmentDecryptError, AttachmentDecryptor, AttachmentDigest, AttachmentEncryptor,
    AttachmentKey, AttachmentSummary, ciphertext_len,
};
use microbot_crypto::kdf::{aead_open, hkdf_sha256};
use microbot_crypto::labels::{ATTACHMENT_INFO, ATTACHMENT_SEGMENT_LEN, TAG_LEN};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

const SEG: usize = ATTACHMENT_SEGMENT_LEN;
const SEALED: usize = SEG + TAG_LEN;

fn rng(seed: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed; 32])
}

fn plaintext(len: usize, seed: u8) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rng(seed).fill_bytes(&mut data);
    data
}

/// Encrypts in chunks of `chunk` bytes.
fn encrypt(data: &[u8], seed: u8, chunk: usize) -> (Vec<u8>, AttachmentKey, AttachmentSummary) {
    let (mut encryptor, key) = AttachmentEncryptor::new(&mut rng(seed));
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        encryptor.update(piece, &mut out).unwrap();
    }
    let summary = encryptor.finish(&mut out).unwrap();
    (out, key, summary)
}

fn decrypt(
    ciphertext: &[u8],
    key: &AttachmentKey,
    chunk: usize,
) -> Result<(Vec<u8>, AttachmentSummary), AttachmentDecryptError> {
    let mut decryptor = AttachmentDecryptor::new(key);
    let mut out = Vec::new();
    for piece in ciphertext.chunks(chunk.max(1)) {
        decryptor.update(piece, &mut out)?;
    }
    let summary = decryptor.finish(&mut out)?;
    Ok((out, summary))
}

#[test]
fn round_trip_of_many_sizes_and_chunkings() {
    let sizes = [
        0,
        1,
        15,
        16,
        17,
        1000,
        SEG - 1,
        SEG,
        SEG + 1,
        2 * SEG,
        3 * SEG + 7,
    ];
    for (i, &size) in sizes.iter().enumerate() {
        let data = plaintext(size, i as u8);
        for chunk in [1000, SEG, 7 * 1024 + 3, usize::MAX] {
            let chunk = chunk.min(size.max(1));
            let (ciphertext, key, summary) = encrypt(&data, 100 + i as u8, chunk);
            assert_eq!(
                ciphertext.len() as u64,
                ciphertext_len(size as u64).unwrap()
            );
            assert_eq!(summary.ciphertext_len, ciphertext.len() as u64);
            assert_eq!(summary.plaintext_len, size as u64);
            let expected_digest: [u8; 32] = Sha256::digest(&ciphertext).into();
            assert_eq!(summary.digest.to_bytes(), expected_digest);
            for dchunk in [1, 4096, SEALED, SEALED + 1, usize::MAX] {
                if dchunk == 1 && size > 2 * SEG {
                    continue; // byte-at-a-time over large files only slows the test
                }
                let (opened, dsummary) = decrypt(&ciphertext, &key, dchunk.min(ciphertext.len()))
                    .unwrap_or_else(|e| panic!("size {size} chunk {chunk}/{dchunk}: {e}"));
                assert_eq!(opened, data, "size {size}");
                assert_eq!(dsummary, summary);
            }
        }
    }
}

#[test]
fn segment_count_and_layout_follow_the_spec() {
    assert_eq!(ciphertext_len(0), Some(16));
    assert_eq!(ciphertext_len(1), Some(17));
    assert_eq!(ciphertext_len(SEG as u64), Some(SEALED as u64));
    assert_eq!(ciphertext_len(SEG as u64 + 1), Some(SEALED as u64 + 17));
    assert_eq!(
        ciphertext_len(SEG as u64 * (1 << 32)),
        Some((SEALED as u64) << 32)
    );
    assert_eq!(ciphertext_len(SEG as u64 * (1 << 32) + 1), None);

    // An independent decryption of the layout: HKDF → key ‖ 7-byte prefix,
    // nonce = prefix ‖ u32 BE index ‖ last flag, empty AD.
    let data = plaintext(SEG + 5, 1);
    let (ciphertext, key, _) = encrypt(&data, 2, SEG + 5);
    let okm = hkdf_sha256::<39>(&[], key.as_bytes(), ATTACHMENT_INFO);
    let aead_key: [u8; 32] = okm[..32].try_into().unwrap();
    let nonce = |index: u32, last: u8| {
        let mut n = [0u8; 12];
        n[..7].copy_from_slice(&okm[32..]);
        n[7..11].copy_from_slice(&index.to_be_bytes());
        n[11] = last;
        n
    };
    let first = aead_open(&aead_key, &nonce(0, 0), &[], &ciphertext[..SEALED]).unwrap();
    let second = aead_open(&aead_key, &nonce(1, 1), &[], &ciphertext[SEALED..]).unwrap();
    assert_eq!([first, second].concat(), data);
}

#[test]
fn empty_file_is_one_empty_final_segment() {
    let (ciphertext, key, summary) = encrypt(&[], 3, 1);
    assert_eq!(ciphertext.len(), TAG_LEN);
    assert_eq!(summary.plaintext_len, 0);
    assert_eq!(decrypt(&ciphertext, &key, 16).unwrap().0, Vec::<u8>::new());
    // No ciphertext at all is not an empty file.
    assert_eq!(
        decrypt(&[], &key, 1),
        Err(AttachmentDecryptError::Truncated)
    );
}

#[test]
fn truncation_at_a_segment_boundary_is_detected() {
    let data = plaintext(3 * SEG + 100, 4);
    let (ciphertext, key, _) = encrypt(&data, 5, SEG);
    for segments in 1..=3 {
        assert_eq!(
            decrypt(&ciphertext[..segments * SEALED], &key, 4096),
            Err(AttachmentDecryptError::Truncated),
            "cut after {segments} segments"
        );
    }
    // Cut inside a segment.
    assert!(decrypt(&ciphertext[..SEALED + 100], &key, 4096).is_err());
    assert_eq!(
        decrypt(&ciphertext[..ciphertext.len() - 1], &key, 4096),
        Err(AttachmentDecryptError::Corrupt { segment: 3 })
    );
}

/// SPEC.md §7.4: a final piece shorter than a tag (1..=15 bytes) after a
/// full segment that authenticates as non-final is `Truncated`, not
/// `Corrupt`: the piece cannot hold a tag, so it is never opened. A full
/// final segment followed by such a piece is `TrailingData`.
#[test]
fn piece_shorter_than_a_tag_after_a_full_segment_is_truncated() {
    let data = plaintext(2 * SEG + 100, 30);
    let (ciphertext, key, _) = encrypt(&data, 31, SEG);
    for extra in [1, 8, 15] {
        for chunk in [1, 4096, SEALED + extra] {
            assert_eq!(
                decrypt(&ciphertext[..SEALED + extra], &key, chunk),
                Err(AttachmentDecryptError::Truncated),
                "{extra} bytes after one segment, chunks of {chunk}"
            );
        }
    }
    // 16 bytes or more of a cut segment are opened and fail as corrupt.
    assert_eq!(
        decrypt(&ciphertext[..SEALED + 16], &key, 4096),
        Err(AttachmentDecryptError::Corrupt { segment: 1 })
    );
    let (whole, key, _) = encrypt(&plaintext(SEG, 32), 33, SEG);
    let extended = [whole.as_slice(), &[0u8; 15]].concat();
    assert_eq!(
        decrypt(&extended, &key, 4096),
        Err(AttachmentDecryptError::TrailingData)
    );
}

#[test]
fn dropped_final_segment_of_exact_multiple_is_detected() {
    let data = plaintext(2 * SEG, 6);
    let (ciphertext, key, _) = encrypt(&data, 7, SEG);
    assert_eq!(ciphertext.len(), 2 * SEALED);
    assert_eq!(
        decrypt(&ciphertext[..SEALED], &key, SEALED),
        Err(AttachmentDecryptError::Truncated)
    );
}

#[test]
fn swapped_and_reordered_segments_are_detected() {
    let data = plaintext(3 * SEG, 8);
    let (ciphertext, key, _) = encrypt(&data, 9, SEG);
    let segment = |i: usize| &ciphertext[i * SEALED..(i + 1) * SEALED];
    let swapped = [segment(1), segment(0), segment(2)].concat();
    assert_eq!(
        decrypt(&swapped, &key, 4096),
        Err(AttachmentDecryptError::Corrupt { segment: 0 })
    );
    let duplicated = [segment(0), segment(0), segment(2)].concat();
    assert_eq!(
        decrypt(&duplicated, &key, 4096),
        Err(AttachmentDecryptError::Corrupt { segment: 1 })
    );
    // The final segment moved forward.
    let final_first = [segment(2), segment(1), segment(0)].concat();
    assert!(decrypt(&final_first, &key, 4096).is_err());
}

#[test]
fn segments_from_another_file_are_detected() {
    let a = plaintext(2 * SEG, 10);
    let (ct_a, key_a, _) = encrypt(&a, 11, SEG);
    let (ct_b, _, _) = encrypt(&a, 12, SEG);
    let mixed = [&ct_a[..SEALED], &ct_b[SEALED..]].concat();
    assert_eq!(
        decrypt(&mixed, &key_a, 4096),
        Err(AttachmentDecryptError::Corrupt { segment: 1 })
    );
}

#[test]
fn trailing_data_is_detected() {
    let data = plaintext(SEG, 13);
    let (ciphertext, key, _) = encrypt(&data, 14, SEG);
    let mut extended = ciphertext.clone();
    extended.extend_from_slice(&[0u8; 20]);
    assert_eq!(
        decrypt(&extended, &key, 4096),
        Err(AttachmentDecryptError::TrailingData)
    );
    // A short final segment followed by junk fails as one corrupt segment.
    let (short, key, _) = encrypt(b"short file", 15, 100);
    let junk = [short.as_slice(), b"junk"].concat();
    assert_eq!(
        decrypt(&junk, &key, 4096),
        Err(AttachmentDecryptError::Corrupt { segment: 0 })
    );
}

#[test]
fn every_bit_flip_in_a_small_file_is_detected() {
    let (ciphertext, key, _) = encrypt(b"the quarterly report", 16, 100);
    for byte in 0..ciphertext.len() {
        for bit in 0..8 {
            let mut flipped = ciphertext.clone();
            flipped[byte] ^= 1 << bit;
            assert_eq!(
                decrypt(&flipped, &key, 7),
                Err(AttachmentDecryptError::Corrupt { segment: 0 })
            );
        }
    }
    // A flip in a middle segment of a large file.
    let data = plaintext(2 * SEG + 1, 17);
    let (mut big, key, _) = encrypt(&data, 18, SEG);
    big[SEALED + 12345] ^= 0x80;
    assert_eq!(
        decrypt(&big, &key, 4096),
        Err(AttachmentDecryptError::Corrupt { segment: 1 })
    );
}

#[test]
fn wrong_key_is_refused() {
    let (ciphertext, _, _) = encrypt(b"secret", 19, 100);
    let other = AttachmentKey::generate(&mut rng(20));
    assert_eq!(
        decrypt(&ciphertext, &other, 100),
        Err(AttachmentDecryptError::Corrupt { segment: 0 })
    );
}

#[test]
fn digest_is_checked_against_the_pointer() {
    let data = plaintext(SEG + 3, 21);
    let (ciphertext, key, summary) = encrypt(&data, 22, 1000);
    let finish = |expected: &AttachmentDigest| {
        let mut decryptor = AttachmentDecryptor::new(&key);
        let mut out = Vec::new();
        decryptor.update(&ciphertext, &mut out).unwrap();
        decryptor.finish_verified(&mut out, expected)
    };
    assert_eq!(finish(&summary.digest).unwrap(), summary);
    let mut wrong = summary.digest.to_bytes();
    wrong[31] ^= 1;
    let wrong = AttachmentDigest::from_bytes(&wrong).unwrap();
    assert_eq!(finish(&wrong), Err(AttachmentDecryptError::DigestMismatch));
    assert!(AttachmentDigest::from_bytes(&[0; 31]).is_err());
}

#[test]
fn a_failed_decryptor_refuses_further_input() {
    let data = plaintext(2 * SEG + 1, 23);
    let (mut ciphertext, key, _) = encrypt(&data, 24, SEG);
    ciphertext[5] ^= 1;
    let mut decryptor = AttachmentDecryptor::new(&key);
    let mut out = Vec::new();
    assert_eq!(
        decryptor.update(&ciphertext[..SEALED + 1], &mut out),
        Err(AttachmentDecryptError::Corrupt { segment: 0 })
    );
    assert!(out.is_empty());
    assert_eq!(
        decryptor.update(&ciphertext[SEALED + 1..], &mut out),
        Err(AttachmentDecryptError::AlreadyFailed)
    );
    assert_eq!(
        decryptor.finish(&mut out),
        Err(AttachmentDecryptError::AlreadyFailed)
    );
}

#[test]
fn keys_parse_and_do_not_leak_in_debug() {
    let key = AttachmentKey::generate(&mut rng(25));
    let again = AttachmentKey::from_bytes(key.as_bytes()).unwrap();
    assert_eq!(again.as_bytes(), key.as_bytes());
    assert!(AttachmentKey::from_bytes(&[0; 33]).is_err());
    let hex: String = key.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let debug = format!("{key:?}");
    assert!(
        !debug.contains(&hex[..8]) && debug.contains("redacted"),
        "{debug}"
    );
}

/// Peak resident memory of this process, from /proc/self/status.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Streams 1 GiB through encrypt and decrypt without holding it, and checks
/// the peak RSS stays under 64 MiB. Run with
/// `cargo test -p microbot-crypto --release --test attachment -- --ignored`.
#[test]
#[ignore = "streams 1 GiB; run explicitly in release mode"]
fn big_file_constant_memory() {
    const TOTAL: u64 = 1 << 30;
    const CHUNK: usize = 1 << 20;
    let (mut encryptor, key) = AttachmentEncryptor::new(&mut rng(26));
    let mut decryptor = AttachmentDecryptor::new(&key);
    let mut source = rng(27);
    let mut expected = Sha256::new();
    let mut actual = Sha256::new();
    let mut chunk = vec![0u8; CHUNK];
    let mut ciphertext = Vec::with_capacity(2 * CHUNK);
    let mut plaintext_out = Vec::with_capacity(2 * CHUNK);
    let mut sent = 0u64;
    while sent < TOTAL {
        source.fill_bytes(&mut chunk);
        expected.update(&chunk);
        encryptor.update(&chunk, &mut ciphertext).unwrap();
        decryptor.update(&ciphertext, &mut plaintext_out).unwrap();
        actual.update(&plaintext_out);
        ciphertext.clear();
        plaintext_out.clear();
        sent += CHUNK as u64;
    }
    let encrypted = encryptor.finish(&mut ciphertext).unwrap();
    decryptor.update(&ciphertext, &mut plaintext_out).unwrap();
    let decrypted = decryptor
        .finish_verified(&mut plaintext_out, &encrypted.digest)
        .unwrap();
    actual.update(&plaintext_out);
    assert_eq!(expected.finalize(), actual.finalize());
    assert_eq!(decrypted.plaintext_len, TOTAL);
    assert_eq!(Some(decrypted.ciphertext_len), ciphertext_len(TOTAL));
    let peak = peak_rss_bytes();
    eprintln!("peak RSS after 1 GiB each way: {} KiB", peak >> 10);
    assert!(peak < 64 << 20, "peak RSS {} MiB", peak >> 20);
}
