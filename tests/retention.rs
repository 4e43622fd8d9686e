//! Blob retention: a blob expires a set time after its last upload or link, the sweep deletes
//! its bytes, downloads and links then get 410 blob-expired, and uploading the same bytes
//! revives it.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test]
async fn expired_blobs_answer_410_until_the_same_bytes_are_uploaded_again() {
    let app = TestApp::spawn_with(|s| short_retention(s, Duration::from_secs(6))).await;
    let user = app.user(&phone()).await;
    let data = payload(70_000, 81);
    let id = app.stored_blob(&user, &data).await;

    // A link restarts the clock: without it the blob would expire during the second wait.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(app.mint_link(&user, &id, None).await.status(), 201);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(app.blob(&user, &id).await.status(), 200, "the link kept it");

    // Then nothing touches it: it expires and the sweep deletes its bytes.
    app.wait_until_blobs_swept().await;
    assert_problem(app.blob(&user, &id).await, 410, "blob-expired").await;
    assert_problem(app.mint_link(&user, &id, None).await, 410, "blob-expired").await;

    // The sender uploads the same bytes again: the same blob id serves them.
    assert_eq!(app.stored_blob(&user, &data).await, id);
    let res = app.blob(&user, &id).await;
    assert_eq!(res.status(), 200);
    assert!(res.bytes().await.expect("bytes") == data);
    let stored = app.stored().await;
    assert!(
        stored.blobs.len() == 1 && stored.staged.is_empty(),
        "{stored:?}"
    );
}

#[tokio::test]
async fn storage_quotas_count_every_holders_blobs_until_the_retention_passes() {
    let app = TestApp::spawn_with(|s| {
        short_retention(s, Duration::from_secs(4));
        s.uploads.max_stored_blobs_per_account = 2;
        s.uploads.max_stored_bytes_per_account = 100_000;
    })
    .await;
    let ada = app.user(&phone()).await;
    let bob = app.user(&phone()).await;
    let usage = |user: &User| {
        let req = app
            .client
            .get(app.url("/v1/usage"))
            .bearer_auth(&user.token);
        async move {
            let res = req.send().await.expect("usage");
            assert_eq!(res.status(), 200);
            res.json::<serde_json::Value>().await.expect("json")
        }
    };
    let x = payload(30_000, 1);
    app.stored_blob(&ada, &x).await;
    app.stored_blob(&ada, &payload(30_000, 2)).await;
    let mine = usage(&ada).await;
    assert_eq!(mine["stored"]["blobs"], 2, "{mine}");
    assert_eq!(mine["stored"]["bytes"], 60_000, "{mine}");
    assert_eq!(mine["stored"]["max_blobs"], 2, "{mine}");
    assert_eq!(mine["stored"]["counted_for"], 4, "{mine}");
    assert_eq!(mine["unfinished"]["uploads"], 0, "{mine}");
    let res = app
        .tus_create(&ada, &[("Upload-Length", "10".into())])
        .await;
    assert_problem(res, 429, "blob-quota-exceeded").await;

    // The same bytes count for bob too, though stored once.
    app.stored_blob(&bob, &x).await;
    assert_eq!(usage(&bob).await["stored"]["bytes"], 30_000);
    let res = app
        .tus_create(&bob, &[("Upload-Length", "70001".into())])
        .await;
    assert_problem(res, 413, "storage-quota-exceeded").await;
    // A length declared later is held to what is left, and so is a body before it.
    let res = app
        .tus_create(&bob, &[("Upload-Defer-Length", "1".into())])
        .await;
    assert_eq!(res.status(), 201);
    let url = location(&res);
    let res = app
        .tus_patch_with(&bob, &url, 0, vec![1; 10], &[("Upload-Length", "80000")])
        .await;
    assert_problem(res, 413, "storage-quota-exceeded").await;
    let res = app.tus_patch(&bob, &url, 0, vec![1; 70_001]).await;
    assert_problem(res, 413, "upload-too-large").await;
    assert_eq!(usage(&bob).await["unfinished"]["uploads"], 1);

    // Once the retention has passed since ada's uploads, they no longer count.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    app.wait_until_blobs_swept().await;
    assert_eq!(usage(&ada).await["stored"]["blobs"], 0);
    assert_eq!(
        app.tus_patch(&ada, &app.tus_new(&ada, 10).await, 0, vec![1; 10])
            .await
            .status(),
        204
    );
}
