//! Attachment transfers over QUIC for tests: upload requests, resumes,
//! the per-transfer streams and their result frames (SPEC.md §12.11).

use bytes::{Bytes, BytesMut};
use microbot_protocol::codec::{FrameDecoder, encode_frame};
use microbot_protocol::transport::{
    self, AttachmentStreamHeader, AttachmentStreamResult, attachment_stream_header,
    client_frame::Request, response,
};

use super::{Client, TIMEOUT};

pub async fn start_upload(client: &mut Client, size: u64) -> transport::AttachmentUploadDescriptor {
    match client
        .request(Request::AttachmentUpload(
            transport::AttachmentUploadRequest {
                size,
                attachment_id: Bytes::new(),
            },
        ))
        .await
    {
        response::Result::AttachmentUpload(d) => d,
        other => panic!("upload request failed: {other:?}"),
    }
}

pub async fn resume(client: &mut Client, id: &Bytes) -> transport::AttachmentUploadDescriptor {
    match client
        .request(Request::AttachmentUpload(
            transport::AttachmentUploadRequest {
                size: 0,
                attachment_id: id.clone(),
            },
        ))
        .await
    {
        response::Result::AttachmentUpload(d) => d,
        other => panic!("resume failed: {other:?}"),
    }
}

pub async fn open(
    client: &Client,
    header: attachment_stream_header::Kind,
) -> (quinn::SendStream, quinn::RecvStream) {
    let (mut send, recv) = client.connection.open_bi().await.unwrap();
    let mut buf = BytesMut::new();
    encode_frame(&AttachmentStreamHeader { kind: Some(header) }, &mut buf).unwrap();
    send.write_all(&buf).await.unwrap();
    (send, recv)
}

/// Reads the result frame; returns it and the raw bytes after it.
pub async fn read_result(recv: &mut quinn::RecvStream) -> (AttachmentStreamResult, Vec<u8>) {
    let mut decoder = FrameDecoder::new(64 * 1024);
    let mut all = Vec::new();
    while let Some(chunk) = tokio::time::timeout(TIMEOUT, recv.read_chunk(1 << 20, true))
        .await
        .unwrap()
        .unwrap_or(None)
    {
        all.extend_from_slice(&chunk.bytes);
    }
    // The frame comes first; everything after it is raw.
    let mut len = 0usize;
    let mut prefix = 0usize;
    for (i, b) in all.iter().enumerate() {
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            prefix = i + 1;
            break;
        }
    }
    decoder.push(&all[..prefix + len]).unwrap();
    let result = decoder
        .next_message::<AttachmentStreamResult>()
        .unwrap()
        .unwrap();
    (result, all[prefix + len..].to_vec())
}

pub async fn upload(
    client: &Client,
    d: &transport::AttachmentUploadDescriptor,
    offset: u64,
    bytes: &[u8],
) -> AttachmentStreamResult {
    let (mut send, mut recv) = open(
        client,
        attachment_stream_header::Kind::Upload(transport::AttachmentUploadStart {
            attachment_id: d.attachment_id.clone(),
            upload_token: d.upload_token.clone(),
            offset,
        }),
    )
    .await;
    let _ = send.write_all(bytes).await;
    let _ = send.finish();
    read_result(&mut recv).await.0
}

pub async fn download(
    client: &Client,
    id: &Bytes,
    offset: u64,
    length: u64,
) -> (AttachmentStreamResult, Vec<u8>) {
    let (mut send, mut recv) = open(
        client,
        attachment_stream_header::Kind::Download(transport::AttachmentDownloadStart {
            attachment_id: id.clone(),
            offset,
            length,
        }),
    )
    .await;
    send.finish().unwrap();
    read_result(&mut recv).await
}
