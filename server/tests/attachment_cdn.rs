//! Attachment ciphertext over HTTP for caches and CDNs (SPEC.md §12.16):
//! the origin's answers (capability by id, byte ranges, `ETag` and
//! `If-None-Match`, immutable caching until expiry, the same `404` for
//! every id it does not serve), then a caching nginx (Debian's, from
//! `MICROBOT_NGINX`, set by scripts/services.sh) in front: the second
//! download is served from the cache without the origin handing out a
//! byte, and a cut download resumes with a range.

use crate::common;
use crate::support::nginx;

use std::net::SocketAddr;
use std::path::Path;

use common::attachments::{start_upload, upload};
use common::*;

/// An nginx caching `/v1/attachments/` of `origin` at `listen`.
fn caching_config(listen: SocketAddr, origin: SocketAddr) -> impl Fn(&Path) -> String {
    move |dir| {
        let d = dir.display();
        format!(
            "http {{\n\
               access_log off;\n\
               client_body_temp_path {d}/body;\n\
               proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n\
               uwsgi_temp_path {d}/uwsgi;\n\
               scgi_temp_path {d}/scgi;\n\
               proxy_cache_path {d}/cache levels=1:2 keys_zone=attachments:1m max_size=64m inactive=1h use_temp_path=off;\n\
               server {{\n\
                 listen {listen};\n\
                 location /v1/attachments/ {{\n\
                   proxy_pass http://{origin};\n\
                   proxy_http_version 1.1;\n\
                   proxy_cache attachments;\n\
                   proxy_cache_key $uri;\n\
                   proxy_cache_lock on;\n\
                   add_header X-Cache-Status $upstream_cache_status always;\n\
                 }}\n\
               }}\n\
             }}\n"
        )
    }
}

async fn bytes_out(server: &TestServer) -> u64 {
    let (_, body) = http_get(server.metrics_addr.unwrap(), "/metrics").await;
    metric(&body, "microbot_attachment_bytes_out_total")
        .unwrap()
        .parse()
        .unwrap()
}

/// Reads the head and the first `keep` body bytes of a GET, then drops
/// the connection: a download cut short.
async fn cut_download(addr: SocketAddr, path: &str, keep: usize) -> Vec<u8> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the answer ended early");
        all.extend_from_slice(&buf[..n]);
        if let Some(split) = all.windows(4).position(|w| w == b"\r\n\r\n")
            && all.len() >= split + 4 + keep
        {
            return all[split + 4..split + 4 + keep].to_vec();
        }
    }
}

#[tokio::test]
async fn attachments_are_served_by_id_for_caches_and_an_nginx_cache_serves_the_second_download() {
    let Some(nginx) = nginx::binary() else {
        return;
    };
    let server = TestServer::start_with(|c| {
        c.ws_plain = true;
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let mut alice = new_device(&server, "alice").await;
    let data = random_bytes(300_000);
    let d = start_upload(&mut alice.client, data.len() as u64).await;
    let path = format!("/v1/attachments/{}", hex::encode(&d.attachment_id));

    // Unfinished: not served.
    assert_eq!(
        http_request(server.addr, "GET", &path, &[]).await.status,
        404
    );
    let done = upload(&alice.client, &d, 0, &data).await;
    assert_eq!(done.committed_offset, data.len() as u64);

    // The origin.
    let whole = http_request(server.addr, "GET", &path, &[]).await;
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body, data.as_ref());
    let cache = whole.header("cache-control").unwrap();
    assert!(
        cache.starts_with("public, max-age=") && cache.ends_with(", immutable"),
        "{cache}"
    );
    let max_age: u64 = cache["public, max-age=".len()..cache.len() - ", immutable".len()]
        .parse()
        .unwrap();
    assert!(
        max_age > 3600,
        "cacheable until the attachment expires: {max_age}"
    );
    let etag = whole.header("etag").unwrap().to_owned();
    assert_eq!(etag, format!("\"{}\"", hex::encode(&d.attachment_id)));
    assert_eq!(
        whole.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    assert_eq!(bytes_out(&server).await, data.len() as u64);

    let tail = http_request(server.addr, "GET", &path, &[("Range", "bytes=1000-")]).await;
    assert_eq!(tail.status, 206);
    assert_eq!(tail.body, data[1000..]);
    assert_eq!(
        tail.header("content-range"),
        Some(format!("bytes 1000-{}/{}", data.len() - 1, data.len()).as_str())
    );
    let beyond = http_request(server.addr, "GET", &path, &[("Range", "bytes=300000-")]).await;
    assert_eq!(beyond.status, 416);
    let unchanged = http_request(server.addr, "GET", &path, &[("If-None-Match", &etag)]).await;
    assert_eq!((unchanged.status, unchanged.body.len()), (304, 0));
    let head = http_request(server.addr, "HEAD", &path, &[]).await;
    assert_eq!((head.status, head.body.len()), (200, 0));
    let refused = http_request(server.addr, "POST", &path, &[]).await;
    assert_eq!(refused.status, 405);
    for other in [
        "/v1/attachments/00000000000000000000000000000000".to_owned(),
        path.to_uppercase()
            .replace("/V1/ATTACHMENTS/", "/v1/attachments/"),
        format!("{path}0"),
        "/v1/attachments/..%2f..%2fmicrobot.sqlite3".to_owned(),
        "/v1/attachments/".to_owned(),
    ] {
        let answer = http_request(server.addr, "GET", &other, &[]).await;
        assert_eq!(answer.status, 404, "{other}");
        assert_eq!(answer.body, b"No such attachment.\n", "{other}");
    }
    let served_by_origin = bytes_out(&server).await;

    // Through the cache: the first download reaches the origin, the second
    // does not, and a cut download resumes from the cache with a range.
    let cdn = nginx::free_addr();
    let cache = nginx::Nginx::start(&nginx, caching_config(cdn, server.addr));
    cache.wait_listening(cdn).await;
    let first = http_request(cdn, "GET", &path, &[]).await;
    assert_eq!(
        (first.status, first.header("x-cache-status")),
        (200, Some("MISS"))
    );
    assert_eq!(first.body, data.as_ref());
    let after_first = bytes_out(&server).await;
    assert_eq!(after_first, served_by_origin + data.len() as u64);

    let second = http_request(cdn, "GET", &path, &[]).await;
    assert_eq!(
        (second.status, second.header("x-cache-status")),
        (200, Some("HIT"))
    );
    assert_eq!(second.body, data.as_ref());
    assert!(
        second
            .header("cache-control")
            .unwrap()
            .ends_with("immutable")
    );

    let start = cut_download(cdn, &path, 100_000).await;
    let range = format!("bytes={}-", start.len());
    let rest = http_request(cdn, "GET", &path, &[("Range", &range)]).await;
    assert_eq!(
        (rest.status, rest.header("x-cache-status")),
        (206, Some("HIT"))
    );
    assert_eq!([start, rest.body].concat(), data.as_ref());
    assert_eq!(
        bytes_out(&server).await,
        after_first,
        "the origin handed out nothing after the first download"
    );
    server.stop().await;
}
