//! The `seal` CLI (built from crates/client) against the real server: register, log in, upload,
//! download; Ctrl-C during an upload and the same command again resumes; clear failures.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

/// The `seal` binary next to this test's directory (`cargo test --workspace` builds it).
fn seal_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let bin = dir.join("seal");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p sealpost-client` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

fn seal(config: &Path, server: &str) -> Command {
    let mut command = Command::new(seal_bin());
    command
        .env("SEAL_CONFIG_DIR", config)
        .env("SEAL_SERVER", server)
        .stdin(Stdio::null());
    command
}

/// Runs a command off the async executor (the server under test runs on it).
async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().expect("run seal"))
        .await
        .expect("join")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Waits until `seal upload` has created its upload (its state file records the URL), so that
/// what follows measures sending, not sealing the file to hash it.
async fn started_sending(state_dir: &Path) {
    for _ in 0..300 {
        let created = std::fs::read_dir(state_dir)
            .into_iter()
            .flatten()
            .any(|entry| {
                entry
                    .ok()
                    .and_then(|e| std::fs::read_to_string(e.path()).ok())
                    .is_some_and(|t| t.contains("\"upload_url\": \""))
            });
        if created {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("seal upload never created its upload");
}

/// `seal download REFERENCE -o OUT` succeeds and OUT holds `data`.
async fn downloads_intact(app: &TestApp, config: &Path, reference: &Path, out: &Path, data: &[u8]) {
    let mut download = seal(config, &app.base);
    download.arg("download").arg(reference).arg("-o").arg(out);
    let result = run(download).await;
    assert!(result.status.success(), "{}", text(&result.stderr));
    assert!(std::fs::read(out).expect("read") == data);
}

async fn registered(app: &TestApp, config: &Path) {
    let mut register = seal(config, &app.base);
    register.args(["register", "--phone", &phone(), "--name", "Cli"]);
    let out = run(register).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut login = seal(config, &app.base);
    login.arg("login");
    let out = run(login).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(config.join("identity.json"))
            .expect("identity")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the identity key is private");
    }
}

#[tokio::test]
async fn upload_then_download_round_trips_and_tampering_is_refused() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config");
    registered(&app, &config).await;
    let data = payload(200_000, 51);
    let file = dir.path().join("photo.jpg");
    std::fs::write(&file, &data).expect("write");

    let mut upload = seal(&config, &app.base);
    upload.arg("upload").arg(&file);
    let out = run(upload).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let reference = dir.path().join("photo.ref.json");
    std::fs::write(&reference, &out.stdout).expect("write ref");
    let media: serde_json::Value = serde_json::from_slice(&out.stdout).expect("MediaRef JSON");
    assert_eq!(media["mime"], "image/jpeg");

    downloads_intact(
        &app,
        &config,
        &reference,
        &dir.path().join("received.jpg"),
        &data,
    )
    .await;

    // Just some bytes, across a segment boundary: only those segments are fetched and opened.
    let part = dir.path().join("part.bin");
    let mut ranged = seal(&config, &app.base);
    ranged
        .arg("download")
        .arg(&reference)
        .arg("-o")
        .arg(&part)
        .args(["--range", "65000-70999"]);
    let out = run(ranged).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(std::fs::read(&part).expect("read") == data[65_000..71_000]);
    let mut outside = seal(&config, &app.base);
    outside
        .arg("download")
        .arg(&reference)
        .arg("-o")
        .arg(&part)
        .args(["--range", "300000-"]);
    let out = run(outside).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    // Another key in the reference: refused, nothing written.
    let mut tampered = media.clone();
    tampered["media_key"] = base64_key(&[9; 32]).into();
    let bad = dir.path().join("bad.ref.json");
    std::fs::write(&bad, tampered.to_string()).expect("write");
    let target = dir.path().join("never.jpg");
    let mut download = seal(&config, &app.base);
    download.arg("download").arg(&bad).arg("-o").arg(&target);
    let out = run(download).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("altered or the key is wrong"),
        "{}",
        text(&out.stderr)
    );
    assert!(!target.exists());

    // No server running there: a clear message, not a panic.
    let mut offline = seal(&config, "http://127.0.0.1:9");
    offline.args(["--server", "http://127.0.0.1:9", "login"]);
    let out = run(offline).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot reach the server"),
        "{}",
        text(&out.stderr)
    );
}

fn base64_key(key: &[u8; 32]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(key)
}

#[cfg(unix)]
#[tokio::test]
async fn ctrl_c_during_an_upload_then_the_same_command_resumes() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config");
    registered(&app, &config).await;
    let data = payload(6 << 20, 52);
    let file = dir.path().join("clip.mp4");
    std::fs::write(&file, &data).expect("write");

    // 2 MB/s: the upload takes about 3 s once it has started, and is interrupted after 1.
    let mut upload = seal(&config, &app.base);
    upload
        .args(["upload", "--limit-rate", "2000000"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = upload.spawn().expect("spawn seal");
    started_sending(&config.join("uploads")).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().expect("wait"))
        .await
        .expect("join");
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("Run the same command again to resume"),
        "{}",
        text(&out.stderr)
    );

    let mut again = seal(&config, &app.base);
    again.arg("upload").arg(&file);
    let out = run(again).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("resuming at byte"),
        "the second run continued: {}",
        text(&out.stderr)
    );
    let reference = dir.path().join("clip.ref.json");
    std::fs::write(&reference, &out.stdout).expect("write ref");
    downloads_intact(
        &app,
        &config,
        &reference,
        &dir.path().join("received.mp4"),
        &data,
    )
    .await;
}
