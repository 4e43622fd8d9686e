//! The IETF resumable-upload draft on the same resources: 104 interim responses, careful and
//! optimistic creation, Upload-Complete, Upload-Limit and problem types.

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const INTEROP: &str = "8";

fn draft(
    app: &TestApp,
    method: reqwest::Method,
    url: &str,
    user: &User,
) -> reqwest::RequestBuilder {
    app.client
        .request(method, app.url(url))
        .bearer_auth(&user.token)
        .header("Upload-Draft-Interop-Version", INTEROP)
}

#[tokio::test]
async fn careful_creation_then_appends_until_complete() {
    let app = TestApp::spawn_with(|s| s.uploads.max_size = 1 << 20).await;
    let user = app.user(&phone()).await;
    let data = payload(3000, 5);
    let res = draft(&app, reqwest::Method::POST, "/v1/uploads", &user)
        .header("Upload-Complete", "?0")
        .send()
        .await
        .expect("create");
    assert_eq!(res.status(), 201);
    assert!(header(&res, "tus-resumable").is_none());
    assert_eq!(header(&res, "upload-complete").as_deref(), Some("?0"));
    assert_eq!(header(&res, "upload-offset").as_deref(), Some("0"));
    let limit = header(&res, "upload-limit").expect("Upload-Limit");
    assert!(
        limit.contains("max-size=1048576") && limit.contains("max-age="),
        "{limit}"
    );
    let url = location(&res);

    let append = |offset: u64, body: Vec<u8>, complete: &str| {
        draft(&app, reqwest::Method::PATCH, &url, &user)
            .header("Upload-Offset", offset.to_string())
            .header("Upload-Complete", complete.to_owned())
            .header("Content-Type", "application/partial-upload")
            .body(body)
            .send()
    };
    let res = append(0, data[..1000].to_vec(), "?0")
        .await
        .expect("append");
    assert_eq!(res.status(), 204);
    assert_eq!(header(&res, "upload-complete").as_deref(), Some("?0"));

    let head = draft(&app, reqwest::Method::HEAD, &url, &user)
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), 204);
    assert_eq!(header(&head, "upload-offset").as_deref(), Some("1000"));
    assert_eq!(header(&head, "upload-complete").as_deref(), Some("?0"));
    assert_eq!(header(&head, "cache-control").as_deref(), Some("no-store"));
    assert!(header(&head, "upload-limit").is_some());

    let res = append(500, vec![1], "?0").await.expect("append");
    let body = assert_problem(res, 409, "mismatching-upload-offset").await;
    assert_eq!(
        body["type"],
        "https://iana.org/assignments/http-problem-types#mismatching-upload-offset"
    );
    assert_eq!(
        (
            body["expected-offset"].as_u64(),
            body["provided-offset"].as_u64()
        ),
        (Some(1000), Some(500))
    );

    let res = append(1000, data[1000..].to_vec(), "?1")
        .await
        .expect("append");
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "upload-complete").as_deref(), Some("?1"));
    let blob = sha256_hex(&data);
    assert_eq!(header(&res, "sealpost-blob-id"), Some(blob.clone()));
    let status: serde_json::Value = res.json().await.expect("json");
    assert_eq!(status["blob_id"], blob.as_str());
    assert_eq!(
        app.blob(&user, &blob)
            .await
            .bytes()
            .await
            .expect("bytes")
            .as_ref(),
        data.as_slice()
    );

    let res = append(3000, vec![1], "?1").await.expect("append");
    assert_eq!(
        header(&res, "upload-complete").as_deref(),
        Some("?1"),
        "the upload is complete, though this append failed"
    );
    let body = assert_problem(res, 400, "completed-upload").await;
    assert_eq!(
        body["type"],
        "https://iana.org/assignments/http-problem-types#completed-upload"
    );
}

