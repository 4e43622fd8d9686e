//! tus concatenation: partial uploads, the final upload that joins them into one blob (hashed
//! over the whole), and the limits, errors and expiry around them.

mod common;

use std::time::Duration;

use common::*;
use reqwest::Response;

/// Creates a partial upload and sends it `data` (when not empty); returns its URL.
async fn partial(app: &TestApp, user: &User, data: &[u8]) -> String {
    let res = app
        .tus_create(
            user,
            &[
                ("Upload-Length", data.len().to_string()),
                ("Upload-Concat", "partial".into()),
            ],
        )
        .await;
    assert_eq!(res.status(), 201);
    let url = location(&res);
    if !data.is_empty() {
        let res = app.tus_patch(user, &url, 0, data.to_vec()).await;
        assert_eq!(res.status(), 204);
        assert!(
            header(&res, "sealpost-blob-id").is_none(),
            "a part is no blob"
        );
    }
    url
}

/// Creates the final upload of `parts`, named by absolute URLs as tus-js-client does.
async fn finish(
    app: &TestApp,
    user: &User,
    parts: &[String],
    extra: &[(&str, String)],
) -> Response {
    let urls: Vec<String> = parts.iter().map(|p| app.url(p)).collect();
    let mut headers = vec![("Upload-Concat", format!("final;{}", urls.join(" ")))];
    headers.extend(extra.iter().cloned());
    app.tus_create(user, &headers).await
}

fn sha256_metadata(data: &[u8]) -> (&'static str, String) {
    (
        "Upload-Metadata",
        format!("sha256 {}", b64(&sha256_hex(data))),
    )
}

#[tokio::test]
async fn partial_uploads_join_into_one_blob_and_are_deleted() {
    let app = TestApp::spawn().await;
    let user = app.user(&phone()).await;
    let data = payload(300_000, 3);
    let chunks = [&data[..100_000], &data[100_000..100_000], &data[100_000..]];
    // Sent out of order, as parallel uploads finish.
    let last = partial(&app, &user, chunks[2]).await;
    let first = partial(&app, &user, chunks[0]).await;
    let empty = partial(&app, &user, chunks[1]).await;
    let parts = [first, empty, last];

    let head = app.tus_head(&user, &parts[0]).await;
    assert_eq!(head.status(), 200);
    assert_eq!(header(&head, "upload-concat").as_deref(), Some("partial"));
    assert_eq!(header(&head, "upload-offset").as_deref(), Some("100000"));
    assert!(header(&head, "upload-expires").is_some(), "a part expires");

    let res = finish(&app, &user, &parts, &[sha256_metadata(&data)]).await;
    assert_eq!(res.status(), 201);
    let blob = header(&res, "sealpost-blob-id").expect("blob id");
    assert_eq!(blob, sha256_hex(&data), "hashed over the whole");
    let url = location(&res);
    let fetched = app.blob(&user, &blob).await;
    assert_eq!(fetched.status(), 200);
    assert_eq!(
        fetched.bytes().await.expect("bytes").as_ref(),
        data.as_slice()
    );

    let head = app.tus_head(&user, &url).await;
    assert_eq!(head.status(), 200);
    assert_eq!(
        header(&head, "upload-concat"),
        Some(format!("final;{}", parts.join(" ")))
    );
    assert_eq!(header(&head, "upload-offset").as_deref(), Some("300000"));
    assert_eq!(header(&head, "upload-length").as_deref(), Some("300000"));
    assert_eq!(app.upload_status(&user, &url).await["state"], "complete");
    assert_problem(
        app.tus_patch(&user, &url, 300_000, vec![1]).await,
        403,
        "final-upload",
    )
    .await;

    for part in &parts {
        assert_eq!(app.tus_head(&user, part).await.status(), 404, "{part}");
    }
    let stored = app.stored().await;
    assert_eq!(stored.blobs.len(), 1, "only the blob is left: {stored:?}");
    assert!(stored.staged.is_empty(), "{stored:?}");
}

