//! tus 1.0.0: creation, append, offsets, checksums, limits, ownership, termination, expiry,
//! deduplication and downloads.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test]
async fn options_advertises_the_protocol() {
    let app = TestApp::spawn_with(|s| s.uploads.max_size = 12345).await;
    let res = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/v1/uploads"))
        .send()
        .await
        .expect("options");
    assert_eq!(res.status(), 204);
    assert_eq!(header(&res, "tus-version").as_deref(), Some("1.0.0"));
    assert_eq!(header(&res, "tus-resumable").as_deref(), Some("1.0.0"));
    assert_eq!(header(&res, "tus-max-size").as_deref(), Some("12345"));
    assert_eq!(
        header(&res, "tus-checksum-algorithm").as_deref(),
        Some("sha1,sha256")
    );
    let ext = header(&res, "tus-extension").expect("extensions");
    for e in [
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "expiration",
        "checksum",
        "termination",
        "concatenation",
    ] {
        assert!(ext.split(',').any(|x| x == e), "{e} missing from {ext}");
    }
}

#[tokio::test]
async fn upload_in_chunks_then_download_the_blob() {
    let app = TestApp::spawn().await;
    let user = app.user(&phone()).await;
    let data = payload(300_000, 1);
    let meta = format!(
        "filename {},content_type {},sha256 {}",
        b64("clip.bin"),
        b64("video/mp4"),
        sha256_b64(&data)
    );
    let res = app
        .tus_create(
            &user,
            &[
                ("Upload-Length", data.len().to_string()),
                ("Upload-Metadata", meta.clone()),
            ],
        )
        .await;
    assert_eq!(res.status(), 201);
    assert!(header(&res, "upload-expires").is_some());
    let url = location(&res);
    assert!(url.starts_with("/v1/uploads/"), "{url}");

    let head = app.tus_head(&user, &url).await;
    assert_eq!(head.status(), 200);
    assert_eq!(header(&head, "upload-offset").as_deref(), Some("0"));
    assert_eq!(header(&head, "upload-length").as_deref(), Some("300000"));
    assert_eq!(
        header(&head, "upload-metadata").as_deref(),
        Some(meta.as_str())
    );
    assert_eq!(header(&head, "cache-control").as_deref(), Some("no-store"));

    let res = app
        .tus_patch(&user, &url, 0, data[..100_000].to_vec())
        .await;
    assert_eq!(res.status(), 204);
    assert_eq!(header(&res, "upload-offset").as_deref(), Some("100000"));
    assert!(header(&res, "sealpost-blob-id").is_none());
    let res = app
        .tus_patch(&user, &url, 100_000, data[100_000..].to_vec())
        .await;
    assert_eq!(res.status(), 204);
    let blob = sha256_hex(&data);
    assert_eq!(header(&res, "sealpost-blob-id"), Some(blob.clone()));

    let head = app.tus_head(&user, &url).await;
    assert_eq!(header(&head, "upload-offset").as_deref(), Some("300000"));
    assert_eq!(header(&head, "sealpost-blob-id"), Some(blob.clone()));

    let status = app.upload_status(&user, &url).await;
    assert_eq!(status["state"], "complete");
    assert_eq!(status["blob_id"], blob.as_str());
    assert_eq!(status["filename"], "clip.bin");
    assert_eq!(status["content_type"], "video/mp4");
    assert_eq!(status["kind"], "encrypted");

    let res = app.blob(&user, &blob).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-length").as_deref(), Some("300000"));
    assert_eq!(header(&res, "etag"), Some(format!("\"{blob}\"")));
    assert_eq!(res.bytes().await.expect("bytes").as_ref(), data.as_slice());
    assert!(!app.has_staged(&url).await);

    // Another account can fetch the blob by id, but not see the upload.
    let other = app.user(&phone()).await;
    assert_eq!(app.blob(&other, &blob).await.status(), 200);
    assert_problem(
        app.client
            .get(app.url(&url))
            .bearer_auth(&other.token)
            .send()
            .await
            .expect("get"),
        404,
        "not-found",
    )
    .await;
    assert_problem(app.blob(&user, &"0".repeat(64)).await, 404, "not-found").await;
    assert_problem(app.blob(&user, "nothex").await, 404, "not-found").await;
}

