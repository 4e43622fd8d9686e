//! nginx (deploy/nginx/sealpost.conf) as a caching proxy in front of a real server: blobs are
//! cached by id in slices (a second GET and any range are cache hits) and every request is
//! still authorised by the origin, so a bad or expired link, a missing token or an expired
//! blob gets no bytes even when the blob is cached. Uploads pass through it. Needs nginx (see
//! tests/common/nginx.rs).

mod common;

use std::time::Duration;

use common::nginx::Nginx;
use common::*;
use reqwest::Response;
use serde_json::{Value, json};

async fn fetch(nginx: &Nginx, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut req = reqwest::Client::new().get(nginx.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("get through nginx")
}

fn cache_status(res: &Response) -> String {
    header(res, "x-cache-status").unwrap_or_default()
}

/// The `max-age` of a response's `Cache-Control`.
fn link_max_age(res: &Response) -> i64 {
    let value = header(res, "cache-control").unwrap_or_default();
    value
        .split(',')
        .find_map(|d| d.trim().strip_prefix("max-age="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no max-age in {value:?}"))
}

/// A link minted through nginx (links pass straight through to the origin).
async fn link(front: &TestApp, user: &User, id: &str, body: Option<Value>) -> String {
    let res = front.mint_link(user, id, body).await;
    assert_eq!(res.status(), 201);
    let link: Value = res.json().await.expect("link");
    link["url"].as_str().expect("url").to_owned()
}

/// Asserts a refusal carries the problem and none of the blob's bytes.
async fn assert_no_bytes(res: Response, status: u16, code: &str) {
    assert_ne!(cache_status(&res), "HIT", "{code}: served from the cache");
    assert_problem(res, status, code).await;
}

#[tokio::test]
async fn cached_blobs_are_hits_for_every_range_but_never_bypass_authorisation() {
    let app = TestApp::spawn().await;
    let nginx = Nginx::caching_proxy(&app.addr.to_string()).await;
    // Uploads go through nginx too, unbuffered.
    let front = TestApp::external(&nginx.base);
    let user = front.user(&phone()).await;
    let data = payload(2_621_440 + 123, 91); // 2.5 MiB and a bit: three 1 MiB slices
    let id = front.stored_blob(&user, &data).await;
    let url = link(&front, &user, &id, None).await;

    let first = fetch(&nginx, &url, &[]).await;
    assert_eq!(first.status(), 200);
    assert_eq!(cache_status(&first), "MISS");
    assert!(first.bytes().await.expect("bytes") == data);
    let second = fetch(&nginx, &url, &[]).await;
    assert_eq!(
        (second.status().as_u16(), cache_status(&second).as_str()),
        (200, "HIT")
    );
    assert_eq!(header(&second, "etag"), Some(format!("\"{id}\"")));
    assert_eq!(
        header(&second, "content-length"),
        Some(data.len().to_string())
    );
    assert!(second.bytes().await.expect("bytes") == data);

    // Ranges (across a slice boundary, and the tail) come from the cache.
    for (range, start, end) in [
        ("bytes=1048000-1049999", 1_048_000, 1_050_000),
        ("bytes=-100", data.len() - 100, data.len()),
    ] {
        let res = fetch(&nginx, &url, &[("Range", range)]).await;
        assert_eq!(
            (res.status().as_u16(), cache_status(&res).as_str()),
            (206, "HIT"),
            "{range}"
        );
        assert_eq!(
            header(&res, "content-range"),
            Some(format!("bytes {start}-{}/{}", end - 1, data.len()))
        );
        assert!(
            res.bytes().await.expect("bytes") == data[start..end],
            "{range}"
        );
    }
    // A bearer token reaches the same cache entry; If-None-Match is answered from it.
    let bearer = format!("Bearer {}", user.token);
    let res = fetch(
        &nginx,
        &format!("/v1/blobs/{id}"),
        &[("Authorization", &bearer)],
    )
    .await;
    assert_eq!(
        (res.status().as_u16(), cache_status(&res).as_str()),
        (200, "HIT")
    );
    // Each client gets the caching its own credentials earn: a year with a token, no longer
    // than the link lives with a link, whichever request filled the cache.
    assert_eq!(
        header(&res, "cache-control").as_deref(),
        Some("public, max-age=31536000, immutable")
    );
    let res = fetch(&nginx, &url, &[]).await;
    assert_eq!(cache_status(&res), "HIT");
    let max_age = link_max_age(&res);
    assert!((3590..=3600).contains(&max_age), "{max_age}");
    let etag = format!("\"{id}\"");
    let res = fetch(&nginx, &url, &[("If-None-Match", &etag)]).await;
    assert_eq!(res.status(), 304);

    // An empty blob (nginx fills it with a ranged request) comes through whole.
    let res = front
        .tus_create(&user, &[("Upload-Length", "0".into())])
        .await;
    let empty = header(&res, "sealpost-blob-id").expect("empty blob id");
    for _ in 0..2 {
        let res = fetch(
            &nginx,
            &format!("/v1/blobs/{empty}"),
            &[("Authorization", &bearer)],
        )
        .await;
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "content-length").as_deref(), Some("0"));
    }

    // Bad credentials get the origin's refusal and no bytes, though the blob is cached.
    let forged = url.replace("sig=", "sig=AAAA");
    assert_no_bytes(fetch(&nginx, &forged, &[]).await, 403, "link-invalid").await;
    let other = url.replace(&id, &sha256_hex(b"another blob"));
    assert_no_bytes(fetch(&nginx, &other, &[]).await, 403, "link-invalid").await;
    let bare = format!("/v1/blobs/{id}");
    assert_no_bytes(fetch(&nginx, &bare, &[]).await, 401, "missing-token").await;
    let bad_token = [("Authorization", "Bearer nope")];
    assert_no_bytes(fetch(&nginx, &bare, &bad_token).await, 401, "invalid-token").await;
    let short = link(&front, &user, &id, Some(json!({"expires_in": 3}))).await;
    let res = fetch(&nginx, &short, &[("Range", "bytes=0-9")]).await;
    assert_eq!(
        (res.status().as_u16(), cache_status(&res).as_str()),
        (206, "HIT")
    );
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_no_bytes(fetch(&nginx, &short, &[]).await, 410, "link-expired").await;
}

#[tokio::test]
async fn an_expired_blob_is_not_served_from_the_cache() {
    let app = TestApp::spawn_with(|s| short_retention(s, Duration::from_secs(5))).await;
    let nginx = Nginx::caching_proxy(&app.addr.to_string()).await;
    let user = app.user(&phone()).await;
    let data = payload(4000, 92);
    let id = app.stored_blob(&user, &data).await;
    let bearer = format!("Bearer {}", user.token);
    let path = format!("/v1/blobs/{id}");
    let auth = [("Authorization", bearer.as_str())];
    assert_eq!(fetch(&nginx, &path, &auth).await.status(), 200);
    assert_eq!(cache_status(&fetch(&nginx, &path, &auth).await), "HIT");

    app.wait_until_blobs_swept().await;
    assert_no_bytes(fetch(&nginx, &path, &auth).await, 410, "blob-expired").await;
}

#[tokio::test]
async fn a_slow_first_download_outlives_its_short_link() {
    let app = TestApp::spawn().await;
    let nginx = Nginx::caching_proxy(&app.addr.to_string()).await;
    let user = app.user(&phone()).await;
    let data = payload(16 << 20, 93);
    let id = app.stored_blob(&user, &data).await;
    let res = app
        .mint_link(&user, &id, Some(json!({"expires_in": 2})))
        .await;
    let link: Value = res.json().await.expect("link");
    let url = link["url"].as_str().expect("url");

    // Not cached yet, and this client reads slowly, past the link's expiry (16 MiB is more than
    // the socket buffers hold). nginx fills every slice with the client's link, and does so at
    // its own pace, not the client's, so the download authorised at its start completes.
    let mut res = fetch(&nginx, url, &[]).await;
    assert_eq!(
        (res.status().as_u16(), cache_status(&res).as_str()),
        (200, "MISS")
    );
    let mut got = res
        .chunk()
        .await
        .expect("first chunk")
        .expect("bytes")
        .to_vec();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    while let Some(chunk) = res.chunk().await.expect("the rest") {
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got.len(), data.len(), "truncated");
    assert!(got == data);
}

#[tokio::test]
async fn draft_uploads_complete_through_nginx_on_a_connection_kept_alive() {
    // nginx takes any 1xx but 101 for the final response: the server must send no 104
    // through it, or the connection hangs until nginx's upstream timeout.
    let app = TestApp::spawn().await;
    let nginx = Nginx::caching_proxy(&app.addr.to_string()).await;
    let front = TestApp::external(&nginx.base);
    let user = front.user(&phone()).await;
    for i in 0..3u8 {
        let data = payload(10_000 + usize::from(i), i);
        let res = tokio::time::timeout(
            Duration::from_secs(20),
            front
                .client
                .post(front.url("/v1/uploads"))
                .bearer_auth(&user.token)
                .header("Upload-Draft-Interop-Version", "8")
                .header("Upload-Complete", "?1")
                .body(data)
                .send(),
        )
        .await
        .expect("answered without waiting for nginx's timeout")
        .expect("send");
        assert_eq!(res.status(), 201);
        assert!(header(&res, "sealpost-blob-id").is_some());
    }
}

#[tokio::test]
async fn chat_websockets_pass_through_nginx() {
    let app = TestApp::spawn().await;
    let nginx = Nginx::caching_proxy(&app.addr.to_string()).await;
    let front = TestApp::external(&nginx.base);
    let (alice, bob) = (front.user(&phone()).await, front.user(&phone()).await);
    let mut b = common::chat::connect(&front, &bob.token).await;
    assert_eq!(common::chat::frame(&mut b).await["type"], "hello");
    let mut a = common::chat::connect(&front, &alice.token).await;
    common::chat::frame(&mut a).await;
    common::chat::put(
        &mut a,
        common::chat::send("m", &bob.account_id, &[1], "through nginx"),
    )
    .await;
    assert_eq!(common::chat::frame(&mut a).await["type"], "sent");
    let m = common::chat::frame(&mut b).await;
    assert_eq!(common::chat::body(&m), "through nginx for 1");
    // Metrics are each node's, never the proxy's.
    let res = fetch(&nginx, "/metrics", &[]).await;
    assert_problem(res, 404, "not-found").await;
    // nginx logs a tunnel when it closes: the path, never a query (a token, a signature).
    drop((a, b));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !nginx.access_log().contains("\"GET /v1/chat HTTP/1.1\" 101") {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            nginx.access_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
