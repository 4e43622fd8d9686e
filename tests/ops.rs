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
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .expect("metrics");
    assert!(
        header(&res, "content-type").is_some_and(|c| c.starts_with("application/openmetrics-text"))
    );
    let text = res.text().await.expect("text");
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(
        text.contains("# TYPE sealpost_uploads_completed counter\n"),
        "{text}"
    );
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
    assert!(
        text.contains(r#"sealpost_http_request_duration_seconds_count{route="/v1/uploads/{id}",method="PATCH"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("sealpost_upload_transfer_duration_seconds_count 1"),
        "{text}"
    );
    assert!(
        text.contains(r#"sealpost_build_info{version="0.1.0",role="all"} 1"#),
        "{text}"
    );

    // Without asking for OpenMetrics (curl, promtool): the classic text format.
    let res = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(
        header(&res, "content-type").as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let classic = res.text().await.expect("text");
    assert!(!classic.contains("# EOF"), "{classic}");
    assert!(
        classic.contains("# HELP sealpost_uploads_completed_total Uploads completed as blobs.\n# TYPE sealpost_uploads_completed_total counter\nsealpost_uploads_completed_total 0\n"),
        "{classic}"
    );
}

/// The metric series (names and labels) of a classic exposition, without their values.
fn series(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            l.rsplit_once(' ')
                .map_or(l, |(series, _)| series)
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn metrics_stay_the_same_size_whatever_methods_and_paths_clients_send() {
    let app = TestApp::spawn().await;
    let request = |method: &str, path: &str| {
        app.client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
                app.url(path),
            )
            .send()
    };
    // One request of each kind first: the series they make exist from then on.
    request("BREW", "/made/up").await.expect("request");
    request("BREW", "/healthz").await.expect("request");
    app.metrics().await;
    let before = series(&app.metrics().await);
    let mut seed = 0x9e37_79b9_u32;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    for i in 0..500 {
        let method: String = (0..3 + next() % 8)
            .map(|_| char::from(b'A' + u8::try_from(next() % 26).expect("letter")))
            .collect();
        let path = if i % 2 == 0 {
            format!("/made/up/{:x}/{i}", next())
        } else {
            "/healthz".to_owned()
        };
        let res = request(&method, &path).await.expect("request");
        assert!(
            [404, 405].contains(&res.status().as_u16()),
            "{method} {path}"
        );
    }
    let after = series(&app.metrics().await);
    assert_eq!(before, after, "new series appeared");
}

#[tokio::test]
async fn sealpost_ready_asks_the_configured_server_and_fails_when_it_is_not_ready() {
    let ready = |listen: String| async move {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_sealpost"))
                .args(["ready", "--listen", &listen])
                .output()
                .expect("run sealpost ready")
        })
        .await
        .expect("join")
    };
    let app = TestApp::spawn_with(|s| s.blob_store = None).await;
    let out = ready(app.addr.to_string()).await;
    assert!(out.status.success(), "{out:?}");
    // 0.0.0.0 is asked on the loopback.
    let out = ready(format!("0.0.0.0:{}", app.addr.port())).await;
    assert!(out.status.success(), "{out:?}");

    std::fs::remove_dir_all(app.data_dir.join("blobs")).expect("remove store");
    let out = ready(app.addr.to_string()).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("answered 503"),
        "{out:?}"
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port");
    let out = ready(closed.to_string()).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot ask"),
        "{out:?}"
    );
}