#[tokio::test]
async fn draft_errors() {
    let app = TestApp::spawn().await;
    let user = app.user(&phone()).await;
    let res = app
        .client
        .post(app.url("/v1/uploads"))
        .bearer_auth(&user.token)
        .header("Upload-Draft-Interop-Version", "2")
        .header("Upload-Complete", "?1")
        .send()
        .await
        .expect("r");
    assert_problem(res, 412, "unsupported-version").await;
    let res = draft(&app, reqwest::Method::POST, "/v1/uploads", &user)
        .send()
        .await
        .expect("r");
    assert_problem(res, 400, "invalid-header").await;
    let res = draft(&app, reqwest::Method::POST, "/v1/uploads", &user)
        .header("Upload-Complete", "yes")
        .send()
        .await
        .expect("r");
    assert_problem(res, 400, "invalid-header").await;
    let res = draft(&app, reqwest::Method::POST, "/v1/uploads", &user)
        .header("Upload-Complete", "?1")
        .header("Upload-Length", "5")
        .body(vec![0; 4])
        .send()
        .await
        .expect("r");
    let body = assert_problem(res, 400, "inconsistent-upload-length").await;
    assert_eq!(
        body["type"],
        "https://iana.org/assignments/http-problem-types#inconsistent-upload-length"
    );

    let res = draft(&app, reqwest::Method::POST, "/v1/uploads", &user)
        .header("Upload-Complete", "?0")
        .header("Upload-Length", "10")
        .send()
        .await
        .expect("r");
    let url = location(&res);
    let res = draft(&app, reqwest::Method::PATCH, &url, &user)
        .header("Upload-Offset", "0")
        .header("Upload-Complete", "?0")
        .header("Content-Type", "application/offset+octet-stream")
        .body(vec![1])
        .send()
        .await
        .expect("r");
    assert_problem(res, 415, "unsupported-media-type").await;
    let res = draft(&app, reqwest::Method::PATCH, &url, &user)
        .header("Upload-Offset", "0")
        .header("Upload-Complete", "?1")
        .header("Content-Type", "application/partial-upload")
        .body(vec![1; 4])
        .send()
        .await
        .expect("r");
    assert_problem(res, 400, "inconsistent-upload-length").await;
    let res = draft(&app, reqwest::Method::DELETE, &url, &user)
        .send()
        .await
        .expect("r");
    assert_eq!(res.status(), 204);
}

#[tokio::test]
async fn a_chunked_final_append_sets_the_length() {
    let app = TestApp::spawn().await;
    let user = app.user(&phone()).await;
    let data = payload(70_000, 8);
    let res = draft(&app, reqwest::Method::POST, "/v1/uploads", &user)
        .header("Upload-Complete", "?0")
        .send()
        .await
        .expect("create");
    let url = location(&res);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(10_000).map(|c| Ok(c.to_vec())).collect();
    let res = draft(&app, reqwest::Method::PATCH, &url, &user)
        .header("Upload-Offset", "0")
        .header("Upload-Complete", "?1")
        .header("Content-Type", "application/partial-upload")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("append");
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "upload-length").as_deref(), Some("70000"));
    assert_eq!(header(&res, "sealpost-blob-id"), Some(sha256_hex(&data)));
}