#[tokio::test]
async fn creation_with_upload_and_deferred_length() {
    let app = TestApp::spawn().await;
    let user = app.user(&phone()).await;
    let data = payload(5000, 2);
    let res = app
        .client
        .post(app.url("/v1/uploads"))
        .bearer_auth(&user.token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", "5000")
        .header("Content-Type", "application/offset+octet-stream")
        .body(data.clone())
        .send()
        .await
        .expect("create");
    assert_eq!(res.status(), 201);
    assert_eq!(header(&res, "upload-offset").as_deref(), Some("5000"));
    assert_eq!(header(&res, "sealpost-blob-id"), Some(sha256_hex(&data)));

    let res = app
        .tus_create(&user, &[("Upload-Defer-Length", "1".into())])
        .await;
    assert_eq!(res.status(), 201);
    let url = location(&res);
    let head = app.tus_head(&user, &url).await;
    assert_eq!(header(&head, "upload-defer-length").as_deref(), Some("1"));
    assert!(header(&head, "upload-length").is_none());
    assert_eq!(
        app.tus_patch(&user, &url, 0, data[..1000].to_vec())
            .await
            .status(),
        204
    );
    let res = app
        .tus_patch_with(
            &user,
            &url,
            1000,
            data[1000..].to_vec(),
            &[("Upload-Length", "5000")],
        )
        .await;
    assert_eq!(res.status(), 204);
    assert_eq!(header(&res, "sealpost-blob-id"), Some(sha256_hex(&data)));

    // A zero-length upload is complete on creation.
    let res = app
        .tus_create(&user, &[("Upload-Length", "0".into())])
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(header(&res, "sealpost-blob-id"), Some(sha256_hex(b"")));
}

#[tokio::test]
async fn protocol_errors_have_tus_statuses_and_codes() {
    let app = TestApp::spawn_with(|s| s.uploads.max_size = 1000).await;
    let user = app.user(&phone()).await;
    let res = app
        .client
        .post(app.url("/v1/uploads"))
        .bearer_auth(&user.token)
        .header("Upload-Length", "10")
        .send()
        .await
        .expect("r");
    assert_eq!(header(&res, "tus-version").as_deref(), Some("1.0.0"));
    assert_problem(res, 412, "unsupported-version").await;
    let res = app
        .client
        .post(app.url("/v1/uploads"))
        .bearer_auth(&user.token)
        .header("Tus-Resumable", "0.2.0")
        .header("Upload-Length", "1")
        .send()
        .await
        .expect("r");
    assert_problem(res, 412, "unsupported-version").await;
    assert_problem(app.tus_create(&user, &[]).await, 400, "invalid-header").await;
    assert_problem(
        app.tus_create(&user, &[("Upload-Length", "-3".into())])
            .await,
        400,
        "invalid-header",
    )
    .await;
    assert_problem(
        app.tus_create(&user, &[("Upload-Length", "1001".into())])
            .await,
        413,
        "upload-too-large",
    )
    .await;
    assert_problem(
        app.tus_create(
            &user,
            &[
                ("Upload-Length", "10".into()),
                ("Upload-Metadata", "kind Ym9ndXM=".into()),
            ],
        )
        .await,
        400,
        "invalid-metadata",
    )
    .await;

    let url = app.tus_new(&user, 10).await;
    let body = assert_problem(
        app.tus_patch(&user, &url, 3, vec![1, 2]).await,
        409,
        "mismatching-upload-offset",
    )
    .await;
    assert_eq!(
        (
            body["expected-offset"].as_u64(),
            body["provided-offset"].as_u64()
        ),
        (Some(0), Some(3))
    );
    let res = app
        .tus_patch_with(
            &user,
            &url,
            0,
            b"hi".to_vec(),
            &[("Content-Type", "text/plain")],
        )
        .await;
    assert_problem(res, 415, "unsupported-media-type").await;
    // Past the declared length: refused before the body is read, nothing kept.
    assert_problem(
        app.tus_patch(&user, &url, 0, vec![0; 11]).await,
        413,
        "upload-length-exceeded",
    )
    .await;
    assert_eq!(
        header(&app.tus_head(&user, &url).await, "upload-offset").as_deref(),
        Some("0")
    );
    let res = app
        .tus_patch_with(&user, &url, 0, vec![0; 2], &[("Upload-Length", "12")])
        .await;
    assert_problem(res, 400, "inconsistent-upload-length").await;
    // Completed uploads take no more bytes.
    assert_eq!(
        app.tus_patch(&user, &url, 0, vec![7; 10]).await.status(),
        204
    );
    assert_problem(
        app.tus_patch(&user, &url, 10, vec![1]).await,
        400,
        "completed-upload",
    )
    .await;
    let unknown = "/v1/uploads/ffffffffffffffffffffffffffffffff";
    assert_eq!(app.tus_head(&user, unknown).await.status(), 404);
}

#[tokio::test]
async fn checksums_are_verified_per_request_and_for_the_whole_upload() {
    let app = TestApp::spawn().await;
    let user = app.user(&phone()).await;
    let data = payload(4000, 3);
    let url = app.tus_new(&user, 4000).await;
    let patch = |offset: u64, body: Vec<u8>, checksum: String| {
        let (app, user, url) = (&app, &user, &url);
        async move {
            app.tus_patch_with(user, url, offset, body, &[("Upload-Checksum", &checksum)])
                .await
        }
    };
    use base64::Engine;
    use sha1::Digest as _;
    let sha1 = base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(&data[..1000]));
    assert_eq!(
        patch(0, data[..1000].to_vec(), format!("sha1 {sha1}"))
            .await
            .status(),
        204
    );
    let wrong = sha256_b64(b"something else");
    let res = patch(1000, data[1000..2000].to_vec(), format!("sha256 {wrong}")).await;
    assert_problem(res, 460, "checksum-mismatch").await;
    assert_eq!(
        header(&app.tus_head(&user, &url).await, "upload-offset").as_deref(),
        Some("1000")
    );
    let res = patch(
        1000,
        data[1000..].to_vec(),
        format!("sha256 {}", sha256_b64(&data[1000..])),
    )
    .await;
    assert_eq!(header(&res, "sealpost-blob-id"), Some(sha256_hex(&data)));
    assert_problem(
        patch(0, vec![], "md5 AAAA".into()).await,
        400,
        "unsupported-checksum-algorithm",
    )
    .await;

    // A declared sha256 that the bytes do not match fails the upload; nothing is stored.
    let meta = format!("sha256 {}", sha256_b64(b"not these bytes"));
    let res = app
        .tus_create(
            &user,
            &[("Upload-Length", "100".into()), ("Upload-Metadata", meta)],
        )
        .await;
    let url = location(&res);
    let bytes = payload(100, 9);
    assert_problem(
        app.tus_patch(&user, &url, 0, bytes.clone()).await,
        460,
        "sha256-mismatch",
    )
    .await;
    let stored = app.stored().await;
    assert!(
        stored.staged.is_empty() && stored.blobs.len() == 1,
        "only the first blob is stored: {stored:?}"
    );
    assert_eq!(app.blob(&user, &sha256_hex(&bytes)).await.status(), 404);
    let status = app.upload_status(&user, &url).await;
    assert_eq!(
        (status["state"].as_str(), status["error"].as_str()),
        (Some("failed"), Some("sha256-mismatch"))
    );
    assert_problem(
        app.tus_patch(&user, &url, 100, vec![]).await,
        400,
        "upload-failed",
    )
    .await;
}

