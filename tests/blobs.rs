//! Downloads: whole blobs and single byte ranges (206, Content-Range), unsatisfiable ranges
//! (416), the cases that fall back to the whole blob, HEAD, validators (ETag, If-None-Match →
//! 304) and the caching and sandboxing headers; refusals.

mod common;

use common::*;
use reqwest::Response;

async fn get(app: &TestApp, user: &User, id: &str, headers: &[(&str, &str)]) -> Response {
    let mut req = app
        .client
        .get(app.url(&format!("/v1/blobs/{id}")))
        .bearer_auth(&user.token);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("get")
}

#[tokio::test]
async fn single_byte_ranges_are_served_partially() {
    let app = TestApp::spawn().await;
    let user = app.user(&phone()).await;
    let data = payload(1000, 61);
    let id = app.stored_blob(&user, &data).await;

    let whole = get(&app, &user, &id, &[]).await;
    assert_eq!(whole.status(), 200);
    assert_eq!(header(&whole, "accept-ranges").as_deref(), Some("bytes"));
    assert!(whole.bytes().await.expect("bytes") == data);

    for (range, start, end) in [
        ("bytes=0-0", 0, 1),
        ("bytes=100-199", 100, 200),
        ("bytes=990-5000", 990, 1000),
        ("bytes=900-", 900, 1000),
        ("bytes=-10", 990, 1000),
    ] {
        let res = get(&app, &user, &id, &[("Range", range)]).await;
        assert_eq!(res.status(), 206, "{range}");
        assert_eq!(
            header(&res, "content-range"),
            Some(format!("bytes {start}-{}/1000", end - 1)),
            "{range}"
        );
        assert_eq!(
            header(&res, "content-length"),
            Some((end - start).to_string())
        );
        assert_eq!(header(&res, "etag"), Some(format!("\"{id}\"")));
        assert!(
            res.bytes().await.expect("bytes") == data[start..end],
            "{range}"
        );
    }
}

#[tokio::test]
async fn unsatisfiable_ranges_get_416_and_odd_ones_the_whole_blob() {
    let app = TestApp::spawn().await;
    let user = app.user(&phone()).await;
    let data = payload(500, 62);
    let id = app.stored_blob(&user, &data).await;

    let res = get(&app, &user, &id, &[("Range", "bytes=500-")]).await;
    assert_eq!(
        header(&res, "content-range").as_deref(),
        Some("bytes */500")
    );
    assert_problem(res, 416, "range-not-satisfiable").await;

    // Several ranges, nonsense, or an If-Range for another version: the whole blob.
    for headers in [
        vec![("Range", "bytes=0-1,5-6")],
        vec![("Range", "pages=1-2")],
        vec![("Range", "bytes=0-9"), ("If-Range", "\"something-else\"")],
    ] {
        let res = get(&app, &user, &id, &headers).await;
        assert_eq!(res.status(), 200, "{headers:?}");
        assert!(res.bytes().await.expect("bytes") == data, "{headers:?}");
    }
    let etag = format!("\"{id}\"");
    let res = get(
        &app,
        &user,
        &id,
        &[("Range", "bytes=0-9"), ("If-Range", etag.as_str())],
    )
    .await;
    assert_eq!(res.status(), 206);
}

#[tokio::test]
async fn blobs_are_immutable_sandboxed_and_revalidate_to_304() {
    let app = TestApp::spawn().await;
    let user = app.user(&phone()).await;
    let data = payload(3000, 63);
    let id = app.stored_blob(&user, &data).await;
    let etag = format!("\"{id}\"");

    let res = get(&app, &user, &id, &[]).await;
    assert_eq!(res.status(), 200);
    for (name, value) in [
        ("content-type", "application/octet-stream"),
        ("content-length", "3000"),
        ("etag", etag.as_str()),
        ("cache-control", "public, max-age=31536000, immutable"),
        ("accept-ranges", "bytes"),
        ("x-content-type-options", "nosniff"),
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'; sandbox",
        ),
    ] {
        assert_eq!(header(&res, name).as_deref(), Some(value), "{name}");
    }
    assert!(header(&res, "transfer-encoding").is_none(), "never chunked");

    // HEAD: the same headers, no body; with a range, the range's.
    let head = app
        .client
        .head(app.url(&format!("/v1/blobs/{id}")))
        .bearer_auth(&user.token)
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), 200);
    assert_eq!(header(&head, "content-length").as_deref(), Some("3000"));
    assert_eq!(header(&head, "etag").as_deref(), Some(etag.as_str()));
    assert!(head.bytes().await.expect("body").is_empty());
    let head = app
        .client
        .head(app.url(&format!("/v1/blobs/{id}")))
        .bearer_auth(&user.token)
        .header("Range", "bytes=10-19")
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), 206);
    assert_eq!(
        header(&head, "content-range").as_deref(),
        Some("bytes 10-19/3000")
    );
    assert_eq!(header(&head, "content-length").as_deref(), Some("10"));

    // If-None-Match: the blob's tag (strong, weak, in a list, or *) → 304; another → 200.
    let weak = format!("W/{etag}");
    let list = format!("\"other\", {etag}");
    for tag in [etag.as_str(), weak.as_str(), list.as_str(), "*"] {
        let res = get(&app, &user, &id, &[("If-None-Match", tag)]).await;
        assert_eq!(res.status(), 304, "{tag}");
        assert_eq!(header(&res, "etag").as_deref(), Some(etag.as_str()));
        assert_eq!(
            header(&res, "cache-control").as_deref(),
            Some("public, max-age=31536000, immutable")
        );
        assert!(res.bytes().await.expect("body").is_empty());
    }
    let res = get(&app, &user, &id, &[("If-None-Match", "\"other\"")]).await;
    assert_eq!(res.status(), 200);
    assert!(res.bytes().await.expect("bytes") == data);
}

#[tokio::test]
async fn downloads_need_a_token_and_an_existing_blob() {
    let app = TestApp::spawn().await;
    let user = app.user(&phone()).await;
    let id = app.stored_blob(&user, &payload(10, 64)).await;
    let url = app.url(&format!("/v1/blobs/{id}"));
    let res = app.client.get(&url).send().await.expect("get");
    assert_problem(res, 401, "missing-token").await;
    let res = app
        .client
        .get(&url)
        .bearer_auth("nope")
        .send()
        .await
        .expect("get");
    assert_problem(res, 401, "invalid-token").await;
    for missing in [sha256_hex(b"never uploaded"), "not-a-blob-id".to_owned()] {
        let res = get(&app, &user, &missing, &[]).await;
        assert_problem(res, 404, "not-found").await;
    }
}
