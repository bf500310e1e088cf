//! Prekey upload, bundles for every device, one-time keys handed out at most
//! once under concurrency, low-stock pushes (issue 4 point 5).

use crate::common;

use std::collections::HashSet;

use common::*;
use microbot_protocol::transport::{
    ErrorCode, FetchPrekeysRequest, PrekeyStatusRequest, UploadPrekeysRequest,
    client_frame::Request, push, response,
};

fn fetch_request(username: &str) -> Request {
    Request::FetchPrekeys(FetchPrekeysRequest {
        username: username.into(),
        device_ids: vec![],
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn bundles_cover_every_device_and_only_the_uploader_changes_its_keys() {
    let server = TestServer::start().await;
    let mut ivan = new_device(&server, "ivan").await;
    let mut fresh = server.client().await;
    let (second_id, second_key) = enrol(&mut fresh, &mut ivan.account).await;
    let mut second = reconnect(&server, second_id, &second_key).await;
    let mut judy = new_device(&server, "judy").await;

    // First upload must carry identity + signed prekey.
    let err = ivan
        .client
        .request_err(Request::UploadPrekeys(UploadPrekeysRequest::default()))
        .await;
    assert_eq!(common::code(&err), ErrorCode::NoPrekeys);
    let mut bad = prekey_upload(1, 1, 0);
    bad.identity_key = random_bytes(31);
    let err = ivan.client.request_err(Request::UploadPrekeys(bad)).await;
    assert_eq!(common::code(&err), ErrorCode::InvalidArgument);
    let mut bad = prekey_upload(1, 1, 1);
    bad.kem_prekeys[0].public_key = random_bytes(1000);
    let err = ivan.client.request_err(Request::UploadPrekeys(bad)).await;
    assert_eq!(common::code(&err), ErrorCode::InvalidArgument);

    let up1 = prekey_upload(1, 3, 0);
    let up2 = prekey_upload(100, 3, 0);
    assert!(matches!(
        ivan.client
            .request(Request::UploadPrekeys(up1.clone()))
            .await,
        response::Result::Ok(_)
    ));
    assert!(matches!(
        second.request(Request::UploadPrekeys(up2.clone())).await,
        response::Result::Ok(_)
    ));

    let response::Result::PrekeyBundles(b) = judy.client.request(fetch_request("ivan")).await
    else {
        panic!()
    };
    assert_eq!(b.bundles.len(), 2);
    let by_device = |id: u64| b.bundles.iter().find(|x| x.device_id == id).unwrap();
    assert_eq!(by_device(ivan.device_id).identity_key, up1.identity_key);
    assert_eq!(by_device(second_id).identity_key, up2.identity_key);
    assert_eq!(
        by_device(second_id).one_time_prekey.as_ref().unwrap().id,
        100
    );
    // No one-time KEM keys uploaded: the last-resort one, flagged.
    let kem = by_device(second_id);
    assert!(kem.kem_prekey_is_last_resort);
    assert_eq!(kem.kem_prekey.as_ref().unwrap().id, 999_999);

    // Restrict to one device.
    let response::Result::PrekeyBundles(b) = judy
        .client
        .request(Request::FetchPrekeys(FetchPrekeysRequest {
            username: "ivan".into(),
            device_ids: vec![second_id],
        }))
        .await
    else {
        panic!()
    };
    assert_eq!(b.bundles.len(), 1);
    assert_eq!(b.bundles[0].one_time_prekey.as_ref().unwrap().id, 101);

    // Judy's upload touches only judy's device.
    assert!(matches!(
        judy.client
            .request(Request::UploadPrekeys(prekey_upload(7, 2, 0)))
            .await,
        response::Result::Ok(_)
    ));
    let response::Result::PrekeyStatus(s) = ivan
        .client
        .request(Request::PrekeyStatus(PrekeyStatusRequest {}))
        .await
    else {
        panic!()
    };
    assert_eq!(s.one_time_prekeys, 2);
    assert_eq!(s.signed_prekey_id, 1);

    let err = judy.client.request_err(fetch_request("nobody")).await;
    assert_eq!(common::code(&err), ErrorCode::UnknownAccount);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_fetches_never_hand_out_the_same_one_time_prekey() {
    // 56 fetches of one account by one account: far over the per-target
    // limit, which review_groups_prekeys.rs tests.
    let server = TestServer::start_with(|c| c.rate_prekey_fetch_per_target = 0).await;
    let mut kim = new_device(&server, "kim").await;
    assert!(matches!(
        kim.client
            .request(Request::UploadPrekeys(prekey_upload(1, 40, 10)))
            .await,
        response::Result::Ok(_)
    ));
    let fetcher = new_device(&server, "leo").await;
    let (fid, fkey) = (fetcher.device_id, fetcher.key.clone());

    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut client = reconnect(&server, fid, &fkey).await;
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..7 {
                let response::Result::PrekeyBundles(b) = client.request(fetch_request("kim")).await
                else {
                    panic!()
                };
                let bundle = &b.bundles[0];
                got.push((
                    bundle.one_time_prekey.as_ref().map(|k| k.id),
                    bundle
                        .kem_prekey
                        .as_ref()
                        .map(|k| (k.id, bundle.kem_prekey_is_last_resort)),
                ));
            }
            got
        }));
    }
    let mut one_time = Vec::new();
    let mut kem = Vec::new();
    let mut empty = 0;
    for task in tasks {
        for (otk, k) in task.await.unwrap() {
            match otk {
                Some(id) => one_time.push(id),
                None => empty += 1,
            }
            if let Some((id, last_resort)) = k
                && !last_resort
            {
                kem.push(id);
            }
        }
    }
    let unique: HashSet<u32> = one_time.iter().copied().collect();
    assert_eq!(one_time.len(), 40, "56 fetches, 40 keys");
    assert_eq!(unique.len(), 40, "no one-time prekey handed out twice");
    assert_eq!(empty, 16);
    let unique_kem: HashSet<u32> = kem.iter().copied().collect();
    assert_eq!((kem.len(), unique_kem.len()), (10, 10));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn low_stock_is_pushed_to_the_connected_device_and_at_login() {
    let server = TestServer::start_with(|c| c.prekey_low_stock_threshold = 5).await;
    let mut mia = new_device(&server, "mia").await;
    let mut ned = new_device(&server, "ned").await;
    assert!(matches!(
        mia.client
            .request(Request::UploadPrekeys(prekey_upload(1, 6, 0)))
            .await,
        response::Result::Ok(_)
    ));
    // 6 -> 5: not below the threshold, no push.
    ned.client.request(fetch_request("mia")).await;
    assert!(
        mia.client
            .push_within(std::time::Duration::from_millis(300))
            .await
            .is_none()
    );
    // 5 -> 4: below.
    ned.client.request(fetch_request("mia")).await;
    let p = mia.client.next_push().await;
    let Some(push::Event::PrekeyLowStock(low)) = p.event else {
        panic!("{p:?}")
    };
    assert_eq!((low.one_time_prekeys, low.threshold), (4, 5));
    // A device that was offline learns it at login.
    let mut again = reconnect(&server, mia.device_id, &mia.key).await;
    let p = again.next_push().await;
    assert!(
        matches!(p.event, Some(push::Event::PrekeyLowStock(_))),
        "{p:?}"
    );
    server.stop().await;
}
