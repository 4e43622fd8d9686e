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
