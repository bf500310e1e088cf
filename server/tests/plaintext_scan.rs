//! The server stores only ciphertext: messages encrypted client-side with a
//! known marker inside are sent, then the SQLite file and its WAL are
//! scanned for the marker (issue 4 point 6).

use crate::common;

use bytes::Bytes;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use common::*;
use microbot_protocol::transport::response;

const MARKER: &[u8] = b"PLAINTEXT-MARKER-7f3a9c-do-not-store";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn store_bytes(server: &TestServer) -> Vec<u8> {
    let mut all = Vec::new();
    for suffix in ["", "-wal"] {
        let path = format!("{}{suffix}", server.db_path().display());
        if let Ok(bytes) = std::fs::read(&path) {
            all.extend_from_slice(&bytes);
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn the_store_holds_ciphertext_never_the_plaintext_marker() {
    let server = TestServer::start().await;
    let mut vera = new_device(&server, "vera").await;
    let walt = new_device(&server, "walt").await;
    let key = Key::try_from(random_bytes(32).as_ref()).unwrap();
    let cipher = ChaCha20Poly1305::new(&key);
    let mut ciphertexts = Vec::new();
    for i in 0u8..20 {
        let nonce = Nonce::try_from([i; 12].as_slice()).unwrap();
        let mut plaintext = MARKER.to_vec();
        plaintext.push(i);
        let ct = Bytes::from(cipher.encrypt(&nonce, plaintext.as_slice()).unwrap());
        assert!(matches!(
            send_to(&mut vera.client, &[(walt.device_id, ct.clone())]).await,
            response::Result::Send(_)
        ));
        ciphertexts.push(ct);
    }
    let bytes = store_bytes(&server);
    assert!(!bytes.is_empty());
    // The scan can fail: the ciphertext itself is in the store...
    assert!(
        ciphertexts.iter().all(|ct| contains(&bytes, ct)),
        "scan sees stored envelopes"
    );
    // ...the plaintext marker is not.
    assert!(
        !contains(&bytes, MARKER),
        "plaintext marker found in the server store"
    );
    server.stop().await;
}
