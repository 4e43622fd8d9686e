//! The client SDK against the real server: a file sealed on the client uploads resumably and
//! comes back whole; the server only ever holds ciphertext; damage and wrong keys are refused.

mod common;

use std::ops::ControlFlow;

use common::*;
use ed25519_dalek::SigningKey;
use sealpost_client::{Client, ClientError};

async fn logged_in(app: &TestApp) -> Client {
    let key = SigningKey::from_bytes(&rand_bytes());
    let phone = phone();
    let mut client = Client::new(&app.base);
    client
        .register(&phone, "Sdk", &key)
        .await
        .expect("register");
    client.login(&phone, &key).await.expect("login");
    client
}

#[tokio::test]
async fn a_sealed_file_round_trips_and_the_server_holds_only_ciphertext() {
    let app = TestApp::spawn().await;
    let client = logged_in(&app).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = payload(300_000, 41);
    let path = dir.path().join("holiday.jpg");
    std::fs::write(&path, &data).expect("write");

    let media = client
        .upload_encrypted(&path, &dir.path().join("state"), |_| {
            ControlFlow::Continue(())
        })
        .await
        .expect("upload");
    media.validate().expect("valid reference");
    assert_eq!((media.size, media.mime.as_str()), (300_000, "image/jpeg"));
    assert_eq!(media.plaintext_sha256, sha256_hex(&data));

    let out = dir.path().join("received.jpg");
    client
        .download_decrypted(&media, &out)
        .await
        .expect("download");
    assert!(std::fs::read(&out).expect("read") == data);

    // Ranges, as a player seeking in a video asks for them.
    for (start, end) in [
        (0, 1),
        (65_470, 65_500),
        (100_000, 250_000),
        (299_990, 300_000),
    ] {
        let part = dir.path().join("part");
        client
            .download_decrypted_range(&media, start..end, &part)
            .await
            .expect("range");
        let start = usize::try_from(start).expect("fits");
        let end = usize::try_from(end).expect("fits");
        assert!(
            std::fs::read(&part).expect("read") == data[start..end],
            "{start}..{end}"
        );
    }
    assert!(matches!(
        client
            .download_decrypted_range(&media, 299_999..300_001, &dir.path().join("x"))
            .await,
        Err(ClientError::BadRange(..))
    ));

    // What the server stores is the ciphertext: its length, its hash as the id, and no run of
    // the plaintext anywhere in it.
    let user = User {
        phone: String::new(),
        key: SigningKey::from_bytes(&rand_bytes()),
        token: client.token().expect("token").to_owned(),
        account_id: String::new(),
    };
    let stored = app
        .blob(&user, &media.blob_id)
        .await
        .bytes()
        .await
        .expect("blob");
    assert_eq!(
        stored.len() as u64,
        sealpost_crypto::ciphertext_len(300_000)
    );
    assert_eq!(sha256_hex(&stored), media.blob_id);
    for at in [0, 1000, 65_470, 150_000, 299_968] {
        let window = &data[at..at + 32];
        assert!(
            !stored.windows(32).any(|w| w == window),
            "plaintext bytes at {at} appear in the stored blob"
        );
    }
}

/// A progress callback that stops the upload once 1 MiB is sent.
fn stop_after_1_mib(p: sealpost_client::Progress) -> ControlFlow<()> {
    if p.sent >= 1 << 20 {
        ControlFlow::Break(())
    } else {
        ControlFlow::Continue(())
    }
}

#[tokio::test]
async fn a_stopped_upload_resumes_where_the_server_stopped() {
    let app = TestApp::spawn().await;
    let client = logged_in(&app).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let data = payload(3 << 20, 42);
    let path = dir.path().join("clip.mp4");
    std::fs::write(&path, &data).expect("write");

    let stopped = client
        .upload_encrypted(&path, &state, stop_after_1_mib)
        .await;
    assert!(
        matches!(stopped, Err(ClientError::Interrupted)),
        "{stopped:?}"
    );
    assert_eq!(
        std::fs::read_dir(&state).expect("state dir").count(),
        1,
        "the upload's state is kept for the next run"
    );

    let mut resumed_at = None;
    let media = client
        .upload_encrypted(&path, &state, |p| {
            resumed_at.get_or_insert(p.resumed_at);
            ControlFlow::Continue(())
        })
        .await
        .expect("resumed upload");
    assert!(
        resumed_at.is_some_and(|at| at > 0),
        "the second run continued from the server's offset, not from 0: {resumed_at:?}"
    );
    assert_eq!(
        std::fs::read_dir(&state).expect("state dir").count(),
        0,
        "a finished upload forgets its state"
    );
    let out = dir.path().join("out.mp4");
    client
        .download_decrypted(&media, &out)
        .await
        .expect("download");
    assert!(std::fs::read(&out).expect("read") == data);
}

