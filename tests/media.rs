//! Plaintext previews through the media worker, on every backend (the bus included): a preview
//! upload yields its renditions, each a blob checked with an independent decoder; hostile files
//! fail with their codes; a decoder that hangs or crashes fails its job, never the server; a
//! lost job is queued again.

mod common;

use std::time::Duration;

use common::{TestApp, User, assert_problem, b64, phone, photo_jpeg, settings_in};
use reqwest::StatusCode;
use serde_json::Value;

/// Fetches rendition `r` and checks it against what the status says about it.
async fn check_rendition(app: &TestApp, user: &common::User, r: &Value) {
    let res = app
        .blob(user, r["blob_id"].as_str().expect("blob id"))
        .await;
    assert_eq!(res.status(), StatusCode::OK, "{r}");
    let bytes = res.bytes().await.expect("body");
    assert_eq!(bytes.len() as u64, r["size"].as_u64().expect("size"), "{r}");
    let format = image::guess_format(&bytes).expect("an image");
    let expected = match r["mime"].as_str() {
        Some("image/webp") => image::ImageFormat::WebP,
        Some("image/jpeg") => image::ImageFormat::Jpeg,
        other => panic!("unexpected rendition type {other:?}"),
    };
    assert_eq!(format, expected, "{r}");
    let decoded = image::load_from_memory_with_format(&bytes, format).expect("decodes");
    assert_eq!(
        (u64::from(decoded.width()), u64::from(decoded.height())),
        (
            r["width"].as_u64().expect("width"),
            r["height"].as_u64().expect("height")
        ),
        "{r}"
    );
}

#[tokio::test]
async fn a_preview_upload_gets_its_renditions_through_the_worker() {
    let app = TestApp::spawn().await;
    let user = app.user("+15550001001").await;
    let id = app.preview(&user, &photo_jpeg(1000, 750)).await;
    let status = app.processed(&user, &id).await;
    assert_eq!(status["status"], "ready", "{status}");
    assert_eq!(status["blob_id"], id.as_str());
    assert_eq!(status["mime"], "image/jpeg");
    assert_eq!(
        (status["width"].as_u64(), status["height"].as_u64()),
        (Some(1000), Some(750))
    );
    assert_eq!(status["frames"], 1);
    assert!(status["blurhash"].as_str().is_some_and(|b| b.len() >= 6));
    assert!(status.get("code").is_none(), "{status}");
    let renditions = status["renditions"].as_array().expect("renditions");
    let names: Vec<(&str, &str)> = renditions
        .iter()
        .map(|r| {
            (
                r["name"].as_str().expect("name"),
                r["mime"].as_str().expect("mime"),
            )
        })
        .collect();
    let mut expected = Vec::new();
    for name in [
        "crop-32",
        "crop-96",
        "fit-320x240",
        "fit-640x480",
        "fit-800x600",
    ] {
        expected.push((name, "image/jpeg"));
        expected.push((name, "image/webp"));
    }
    assert_eq!(names, expected);
    for r in renditions {
        check_rendition(&app, &user, r).await;
    }
    let fit = |name: &str| {
        renditions
            .iter()
            .find(|r| r["name"] == name)
            .map(|r| (r["width"].as_u64(), r["height"].as_u64()))
    };
    assert_eq!(fit("fit-320x240"), Some((Some(320), Some(240))));
    assert_eq!(fit("crop-96"), Some((Some(96), Some(96))));

    // The same bytes again: queued once, processed once.
    let again = app.preview(&user, &photo_jpeg(1000, 750)).await;
    assert_eq!(again, id);
    let status_again = app.processed(&user, &id).await;
    assert_eq!(status_again["attempts"], 1);
    assert_eq!(status_again["renditions"], status["renditions"]);

    let res = app
        .client
        .get(app.url(&format!("/v1/media/{id}")))
        .send()
        .await
        .expect("anonymous");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app.media_status(&user, &id).await;
    assert_eq!(
        common::header(&res, "cache-control").as_deref(),
        Some("no-store")
    );
}

/// A file of `fixtures/media` (made by its generate.sh).
fn media_fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/media")
            .join(name),
    )
    .expect("fixture")
}

