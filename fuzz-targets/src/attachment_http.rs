//! Target `attachment_http_path` (SPEC.md §12.16): the two inputs of an
//! attachment download over HTTP the server reads itself — the id in the
//! path and the `If-None-Match` header — from arbitrary bytes (hyper
//! parses the rest of the request).
//!
//! Invariants: an accepted id is exactly 32 lowercase hex digits and
//! encodes back to them; a header value names the tag it is compared with
//! only if it contains that tag or `*`.

use microbot_server::testing::attachment_http::{if_none_match_names, parse_id};

/// The target.
pub fn attachment_http_path(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(id) = parse_id(&text) {
        assert_eq!(hex::encode(id), text);
    }
    for etag in ["\"00112233445566778899aabbccddeeff\"", "\"\""] {
        if if_none_match_names(data, etag) {
            assert!(
                text.contains(etag) || text.contains('*'),
                "{text:?} names {etag}"
            );
        }
    }
}
