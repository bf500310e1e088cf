//! Attachment ciphertext over plain HTTP on the TCP listener (SPEC.md
//! §12.16), shaped for a cache or CDN in front of the server:
//! `GET`/`HEAD /v1/attachments/<32 lowercase hex digits of the id>`.
//!
//! Invariants:
//! - The attachment id is the capability: 128 random bits chosen by the
//!   server, known only to whoever holds the `AttachmentPointer`, which
//!   also holds the key. No login: a cache holds no credentials, and what
//!   it stores is ciphertext.
//! - Only a complete, unexpired attachment is served; every other id (also
//!   a malformed one) is the same `404`, so a probe learns nothing more.
//! - An attachment never changes once complete, so an answer is cacheable
//!   by anyone (`public, immutable`) until the attachment expires, carries
//!   a strong `ETag` (its id), honours `If-None-Match` with `304`, and
//!   serves single byte ranges (`206`, resume after a cut download).
//! - Bytes handed out count in `microbot_attachment_bytes_out_total` as
//!   they leave, like the QUIC and WebSocket downloads.
//!
//! Not owned here: finding the record and the file (attachments.rs), the
//! HTTP connection and its admission (websocket.rs).

use std::sync::Arc;

use http_body_util::BodyExt as _;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tower_http::services::ServeFile;

use crate::attachments::{self, ATTACHMENT_PATH_PREFIX};
use crate::state::ServerState;
use crate::web_app::{self, Body};

/// Answers one request under [`ATTACHMENT_PATH_PREFIX`].
pub async fn respond<B>(state: &Arc<ServerState>, request: Request<B>) -> Response<Body> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return web_app::method_not_allowed();
    }
    let Some(id) = request
        .uri()
        .path()
        .strip_prefix(ATTACHMENT_PATH_PREFIX)
        .and_then(parse_id)
    else {
        return not_found();
    };
    let Ok(record) = attachments::complete_attachment(state, &id).await else {
        return not_found();
    };
    let etag = format!("\"{}\"", hex::encode(id));
    let max_age = record.expires_at_ms.saturating_sub(state.now_ms()) / 1000;
    let cache = format!("public, max-age={max_age}, immutable");
    let Ok(cache) = HeaderValue::from_str(&cache) else {
        return not_found();
    };
    let Ok(etag_value) = HeaderValue::from_str(&etag) else {
        return not_found();
    };
    if matches_etag(&request, &etag) {
        let mut response = Response::new(web_app::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        finish_headers(&mut response, etag_value, cache);
        return response;
    }
    let (parts, _) = request.into_parts();
    let request = Request::from_parts(parts, http_body_util::Empty::<bytes::Bytes>::new());
    let served = ServeFile::new(attachments::file_path(state, &id))
        .try_call(request)
        .await;
    let response = match served {
        Ok(response) if response.status() != StatusCode::NOT_FOUND => response,
        Ok(_) => return not_found(),
        Err(error) => {
            tracing::warn!(%error, "attachment file could not be read");
            return web_app::plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The attachment could not be read.\n",
            );
        }
    };
    let counted = Arc::clone(state);
    let mut response = response.map(move |body| {
        body.map_frame(move |frame| {
            if let Some(bytes) = frame.data_ref() {
                counted
                    .metrics
                    .attachment_bytes_out
                    .add(u64::try_from(bytes.len()).unwrap_or(0));
            }
            frame
        })
        .boxed_unsync()
    });
    // ServeFile answers with the file's modification time, which changes
    // while the upload is written and means nothing to a cache here.
    response.headers_mut().remove(header::LAST_MODIFIED);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    finish_headers(&mut response, etag_value, cache);
    response
}

/// The 16-byte id from its 32 lowercase hex digits; `None` for anything
/// else.
pub fn parse_id(text: &str) -> Option<[u8; 16]> {
    if text.len() != 32 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut id = [0u8; 16];
    hex::decode_to_slice(text, &mut id).ok()?;
    Some(id)
}

/// True when `If-None-Match` names `etag` (or is `*`).
fn matches_etag<B>(request: &Request<B>, etag: &str) -> bool {
    request
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .any(|value| if_none_match_names(value.as_bytes(), etag))
}

/// True when one `If-None-Match` header value (a comma-separated list of
/// entity tags, weak or strong, or `*`) names `etag`.
pub fn if_none_match_names(value: &[u8], etag: &str) -> bool {
    std::str::from_utf8(value).is_ok_and(|value| {
        value
            .split(',')
            .map(|tag| tag.trim().trim_start_matches("W/"))
            .any(|tag| tag == "*" || tag == etag)
    })
}

fn finish_headers(response: &mut Response<Body>, etag: HeaderValue, cache: HeaderValue) {
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag);
    headers.insert(header::CACHE_CONTROL, cache);
    web_app::secure(response);
}

fn not_found() -> Response<Body> {
    web_app::plain(StatusCode::NOT_FOUND, "No such attachment.\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_exactly_32_lowercase_hex_digits() {
        assert_eq!(
            parse_id("00112233445566778899aabbccddeeff"),
            Some([
                0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
                0xee, 0xff
            ])
        );
        for bad in [
            "",
            "00112233445566778899aabbccddeef",
            "00112233445566778899aabbccddeeff0",
            "00112233445566778899AABBCCDDEEFF",
            "00112233445566778899aabbccddeefg",
            "../../../../../../etc/passwd/xx",
            "00112233445566778899aabbccddeeff/",
        ] {
            assert_eq!(parse_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn if_none_match_lists_and_wildcards_match() {
        let etag = "\"0011\"";
        let with = |value: &str| {
            Request::builder()
                .header(header::IF_NONE_MATCH, value)
                .body(())
                .unwrap()
        };
        assert!(matches_etag(&with("\"0011\""), etag));
        assert!(matches_etag(&with("\"ffff\", W/\"0011\""), etag));
        assert!(matches_etag(&with("*"), etag));
        assert!(!matches_etag(&with("\"0012\""), etag));
        assert!(!matches_etag(&Request::new(()), etag));
    }
}