/// Reads from `stream` until `needle` has been seen; returns everything read.
async fn read_until(stream: &mut TcpStream, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("timely")
            .expect("read");
        assert!(
            n > 0,
            "connection closed before {needle:?}; got {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn optimistic_creation_sends_104_with_the_location_before_reading_the_body() {
    let app = TestApp::spawn().await;
    let user = app.user(&phone()).await;
    let data = payload(20_000, 6);
    let mut tcp = TcpStream::connect(app.addr).await.expect("connect");
    let head = format!(
        "POST /v1/uploads HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nUpload-Draft-Interop-Version: {INTEROP}\r\nUpload-Complete: ?1\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
        app.addr,
        user.token,
        data.len()
    );
    tcp.write_all(head.as_bytes()).await.expect("head");
    // The interim response arrives although no body byte was sent yet.
    let interim = read_until(&mut tcp, "\r\n\r\n").await;
    assert!(
        interim.starts_with("HTTP/1.1 104 Upload Resumption Supported\r\n"),
        "{interim}"
    );
    assert!(interim.contains("Location: /v1/uploads/"), "{interim}");
    assert!(
        interim.contains(&format!("Upload-Draft-Interop-Version: {INTEROP}")),
        "{interim}"
    );
    assert!(interim.contains("Upload-Limit: max-size="), "{interim}");
    tcp.write_all(&data[..10_000]).await.expect("first half");
    tcp.write_all(&data[10_000..]).await.expect("second half");
    let final_response = read_until(&mut tcp, &sha256_hex(&data)).await;
    assert!(
        final_response.contains("HTTP/1.1 201 Created"),
        "{final_response}"
    );
    assert!(
        final_response
            .to_ascii_lowercase()
            .contains("upload-complete: ?1"),
        "{final_response}"
    );
}

#[tokio::test]
async fn interrupted_optimistic_creation_is_resumable_from_the_104_location() {
    let app = TestApp::spawn().await;
    let user = app.user(&phone()).await;
    let data = payload(50_000, 7);
    let mut tcp = TcpStream::connect(app.addr).await.expect("connect");
    let head = format!(
        "POST /v1/uploads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nUpload-Draft-Interop-Version: {INTEROP}\r\nUpload-Complete: ?1\r\nContent-Length: {}\r\n\r\n",
        user.token,
        data.len()
    );
    tcp.write_all(head.as_bytes()).await.expect("head");
    let interim = read_until(&mut tcp, "\r\n\r\n").await;
    let url = interim
        .lines()
        .find_map(|l| l.strip_prefix("Location: "))
        .expect("location")
        .trim()
        .to_owned();
    tcp.write_all(&data[..20_000]).await.expect("part");
    tcp.flush().await.expect("flush");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    drop(tcp);

    let head = draft(&app, reqwest::Method::HEAD, &url, &user)
        .send()
        .await
        .expect("head");
    assert_eq!(header(&head, "upload-offset").as_deref(), Some("20000"));
    assert_eq!(header(&head, "upload-length").as_deref(), Some("50000"));
    let res = draft(&app, reqwest::Method::PATCH, &url, &user)
        .header("Upload-Offset", "20000")
        .header("Upload-Complete", "?1")
        .header("Content-Type", "application/partial-upload")
        .body(data[20_000..].to_vec())
        .send()
        .await
        .expect("resume");
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "sealpost-blob-id"), Some(sha256_hex(&data)));
}

#[tokio::test]
async fn completion_is_the_clients_call_even_when_all_bytes_are_there() {
    let app = TestApp::spawn().await;
    let user = app.user(&phone()).await;
    let res = draft(&app, reqwest::Method::POST, "/v1/uploads", &user)
        .header("Upload-Complete", "?0")
        .header("Upload-Length", "5")
        .send()
        .await
        .expect("create");
    let url = location(&res);
    let append = |offset: &'static str, body: &'static [u8], complete: &'static str| {
        draft(&app, reqwest::Method::PATCH, &url, &user)
            .header("Upload-Offset", offset)
            .header("Upload-Complete", complete)
            .header("Content-Type", "application/partial-upload")
            .body(body)
            .send()
    };
    assert_eq!(
        append("0", b"hello", "?0").await.expect("append").status(),
        204
    );
    let head = draft(&app, reqwest::Method::HEAD, &url, &user)
        .send()
        .await
        .expect("head");
    assert_eq!(header(&head, "upload-offset").as_deref(), Some("5"));
    assert_eq!(
        header(&head, "upload-complete").as_deref(),
        Some("?0"),
        "HEAD does not complete a draft upload"
    );
    let res = append("5", b"", "?1").await.expect("complete");
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "sealpost-blob-id"), Some(sha256_hex(b"hello")));
}

/// The first response a raw draft creation with `extra` headers gets (the 104 or the final).
async fn first_response(app: &TestApp, user: &User, extra: &str) -> String {
    let mut tcp = TcpStream::connect(app.addr).await.expect("connect");
    let head = format!(
        "POST /v1/uploads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nUpload-Draft-Interop-Version: {INTEROP}\r\nUpload-Complete: ?1\r\nContent-Length: 3\r\n{extra}\r\nabc",
        user.token
    );
    tcp.write_all(head.as_bytes()).await.expect("request");
    read_until(&mut tcp, "\r\n\r\n").await
}