#[tokio::test]
async fn a_bad_final_upload_is_refused_and_its_parts_stay() {
    let app = TestApp::spawn_with(|s| s.uploads.max_concat_parts = 3).await;
    let user = app.user(&phone()).await;
    let other = app.user(&phone()).await;
    let data = payload(20_000, 4);
    let a = partial(&app, &user, &data[..5_000]).await;
    let b = partial(&app, &user, &data[5_000..]).await;

    let res = app
        .tus_create(
            &user,
            &[
                ("Upload-Length", "10".into()),
                ("Upload-Concat", "partial".into()),
            ],
        )
        .await;
    let unfinished = location(&res);
    let ordinary = app.tus_new(&user, 1).await;
    assert_eq!(
        app.tus_patch(&user, &ordinary, 0, vec![1]).await.status(),
        204
    );
    let theirs = partial(&app, &other, b"theirs").await;
    for parts in [
        vec![a.clone(), unfinished.clone()],
        vec![a.clone(), ordinary.clone()],
        vec![a.clone(), theirs],
        vec![a.clone(), b.clone(), a.clone()],
        vec![a.clone(), b.clone(), unfinished, ordinary],
    ] {
        let res = finish(&app, &user, &parts, &[]).await;
        assert_problem(res, 400, "invalid-concatenation").await;
    }
    let res = finish(
        &app,
        &user,
        std::slice::from_ref(&a),
        &[("Upload-Length", "5000".into())],
    )
    .await;
    assert_problem(res, 400, "invalid-concatenation").await;
    let res = app
        .tus_create(&user, &[("Upload-Concat", "final;".into())])
        .await;
    assert_problem(res, 400, "invalid-concatenation").await;

    // A wrong sha256 fails the final upload and stores nothing; the parts stay for a retry.
    let parts = [a, b];
    let before = app.stored().await;
    let res = finish(&app, &user, &parts, &[sha256_metadata(b"other bytes")]).await;
    assert_problem(res, 460, "sha256-mismatch").await;
    let after = app.stored().await;
    assert_eq!(
        (after.blobs.len(), after.staged.len()),
        (before.blobs.len(), before.staged.len()),
        "{after:?}"
    );
    let res = finish(&app, &user, &parts, &[sha256_metadata(&data)]).await;
    assert_eq!(res.status(), 201);
    assert_eq!(header(&res, "sealpost-blob-id"), Some(sha256_hex(&data)));
}

#[tokio::test]
async fn parts_count_against_the_quota_once_until_they_are_joined() {
    let app = TestApp::spawn_with(|s| s.uploads.max_active_bytes_per_account = 250).await;
    let user = app.user(&phone()).await;
    let data = payload(200, 5);
    let parts = [
        partial(&app, &user, &data[..100]).await,
        partial(&app, &user, &data[100..]).await,
    ];
    assert_problem(
        app.tus_create(&user, &[("Upload-Length", "100".into())])
            .await,
        429,
        "upload-quota-exceeded",
    )
    .await;
    assert_eq!(finish(&app, &user, &parts, &[]).await.status(), 201);
    assert_eq!(
        app.tus_create(&user, &[("Upload-Length", "250".into())])
            .await
            .status(),
        201,
        "joined parts free their share"
    );
}