#[tokio::test]
async fn an_upload_the_server_dropped_starts_over() {
    let app = TestApp::spawn().await;
    let client = logged_in(&app).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let data = payload(3 << 20, 44);
    let path = dir.path().join("voice.m4a");
    std::fs::write(&path, &data).expect("write");
    let stopped = client
        .upload_encrypted(&path, &state, stop_after_1_mib)
        .await;
    assert!(
        matches!(stopped, Err(ClientError::Interrupted)),
        "{stopped:?}"
    );

    // The server forgets the upload (here: terminated; expiry looks the same to the client).
    let entry = std::fs::read_dir(&state)
        .expect("state dir")
        .next()
        .expect("a state file")
        .expect("entry");
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(entry.path()).expect("read")).expect("json");
    let url = saved["upload_url"].as_str().expect("upload url");
    let res = app
        .client
        .delete(app.url(url))
        .bearer_auth(client.token().expect("token"))
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .expect("delete");
    assert_eq!(res.status(), 204);

    let media = client
        .upload_encrypted(&path, &state, |_| ControlFlow::Continue(()))
        .await
        .expect("a new upload of the same ciphertext");
    let out = dir.path().join("out.m4a");
    client
        .download_decrypted(&media, &out)
        .await
        .expect("download");
    assert!(std::fs::read(&out).expect("read") == data);
}

#[tokio::test]
async fn wrong_keys_and_wrong_hashes_are_refused_and_leave_no_file() {
    let app = TestApp::spawn().await;
    let client = logged_in(&app).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("note.txt");
    std::fs::write(&path, payload(100_000, 43)).expect("write");
    let media = client
        .upload_encrypted(&path, &dir.path().join("state"), |_| {
            ControlFlow::Continue(())
        })
        .await
        .expect("upload");
    let out = dir.path().join("out.txt");

    let mut wrong_key = media.clone();
    wrong_key.media_key[0] ^= 1;
    let err = client.download_decrypted(&wrong_key, &out).await;
    assert!(
        matches!(
            err,
            Err(ClientError::Tampered(
                sealpost_crypto::CryptoError::WrongKey
            ))
        ),
        "{err:?}"
    );
    let mut wrong_hash = media.clone();
    wrong_hash.plaintext_sha256 = "00".repeat(32);
    let err = client.download_decrypted(&wrong_hash, &out).await;
    assert!(
        matches!(err, Err(ClientError::PlaintextMismatch)),
        "{err:?}"
    );
    assert!(!out.exists());
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["note.txt", "state"], "no partial files are left");

    let anonymous = Client::new(&app.base);
    assert!(matches!(
        anonymous.download_decrypted(&media, &out).await,
        Err(ClientError::NotLoggedIn)
    ));
}

#[tokio::test]
async fn https_servers_are_reachable_in_principle() {
    // Nothing listens on port 1: with TLS built in, the failure is the connection itself,
    // not an unsupported scheme.
    let mut client = Client::new("https://127.0.0.1:1");
    let key = SigningKey::from_bytes(&rand_bytes());
    match client.login("+15550000000", &key).await {
        Err(ClientError::Network(e)) => assert!(e.is_connect(), "{e:?}"),
        other => panic!("expected a connection error, got {other:?}"),
    }
}