#[tokio::test]
async fn no_104_goes_through_a_proxy_unless_proxies_pass_it_on() {
    let app = TestApp::spawn().await;
    let user = app.user(&phone()).await;
    assert!(
        first_response(&app, &user, "")
            .await
            .starts_with("HTTP/1.1 104 ")
    );
    // nginx (and most proxies) would take a 104 for the final response.
    for hop in [
        "X-Forwarded-For: 203.0.113.5\r\n",
        "Forwarded: for=203.0.113.5\r\n",
        "Via: 1.1 proxy\r\n",
    ] {
        let first = first_response(&app, &user, hop).await;
        assert!(first.starts_with("HTTP/1.1 201 "), "{hop}: {first}");
    }
    let app = TestApp::spawn_with(|s| s.proxies_forward_interim = true).await;
    let user = app.user(&phone()).await;
    let first = first_response(&app, &user, "X-Forwarded-For: 203.0.113.5\r\n").await;
    assert!(first.starts_with("HTTP/1.1 104 "), "{first}");
}

/// What one interop version's requests and responses look like.
struct Version {
    number: u32,
    /// The completeness header and its value for "complete" / "more to come".
    complete: (&'static str, &'static str),
    incomplete: (&'static str, &'static str),
    /// Whether appends must be `application/partial-upload`.
    typed_appends: bool,
    /// Status of an append that leaves the upload incomplete.
    incomplete_append: u16,
    /// The `Upload-Limit` key of the remaining lifetime.
    lifetime: &'static str,
}

fn versions() -> Vec<Version> {
    (3..=9)
        .map(|number| Version {
            number,
            complete: if number == 3 {
                ("upload-incomplete", "?0")
            } else {
                ("upload-complete", "?1")
            },
            incomplete: if number == 3 {
                ("upload-incomplete", "?1")
            } else {
                ("upload-complete", "?0")
            },
            typed_appends: number >= 6,
            incomplete_append: if number <= 6 { 201 } else { 204 },
            lifetime: if number <= 6 { "expires" } else { "max-age" },
        })
        .collect()
}