#[tokio::test]
async fn a_finished_part_never_joined_expires_with_its_bytes() {
    let app = TestApp::spawn_with(|s| {
        s.uploads.ttl = Duration::from_secs(2);
        s.uploads.sweep_interval = Duration::from_millis(200);
    })
    .await;
    let user = app.user(&phone()).await;
    let part = partial(&app, &user, b"left behind").await;
    assert_eq!(
        app.stored().await.blobs.len(),
        1,
        "the part's bytes are kept"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !app.stored().await.blobs.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the expired part's bytes were never deleted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(app.tus_head(&user, &part).await.status(), 410);
    let res = finish(&app, &user, &[part], &[]).await;
    assert_problem(res, 400, "invalid-concatenation").await;
}

#[tokio::test]
async fn two_final_uploads_cannot_share_parts() {
    let app = TestApp::spawn().await;
    let user = app.user(&phone()).await;
    let data = payload(400_000, 6);
    let parts = [
        partial(&app, &user, &data[..200_000]).await,
        partial(&app, &user, &data[200_000..]).await,
    ];
    let (first, second) = tokio::join!(
        finish(&app, &user, &parts, &[]),
        finish(&app, &user, &parts, &[])
    );
    let mut statuses = [first.status().as_u16(), second.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [201, 400],
        "one joins the parts, the other finds them taken"
    );
    let blob = sha256_hex(&data);
    assert_eq!(
        app.blob(&user, &blob)
            .await
            .bytes()
            .await
            .expect("bytes")
            .as_ref(),
        data.as_slice()
    );
    let stored = app.stored().await;
    assert_eq!(stored.blobs.len(), 1, "{stored:?}");
}

#[tokio::test]
async fn large_parts_are_joined_server_side_on_s3_and_streamed_elsewhere() {
    let app = TestApp::spawn().await;
    let user = app.user(&phone()).await;
    // Every part but the last at least 5 MiB: what S3 can copy server-side.
    let data = payload((5 << 20) + 70_000, 7);
    let parts = [
        partial(&app, &user, &data[..5 << 20]).await,
        partial(&app, &user, &data[5 << 20..]).await,
    ];
    // A mismatch leaves nothing behind but the parts, whichever way they were joined.
    let res = finish(&app, &user, &parts, &[sha256_metadata(b"other")]).await;
    assert_problem(res, 460, "sha256-mismatch").await;
    let stored = app.stored().await;
    assert_eq!(stored.blobs.len(), 2, "only the parts: {stored:?}");
    let res = finish(&app, &user, &parts, &[sha256_metadata(&data)]).await;
    assert_eq!(res.status(), 201);
    assert_eq!(header(&res, "sealpost-blob-id"), Some(sha256_hex(&data)));
    assert_eq!(
        app.blob(&user, &sha256_hex(&data))
            .await
            .bytes()
            .await
            .expect("bytes")
            .as_ref(),
        data.as_slice()
    );
    let method = if app.blob_store.starts_with("s3://") {
        "copy"
    } else {
        "stream"
    };
    let series = format!("sealpost_upload_concatenations_total{{method=\"{method}\"}}");
    assert_eq!(app.metric(&series).await, 2.0, "{series}");
    let stored = app.stored().await;
    assert_eq!(stored.blobs.len(), 1, "the parts are gone: {stored:?}");
    assert!(stored.staged.is_empty(), "{stored:?}");
}

#[tokio::test]
async fn a_part_being_joined_cannot_be_deleted_and_a_final_takes_no_bytes() {
    let app = TestApp::spawn().await;
    let user = app.user(&phone()).await;
    let part = partial(&app, &user, b"some bytes").await;
    let res = app
        .tus_create(
            &user,
            &[
                ("Upload-Concat", format!("final;{part}")),
                ("Content-Type", "application/offset+octet-stream".into()),
            ],
        )
        .await;
    assert_eq!(res.status(), 201, "an empty body is no body");
    let with_body = app
        .client
        .post(app.url("/v1/uploads"))
        .bearer_auth(&user.token)
        .header("Tus-Resumable", "1.0.0")
        .header(
            "Upload-Concat",
            format!("final;{}", partial(&app, &user, b"x").await),
        )
        .header("Content-Type", "application/offset+octet-stream")
        .body("smuggled")
        .send()
        .await
        .expect("final with a body");
    assert_problem(with_body, 400, "invalid-concatenation").await;
}
