//! Test harness: the real application on port 0 with a fresh data directory, and helpers to
//! register, log in and drive uploads.
#![allow(dead_code, unreachable_pub, clippy::cast_possible_truncation)]

pub mod chat;
pub mod child;
pub mod nginx;
pub mod seal;
pub mod tansu;

use std::net::SocketAddr;
use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use ed25519_dalek::{Signer, SigningKey};
use reqwest::{Client, Response, StatusCode};
use sealpost::{Application, Settings};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// A running server.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub client: Client,
    pub data_dir: PathBuf,
    /// The blob store's URL (files in the data directory, or a test bucket on S3).
    pub blob_store: String,
    /// The database it uses (empty for an external server).
    pub database_url: String,
    _dir: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Settings for a test server over `dir`: its blobs and SQLite there, or a PostgreSQL
/// database of its own when `SEALPOST_TEST_DATABASE=postgres` (see `sealpost_db::testing`) and
/// an S3 bucket of its own when `SEALPOST_TEST_BLOB_STORE=s3` (see `sealpost_store::testing`),
/// on the Kafka broker when `SEALPOST_TEST_BUS=kafka` (see `sealpost_bus::testing`).
pub fn settings_in(dir: &std::path::Path) -> Settings {
    let key = dir.display().to_string();
    let mut s = Settings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.to_path_buf(),
        database_url: sealpost_db::testing::database_url(&key).map(Into::into),
        blob_store: sealpost_store::testing::blob_store_url(&key),
        bus: sealpost_bus::testing::bus_url(&key),
        ..Settings::default()
    };
    s.auth.attempts_per_address_per_minute = 10_000;
    s.auth.attempts_per_phone_per_minute = 10_000;
    s.uploads.sweep_interval = std::time::Duration::from_secs(3600);
    s.media.transcoder = Some(env!("CARGO_BIN_EXE_sealpost").into());
    s.media.retry_backoff = std::time::Duration::from_millis(100);
    s
}

/// A node with every role, and a chat gateway (`--role chat`) sharing its database and bus.
pub async fn node_and_gateway(dir: &std::path::Path) -> (TestApp, TestApp) {
    let node = |role| {
        let mut s = settings_in(dir);
        s.role = role;
        s
    };
    let one = TestApp::start(node(sealpost::Role::All)).await;
    let two = TestApp::start(node(sealpost::Role::Chat)).await;
    (one, two)
}

/// A `width`×`height` JPEG photo with detail everywhere (no EXIF).
pub fn photo_jpeg(width: u32, height: u32) -> Vec<u8> {
    let byte = |v: u32| v.to_le_bytes()[0];
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([byte(x), byte(y), byte(x ^ y)])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("jpeg");
    out.into_inner()
}

