//! Signed links: minting, downloading without a token, refusal of altered, forged, retired and
//! expired links, key rotation; the authorisation check caching proxies ask; redirect mode.

mod common;

use common::*;
use reqwest::{Client, Response, redirect};
use sealpost::blobs::links::LinkKeys;
use serde_json::{Value, json};

const K1: &str = "k1:c2VhbHBvc3QtdGVzdC1rZXktb25lLTMyLWJ5dGVzLWxvbmc=";
const K2: &str = "k2:c2VhbHBvc3QtdGVzdC1rZXktdHdvLTMyLWJ5dGVzLWxvbmc=";

async fn minted(app: &TestApp, user: &User, id: &str, body: Option<Value>) -> (String, Value) {
    let res = app.mint_link(user, id, body).await;
    assert_eq!(res.status(), 201);
    assert_eq!(header(&res, "cache-control").as_deref(), Some("no-store"));
    let link: Value = res.json().await.expect("link json");
    let url = link["url"].as_str().expect("url").to_owned();
    (url, link)
}

async fn get(app: &TestApp, url: &str, headers: &[(&str, &str)]) -> Response {
    let mut req = app.client.get(app.url(url));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("get")
}

/// `url` with query parameter `name` replaced by `value` (removed when `None`).
fn with_param(url: &str, name: &str, value: Option<&str>) -> String {
    let (path, query) = url.split_once('?').expect("query");
    let mut parts: Vec<String> = query
        .split('&')
        .filter(|p| !p.starts_with(&format!("{name}=")))
        .map(str::to_owned)
        .collect();
    if let Some(value) = value {
        parts.push(format!("{name}={value}"));
    }
    format!("{path}?{}", parts.join("&"))
}

