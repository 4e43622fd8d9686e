//! Health, readiness, metrics, the API reference, error bodies for unknown routes, and the
//! checked-in OpenAPI document.

mod common;

use common::*;

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = TestApp::spawn().await;
    let res = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(res.status(), 200);
    let res = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(res.status(), 200);

    let user = app.user(&phone()).await;
    let url = app.tus_new(&user, 10).await;
    app.tus_patch(&user, &url, 0, vec![1; 4]).await;
    app.tus_create(&user, &[]).await;
    let res = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert!(
        header(&res, "content-type").is_some_and(|c| c.starts_with("application/openmetrics-text"))
    );
    let text = res.text().await.expect("text");
    assert!(text.contains(r#"sealpost_http_requests_total{route="/v1/uploads/{id}",method="PATCH",status="204"} 1"#), "{text}");
    assert!(
        text.contains(
            r#"sealpost_http_requests_total{route="/v1/uploads",method="POST",status="400"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains("sealpost_upload_received_bytes_total 4"),
        "{text}"
    );
    assert!(text.contains("sealpost_uploads_in_progress 1"), "{text}");
    assert!(
        text.contains("sealpost_upload_transfers_active 0"),
        "{text}"
    );
}

#[tokio::test]
async fn readiness_fails_when_the_store_is_gone() {
    // Files, whatever the suite's store: removing the directory is how this store goes away.
    let app = TestApp::spawn_with(|s| s.blob_store = None).await;
    std::fs::remove_dir_all(app.data_dir.join("blobs")).expect("remove store");
    let res = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_problem(res, 503, "store-unavailable").await;
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = TestApp::spawn().await;
    assert_problem(
        app.client.get(app.url("/nope")).send().await.expect("r"),
        404,
        "not-found",
    )
    .await;
    assert_problem(
        app.client.put(app.url("/healthz")).send().await.expect("r"),
        405,
        "method-not-allowed",
    )
    .await;
}

#[tokio::test]
async fn the_spec_and_reference_page_are_served() {
    let app = TestApp::spawn().await;
    let spec: serde_json::Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("spec")
        .json()
        .await
        .expect("json");
    for path in [
        "/v1/accounts",
        "/v1/auth/challenge",
        "/v1/auth/token",
        "/v1/uploads",
        "/v1/uploads/{id}",
        "/v1/blobs/{blob_id}",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} missing");
    }
    for method in ["head", "get", "patch", "delete"] {
        assert!(
            spec["paths"]["/v1/uploads/{id}"][method].is_object(),
            "{method} missing"
        );
    }
    let page = app
        .client
        .get(app.url("/docs/"))
        .send()
        .await
        .expect("docs");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("html").contains("swagger"));
}

#[test]
fn checked_in_openapi_json_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in == sealpost::openapi::spec_json(),
        "openapi/openapi.json is stale: run `cargo run -q -- openapi > openapi/openapi.json`"
    );
}

#[tokio::test]
async fn cors_is_off_by_default_and_exposes_the_upload_headers_when_configured() {
    let preflight = |app: &TestApp, origin: &str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/v1/uploads"))
            .header("Origin", origin.to_owned())
            .header("Access-Control-Request-Method", "PATCH")
            .header(
                "Access-Control-Request-Headers",
                "upload-offset, tus-resumable, authorization",
            )
            .send()
    };
    let app = TestApp::spawn().await;
    let res = preflight(&app, "https://web.example")
        .await
        .expect("preflight");
    assert!(header(&res, "access-control-allow-origin").is_none());

    let app = TestApp::spawn_with(|s| s.cors_origins = vec!["https://web.example".into()]).await;
    let res = preflight(&app, "https://web.example")
        .await
        .expect("preflight");
    assert_eq!(
        header(&res, "access-control-allow-origin").as_deref(),
        Some("https://web.example")
    );
    let allowed = header(&res, "access-control-allow-headers").expect("allow-headers");
    assert!(
        allowed.contains("upload-offset") && allowed.contains("authorization"),
        "{allowed}"
    );
    let res = preflight(&app, "https://evil.example")
        .await
        .expect("preflight");
    assert!(header(&res, "access-control-allow-origin").is_none());

    let user = app.user(&phone()).await;
    let res = app
        .tus_create(
            &user,
            &[
                ("Upload-Length", "3".into()),
                ("Origin", "https://web.example".into()),
            ],
        )
        .await;
    let exposed = header(&res, "access-control-expose-headers").expect("expose-headers");
    for name in [
        "location",
        "upload-offset",
        "sealpost-blob-id",
        "upload-expires",
    ] {
        assert!(exposed.contains(name), "{name} not exposed: {exposed}");
    }
}
