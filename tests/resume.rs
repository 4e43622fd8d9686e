//! Interrupted, superseded and crashed uploads resume with every durable byte intact.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::child::Server;
use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn a_dropped_connection_keeps_what_arrived() {
    let app = TestApp::spawn().await;
    let user = app.user(&phone()).await;
    let data = payload(100_000, 11);
    let url = app.tus_new(&user, 100_000).await;
    let mut tcp = TcpStream::connect(app.addr).await.expect("connect");
    let head = format!(
        "PATCH {url} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: 100000\r\n\r\n",
        user.token
    );
    tcp.write_all(head.as_bytes()).await.expect("head");
    tcp.write_all(&data[..40_000]).await.expect("part");
    tcp.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(tcp);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.tus_offset(&user, &url).await, 40_000);
    let res = app
        .tus_patch(&user, &url, 40_000, data[40_000..].to_vec())
        .await;
    assert_eq!(header(&res, "sealpost-blob-id"), Some(sha256_hex(&data)));
}

#[tokio::test]
async fn offset_retrieval_takes_over_a_request_still_streaming() {
    let app = TestApp::spawn().await;
    let user = app.user(&phone()).await;
    let data = payload(64_000, 12);
    let url = app.tus_new(&user, 64_000).await;
    let (tx, old) = app.streaming_patch(&user, &url, 0);
    tx.send(Ok(Bytes::copy_from_slice(&data[..16_000])))
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The client believes the connection is dead and asks where to resume.
    assert_eq!(app.tus_offset(&user, &url).await, 16_000);
    let old = old.await.expect("join");
    assert_problem(old, 409, "upload-superseded").await;
    // A newer PATCH also takes over from an older one still streaming.
    let (tx2, older) = app.streaming_patch(&user, &url, 16_000);
    tx2.send(Ok(Bytes::copy_from_slice(&data[16_000..30_000])))
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (tx3, newer) = app.streaming_patch(&user, &url, 30_000);
    assert_problem(older.await.expect("join"), 409, "upload-superseded").await;
    tx3.send(Ok(Bytes::copy_from_slice(&data[30_000..])))
        .await
        .expect("send");
    drop(tx3);
    let res = newer.await.expect("join");
    assert_eq!(res.status(), 204);
    assert_eq!(header(&res, "sealpost-blob-id"), Some(sha256_hex(&data)));
    drop((tx, tx2));
}

#[tokio::test]
async fn graceful_shutdown_commits_in_flight_uploads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = TestApp::start(settings_in(dir.path())).await;
    let user = app.user(&phone()).await;
    let data = payload(50_000, 13);
    let url = app.tus_new(&user, 50_000).await;
    let (tx, pending) = app.streaming_patch(&user, &url, 0);
    tx.send(Ok(Bytes::copy_from_slice(&data[..25_000])))
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stop = tokio::spawn(app.shutdown());
    let res = pending.await.expect("join");
    assert_problem(res, 503, "shutting-down").await;
    stop.await.expect("stopped");
    drop(tx);

    let app = TestApp::start(settings_in(dir.path())).await;
    assert_eq!(app.tus_offset(&user, &url).await, 25_000);
    let res = app
        .tus_patch(&user, &url, 25_000, data[25_000..].to_vec())
        .await;
    assert_eq!(header(&res, "sealpost-blob-id"), Some(sha256_hex(&data)));
}

#[tokio::test]
async fn kill_9_mid_patch_then_resume_to_the_right_sha256() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path());
    let mut app = TestApp::external(&server.base);
    let user = app.user(&phone()).await;
    let data = payload(4 << 20, 14);
    let meta = format!("sha256 {}", sha256_b64(&data));
    let res = app
        .tus_create(
            &user,
            &[
                ("Upload-Length", data.len().to_string()),
                ("Upload-Metadata", meta),
            ],
        )
        .await;
    let url = location(&res);
    let (tx, pending) = app.streaming_patch(&user, &url, 0);
    let sent = 2 << 20;
    for chunk in data[..sent].chunks(64 * 1024) {
        tx.send(Ok(Bytes::copy_from_slice(chunk)))
            .await
            .expect("send");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.child.kill().expect("kill -9");
    server.child.wait().expect("reaped");
    let _ = pending.await;
    drop(tx);

    let server = Server::start(dir.path());
    app = TestApp::external(&server.base);
    let offset = app.tus_offset(&user, &url).await;
    assert!(
        offset > 0 && offset <= sent as u64,
        "durable offset {offset} of {sent} sent"
    );
    let res = app.tus_patch_rest(&user, &url, offset, &data).await;
    assert_eq!(res.status(), 204, "{:?}", res.text().await);
    let blob = sha256_hex(&data);
    let res = app.blob(&user, &blob).await;
    assert_eq!(res.bytes().await.expect("bytes").as_ref(), data.as_slice());
}

#[tokio::test]
async fn a_silent_body_counts_as_interrupted_and_keeps_what_arrived() {
    let app = TestApp::spawn_with(|s| s.uploads.idle_timeout = Duration::from_millis(300)).await;
    let user = app.user(&phone()).await;
    let url = app.tus_new(&user, 10_000).await;
    let (tx, pending) = app.streaming_patch(&user, &url, 0);
    tx.send(Ok(Bytes::from(vec![7; 1000]))).await.expect("send");
    let res = pending.await.expect("join");
    assert_problem(res, 400, "request-interrupted").await;
    assert_eq!(app.tus_offset(&user, &url).await, 1000);
    drop(tx);
}