#[tokio::test]
async fn links_download_without_a_token_until_they_expire() {
    let app = TestApp::spawn().await;
    let user = app.user(&phone()).await;
    let data = payload(5000, 71);
    let id = app.stored_blob(&user, &data).await;

    let (url, link) = minted(&app, &user, &id, None).await;
    assert!(
        url.starts_with(&format!("/v1/blobs/{id}?expires=")),
        "{url}"
    );
    assert!(
        link["expires_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    let res = get(&app, &url, &[]).await;
    assert_eq!(res.status(), 200);
    // Cacheable by anyone, but no longer than the link is valid.
    let cache = header(&res, "cache-control").unwrap_or_default();
    let max_age: i64 = cache
        .strip_prefix("public, max-age=")
        .and_then(|rest| rest.strip_suffix(", immutable"))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{cache}"));
    assert!((3590..=3600).contains(&max_age), "{cache}");
    assert!(res.bytes().await.expect("bytes") == data);
    let res = get(&app, &url, &[("Range", "bytes=4000-")]).await;
    assert_eq!(res.status(), 206);
    assert!(res.bytes().await.expect("bytes") == data[4000..]);
    let head = app.client.head(app.url(&url)).send().await.expect("head");
    assert_eq!(header(&head, "content-length").as_deref(), Some("5000"));

    // A link lasts as long as asked, and no longer.
    let (short, _) = minted(&app, &user, &id, Some(json!({"expires_in": 3}))).await;
    assert_eq!(get(&app, &short, &[]).await.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    assert_problem(get(&app, &short, &[]).await, 410, "link-expired").await;
    assert_eq!(
        get(&app, &url, &[]).await.status(),
        200,
        "the long link lives on"
    );
}

#[tokio::test]
async fn altered_or_forged_links_get_403_and_no_bytes() {
    let app = TestApp::spawn().await;
    let user = app.user(&phone()).await;
    let id = app.stored_blob(&user, &payload(100, 72)).await;
    let other = app.stored_blob(&user, &payload(100, 73)).await;
    let (url, _) = minted(&app, &user, &id, None).await;
    let sig = url.split("sig=").nth(1).expect("sig").to_owned();
    let mut flipped = sig.clone().into_bytes();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).expect("ascii");

    let bad = [
        with_param(&url, "sig", Some(&flipped)),
        with_param(&url, "sig", Some("not base64!")),
        with_param(&url, "sig", None),
        with_param(&url, "expires", Some("99999999999")),
        with_param(&url, "expires", Some("soon")),
        with_param(&url, "kid", Some("k-unknown")),
        format!("{url}&sig=again"),
        url.replace(&id, &other),
    ];
    for bad in bad {
        assert_problem(get(&app, &bad, &[]).await, 403, "link-invalid").await;
    }
    // A valid token does not rescue a bad link: the link is what the request presents.
    let res = app
        .client
        .get(app.url(&with_param(&url, "sig", Some(&flipped))))
        .bearer_auth(&user.token)
        .send()
        .await
        .expect("get");
    assert_problem(res, 403, "link-invalid").await;
}

#[tokio::test]
async fn minting_needs_a_token_a_live_blob_and_a_sane_expiry() {
    let app = TestApp::spawn_with(|s| {
        s.blobs.link_ttl = std::time::Duration::from_secs(300);
        s.blobs.max_link_ttl = std::time::Duration::from_secs(600);
        s.blobs.cdn_base_url = Some("https://media.example".into());
    })
    .await;
    let user = app.user(&phone()).await;
    let id = app.stored_blob(&user, &payload(10, 74)).await;
    let (url, _) = minted(&app, &user, &id, Some(json!({}))).await;
    assert!(
        url.starts_with(&format!("https://media.example/v1/blobs/{id}?")),
        "{url}"
    );
    let (_, link) = minted(&app, &user, &id, Some(json!({"expires_in": 600}))).await;
    assert!(link["expires_at"].is_string());
    for (body, code) in [
        (json!({"expires_in": 0}), "invalid-expiry"),
        (json!({"expires_in": 601}), "invalid-expiry"),
        (json!({"expires_in": "soon"}), "invalid-json"),
        (json!({"unknown": 1}), "invalid-json"),
    ] {
        assert_problem(app.mint_link(&user, &id, Some(body)).await, 400, code).await;
    }
    let res = app
        .client
        .post(app.url(&format!("/v1/blobs/{id}/links")))
        .send()
        .await
        .expect("post");
    assert_problem(res, 401, "missing-token").await;
    let missing = sha256_hex(b"nothing");
    assert_problem(app.mint_link(&user, &missing, None).await, 404, "not-found").await;
}

#[tokio::test]
async fn rotated_keys_keep_live_links_valid_and_the_newest_signs() {
    let app = TestApp::spawn_with(|s| s.blobs.link_keys = vec![K2.into(), K1.into()]).await;
    let user = app.user(&phone()).await;
    let data = payload(64, 75);
    let id = app.stored_blob(&user, &data).await;
    let (url, _) = minted(&app, &user, &id, None).await;
    assert!(url.contains("kid=k2"), "{url}");

    // A link signed before the rotation, when k1 alone signed.
    let expires = sealpost_auth::unix_now() + 60;
    let old = LinkKeys::load(&[K1.into()], &app.data_dir).expect("k1");
    let (kid, sig) = old.sign(&id, expires);
    let old_url = format!("/v1/blobs/{id}?expires={expires}&kid={kid}&sig={sig}");
    let res = get(&app, &old_url, &[]).await;
    assert_eq!(res.status(), 200);
    assert!(res.bytes().await.expect("bytes") == data);

    // Once k1 is retired, its links stop working.
    let retired = TestApp::spawn_with(|s| s.blobs.link_keys = vec![K2.into()]).await;
    let user = retired.user(&phone()).await;
    let id = retired.stored_blob(&user, &data).await;
    let (kid, sig) = old.sign(&id, expires);
    let old_url = format!("/v1/blobs/{id}?expires={expires}&kid={kid}&sig={sig}");
    assert_problem(get(&retired, &old_url, &[]).await, 403, "link-invalid").await;
}

async fn authorize(app: &TestApp, url: &str, token: Option<&str>) -> Response {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let mut req = app
        .client
        .get(app.url(&format!("{path}/authorize?{query}")));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.expect("authorize")
}

async fn assert_refused(res: Response, status: u16, code: &str) {
    assert_eq!(header(&res, "sealpost-refusal").as_deref(), Some(code));
    assert_problem(res, status, code).await;
}

#[tokio::test]
async fn the_proxy_check_allows_exactly_what_a_download_would() {
    let app = TestApp::spawn().await;
    let user = app.user(&phone()).await;
    let id = app.stored_blob(&user, &payload(10, 76)).await;
    let (url, _) = minted(&app, &user, &id, None).await;
    let (short, _) = minted(&app, &user, &id, Some(json!({"expires_in": 3}))).await;
    let blob = format!("/v1/blobs/{id}");

    let ok = authorize(&app, &url, None).await;
    assert_eq!(ok.status(), 204);
    assert!(
        header(&ok, "sealpost-cache-control").is_some_and(|c| c.starts_with("public, max-age=3")),
        "a link's caching is bounded by its life"
    );
    assert!(ok.bytes().await.expect("body").is_empty());
    assert_eq!(
        authorize(&app, &blob, Some(&user.token)).await.status(),
        204
    );

    assert_refused(authorize(&app, &blob, None).await, 401, "missing-token").await;
    assert_refused(
        authorize(&app, &blob, Some("nope")).await,
        401,
        "invalid-token",
    )
    .await;
    let forged = with_param(&url, "sig", Some("AAAA"));
    assert_refused(authorize(&app, &forged, None).await, 403, "link-invalid").await;
    let missing = format!("/v1/blobs/{}", sha256_hex(b"none"));
    assert_refused(
        authorize(&app, &missing, Some(&user.token)).await,
        403,
        "not-found",
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    assert_refused(authorize(&app, &short, None).await, 403, "link-expired").await;
}

#[tokio::test]
async fn redirect_mode_sends_downloads_to_the_cdn_or_a_presigned_url() {
    let no_follow = Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .expect("client");
    let data = payload(3000, 77);

    // To the CDN base URL, as a short-lived signed link the CDN checks with us.
    let app = TestApp::spawn_with(|s| {
        s.downloads = sealpost::config::DownloadMode::Redirect;
        s.blobs.cdn_base_url = Some("https://cdn.example/".into());
    })
    .await;
    let user = app.user(&phone()).await;
    let id = app.stored_blob(&user, &data).await;
    let blob = app.url(&format!("/v1/blobs/{id}"));
    let res = no_follow
        .get(&blob)
        .bearer_auth(&user.token)
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 307);
    assert_eq!(
        header(&res, "cache-control").as_deref(),
        Some("private, no-store")
    );
    let target = location(&res);
    let prefix = format!("https://cdn.example/v1/blobs/{id}?expires=");
    assert!(target.starts_with(&prefix), "{target}");
    let on_origin = target.replace("https://cdn.example", "");
    let res = get(&app, &on_origin, &[("Range", "bytes=0-99")]).await;
    assert_eq!(res.status(), 206, "the CDN's fetch of the link is served");
    assert!(res.bytes().await.expect("bytes") == data[..100]);
    let head = app
        .client
        .head(&blob)
        .bearer_auth(&user.token)
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), 200, "HEAD is answered here");
    let res = no_follow.get(&blob).send().await.expect("get");
    assert_problem(res, 401, "missing-token").await;

    // To the store itself, where it presigns (S3); a file store cannot, so needs a CDN.
    let presigning = app.blob_store.starts_with("s3://");
    let built = sealpost::app::Application::build({
        let mut s = settings_in(&app.data_dir);
        s.downloads = sealpost::config::DownloadMode::Redirect;
        s
    })
    .await;
    if !presigning {
        let err = built.expect_err("a file store cannot presign").to_string();
        assert!(err.contains("cdn_base_url"), "{err}");
        return;
    }
    drop(built);
    let app = TestApp::spawn_with(|s| s.downloads = sealpost::config::DownloadMode::Redirect).await;
    let user = app.user(&phone()).await;
    let id = app.stored_blob(&user, &data).await;
    let res = no_follow
        .get(app.url(&format!("/v1/blobs/{id}")))
        .bearer_auth(&user.token)
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 307);
    let target = location(&res);
    assert!(target.contains("X-Amz-Signature="), "{target}");
    let res = no_follow
        .get(&target)
        .header("Range", "bytes=1000-1999")
        .send()
        .await
        .expect("presigned get");
    assert_eq!(res.status(), 206);
    assert_eq!(
        header(&res, "content-type").as_deref(),
        Some("application/octet-stream")
    );
    assert!(target.contains("response-cache-control="), "{target}");
    assert!(res.bytes().await.expect("bytes") == data[1000..2000]);
}