/// ffprobe's view of the bytes: `(codec_type, codec_name, width, height)` per stream.
fn ffprobe(bytes: &[u8]) -> Vec<(String, String, u64, u64)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("probe");
    std::fs::write(&path, bytes).expect("write");
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json", "-show_streams"])
        .arg(&path)
        .output()
        .expect("ffprobe (Debian package ffmpeg) runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let probed: Value = serde_json::from_slice(&out.stdout).expect("json");
    probed["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .map(|s| {
            (
                s["codec_type"].as_str().unwrap_or_default().to_owned(),
                s["codec_name"].as_str().unwrap_or_default().to_owned(),
                s["width"].as_u64().unwrap_or(0),
                s["height"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_video_preview_gets_poster_thumbnails_and_a_web_rendition() {
    let app = TestApp::spawn().await;
    let user = app.user("+15550001007").await;
    let id = app.preview(&user, &media_fixture("portrait.mp4")).await;
    let status = app.processed(&user, &id).await;
    assert_eq!(status["status"], "ready", "{status}");
    assert_eq!(
        (
            status["mime"].as_str(),
            status["width"].as_u64(),
            status["height"].as_u64()
        ),
        (Some("video/mp4"), Some(360), Some(640))
    );
    assert!(
        status["duration_ms"].as_u64().is_some_and(|ms| ms >= 1900),
        "{status}"
    );
    assert!(status.get("frames").is_none(), "{status}");
    let renditions = status["renditions"].as_array().expect("renditions");
    for r in renditions.iter().filter(|r| r["name"] != "web") {
        check_rendition(&app, &user, r).await;
    }
    let web = renditions
        .iter()
        .find(|r| r["name"] == "web")
        .expect("web rendition");
    assert_eq!(web["mime"], "video/mp4");
    let res = app.blob(&user, web["blob_id"].as_str().expect("id")).await;
    let bytes = res.bytes().await.expect("body");
    let streams = ffprobe(&bytes);
    assert!(
        streams.contains(&("video".into(), "h264".into(), 360, 640)),
        "{streams:?}"
    );
    assert!(
        streams.iter().any(|s| s.0 == "audio" && s.1 == "aac"),
        "{streams:?}"
    );

    let id = app.preview(&user, &media_fixture("voice.ogg")).await;
    let status = app.processed(&user, &id).await;
    assert_eq!(status["status"], "ready", "{status}");
    assert_eq!(status["mime"], "audio/ogg");
    let renditions = status["renditions"].as_array().expect("renditions");
    assert_eq!(
        renditions.len(),
        1,
        "audio gets only its web rendition: {status}"
    );
    assert_eq!(renditions[0]["mime"], "audio/mp4");

    let id = app.preview(&user, &media_fixture("corrupt-moov.mp4")).await;
    let status = app.processed(&user, &id).await;
    assert_eq!(
        (status["status"].as_str(), status["code"].as_str()),
        (Some("failed"), Some("corrupt-media")),
        "{status}"
    );
}

#[tokio::test]
async fn encrypted_uploads_are_never_processed() {
    let app = TestApp::spawn().await;
    let user = app.user("+15550001002").await;
    let id = app.stored_blob(&user, &photo_jpeg(64, 48)).await;
    let res = app.media_status(&user, &id).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let problem: Value = res.json().await.expect("problem");
    assert_eq!(problem["code"], "not-found");
}

#[tokio::test]
async fn hostile_previews_fail_with_their_codes_and_the_server_keeps_serving() {
    let app = TestApp::spawn().await;
    let user = app.user("+15550001003").await;
    let cases = [
        (media_fixture("truncated.jpg"), "corrupt-media"),
        (media_fixture("bomb.png"), "image-too-large"),
        (media_fixture("huge.jpg"), "image-side-too-long"),
        (media_fixture("corrupt-moov.mp4"), "corrupt-media"),
        (
            b"<html>an extension that lies</html>".to_vec(),
            "unsupported-media",
        ),
    ];
    for (bytes, code) in cases {
        let id = app.preview(&user, &bytes).await;
        let status = app.processed(&user, &id).await;
        assert_eq!(status["status"], "failed", "{status}");
        assert_eq!(status["code"], code, "{status}");
        assert!(status["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(status["attempts"], 1, "bad input is not retried: {status}");
        assert_eq!(status["renditions"], serde_json::json!([]));
    }
    // A PNG named like a video is a PNG: the bytes decide.
    let id = app.preview(&user, &media_fixture("image-named.mp4")).await;
    let status = app.processed(&user, &id).await;
    assert_eq!(
        (status["status"].as_str(), status["mime"].as_str()),
        (Some("ready"), Some("image/png")),
        "{status}"
    );
    let res = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("health");
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_decoder_that_hangs_crashes_or_lies_fails_its_job_not_the_server() {
    let scripts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sandbox");
    // Sleeping runs into the wall-clock limit, spinning into the CPU limit (SIGXCPU).
    for (script, cpu, wall, code) in [
        ("hang.sh", 60, 1, "processing-timeout"),
        ("spin.sh", 1, 60, "processing-timeout"),
        ("crash.sh", 60, 60, "processing-crashed"),
        // A code the transcoder does not have is not believed.
        ("forged-code.sh", 60, 60, "processing-failed"),
    ] {
        let app = TestApp::spawn_with(|s| {
            s.media.transcoder = Some(scripts.join(script));
            s.media.cpu_limit = Duration::from_secs(cpu);
            s.media.timeout = Duration::from_secs(wall);
        })
        .await;
        let user = app.user("+15550001004").await;
        let id = app.preview(&user, &photo_jpeg(64, 48)).await;
        let status = app.processed(&user, &id).await;
        assert_eq!(
            (status["status"].as_str(), status["code"].as_str()),
            (Some("failed"), Some(code)),
            "{status}"
        );
        let res = app
            .client
            .get(app.url("/readyz"))
            .send()
            .await
            .expect("ready");
        assert_eq!(res.status(), StatusCode::OK);
        app.shutdown().await;
    }
}

#[tokio::test]
async fn a_job_lost_before_the_bus_is_queued_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = settings_in(dir.path());
    settings.media.sweep_interval = Duration::from_millis(200);
    let db = sealpost_db::Db::connect(&settings.database_url(), 2)
        .await
        .expect("db");
    let app = TestApp::start(settings).await;
    let user = app.user("+15550001005").await;
    // Stored without a job, then queued as if its job had been lost long ago.
    let id = app.stored_blob(&user, &photo_jpeg(120, 90)).await;
    let long_ago = unix_now() - 3600;
    assert!(
        db.enqueue_media(&id, &user.account_id, long_ago)
            .await
            .expect("enqueue")
    );
    let status = app.processed(&user, &id).await;
    assert_eq!(status["status"], "ready", "{status}");
    assert_eq!(
        (status["width"].as_u64(), status["height"].as_u64()),
        (Some(120), Some(90))
    );
    app.shutdown().await;
}

fn unix_now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs(),
    )
    .expect("seconds")
}

#[tokio::test]
async fn an_api_node_and_a_worker_node_split_the_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = |role: sealpost::Role| {
        let mut s = settings_in(dir.path());
        s.role = role;
        s
    };
    let api = TestApp::start(node(sealpost::Role::Media)).await;
    let worker = TestApp::start(node(sealpost::Role::Worker)).await;
    let user = api.user("+15550001006").await;
    let id = api.preview(&user, &photo_jpeg(200, 150)).await;
    let status = api.processed(&user, &id).await;
    assert_eq!(status["status"], "ready", "{status}");

    // The worker node serves no API, only what operators need.
    let res = worker
        .client
        .get(worker.url(&format!("/v1/media/{id}")))
        .bearer_auth(&user.token)
        .send()
        .await
        .expect("worker api");
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    for path in ["/healthz", "/readyz", "/metrics"] {
        let res = worker
            .client
            .get(worker.url(path))
            .send()
            .await
            .expect("ops");
        assert_eq!(res.status(), StatusCode::OK, "{path}");
    }
    let metrics = worker
        .client
        .get(worker.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("sealpost_media_jobs_total{outcome=\"ready\",code=\"\"} 1"),
        "{metrics}"
    );
    worker.shutdown().await;
    api.shutdown().await;
}

/// Creates a 10-byte preview upload.
async fn create_preview(app: &TestApp, user: &User) -> reqwest::Response {
    let meta = format!("kind {}", b64("preview"));
    app.tus_create(
        user,
        &[("Upload-Length", "10".into()), ("Upload-Metadata", meta)],
    )
    .await
}

#[tokio::test]
async fn an_account_has_a_bounded_number_of_previews_waiting_for_the_worker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = |role: sealpost::Role| {
        let mut s = settings_in(dir.path());
        s.role = role;
        s.uploads.max_previews_per_account = 2;
        s
    };
    // No worker yet: the previews wait.
    let api = TestApp::start(node(sealpost::Role::Media)).await;
    let user = api.user(&phone()).await;
    let first = api.preview(&user, &photo_jpeg(64, 48)).await;
    let res = create_preview(&api, &user).await;
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "one uploading, one waiting"
    );
    assert_problem(create_preview(&api, &user).await, 429, "too-many-previews").await;
    let usage: Value = api
        .client
        .get(api.url("/v1/usage"))
        .bearer_auth(&user.token)
        .send()
        .await
        .expect("usage")
        .json()
        .await
        .expect("json");
    assert_eq!(usage["unfinished"]["previews"], 2, "{usage}");
    // Encrypted media is not held up.
    assert_eq!(
        api.tus_create(&user, &[("Upload-Length", "10".into())])
            .await
            .status(),
        201
    );

    let worker = TestApp::start(node(sealpost::Role::Worker)).await;
    assert_eq!(api.processed(&user, &first).await["status"], "ready");
    assert_eq!(
        create_preview(&api, &user).await.status(),
        StatusCode::CREATED
    );
    worker.shutdown().await;
    api.shutdown().await;
}