#[tokio::test]
async fn uploads_belong_to_their_creator() {
    let app = TestApp::spawn().await;
    let owner = app.user(&phone()).await;
    let other = app.user(&phone()).await;
    let url = app.tus_new(&owner, 10).await;
    assert_eq!(app.tus_head(&other, &url).await.status(), 404);
    assert_problem(
        app.tus_patch(&other, &url, 0, vec![1; 10]).await,
        404,
        "not-found",
    )
    .await;
    let res = app
        .client
        .delete(app.url(&url))
        .bearer_auth(&other.token)
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .expect("d");
    assert_problem(res, 404, "not-found").await;
    assert_eq!(app.tus_head(&owner, &url).await.status(), 200);
}

#[tokio::test]
async fn termination_deletes_bytes_and_row() {
    let app = TestApp::spawn().await;
    let user = app.user(&phone()).await;
    let url = app.tus_new(&user, 10).await;
    assert_eq!(
        app.tus_patch(&user, &url, 0, vec![1; 4]).await.status(),
        204
    );
    assert!(app.has_staged(&url).await);
    let res = app
        .client
        .delete(app.url(&url))
        .bearer_auth(&user.token)
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .expect("d");
    assert_eq!(res.status(), 204);
    let stored = app.stored().await;
    assert!(stored.staged.is_empty(), "{stored:?}");
    assert_eq!(app.tus_head(&user, &url).await.status(), 404);
}

