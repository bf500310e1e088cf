//! Issue 14, accounts and attachments: a deleted account's id is never
//! handed to a new account, and its attachments (rows and files) go with it
//! (SPEC.md §12.11, §14.1); the attachment errors SPEC.md now names (size 0,
//! an unfinished download, another account's resume). Each story runs on
//! SQLite and on PostgreSQL (when `MICROBOT_TEST_POSTGRES` is set).

use crate::common;
use crate::support::backends;

use std::time::Duration;

use backends::{backends, upload, upload_request};
use bytes::Bytes;
use common::*;
use microbot_protocol::transport::{
    self, DeleteAccountRequest, ErrorCode, attachment_stream_header, client_frame::Request,
    response,
};

fn descriptor(reply: response::Result) -> transport::AttachmentUploadDescriptor {
    match reply {
        response::Result::AttachmentUpload(d) => d,
        other => panic!("expected an upload descriptor, got {other:?}"),
    }
}

fn error_code(reply: &response::Result) -> ErrorCode {
    match reply {
        response::Result::Error(e) => code(e),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_account_inherits_nothing_from_a_deleted_one() {
    for be in backends("inherit") {
        let server = be
            .start(|c| {
                c.attachment_quota_bytes = 1000;
                c.purge_interval_secs = 1;
            })
            .await;
        // The deleted account is the newest one, so SQLite without
        // AUTOINCREMENT would hand its id to the next registration.
        let mut victim = new_device(&server, "mallory").await;
        let d = descriptor(upload_request(&mut victim.client, 1000, Bytes::new()).await);
        let result = upload(&victim.client, &d, 0, &[7u8; 400]).await;
        assert_eq!(result.committed_offset, 400, "{}", be.name);
        let file = server
            .dir
            .path()
            .join("attachments")
            .join(hex::encode(&d.attachment_id));
        assert!(file.exists(), "{}: the partial upload is on disk", be.name);
        let reply = victim
            .client
            .request(Request::DeleteAccount(DeleteAccountRequest {
                password: victim.account.password.clone(),
                totp_code: victim.account.auth.fresh(),
            }))
            .await;
        assert!(matches!(reply, response::Result::Ok(_)), "{reply:?}");

        let mut heir = new_device(&server, "newcomer").await;
        let resumed = upload_request(&mut heir.client, 0, d.attachment_id.clone()).await;
        assert_eq!(
            error_code(&resumed),
            ErrorCode::UnknownAttachment,
            "{}: the old upload is not the new account's",
            be.name
        );
        let fresh = upload_request(&mut heir.client, 1000, Bytes::new()).await;
        assert!(
            matches!(fresh, response::Result::AttachmentUpload(_)),
            "{}: the new account's quota is whole: {fresh:?}",
            be.name
        );
        // The sweeper deletes the deleted account's file.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while file.exists() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: the deleted account's attachment file stays",
                be.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn attachment_errors_are_the_ones_spec_names() {
    for be in backends("attach_errors") {
        let server = be.start(|_| {}).await;
        let mut alice = new_device(&server, "alice").await;
        let mut bob = new_device(&server, "bob").await;
        // §12.11: size 0 is a malformed request, not a too-large one.
        let zero = upload_request(&mut alice.client, 0, Bytes::new()).await;
        assert_eq!(error_code(&zero), ErrorCode::InvalidArgument, "{}", be.name);

        let d = descriptor(upload_request(&mut alice.client, 10, Bytes::new()).await);
        assert_eq!(
            upload(&alice.client, &d, 0, b"12345")
                .await
                .committed_offset,
            5
        );
        // Resuming another account's upload: UNKNOWN_ATTACHMENT.
        let stolen = upload_request(&mut bob.client, 0, d.attachment_id.clone()).await;
        assert_eq!(
            error_code(&stolen),
            ErrorCode::UnknownAttachment,
            "{}",
            be.name
        );
        // Downloading an unfinished attachment: UNKNOWN_ATTACHMENT, on the
        // request stream and on a download stream.
        let early = bob
            .client
            .request(Request::AttachmentDownload(
                transport::AttachmentDownloadRequest {
                    attachment_id: d.attachment_id.clone(),
                },
            ))
            .await;
        assert_eq!(
            error_code(&early),
            ErrorCode::UnknownAttachment,
            "{}",
            be.name
        );
        let (result, bytes) = backends::stream(
            &bob.client,
            attachment_stream_header::Kind::Download(transport::AttachmentDownloadStart {
                attachment_id: d.attachment_id.clone(),
                offset: 0,
                length: 0,
            }),
            &[],
        )
        .await;
        assert_eq!(
            result.error.as_ref().map(code),
            Some(ErrorCode::UnknownAttachment),
            "{}",
            be.name
        );
        assert!(bytes.is_empty());
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unconfirmed_account_expires_and_frees_its_username() {
    for be in backends("squat") {
        let server = be
            .start(|c| {
                c.unconfirmed_account_ttl_secs = 2;
                c.purge_interval_secs = 1;
                // The test registers the same name until it is free.
                c.rate_register_per_ip = 0;
            })
            .await;
        let mut client = server.client().await;
        // A squatter registers a name and never confirms it; a confirmed
        // account registered at the same time stays.
        register(&mut client, "squatted").await;
        let mut owner = register_active(&mut client, "confirmed").await;
        let taken = client
            .request(Request::Register(transport::RegisterRequest {
                username: "squatted".into(),
                password: "another-password".into(),
                bot: false,
            }))
            .await;
        assert_eq!(error_code(&taken), ErrorCode::UsernameTaken, "{}", be.name);
        // After the time-to-live and a sweep, the name is free again.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let fresh = loop {
            let reply = client
                .request(Request::Register(transport::RegisterRequest {
                    username: "squatted".into(),
                    password: "another-password".into(),
                    bot: false,
                }))
                .await;
            match reply {
                response::Result::Register(r) => break r,
                ref other => {
                    assert_eq!(error_code(other), ErrorCode::UsernameTaken, "{}", be.name);
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "{}: the unconfirmed account never expired",
                        be.name
                    );
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        };
        assert!(!fresh.totp_secret_base32.is_empty());
        // The confirmed account is untouched: it still enrols a device.
        let key = device_key();
        let code = owner.auth.fresh();
        let reply = client
            .request(enrol_request(
                &owner,
                &key,
                transport::second_factor::Factor::TotpCode(code),
            ))
            .await;
        assert!(
            matches!(reply, response::Result::EnrolDevice(_)),
            "{}: {reply:?}",
            be.name
        );
        server.stop().await;
    }
}
