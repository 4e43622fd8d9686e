//! Two server processes' worth of nodes sharing one database and one blob store: an upload
//! moves between nodes, and a request on one node takes an upload over from a request still
//! streaming on the other without their writes ever interleaving.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;

async fn two_nodes() -> (tempfile::TempDir, TestApp, TestApp) {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = |dir: &std::path::Path| {
        let mut s = settings_in(dir);
        s.uploads.lease_check_interval = Duration::from_millis(100);
        s
    };
    let a = TestApp::start(node(dir.path())).await;
    let b = TestApp::start(node(dir.path())).await;
    assert_ne!(a.addr, b.addr);
    (dir, a, b)
}

#[tokio::test]
async fn an_upload_started_on_one_node_finishes_on_the_other() {
    let (_dir, a, b) = two_nodes().await;
    let user = a.user(&phone()).await;
    let data = payload(90_000, 21);
    let url = a.tus_new(&user, 90_000).await;
    assert_eq!(
        a.tus_patch(&user, &url, 0, data[..30_000].to_vec())
            .await
            .status(),
        204
    );
    let head = b.tus_head(&user, &url).await;
    assert_eq!(header(&head, "upload-offset").as_deref(), Some("30000"));
    let res = b
        .tus_patch(&user, &url, 30_000, data[30_000..].to_vec())
        .await;
    assert_eq!(header(&res, "sealpost-blob-id"), Some(sha256_hex(&data)));
    let blob = a.blob(&user, &sha256_hex(&data)).await;
    assert_eq!(blob.bytes().await.expect("bytes").as_ref(), data.as_slice());
}

#[tokio::test]
async fn a_newer_request_on_another_node_wins_and_writes_never_interleave() {
    let (_dir, a, b) = two_nodes().await;
    let user = a.user(&phone()).await;
    let data = payload(200_000, 22);
    let url = a.tus_new(&user, 200_000).await;

    // Node A streams, slowly, a body the client will give up on.
    let (tx, old) = a.streaming_patch(&user, &url, 0);
    let junk = vec![0xEE; 50_000];
    tx.send(Ok(Bytes::from(junk))).await.expect("send");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The client resumes on node B: offset retrieval there fences node A's request.
    let offset = b.tus_offset(&user, &url).await;
    let res = old.await.expect("join");
    assert_problem(res, 409, "upload-superseded").await;
    // Node A keeps the stream open a little longer: nothing it receives may land anywhere.
    let _ = tx.send(Ok(Bytes::from(vec![0xEE; 10_000]))).await;

    let res = b.tus_patch_rest(&user, &url, offset, &data).await;
    assert_eq!(res.status(), 204, "{:?}", res.text().await);
    assert_eq!(offset, 0, "node A committed nothing before it was fenced");
    let blob = b.blob(&user, &sha256_hex(&data)).await;
    assert_eq!(blob.bytes().await.expect("bytes").as_ref(), data.as_slice());
}