#[tokio::test]
async fn transfers_past_the_node_limit_get_503() {
    let app = TestApp::spawn_with(|s| s.uploads.max_concurrent_transfers = 1).await;
    let user = app.user(&phone()).await;
    let other = app.user(&phone()).await;
    let first = app.tus_new(&user, 10_000).await;
    let second = app.tus_new(&other, 10).await;
    let (tx, pending) = app.streaming_patch(&user, &first, 0);
    tx.send(Ok(Bytes::from(vec![7; 1000]))).await.expect("send");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let res = app.tus_patch(&other, &second, 0, vec![1; 10]).await;
    assert_eq!(header(&res, "retry-after").as_deref(), Some("5"));
    assert_problem(res, 503, "too-busy").await;
    tx.send(Ok(Bytes::from(vec![7; 9000]))).await.expect("send");
    drop(tx);
    assert_eq!(pending.await.expect("join").status(), 204);
    assert_eq!(
        app.tus_patch(&other, &second, 0, vec![1; 10])
            .await
            .status(),
        204
    );
}

#[tokio::test]
async fn the_idle_timeout_is_not_reset_by_the_servers_own_checks() {
    let app = TestApp::spawn_with(|s| {
        s.uploads.idle_timeout = Duration::from_millis(800);
        s.uploads.lease_check_interval = Duration::from_millis(100);
    })
    .await;
    let user = app.user(&phone()).await;
    let url = app.tus_new(&user, 10_000).await;
    let (tx, pending) = app.streaming_patch(&user, &url, 0);
    tx.send(Ok(Bytes::from(vec![7; 1000]))).await.expect("send");
    let res = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .expect("the silent body was dropped")
        .expect("join");
    assert_problem(res, 400, "request-interrupted").await;
    assert_eq!(app.tus_offset(&user, &url).await, 1000);
    drop(tx);
}

#[tokio::test]
async fn a_body_slower_than_the_minimum_rate_gets_408_and_keeps_what_arrived() {
    let app = TestApp::spawn_with(|s| {
        s.uploads.min_transfer_rate = 10_000;
        s.uploads.transfer_rate_window = Duration::from_millis(600);
    })
    .await;
    let user = app.user(&phone()).await;
    let url = app.tus_new(&user, 100_000).await;
    let (tx, pending) = app.streaming_patch(&user, &url, 0);
    let trickle = tokio::spawn(async move {
        // 1 000 bytes every 200 ms: 5 000 bytes a second, half the minimum.
        while tx.send(Ok(Bytes::from(vec![7; 1000]))).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let res = pending.await.expect("join");
    assert_problem(res, 408, "transfer-too-slow").await;
    trickle.abort();
    let offset = app.tus_offset(&user, &url).await;
    assert!(offset >= 1000, "what arrived was kept: {offset}");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("sealpost_upload_transfers_too_slow_total 1"),
        "{metrics}"
    );
    // A body at the rate finishes.
    let res = app
        .tus_patch(
            &user,
            &url,
            offset,
            vec![7; usize::try_from(100_000 - offset).expect("small")],
        )
        .await;
    assert_eq!(res.status(), 204);
}

#[tokio::test]
async fn one_account_streams_at_most_its_share_of_the_nodes_transfers() {
    let app = TestApp::spawn_with(|s| s.uploads.max_transfers_per_account = 1).await;
    let user = app.user(&phone()).await;
    let other = app.user(&phone()).await;
    let first = app.tus_new(&user, 10_000).await;
    let second = app.tus_new(&user, 10).await;
    let (tx, pending) = app.streaming_patch(&user, &first, 0);
    tx.send(Ok(Bytes::from(vec![7; 1000]))).await.expect("send");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let res = app.tus_patch(&user, &second, 0, vec![1; 10]).await;
    assert_eq!(header(&res, "retry-after").as_deref(), Some("5"));
    assert_problem(res, 429, "too-many-transfers").await;
    let theirs = app.tus_new(&other, 10).await;
    assert_eq!(
        app.tus_patch(&other, &theirs, 0, vec![1; 10])
            .await
            .status(),
        204,
        "another account still streams"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"sealpost_upload_transfers_refused_total{reason="account_limit"} 1"#),
        "{metrics}"
    );
    tx.send(Ok(Bytes::from(vec![7; 9000]))).await.expect("send");
    drop(tx);
    assert_eq!(pending.await.expect("join").status(), 204);
    assert_eq!(
        app.tus_patch(&user, &second, 0, vec![1; 10]).await.status(),
        204
    );
}

#[tokio::test]
async fn an_account_making_upload_requests_in_a_loop_is_rate_limited_but_bytes_pay_their_way() {
    let app = TestApp::spawn_with(|s| s.uploads.requests_per_account_per_minute = 4).await;
    let user = app.user(&phone()).await;
    let other = app.user(&phone()).await;
    let url = app.tus_new(&user, 4 << 20).await;
    let res = app.tus_patch(&user, &url, 0, vec![7; 3 << 20]).await;
    assert_eq!(res.status(), 204);
    // Two requests spent, three MiB stored: the bucket is full again (four), not down to two.
    for _ in 0..4 {
        assert_eq!(app.tus_head(&user, &url).await.status(), 200);
    }
    let res = app.tus_patch(&user, &url, 3 << 20, vec![7; 10]).await;
    assert_eq!(header(&res, "tus-resumable").as_deref(), Some("1.0.0"));
    let retry: u64 = header(&res, "retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=15).contains(&retry), "{retry}");
    assert_problem(res, 429, "rate-limited").await;
    assert_eq!(
        app.tus_offset(&other, &app.tus_new(&other, 10).await).await,
        0
    );
    assert_eq!(
        app.metric("sealpost_upload_requests_limited_total").await,
        1.0
    );
}