/// A 1200x800 photo-like JPEG.
fn photo() -> Vec<u8> {
    let byte = |v: u32| v.to_le_bytes()[0];
    let image = image::RgbImage::from_fn(1200, 800, |x, y| {
        image::Rgb([byte(x / 5), byte(y / 4), byte((x + y) / 8)])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(image)
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("jpeg");
    out.into_inner()
}

#[tokio::test]
async fn an_image_is_sent_with_client_made_thumbnails() {
    let app = TestApp::spawn().await;
    let client = logged_in(&app).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // The name lies; the bytes decide the type.
    let path = dir.path().join("photo.bin");
    std::fs::write(&path, photo()).expect("write");
    let state = dir.path().join("state");
    let media = client
        .upload_encrypted(&path, &state, |_| ControlFlow::Continue(()))
        .await
        .expect("upload");
    media.validate().expect("valid reference");
    assert_eq!(media.mime, "image/jpeg");
    assert_eq!((media.width, media.height), (Some(1200), Some(800)));
    let thumbnail = media.thumbnail.clone().expect("thumbnail");

    use base64::Engine;
    let inline = base64::engine::general_purpose::STANDARD
        .decode(thumbnail.inline_jpeg.expect("inline JPEG"))
        .expect("base64");
    let tiny =
        image::load_from_memory_with_format(&inline, image::ImageFormat::Jpeg).expect("tiny");
    assert_eq!((tiny.width(), tiny.height()), (32, 21));
    assert!(thumbnail.blurhash.is_some_and(|h| h.len() > 6));

    // The larger thumbnail is a blob of its own, sealed under its own key.
    let blob = thumbnail.blob.expect("thumbnail blob");
    assert_ne!(blob.media_key, media.media_key);
    assert_eq!(
        (blob.mime.as_str(), blob.width, blob.height),
        ("image/jpeg", 320, 213)
    );
    let as_media = sealpost_proto::MediaRef {
        blob_id: blob.blob_id.clone(),
        media_key: blob.media_key,
        plaintext_sha256: blob.plaintext_sha256.clone(),
        size: blob.size,
        mime: blob.mime.clone(),
        filename: None,
        width: None,
        height: None,
        duration_ms: None,
        thumbnail: None,
    };
    let out = dir.path().join("thumb.jpg");
    client
        .download_decrypted(&as_media, &out)
        .await
        .expect("thumbnail downloads");
    let thumb = image::open(&out).expect("a JPEG");
    assert_eq!((thumb.width(), thumb.height()), (320, 213));
    assert_eq!(
        app.stored().await.blobs.len(),
        2,
        "the photo and its thumbnail"
    );
    assert!(
        std::fs::read_dir(&state).map_or(true, |mut d| d.next().is_none()),
        "no thumbnail or state left behind"
    );

    // Turned off, or for a file that is no image: no thumbnail.
    let plain = client.clone().with_thumbnails(false);
    let media = plain
        .upload_encrypted(&path, &state, |_| ControlFlow::Continue(()))
        .await
        .expect("upload");
    assert!(media.thumbnail.is_none() && media.width.is_none());
}

#[tokio::test]
async fn a_video_is_sent_with_its_poster_and_duration_and_audio_with_its_duration() {
    let app = TestApp::spawn().await;
    let client = logged_in(&app).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/media");
    let media = client
        .upload_encrypted(&fixtures.join("portrait.mp4"), &state, |_| {
            ControlFlow::Continue(())
        })
        .await
        .expect("upload");
    media.validate().expect("valid reference");
    assert_eq!(media.mime, "video/mp4");
    assert_eq!(
        (media.width, media.height),
        (Some(360), Some(640)),
        "displayed upright"
    );
    assert!(
        media
            .duration_ms
            .is_some_and(|ms| (1900..=2200).contains(&ms))
    );
    let thumbnail = media.thumbnail.expect("poster thumbnail");
    assert!(thumbnail.inline_jpeg.is_some() && thumbnail.blurhash.is_some());
    let blob = thumbnail.blob.expect("sealed poster");
    assert_eq!(
        (blob.mime.as_str(), blob.width, blob.height),
        ("image/jpeg", 180, 320),
        "the poster, upright, its long side at most 320"
    );

    let media = client
        .upload_encrypted(&fixtures.join("voice.ogg"), &state, |_| {
            ControlFlow::Continue(())
        })
        .await
        .expect("upload");
    assert_eq!(media.mime, "audio/ogg");
    assert!(
        media
            .duration_ms
            .is_some_and(|ms| (1900..=2200).contains(&ms))
    );
    assert!(media.thumbnail.is_none() && media.width.is_none());
}