#[tokio::test]
async fn every_interop_version_speaks_its_own_headers_over_one_upload() {
    let app = TestApp::spawn().await;
    let user = app.user(&phone()).await;
    for v in versions() {
        let n = v.number.to_string();
        let request = |method: reqwest::Method, url: &str| {
            app.client
                .request(method, app.url(url))
                .bearer_auth(&user.token)
                .header("Upload-Draft-Interop-Version", n.clone())
        };
        let data = payload(3000, 7);
        let res = request(reqwest::Method::POST, "/v1/uploads")
            .header(v.incomplete.0, v.incomplete.1)
            .send()
            .await
            .expect("create");
        assert_eq!(res.status(), 201, "v{n}");
        assert_eq!(
            header(&res, v.incomplete.0).as_deref(),
            Some(v.incomplete.1),
            "v{n}"
        );
        assert_eq!(
            header(&res, "upload-draft-interop-version"),
            Some(n.clone())
        );
        let limit = header(&res, "upload-limit").expect("Upload-Limit");
        assert!(limit.contains(&format!("{}=", v.lifetime)), "v{n}: {limit}");
        let url = location(&res);

        let append = |offset: u64, body: &[u8], completeness: Option<(&str, &str)>, typed: bool| {
            let mut req = request(reqwest::Method::PATCH, &url)
                .header("Upload-Offset", offset.to_string())
                .body(body.to_vec());
            if let Some((name, value)) = completeness {
                req = req.header(name, value);
            }
            if typed {
                req = req.header("Content-Type", "application/partial-upload");
            }
            req.send()
        };
        if v.typed_appends {
            let res = append(0, &data[..1000], Some(v.incomplete), false)
                .await
                .expect("append");
            assert_eq!(res.status(), 415, "v{n} wants application/partial-upload");
        }
        let res = append(0, &data[..1000], Some(v.incomplete), v.typed_appends)
            .await
            .expect("append");
        assert_eq!(res.status(), v.incomplete_append, "v{n}");
        assert_eq!(
            header(&res, "upload-offset").as_deref(),
            Some("1000"),
            "v{n}"
        );
        assert_eq!(
            header(&res, v.incomplete.0).as_deref(),
            Some(v.incomplete.1),
            "v{n}"
        );

        // A version 9 client may ask for the offset with GET; every version with HEAD.
        let head = request(reqwest::Method::HEAD, &url)
            .send()
            .await
            .expect("head");
        assert_eq!(head.status(), 204, "v{n}");
        assert_eq!(
            header(&head, "upload-offset").as_deref(),
            Some("1000"),
            "v{n}"
        );
        assert_eq!(
            header(&head, v.incomplete.0).as_deref(),
            Some(v.incomplete.1),
            "v{n}"
        );
        let get = request(reqwest::Method::GET, &url)
            .send()
            .await
            .expect("get");
        assert_eq!(get.status(), 200, "v{n}");
        assert_eq!(
            header(&get, "upload-offset").as_deref(),
            Some("1000"),
            "v{n}"
        );

        let res = append(500, &data[..1], Some(v.incomplete), v.typed_appends)
            .await
            .expect("append");
        if v.number >= 7 {
            assert_eq!(
                header(&res, "upload-complete").as_deref(),
                Some("?0"),
                "v{n}"
            );
        }
        assert_problem(res, 409, "mismatching-upload-offset").await;

        // Through version 6 an append without the completeness header is the last one; from 7
        // the header is required.
        let res = append(1000, &data[1000..], None, v.typed_appends)
            .await
            .expect("append");
        let res = if v.number <= 6 {
            res
        } else {
            assert_eq!(
                header(&res, "upload-complete").as_deref(),
                Some("?0"),
                "v{n}"
            );
            assert_problem(res, 400, "invalid-header").await;
            append(1000, &data[1000..], Some(v.complete), v.typed_appends)
                .await
                .expect("append")
        };
        assert_eq!(res.status(), 200, "v{n}");
        assert_eq!(
            header(&res, v.complete.0).as_deref(),
            Some(v.complete.1),
            "v{n}"
        );
        assert_eq!(
            header(&res, "sealpost-blob-id"),
            Some(sha256_hex(&data)),
            "v{n}"
        );

        // Cancellation.
        let res = request(reqwest::Method::POST, "/v1/uploads")
            .header(v.incomplete.0, v.incomplete.1)
            .send()
            .await
            .expect("create");
        let url = location(&res);
        let res = request(reqwest::Method::DELETE, &url)
            .send()
            .await
            .expect("delete");
        assert_eq!(res.status(), 204, "v{n}");
        let head = request(reqwest::Method::HEAD, &url)
            .send()
            .await
            .expect("head");
        assert_eq!(head.status(), 404, "v{n}");
    }
}

#[tokio::test]
async fn an_upload_created_at_one_version_resumes_at_another() {
    let app = TestApp::spawn().await;
    let user = app.user(&phone()).await;
    let data = payload(2000, 8);
    let res = draft(&app, reqwest::Method::POST, "/v1/uploads", &user)
        .header("Upload-Complete", "?0")
        .body(data[..700].to_vec())
        .send()
        .await
        .expect("create");
    assert_eq!(res.status(), 201);
    let url = location(&res);
    let head = app
        .client
        .head(app.url(&url))
        .bearer_auth(&user.token)
        .header("Upload-Draft-Interop-Version", "3")
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), 204);
    assert_eq!(header(&head, "upload-incomplete").as_deref(), Some("?1"));
    assert!(header(&head, "upload-complete").is_none());
    // Version 5 (iOS 18.0, tus-js-client's ietf-draft-03): no media type, no header = the end.
    let res = app
        .client
        .patch(app.url(&url))
        .bearer_auth(&user.token)
        .header("Upload-Draft-Interop-Version", "5")
        .header("Upload-Offset", "700")
        .body(data[700..].to_vec())
        .send()
        .await
        .expect("append");
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "sealpost-blob-id"), Some(sha256_hex(&data)));
}