#[tokio::test]
async fn every_request_gets_one_access_line_without_its_query() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = common::child::Server::start(dir.path());
    let client = reqwest::Client::new();
    let blob = "ab".repeat(32);
    for path in [
        "/healthz".to_owned(),
        "/v1/chat?token=SECRET-TOKEN-1".to_owned(),
        format!("/v1/blobs/{blob}?expires=1&kid=k1&sig=SECRET-SIG-2"),
    ] {
        client
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .expect("request");
    }
    let log_path = dir.path().join("server.log");
    let mut lines = Vec::new();
    for _ in 0..100 {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        lines = log
            .lines()
            .filter(|l| l.contains(r#""target":"sealpost::access""#))
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON line"))
            .collect();
        if lines.len() >= 3 {
            assert!(!log.contains("SECRET"), "a query string was logged: {log}");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Each line is written when its response is done, on whichever thread served it.
    let mut seen: Vec<(String, u64)> = lines
        .iter()
        .map(|l| {
            let f = &l["fields"];
            assert!(f["duration_ms"].as_f64().is_some(), "{l}");
            assert!(f["bytes"].as_u64().is_some(), "{l}");
            assert_eq!(f["client"], "127.0.0.1", "{l}");
            assert_eq!(f["method"], "GET", "{l}");
            (
                f["route"].as_str().expect("route").to_owned(),
                f["status"].as_u64().expect("status"),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("/healthz".to_owned(), 200),
            ("/v1/blobs/{blob_id}".to_owned(), 403),
            ("/v1/chat".to_owned(), 401),
        ]
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

    // Every header the upload and download routes answer with is readable by a browser script:
    // CORS-safelisted, or exposed.
    let user = app.user(&phone()).await;
    let origin = ("Origin", "https://web.example".to_owned());
    let mut responses = Vec::new();
    let partial = app
        .tus_create(
            &user,
            &[
                ("Upload-Length", "3".into()),
                ("Upload-Concat", "partial".into()),
                origin.clone(),
            ],
        )
        .await;
    let url = location(&partial);
    responses.push(partial);
    let with_origin = |req: reqwest::RequestBuilder| req.header("Origin", "https://web.example");
    let tus = |req: reqwest::RequestBuilder| {
        with_origin(req)
            .bearer_auth(&user.token)
            .header("Tus-Resumable", "1.0.0")
    };
    responses.push(
        tus(app.client.patch(app.url(&url)))
            .header("Upload-Offset", "1")
            .header("Content-Type", "application/offset+octet-stream")
            .body("x")
            .send()
            .await
            .expect("mismatch"),
    );
    responses.push(
        tus(app.client.patch(app.url(&url)))
            .header("Upload-Offset", "0")
            .header("Content-Type", "application/offset+octet-stream")
            .body("abc")
            .send()
            .await
            .expect("patch"),
    );
    responses.push(
        tus(app.client.head(app.url(&url)))
            .send()
            .await
            .expect("head"),
    );
    let last = tus(app.client.post(app.url("/v1/uploads")))
        .header("Upload-Concat", format!("final;{url}"))
        .send()
        .await
        .expect("final");
    let blob = header(&last, "sealpost-blob-id").expect("blob id");
    responses.push(
        tus(app.client.head(app.url(&location(&last))))
            .send()
            .await
            .expect("head"),
    );
    responses.push(last);
    responses.push(
        tus(app.client.post(app.url("/v1/uploads")))
            .header("Upload-Defer-Length", "1")
            .send()
            .await
            .expect("deferred"),
    );
    for version in ["3", "6", "9"] {
        let draft = |req: reqwest::RequestBuilder| {
            with_origin(req)
                .bearer_auth(&user.token)
                .header("Upload-Draft-Interop-Version", version)
        };
        let created = draft(app.client.post(app.url("/v1/uploads")))
            .header("Upload-Complete", "?0")
            .header("Upload-Incomplete", "?1")
            .send()
            .await
            .expect("create");
        let url = location(&created);
        responses.push(created);
        responses.push(
            draft(app.client.head(app.url(&url)))
                .send()
                .await
                .expect("head"),
        );
    }
    for range in ["bytes=0-1", "bytes=9-"] {
        responses.push(
            with_origin(app.client.get(app.url(&format!("/v1/blobs/{blob}"))))
                .bearer_auth(&user.token)
                .header("Range", range)
                .send()
                .await
                .expect("blob"),
        );
    }
    const SAFELISTED: [&str; 7] = [
        "cache-control",
        "content-language",
        "content-length",
        "content-type",
        "expires",
        "last-modified",
        "pragma",
    ];
    let mut seen = std::collections::BTreeSet::new();
    for res in &responses {
        let exposed = header(res, "access-control-expose-headers").expect("expose-headers");
        let exposed: Vec<&str> = exposed.split(',').map(str::trim).collect();
        for name in res.headers().keys().map(|n| n.as_str()) {
            if SAFELISTED.contains(&name)
                || name.starts_with("access-control-")
                // For the browser itself, not for scripts.
                || ["vary", "date", "x-content-type-options", "content-security-policy"]
                    .contains(&name)
            {
                continue;
            }
            seen.insert(name.to_owned());
            assert!(
                exposed.contains(&name),
                "{name} is not exposed to browsers ({} {}): {exposed:?}",
                res.status(),
                res.url()
            );
        }
    }
    for name in [
        "location",
        "upload-offset",
        "upload-incomplete",
        "upload-complete",
        "upload-concat",
        "upload-draft-interop-version",
        "content-range",
        "etag",
    ] {
        assert!(seen.contains(name), "no response carried {name}: {seen:?}");
    }
}

#[test]
fn debug_output_never_shows_a_credential() {
    const SECRET: &str = "s3cr3t-Value-42";
    let mut settings = sealpost::Settings {
        database_url: Some(format!("postgres://sealpost:{SECRET}@db/sealpost").into()),
        ..Default::default()
    };
    settings.blobs.link_keys = vec![format!("k1:{SECRET}").into()];
    let token = || SECRET.to_owned();
    let shown = [
        format!("{settings:?}"),
        format!(
            "{:?}",
            sealpost_auth::Authenticated {
                account_id: "a".into(),
                device_id: 1,
                token: token(),
            }
        ),
        format!(
            "{:?}",
            sealpost_client::Client::new("http://x").with_token(token())
        ),
        format!(
            "{:?}",
            sealpost_proto::TokenResponse {
                token: token(),
                token_type: "Bearer".into(),
                expires_at: String::new(),
                account_id: "a".into(),
                device_id: 1,
            }
        ),
        format!(
            "{:?}",
            sealpost_proto::LinkCode {
                code: token(),
                expires_at: String::new(),
            }
        ),
    ];
    for text in shown {
        assert!(!text.contains(SECRET), "{text}");
        assert!(text.len() > 10, "{text}");
    }
}
