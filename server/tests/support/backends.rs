//! The storage backends a review test runs its story on (issue 14): SQLite
//! always, PostgreSQL in a fresh schema when `MICROBOT_TEST_POSTGRES` is set
//! (without it the PostgreSQL half is skipped with a note), and the
//! attachment stream helpers those stories share.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::{Bytes, BytesMut};
use microbot_protocol::codec::{FrameDecoder, encode_frame};
use microbot_protocol::transport::{
    self, AttachmentStreamHeader, AttachmentStreamResult, attachment_stream_header,
    client_frame::Request, response,
};
use microbot_server::Config;
use microbot_server::config::SecretUrl;

use super::engines::Schema;
use crate::common::{Client, TIMEOUT, TestServer};

/// One backend: its name and, for PostgreSQL, the schema kept alive for
/// the test's duration.
pub struct Backend {
    /// "sqlite" or "postgres".
    pub name: &'static str,
    schema: Option<Schema>,
}

impl Backend {
    /// Points a server configuration at this backend.
    pub fn apply(&self, config: &mut Config) {
        if let Some(schema) = &self.schema {
            config.storage = Some(SecretUrl::new(schema.url.clone()));
            config.storage_pool_size = 4;
        }
    }

    /// Starts a test server on this backend with `tweak` applied.
    pub async fn start(&self, tweak: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::start_with(|c| {
            self.apply(c);
            tweak(c);
        })
        .await
    }
}

/// SQLite, and PostgreSQL when configured.
pub fn backends(test: &str) -> Vec<Backend> {
    let mut out = vec![Backend {
        name: "sqlite",
        schema: None,
    }];
    match std::env::var("MICROBOT_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => out.push(Backend {
            name: "postgres",
            schema: Some(Schema::new(&url, &format!("r_{test}"))),
        }),
        _ => eprintln!(
            "{test}: MICROBOT_TEST_POSTGRES is not set, skipped the PostgreSQL half \
             (eval \"$(bash scripts/services.sh)\" starts one)"
        ),
    }
    out
}

/// `attachment_upload{size}` or, with an id, a resume; the raw result.
pub async fn upload_request(client: &mut Client, size: u64, id: Bytes) -> response::Result {
    client
        .request(Request::AttachmentUpload(
            transport::AttachmentUploadRequest {
                size,
                attachment_id: id,
            },
        ))
        .await
}

/// Reads an attachment stream's result frame and the raw bytes after it.
pub async fn read_result(recv: &mut quinn::RecvStream) -> (AttachmentStreamResult, Vec<u8>) {
    let mut all = Vec::new();
    while let Some(chunk) = tokio::time::timeout(TIMEOUT, recv.read_chunk(1 << 20, true))
        .await
        .unwrap()
        .unwrap_or(None)
    {
        all.extend_from_slice(&chunk.bytes);
    }
    let mut len = 0usize;
    let mut prefix = 0usize;
    for (i, b) in all.iter().enumerate() {
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            prefix = i + 1;
            break;
        }
    }
    let mut decoder = FrameDecoder::new(64 * 1024);
    decoder.push(&all[..prefix + len]).unwrap();
    let result = decoder
        .next_message::<AttachmentStreamResult>()
        .unwrap()
        .unwrap();
    (result, all[prefix + len..].to_vec())
}

/// Opens an attachment stream with `header` and sends `bytes` after it.
pub async fn stream(
    client: &Client,
    header: attachment_stream_header::Kind,
    bytes: &[u8],
) -> (AttachmentStreamResult, Vec<u8>) {
    let (mut send, mut recv) = client.connection.open_bi().await.unwrap();
    let mut buf = BytesMut::new();
    encode_frame(&AttachmentStreamHeader { kind: Some(header) }, &mut buf).unwrap();
    send.write_all(&buf).await.unwrap();
    let _ = send.write_all(bytes).await;
    let _ = send.finish();
    read_result(&mut recv).await
}

/// Uploads `bytes` at `offset` with the descriptor's token.
pub async fn upload(
    client: &Client,
    d: &transport::AttachmentUploadDescriptor,
    offset: u64,
    bytes: &[u8],
) -> AttachmentStreamResult {
    stream(
        client,
        attachment_stream_header::Kind::Upload(transport::AttachmentUploadStart {
            attachment_id: d.attachment_id.clone(),
            upload_token: d.upload_token.clone(),
            offset,
        }),
        bytes,
    )
    .await
    .0
}
