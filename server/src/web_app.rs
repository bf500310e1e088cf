//! The web app's files on the TCP listener (SPEC.md §12.16): every path
//! that is not a WebSocket endpoint is a file of the built app under
//! `web_app_dir`, `/` being its `index.html`.
//!
//! Invariants:
//! - Only `GET` and `HEAD`; nothing outside the directory is reachable
//!   (tower-http's `ServeDir` refuses `..` and absolute components).
//! - Every answer carries a strict Content-Security-Policy (scripts,
//!   styles and connections from this origin only, no inline script),
//!   `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`.
//! - Files under `/assets/` whose name carries a content hash are cached
//!   for a year as immutable; everything else is revalidated (`no-cache`),
//!   so a new build is picked up on the next load.
//! - A missing directory answers 404 with a plain sentence saying how to
//!   build the app; the WebSocket endpoints do not depend on it.
//!
//! Not owned here: the HTTP connection and the WebSocket upgrade
//! (websocket.rs).

use std::path::Path;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tower_http::services::ServeDir;

/// The body of every HTTP answer on the TCP listener.
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// The Content-Security-Policy of every answer.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; \
     connect-src 'self'; worker-src 'self'; manifest-src 'self'; object-src 'none'; \
     base-uri 'none'; frame-ancestors 'none'; form-action 'self'";
/// `Cache-Control` of a content-hashed asset.
pub const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of everything else (index.html, manifest, service worker).
pub const CACHE_REVALIDATE: &str = "no-cache";
/// What `/` answers when the app is not built.
pub const NOT_BUILT: &str = "The web app is not built on this server. \
     Build it with scripts/run.sh (or `npm ci && npm run build -w app` in web/), \
     or point web_app_dir at the built files.\n";

/// A body of fixed bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A plain-text answer with the security headers.
pub fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_REVALIDATE),
    );
    secure(&mut response);
    response
}

/// The `405` of a method other than `GET` and `HEAD`.
pub fn method_not_allowed() -> Response<Body> {
    let mut response = plain(
        StatusCode::METHOD_NOT_ALLOWED,
        "Only GET and HEAD are answered here.\n",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}

/// Adds the headers every answer carries.
pub(crate) fn secure<B>(response: &mut Response<B>) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// True for a file the bundler named by its content
/// (`/assets/<name>-<hash>.<ext>`, hash of 8 or more letters and digits).
pub fn is_hashed_asset(path: &str) -> bool {
    let Some(name) = path.strip_prefix("/assets/") else {
        return false;
    };
    if name.contains('/') {
        return false;
    }
    let stem = name.split('.').next().unwrap_or("");
    let Some((_, hash)) = stem.rsplit_once('-') else {
        return false;
    };
    hash.len() >= 8 && hash.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Answers one request for a file of the app in `dir`.
pub async fn respond<B>(dir: &Path, request: Request<B>) -> Response<Body> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return method_not_allowed();
    }
    if !tokio::fs::metadata(dir).await.is_ok_and(|m| m.is_dir()) {
        return plain(StatusCode::NOT_FOUND, NOT_BUILT);
    }
    let path = request.uri().path().to_owned();
    let (parts, _) = request.into_parts();
    let request = Request::from_parts(parts, Empty::<Bytes>::new());
    let served = ServeDir::new(dir)
        .append_index_html_on_directories(true)
        .try_call(request)
        .await;
    let response = match served {
        Ok(response) => response,
        Err(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return plain(StatusCode::NOT_FOUND, "Not found.\n");
        }
        Err(error) => {
            tracing::warn!(%error, "web app file could not be read");
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The file could not be read.\n",
            );
        }
    };
    match response.status() {
        StatusCode::NOT_FOUND => return plain(StatusCode::NOT_FOUND, "Not found.\n"),
        StatusCode::METHOD_NOT_ALLOWED => {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.\n");
        }
        _ => {}
    }
    let mut response = response.map(|body| body.boxed_unsync());
    let cache = if is_hashed_asset(&path) {
        CACHE_IMMUTABLE
    } else {
        CACHE_REVALIDATE
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    secure(&mut response);
    response
}

/// Logs once at start-up whether the app can be served.
pub fn log_presence(dir: &Path) {
    if dir.join("index.html").is_file() {
        tracing::info!(dir = %dir.display(), "web app served at / on the websocket listener");
    } else {
        tracing::warn!(
            dir = %dir.display(),
            "web app not found (no index.html): / answers 404; build it with scripts/run.sh or set web_app_dir"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::is_hashed_asset;

    #[test]
    fn hashed_assets_are_recognised_by_name() {
        assert!(is_hashed_asset("/assets/index-3f9a1c2b.js"));
        assert!(is_hashed_asset("/assets/app-AB12cd34_x.css"));
        assert!(!is_hashed_asset("/index.html"));
        assert!(!is_hashed_asset("/assets/index.js"));
        assert!(!is_hashed_asset("/assets/a-short.js"));
        assert!(!is_hashed_asset("/assets/sub/index-3f9a1c2b.js"));
        assert!(!is_hashed_asset("/sw.js"));
    }
}
