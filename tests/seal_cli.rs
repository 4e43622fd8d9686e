//! The `seal` CLI (built from crates/client) against the real server: register, log in, upload,
//! download; Ctrl-C during an upload and the same command again resumes; clear failures.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::seal::*;
use common::*;

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
    let mut usage = seal(&config, &app.base);
    usage.arg("usage");
    let out = run(usage).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        shown.starts_with("stored: 1 of 20000 blobs, ") && shown.contains("counted for 30 days"),
        "{shown}"
    );

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

#[tokio::test]
async fn two_cli_users_exchange_messages_with_receipts_across_two_nodes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (one, two) = node_and_gateway(dir.path()).await;
    let (alice, bob) = (cli_user(&one.base).await, cli_user(&one.base).await);

    // Bob listens on the second node while Alice sends two messages through the first.
    let bob_config = bob.path().to_owned();
    let two_base = two.base.clone();
    let bob_listens = tokio::spawn(async move { listen(&bob_config, &two_base, 2).await });
    let mut sent = Vec::new();
    for message in ["hello Bob", "and again"] {
        let mut send = seal(alice.path(), &one.base);
        send.args(["send", "--to", &bob.phone, "--text", message]);
        let out = run(send).await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        sent.push(text(&out.stdout).trim().to_owned());
    }
    let got = bob_listens.await.expect("listen");
    let texts: Vec<&str> = got.iter().filter_map(|m| m["text"].as_str()).collect();
    assert_eq!(texts, ["hello Bob", "and again"], "in order: {got:?}");
    let ids: Vec<&str> = got.iter().filter_map(|m| m["server_id"].as_str()).collect();
    assert_eq!(ids, sent);

    // Alice, offline meanwhile, finds Bob's delivered receipts waiting.
    let receipts = listen(alice.path(), &one.base, 2).await;
    let mut acknowledged = Vec::new();
    for receipt in &receipts {
        assert_eq!(
            (receipt["type"].as_str(), receipt["status"].as_str()),
            (Some("receipt"), Some("delivered")),
            "{receipt}"
        );
        acknowledged.extend(receipt["ids"].as_array().expect("ids").iter().cloned());
    }
    assert_eq!(acknowledged, sent);

    // Unknown recipients get a clear error.
    let mut nobody = seal(alice.path(), &one.base);
    nobody.args(["send", "--to", "+15550000000", "--text", "anyone?"]);
    let out = run(nobody).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no-such-account"),
        "{}",
        text(&out.stderr)
    );
    two.shutdown().await;
    one.shutdown().await;
}