#[tokio::test]
async fn identical_bytes_dedup_to_one_blob() {
    let app = TestApp::spawn().await;
    let a = app.user(&phone()).await;
    let b = app.user(&phone()).await;
    let data = payload(2048, 4);
    let mut ids = vec![];
    for user in [&a, &b, &a] {
        let url = app.tus_new(user, 2048).await;
        let res = app.tus_patch(user, &url, 0, data.clone()).await;
        ids.push(header(&res, "sealpost-blob-id").expect("blob id"));
    }
    assert!(ids.iter().all(|id| *id == sha256_hex(&data)));
    let stored = app.stored().await;
    assert!(
        stored.blobs.len() == 1 && stored.staged.is_empty(),
        "one copy, nothing staged: {stored:?}"
    );
}

#[tokio::test]
async fn per_account_limits_on_unfinished_uploads() {
    let app = TestApp::spawn_with(|s| {
        s.uploads.max_active_per_account = 2;
        s.uploads.max_active_bytes_per_account = 100;
    })
    .await;
    let user = app.user(&phone()).await;
    app.tus_new(&user, 60).await;
    assert_problem(
        app.tus_create(&user, &[("Upload-Length", "41".into())])
            .await,
        429,
        "upload-quota-exceeded",
    )
    .await;
    let url = app.tus_new(&user, 40).await;
    assert_problem(
        app.tus_create(&user, &[("Upload-Length", "1".into())])
            .await,
        429,
        "too-many-uploads",
    )
    .await;
    // Finishing one frees its slot.
    assert_eq!(
        app.tus_patch(&user, &url, 0, vec![5; 40]).await.status(),
        204
    );
    assert_eq!(
        app.tus_create(&user, &[("Upload-Length", "1".into())])
            .await
            .status(),
        201
    );
    // Other accounts are unaffected.
    let other = app.user(&phone()).await;
    assert_eq!(
        app.tus_create(&other, &[("Upload-Length", "100".into())])
            .await
            .status(),
        201
    );
}

#[tokio::test]
async fn concurrent_creations_never_overshoot_the_limits() {
    let app = TestApp::spawn_with(|s| s.uploads.max_active_per_account = 3).await;
    let user = app.user(&phone()).await;
    let headers = [("Upload-Length", "10".to_owned())];
    let creations = (0..12).map(|_| app.tus_create(&user, &headers));
    let statuses: Vec<u16> = futures_util::future::join_all(creations)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        3,
        "exactly the limit is admitted: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 429),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn unfinished_uploads_expire_and_are_swept() {
    // Expiry is kept in whole seconds, so a 3 s lifetime is at least 2 s: enough for the first
    // PATCH on a loaded machine, while 4.5 s after it the upload is surely gone.
    let app = TestApp::spawn_with(|s| {
        s.uploads.ttl = Duration::from_secs(3);
        s.uploads.finished_retention = Duration::from_secs(3600);
        s.uploads.sweep_interval = Duration::from_millis(200);
    })
    .await;
    let user = app.user(&phone()).await;
    let url = app.tus_new(&user, 10).await;
    assert_eq!(
        app.tus_patch(&user, &url, 0, vec![1; 3]).await.status(),
        204
    );
    assert!(app.has_staged(&url).await);
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_problem(
        app.tus_patch(&user, &url, 3, vec![1; 3]).await,
        410,
        "upload-expired",
    )
    .await;
    assert_eq!(app.tus_head(&user, &url).await.status(), 410);
    assert!(!app.has_staged(&url).await, "the sweep deletes the bytes");
    let res = app
        .client
        .get(app.url(&url))
        .bearer_auth(&user.token)
        .send()
        .await
        .expect("get");
    assert_problem(res, 410, "upload-expired").await;
}

#[tokio::test]
async fn expired_rows_are_purged_after_the_retention() {
    let app = TestApp::spawn_with(|s| {
        s.uploads.ttl = Duration::from_secs(1);
        s.uploads.finished_retention = Duration::ZERO;
        s.uploads.sweep_interval = Duration::from_millis(200);
    })
    .await;
    let user = app.user(&phone()).await;
    let url = app.tus_new(&user, 10).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(app.tus_head(&user, &url).await.status(), 404);
}

