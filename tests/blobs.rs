//! Downloads: whole blobs and single byte ranges (206, Content-Range), unsatisfiable ranges
//! (416), and the cases that fall back to the whole blob.

mod common;

use common::*;
use reqwest::Response;

async fn stored_blob(app: &TestApp, user: &User, data: &[u8]) -> String {
    let url = app.tus_new(user, data.len() as u64).await;
    let res = app.tus_patch(user, &url, 0, data.to_vec()).await;
    header(&res, "sealpost-blob-id").expect("blob id")
}

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
    let id = stored_blob(&app, &user, &data).await;

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
    let id = stored_blob(&app, &user, &data).await;

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