#[tokio::test]
async fn a_photo_goes_end_to_end_to_an_offline_recipient_who_saves_it_and_says_read() {
    let app = TestApp::spawn().await;
    let (alice, bob) = (cli_user(&app.base).await, cli_user(&app.base).await);
    let photo = photo_jpeg(640, 480);
    let path = alice.path().join("beach.jpg");
    std::fs::write(&path, &photo).expect("photo");

    // Bob is offline: the message waits for him.
    let mut send = seal(alice.path(), &app.base);
    send.args(["send", "--to", &bob.phone, "--caption", "the beach"]);
    send.arg("--file").arg(&path);
    let out = run(send).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let server_id = text(&out.stdout).trim().to_owned();

    let saved = bob.path().join("received");
    let got = listen_with(
        bob.path(),
        &app.base,
        1,
        &["--save-to", &saved.display().to_string()],
    )
    .await;
    let message = got
        .iter()
        .find(|m| m["type"] == "message")
        .expect("the message");
    assert_eq!(
        (message["server_id"].as_str(), message["text"].as_str()),
        (Some(server_id.as_str()), Some("the beach"))
    );
    assert_eq!(message["attachments"][0]["mime"], "image/jpeg");
    let file = saved.join("beach.jpg");
    assert!(
        std::fs::read(&file).expect("saved") == photo,
        "the same bytes"
    );
    let reference = saved.join("beach.jpg.ref.json");
    assert!(reference.exists(), "its MediaRef next to it");

    // The saved reference serves `seal download --range`.
    let mut part = seal(bob.path(), &app.base);
    part.arg("download")
        .arg(&reference)
        .args(["--range", "100-199", "-o"])
        .arg(bob.path().join("part"));
    let out = run(part).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(std::fs::read(bob.path().join("part")).expect("part") == photo[100..200]);

    // Alice hears it was delivered, then read.
    let receipts = listen(alice.path(), &app.base, 2).await;
    let statuses: Vec<(&str, &str)> = receipts
        .iter()
        .map(|r| {
            (
                r["status"].as_str().unwrap_or_default(),
                r["ids"][0].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("delivered", server_id.as_str()),
            ("read", server_id.as_str())
        ]
    );
}

/// Runs `seal` with `args` in config dir `config`; its stdout, trimmed (it must succeed).
async fn seal_ok(config: &Path, server: &str, args: &[&str]) -> String {
    let mut command = seal(config, server);
    command.args(args);
    let out = run(command).await;
    assert!(out.status.success(), "seal {args:?}: {}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

/// The messages among `listen`'s lines: (text, attachments saved).
fn messages(lines: &[serde_json::Value]) -> Vec<(String, usize)> {
    lines
        .iter()
        .filter(|l| l["type"] == "message")
        .map(|m| {
            assert!(m["error"].is_null(), "decrypted: {m}");
            (
                m["text"].as_str().unwrap_or_default().to_owned(),
                m["attachments"].as_array().map_or(0, Vec::len),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_group_of_three_and_a_second_device_get_texts_photos_and_videos_end_to_end() {
    let app = TestApp::spawn().await;
    let base = app.base.clone();
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().expect("dir")).collect();
    let [alice, bob, bob2, carol] = [0, 1, 2, 3].map(|i| dirs[i].path());
    let (alice_phone, bob_phone, carol_phone) = (phone(), phone(), phone());
    register_as(&base, alice, &alice_phone).await;
    register_as(&base, bob, &bob_phone).await;
    register_as(&base, carol, &carol_phone).await;

    // Bob links a second device (its own config dir) with a code from his first.
    let code = seal_ok(bob, &base, &["device", "code"]).await;
    seal_ok(
        bob2,
        &base,
        &["device", "link", "--phone", &bob_phone, "--code", &code],
    )
    .await;
    let devices = seal_ok(bob2, &base, &["device", "list"]).await;
    assert_eq!(devices.lines().count(), 2, "{devices}");

    // Everyone offline: Alice writes to Bob (both his devices get it), sends him a video, and
    // writes to a group of three.
    seal_ok(
        alice,
        &base,
        &["send", "--to", &bob_phone, "--text", "just for Bob"],
    )
    .await;
    let video =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/media/landscape.mp4");
    let clip = std::fs::read(&video).expect("fixture");
    let video = video.display().to_string();
    seal_ok(
        alice,
        &base,
        &[
            "send",
            "--to",
            &bob_phone,
            "--file",
            &video,
            "--caption",
            "the sea",
        ],
    )
    .await;
    let group = seal_ok(
        alice,
        &base,
        &[
            "group",
            "create",
            "--member",
            &bob_phone,
            "--member",
            &carol_phone,
        ],
    )
    .await;
    seal_ok(
        alice,
        &base,
        &["send", "--group", &group, "--text", "hello all"],
    )
    .await;
    // Each of Bob's devices: his message, the video (saved; it streams from the saved
    // reference), the group's creation, the group message.
    for device in [bob, bob2] {
        let saved = device.join("videos").display().to_string();
        let got = listen_with(device, &base, 4, &["--save-to", &saved]).await;
        // In order within each conversation (the two may interleave).
        let texts = messages(&got);
        let direct: Vec<&(String, usize)> =
            texts.iter().filter(|(t, _)| t != "hello all").collect();
        assert_eq!(
            direct,
            [&("just for Bob".to_owned(), 0), &("the sea".to_owned(), 1)],
            "{got:?}"
        );
        assert!(texts.contains(&("hello all".to_owned(), 0)), "{got:?}");
        let reference = format!("{saved}/landscape.mp4.ref.json");
        let part = device.join("part").display().to_string();
        seal_ok(
            device,
            &base,
            &[
                "download",
                &reference,
                "--range",
                "60000-70999",
                "-o",
                &part,
            ],
        )
        .await;
        assert!(std::fs::read(&part).expect("part") == clip[60_000..71_000]);
        let in_group: Vec<&serde_json::Value> = got
            .iter()
            .filter(|l| l["group"] == group.as_str())
            .collect();
        assert_eq!(in_group.len(), 2, "the creation and the message: {got:?}");
    }

    // Carol sends the group a photo, then listens (for the group's creation, Alice's message,
    // two receipts from each of Bob's devices, and Alice's answer) while Bob's devices save it.
    let photo = photo_jpeg(320, 240);
    let path = carol.join("pier.jpg");
    std::fs::write(&path, &photo).expect("photo");
    let path = path.display().to_string();
    let pier = seal_ok(
        carol,
        &base,
        &[
            "send",
            "--group",
            &group,
            "--file",
            &path,
            "--caption",
            "the pier",
        ],
    )
    .await;
    let carol_listens = {
        let (carol, base) = (carol.to_owned(), base.clone());
        tokio::spawn(async move { listen(&carol, &base, 7).await })
    };
    for device in [bob, bob2] {
        let saved = device.join("saved");
        let save_to = saved.display().to_string();
        let got = listen_with(device, &base, 1, &["--save-to", &save_to]).await;
        assert_eq!(messages(&got), [("the pier".to_owned(), 1)], "{got:?}");
        assert!(std::fs::read(saved.join("pier.jpg")).expect("saved") == photo);
    }
    seal_ok(
        alice,
        &base,
        &[
            "send",
            "--group",
            &group,
            "--text",
            "lovely",
            "--reply-to",
            &pier,
        ],
    )
    .await;
    let got = carol_listens.await.expect("listen");
    assert_eq!(
        messages(&got),
        [("hello all".to_owned(), 0), ("lovely".to_owned(), 0)],
        "{got:?}"
    );
    let answer = got.iter().find(|l| l["text"] == "lovely").expect("answer");
    assert_eq!(answer["reply_to"], pier.as_str(), "{answer}");
}

#[tokio::test]
async fn a_send_from_a_device_whose_listen_is_running_takes_over_its_connection_and_keys() {
    let app = TestApp::spawn().await;
    let (alice, bob) = (cli_user(&app.base).await, cli_user(&app.base).await);

    // Bob's `seal listen` runs (holding his device's connection and end-to-end state)...
    let mut listener = seal(bob.path(), &app.base);
    listener
        .args(["listen", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut listening = listener.spawn().expect("spawn seal listen");
    let stderr = listening.stderr.take().expect("stderr");
    let (ready, connected) = std::sync::mpsc::channel();
    let said = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut said = Vec::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.starts_with("listening as") {
                let _ = ready.send(());
            }
            said.push(line);
        }
        said
    });
    let up = tokio::task::spawn_blocking(move || connected.recv_timeout(Duration::from_secs(60)))
        .await
        .expect("join");
    assert!(up.is_ok(), "seal listen connected");
    // ... when he sends from another terminal: the send takes over and goes out.
    let mut send = seal(bob.path(), &app.base);
    send.args([
        "send",
        "--to",
        &alice.phone,
        "--text",
        "from the other terminal",
    ]);
    let out = run(send).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status = tokio::task::spawn_blocking(move || listening.wait().expect("wait"))
        .await
        .expect("join");
    let said = said.await.expect("join");
    assert_eq!(status.code(), Some(1), "{said:?}");
    assert!(
        said.iter().any(|l| l.contains("replaced")),
        "seal listen says why it ended: {said:?}"
    );
    let got = listen(alice.path(), &app.base, 1).await;
    assert_eq!(got[0]["text"], "from the other terminal", "{got:?}");
}

#[tokio::test]
async fn seal_sets_who_may_add_it_and_joins_a_group_it_was_invited_to() {
    let app = TestApp::spawn().await;
    let (ada, ben) = (cli_user(&app.base).await, cli_user(&app.base).await);
    let seal_ok = |config: &Path, args: &[&str]| {
        let mut command = seal(config, &app.base);
        command.args(args);
        async move {
            let out = run(command).await;
            assert!(out.status.success(), "{}", text(&out.stderr));
            (text(&out.stdout), text(&out.stderr))
        }
    };
    let (shown, _) = seal_ok(ben.path(), &["group", "privacy"]).await;
    assert_eq!(shown.trim(), "anyone");
    let (shown, _) = seal_ok(ben.path(), &["group", "privacy", "nobody"]).await;
    assert_eq!(shown.trim(), "nobody");
    let (group, _) = seal_ok(ada.path(), &["group", "create", "--member", &ben.phone]).await;
    let group = group.trim().to_owned();
    let mut listen = seal(ben.path(), &app.base);
    listen.args(["listen", "--count", "1"]);
    let out = tokio::time::timeout(Duration::from_secs(60), run(listen))
        .await
        .expect("the invitation came");
    assert!(
        text(&out.stderr).contains(&format!(
            "you are invited to group {group}: `seal group join {group}`"
        )),
        "{}",
        text(&out.stderr)
    );
    let (_, said) = seal_ok(ben.path(), &["group", "join", &group]).await;
    assert!(said.contains("2 members"), "{said}");
    let (listed, _) = seal_ok(ben.path(), &["group", "list"]).await;
    assert!(listed.starts_with(&group), "{listed}");
}