/// Blobs that expire `retention` after their last upload or link, swept every 200 ms; links
/// and redirects may last as long as the blobs.
pub fn short_retention(s: &mut Settings, retention: std::time::Duration) {
    s.blobs.retention = retention;
    s.blobs.link_ttl = retention;
    s.blobs.max_link_ttl = retention;
    s.blobs.redirect_ttl = retention;
    s.blobs.sweep_interval = std::time::Duration::from_millis(200);
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = settings_in(dir.path());
        configure(&mut settings);
        let mut app = Self::start(settings).await;
        app._dir = Some(dir);
        app
    }

    /// Starts a server with exactly these settings.
    pub async fn start(settings: Settings) -> Self {
        let data_dir = settings.data_dir.clone();
        let blob_store = settings.blob_store_url();
        let database_url = settings.database_url();
        let app = Application::build(settings).await.expect("build");
        let addr = app.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        let client = Client::builder().build().expect("client");
        Self {
            addr,
            base: format!("http://{addr}"),
            client,
            data_dir,
            blob_store,
            database_url,
            _dir: None,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A client for a server running elsewhere (e.g. a child process) at `base`.
    pub fn external(base: &str) -> Self {
        let addr = base.trim_start_matches("http://").parse().expect("addr");
        let client = Client::builder().build().expect("client");
        Self {
            addr,
            base: base.to_owned(),
            client,
            data_dir: PathBuf::new(),
            blob_store: String::new(),
            database_url: String::new(),
            _dir: None,
            stop: None,
            task: None,
        }
    }

    /// Signals shutdown and waits for the server to stop; returns the data directory's owner.
    pub async fn shutdown(mut self) -> Option<tempfile::TempDir> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("join").expect("server stopped cleanly");
        }
        self._dir.take()
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    /// Registers a fresh account and logs in; returns a user with a token.
    pub async fn user(&self, phone: &str) -> User {
        let key = SigningKey::from_bytes(&rand_bytes());
        let res = self
            .client
            .post(self.url("/v1/accounts"))
            .json(&json!({"phone": phone, "name": "Test", "identity_key": STANDARD.encode(key.verifying_key().as_bytes())}))
            .send()
            .await
            .expect("register");
        assert_eq!(
            res.status(),
            StatusCode::CREATED,
            "{}",
            res.text().await.unwrap_or_default()
        );
        let account: Value = res.json().await.expect("json");
        let token = self.login(phone, &key).await;
        User {
            phone: phone.to_owned(),
            key,
            token,
            account_id: account["id"].as_str().expect("id").to_owned(),
        }
    }

    /// Asks for a login challenge for the first device.
    pub async fn challenge(&self, phone: &str) -> String {
        self.device_challenge(phone, 1).await
    }

    /// Asks for a login challenge for device `device_id`.
    pub async fn device_challenge(&self, phone: &str, device_id: u32) -> String {
        let body: Value = self
            .client
            .post(self.url("/v1/auth/challenge"))
            .json(&json!({"phone": phone, "device_id": device_id}))
            .send()
            .await
            .expect("challenge")
            .json()
            .await
            .expect("json");
        body["challenge"].as_str().expect("challenge").to_owned()
    }

    /// Signs `challenge` with `key` and asks for a token.
    pub async fn token_request(&self, phone: &str, challenge: &str, key: &SigningKey) -> Response {
        let sig = key.sign(&STANDARD.decode(challenge).expect("b64"));
        self.client
            .post(self.url("/v1/auth/token"))
            .json(&json!({"phone": phone, "challenge": challenge, "signature": STANDARD.encode(sig.to_bytes())}))
            .send()
            .await
            .expect("token")
    }

    pub async fn login(&self, phone: &str, key: &SigningKey) -> String {
        let challenge = self.challenge(phone).await;
        let res = self.token_request(phone, &challenge, key).await;
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.expect("json");
        body["token"].as_str().expect("token").to_owned()
    }

    /// tus creation; returns the response.
    pub async fn tus_create(&self, user: &User, headers: &[(&str, String)]) -> Response {
        let mut req = self
            .client
            .post(self.url("/v1/uploads"))
            .bearer_auth(&user.token)
            .header("Tus-Resumable", "1.0.0");
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        req.send().await.expect("create")
    }

    /// tus creation with a known length; returns the upload URL.
    pub async fn tus_new(&self, user: &User, length: u64) -> String {
        let res = self
            .tus_create(user, &[("Upload-Length", length.to_string())])
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        location(&res)
    }

    pub async fn tus_patch(&self, user: &User, url: &str, offset: u64, body: Vec<u8>) -> Response {
        self.tus_patch_with(user, url, offset, body, &[]).await
    }

    /// A tus PATCH with extra headers; a `Content-Type` among them replaces the tus one.
    pub async fn tus_patch_with(
        &self,
        user: &User,
        url: &str,
        offset: u64,
        body: Vec<u8>,
        extra: &[(&str, &str)],
    ) -> Response {
        let mut req = self
            .client
            .patch(self.url(url))
            .bearer_auth(&user.token)
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Offset", offset.to_string());
        if !extra
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            req = req.header("Content-Type", "application/offset+octet-stream");
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        req.body(body).send().await.expect("patch")
    }

    pub async fn tus_head(&self, user: &User, url: &str) -> Response {
        self.client
            .head(self.url(url))
            .bearer_auth(&user.token)
            .header("Tus-Resumable", "1.0.0")
            .send()
            .await
            .expect("head")
    }

    /// The upload's offset, from a HEAD that must succeed.
    pub async fn tus_offset(&self, user: &User, url: &str) -> u64 {
        let head = self.tus_head(user, url).await;
        assert_eq!(head.status(), 200);
        header(&head, "upload-offset")
            .expect("offset")
            .parse()
            .expect("number")
    }

    /// A tus PATCH of `data` from `offset` to its end.
    pub async fn tus_patch_rest(
        &self,
        user: &User,
        url: &str,
        offset: u64,
        data: &[u8],
    ) -> Response {
        let from = usize::try_from(offset).expect("fits");
        self.tus_patch(user, url, offset, data[from..].to_vec())
            .await
    }

    /// `GET /v1/uploads/{id}` as JSON.
    pub async fn upload_status(&self, user: &User, url: &str) -> Value {
        let res = self
            .client
            .get(self.url(url))
            .bearer_auth(&user.token)
            .send()
            .await
            .expect("get");
        res.json().await.expect("json")
    }

    /// Starts a tus PATCH whose body is fed through the returned sender; the response arrives
    /// on the handle.
    pub fn streaming_patch(
        &self,
        user: &User,
        url: &str,
        offset: u64,
    ) -> (
        mpsc::Sender<Result<Bytes, std::io::Error>>,
        JoinHandle<Response>,
    ) {
        let (tx, mut rx) = mpsc::channel(4);
        let body =
            reqwest::Body::wrap_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
        let req = self
            .client
            .patch(self.url(url))
            .bearer_auth(&user.token)
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Offset", offset.to_string())
            .header("Content-Type", "application/offset+octet-stream")
            .body(body);
        (
            tx,
            tokio::spawn(async move { req.send().await.expect("patch") }),
        )
    }

    /// Uploads `data` in one PATCH; returns the blob id.
    pub async fn stored_blob(&self, user: &User, data: &[u8]) -> String {
        let url = self.tus_new(user, data.len() as u64).await;
        let res = self.tus_patch(user, &url, 0, data.to_vec()).await;
        header(&res, "sealpost-blob-id").expect("blob id")
    }

    /// Uploads `data` in one PATCH as a plaintext `preview`; returns the blob id.
    pub async fn preview(&self, user: &User, data: &[u8]) -> String {
        let res = self
            .tus_create(
                user,
                &[
                    ("Upload-Length", data.len().to_string()),
                    ("Upload-Metadata", format!("kind {}", b64("preview"))),
                ],
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let res = self
            .tus_patch(user, &location(&res), 0, data.to_vec())
            .await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        header(&res, "sealpost-blob-id").expect("blob id")
    }

    /// `GET /v1/media/{id}`.
    pub async fn media_status(&self, user: &User, id: &str) -> Response {
        self.client
            .get(self.url(&format!("/v1/media/{id}")))
            .bearer_auth(&user.token)
            .send()
            .await
            .expect("media status")
    }

    /// Polls the processing status of preview `id` until it is no longer pending (at most a
    /// minute); returns it.
    pub async fn processed(&self, user: &User, id: &str) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let res = self.media_status(user, id).await;
            assert_eq!(res.status(), StatusCode::OK);
            let status: Value = res.json().await.expect("json");
            if status["status"] != "pending" {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still pending: {status}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// This server's metrics in the classic text format.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// The value of one metric series (`name{labels}` exactly as exported), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        sample(&self.metrics().await, series)
    }

    /// Mints a signed link to blob `id` with this JSON body (`None`: no body).
    pub async fn mint_link(&self, user: &User, id: &str, body: Option<Value>) -> Response {
        let mut req = self
            .client
            .post(self.url(&format!("/v1/blobs/{id}/links")))
            .bearer_auth(&user.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.expect("mint link")
    }

    pub async fn blob(&self, user: &User, id: &str) -> Response {
        self.client
            .get(self.url(&format!("/v1/blobs/{id}")))
            .bearer_auth(&user.token)
            .send()
            .await
            .expect("blob")
    }

    /// Waits (up to 20 s) until the retention sweep has deleted every stored blob.
    pub async fn wait_until_blobs_swept(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !self.stored().await.blobs.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the sweep never deleted the blob"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// What the blob store holds.
    pub async fn stored(&self) -> sealpost_store::testing::Contents {
        sealpost_store::testing::contents(&self.blob_store).await
    }

    /// Whether the blob store holds staged bytes for the upload at `upload_url`.
    pub async fn has_staged(&self, upload_url: &str) -> bool {
        let id = upload_url.rsplit('/').next().expect("id");
        self.stored().await.staged.iter().any(|k| k.contains(id))
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A logged-in account.
pub struct User {
    pub phone: String,
    pub key: SigningKey,
    pub token: String,
    pub account_id: String,
}

/// The value of one series (`name{labels}` exactly as exported) in an exposition, 0 when
/// absent.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().expect("a number"))
}

pub fn rand_bytes() -> [u8; 32] {
    rand::random()
}

/// `n` bytes of varied content.
pub fn payload(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| {
            (i as u8)
                .wrapping_mul(31)
                .wrapping_add(seed)
                .rotate_left((i % 7) as u32)
        })
        .collect()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn sha256_b64(data: &[u8]) -> String {
    STANDARD.encode(Sha256::digest(data))
}

pub fn b64(s: &str) -> String {
    STANDARD.encode(s.as_bytes())
}

pub fn location(res: &Response) -> String {
    res.headers()
        .get("location")
        .expect("Location")
        .to_str()
        .expect("ascii")
        .to_owned()
}

pub fn header(res: &Response, name: &str) -> Option<String> {
    res.headers()
        .get(name)
        .map(|v| v.to_str().expect("ascii").to_owned())
}

/// A unique E.164 number per call.
pub fn phone() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!(
        "+1555{:07}",
        (std::process::id() as u64 * 1000 + n) % 10_000_000
    )
}

/// Asserts a problem response's status and code; returns the body.
pub async fn assert_problem(res: Response, status: u16, code: &str) -> Value {
    assert_eq!(res.status().as_u16(), status, "wrong status for {code}");
    assert_eq!(
        header(&res, "content-type").as_deref(),
        Some("application/problem+json")
    );
    assert_eq!(
        header(&res, "cache-control").as_deref(),
        Some("no-store"),
        "problems are never cacheable"
    );
    let body: Value = res.json().await.expect("problem json");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    body
}