#[tokio::test]
async fn deferred_lengths_count_against_the_quota() {
    let app = TestApp::spawn_with(|s| s.uploads.max_active_bytes_per_account = 100).await;
    let user = app.user(&phone()).await;
    app.tus_new(&user, 60).await;
    let res = app
        .tus_create(&user, &[("Upload-Defer-Length", "1".into())])
        .await;
    let url = location(&res);
    let res = app
        .tus_patch_with(&user, &url, 0, vec![1; 10], &[("Upload-Length", "50")])
        .await;
    assert_problem(res, 429, "upload-quota-exceeded").await;
    // Without a length, a body past what is left of the quota (40 bytes) is refused.
    assert_problem(
        app.tus_patch(&user, &url, 0, vec![1; 41]).await,
        413,
        "upload-too-large",
    )
    .await;
    assert_eq!(
        app.tus_patch(&user, &url, 0, vec![1; 40]).await.status(),
        204
    );
}

#[tokio::test]
async fn a_failed_creation_with_upload_still_says_where_the_upload_is() {
    let app = TestApp::spawn().await;
    let user = app.user(&phone()).await;
    let res = app
        .client
        .post(app.url("/v1/uploads"))
        .bearer_auth(&user.token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", "10")
        .header(
            "Upload-Checksum",
            format!("sha256 {}", sha256_b64(b"other")),
        )
        .header("Content-Type", "application/offset+octet-stream")
        .body(vec![3; 10])
        .send()
        .await
        .expect("create");
    let url = location(&res);
    assert_eq!(header(&res, "upload-offset").as_deref(), Some("0"));
    assert_problem(res, 460, "checksum-mismatch").await;
    assert_eq!(
        app.tus_patch(&user, &url, 0, vec![3; 10]).await.status(),
        204
    );
}

#[tokio::test]
async fn method_override_turns_a_post_into_patch_or_delete() {
    let app = TestApp::spawn().await;
    let user = app.user(&phone()).await;
    let url = app.tus_new(&user, 6).await;
    let post = |method: &'static str, offset: u64, body: &'static [u8]| {
        app.client
            .post(app.url(&url))
            .bearer_auth(&user.token)
            .header("Tus-Resumable", "1.0.0")
            .header("X-HTTP-Method-Override", method)
            .header("Upload-Offset", offset.to_string())
            .header("Content-Type", "application/offset+octet-stream")
            .body(body)
            .send()
    };
    let res = post("PATCH", 0, b"abc").await.expect("patch");
    assert_eq!(res.status(), 204);
    assert_eq!(header(&res, "upload-offset").as_deref(), Some("3"));
    assert_problem(
        post("GET", 3, b"").await.expect("get"),
        400,
        "invalid-method-override",
    )
    .await;
    let res = post("DELETE", 3, b"").await.expect("delete");
    assert_eq!(res.status(), 204);
    assert_eq!(app.tus_head(&user, &url).await.status(), 404);
}

#[tokio::test]
async fn sha256_metadata_may_be_the_digest_as_text() {
    let app = TestApp::spawn().await;
    let user = app.user(&phone()).await;
    let data = payload(10_000, 9);
    // What string-based metadata APIs (tus-js-client, tuspy, URLSession) send: UTF-8 text.
    let digest = sha256_hex(&data);
    for (text, ok) in [(digest.clone(), true), (sha256_hex(b"other"), false)] {
        let res = app
            .tus_create(
                &user,
                &[
                    ("Upload-Length", data.len().to_string()),
                    ("Upload-Metadata", format!("sha256 {}", b64(&text))),
                ],
            )
            .await;
        let url = location(&res);
        let res = app.tus_patch(&user, &url, 0, data.clone()).await;
        if ok {
            assert_eq!(res.status(), 204);
            assert_eq!(header(&res, "sealpost-blob-id"), Some(digest.clone()));
        } else {
            assert_problem(res, 460, "sha256-mismatch").await;
        }
    }
    let res = app
        .tus_create(
            &user,
            &[
                ("Upload-Length", "1".into()),
                ("Upload-Metadata", format!("sha256 {}", b64("not a digest"))),
            ],
        )
        .await;
    assert_problem(res, 400, "invalid-metadata").await;
}
