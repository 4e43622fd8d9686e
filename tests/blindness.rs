//! Server blindness, proven: Alice sends Bob a text, a photo with a caption and a group message
//! through the `seal` CLI, end to end encrypted; then every record the server holds (its files, including
//! the SQLite database, its WAL and the log at debug level; PostgreSQL rows; stored blobs and
//! staged uploads; every bus record) is searched for the text, the caption, the photo's bytes,
//! its file name and, once Bob has saved the photo, its media keys, hashes and inline
//! thumbnail: raw, hex and base64 at every byte alignment. Nothing may turn up. Each source must
//! also show something the server is meant to hold (the message's server id), so an empty or
//! unreadable source fails the test instead of passing it.

mod common;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use common::seal::*;
use common::*;
use sealpost_bus::Start;

const TEXT: &str = "meet me at the old lighthouse at nine and bring the blue umbrella";
const CAPTION: &str = "the hidden cove at sunset, only for you";
const FILE_NAME: &str = "hidden-cove-sunset-0417.jpg";
const GROUP_TEXT: &str = "the surprise party is on saturday, do not tell anyone";

/// Something that must not reach the server, in every spelling a leak could take.
struct Needle {
    what: String,
    forms: Vec<(String, Vec<u8>)>,
}

impl Needle {
    /// `bytes` raw, as hex, and as base64 (standard and URL-safe) wherever it starts in a
    /// longer base64-encoded run.
    fn new(what: &str, bytes: &[u8]) -> Self {
        let mut forms = vec![
            ("raw".to_owned(), bytes.to_vec()),
            ("hex".to_owned(), hex::encode(bytes).into_bytes()),
            ("HEX".to_owned(), hex::encode_upper(bytes).into_bytes()),
        ];
        // Bytes starting at offset o of an encoded run show as the base64 of the needle's tail
        // from (3 - o % 3) % 3 on, cut to whole 3-byte groups.
        for skip in 0..3 {
            let whole = (bytes.len().saturating_sub(skip)) / 3 * 3;
            if whole >= 12 {
                let part = &bytes[skip..skip + whole];
                forms.push((
                    format!("base64+{skip}"),
                    STANDARD_NO_PAD.encode(part).into_bytes(),
                ));
                forms.push((
                    format!("base64url+{skip}"),
                    URL_SAFE_NO_PAD.encode(part).into_bytes(),
                ));
            }
        }
        Self {
            what: what.to_owned(),
            forms,
        }
    }

    /// Three 48-byte windows from the middle of `data` (a file's content, not its headers).
    fn windows(what: &str, data: &[u8]) -> Vec<Self> {
        [1, 2, 3]
            .into_iter()
            .map(|quarter| {
                let at = data.len() * quarter / 4 / 3 * 3;
                Self::new(
                    &format!("{what} bytes {at}..{}", at + 48),
                    &data[at..at + 48],
                )
            })
            .collect()
    }
}

/// Where a record is, and its bytes.
type Source = (String, Vec<u8>);

/// What the base64 runs (32 characters or more, standard or URL-safe) of `bytes` decode to,
/// one after another: where a record holds base64 of base64 (a JSON body inside a frame), a
/// secret shows only after two decodings.
fn decoded_runs(bytes: &[u8]) -> Vec<u8> {
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let mut out = Vec::new();
    for run in bytes.split(|b| !(b.is_ascii_alphanumeric() || b"+/-_=".contains(b))) {
        let run: Vec<u8> = run
            .iter()
            .filter(|b| **b != b'=')
            .map(|b| match b {
                b'-' => b'+',
                b'_' => b'/',
                other => *other,
            })
            .collect();
        if run.len() < 32 {
            continue;
        }
        let whole = run.len() - run.len() % 4;
        if let Ok(decoded) = engine.decode(&run[..whole]) {
            out.extend_from_slice(&decoded);
            out.push(0);
        }
    }
    out
}

/// Every needle form found in a source, or in what its base64 decodes to (twice over).
fn leaks(sources: &[Source], needles: &[Needle]) -> Vec<String> {
    let mut found = Vec::new();
    let mut search = |source: &str, bytes: &[u8]| {
        for needle in needles {
            for (form, pattern) in &needle.forms {
                if let Some(at) = memchr::memmem::find(bytes, pattern) {
                    found.push(format!("{} ({form}) in {source} at byte {at}", needle.what));
                }
            }
        }
    };
    for (source, bytes) in sources {
        let once = decoded_runs(bytes);
        let twice = decoded_runs(&once);
        search(source, bytes);
        search(&format!("base64 inside {source}"), &once);
        search(&format!("base64 inside base64 inside {source}"), &twice);
    }
    found
}

/// Asserts that each of `sources` holds `marker` (the search reads what the server stores).
fn shows(sources: &[Source], kind: &str, marker: &str) {
    assert!(
        sources
            .iter()
            .any(|(_, bytes)| memchr::memmem::find(bytes, marker.as_bytes()).is_some()),
        "{kind} does not show {marker}: the search cannot see what the server stores there"
    );
}

/// Every file under `dir`.
fn files(dir: &Path) -> Vec<Source> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let bytes = std::fs::read(&path)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
                out.push((path.display().to_string(), bytes));
            }
        }
    }
    out
}

/// The PostgreSQL database's rows (`pg_dump --data-only`: bytea shows as hex), if the test
/// runs on PostgreSQL.
fn database_rows(key: &str) -> Option<Source> {
    let url = sealpost_db::testing::database_url(key)?;
    let out = std::process::Command::new("pg_dump")
        .args(["--data-only", "--no-owner", "--dbname", &url])
        .output()
        .expect("pg_dump (postgresql-client) must be installed");
    assert!(out.status.success(), "{}", text(&out.stderr));
    Some(("PostgreSQL rows".to_owned(), out.stdout))
}

/// The objects of the blob store, if it is S3 (file stores are under the data directory).
async fn store_objects(key: &str) -> Vec<Source> {
    let Some(url) = sealpost_store::testing::blob_store_url(key) else {
        return Vec::new();
    };
    let objects = sealpost_store::testing::objects(&url).await;
    let unfinished: Vec<&String> = objects
        .iter()
        .map(|(key, _)| key)
        .filter(|key| key.starts_with("multipart:"))
        .collect();
    assert!(
        unfinished.is_empty(),
        "uploads still in progress, whose parts S3 does not serve: {unfinished:?}"
    );
    objects
        .into_iter()
        .map(|(key, bytes)| (format!("S3 object {key}"), bytes))
        .collect()
}

/// Every record of every topic the server publishes to, read from the oldest on.
async fn bus_records(key: &str) -> Vec<Source> {
    let url = sealpost_bus::testing::bus_url(key);
    let bus = sealpost_bus::open(&url).await.expect("bus");
    // Kafka needs a few seconds to give a new group its partitions.
    let first = if url.starts_with("kafka") {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(1)
    };
    let mut out = Vec::new();
    for topic in [
        sealpost_chat::TOPIC_MESSAGES,
        sealpost_chat::TOPIC_WAKEUPS,
        sealpost::media::worker::TOPIC,
    ] {
        let mut records = bus
            .subscribe(topic, "blindness-audit", Start::Oldest)
            .await
            .expect("subscribe");
        let mut wait = first;
        while let Ok(next) = tokio::time::timeout(wait, records.next()).await {
            let record = next.expect("read the bus");
            let mut bytes = record.key.to_vec();
            bytes.extend_from_slice(&record.payload);
            out.push((
                format!("bus record {topic}/{}@{}", record.partition, record.offset),
                bytes,
            ));
            wait = Duration::from_secs(3);
        }
        records.close().await;
    }
    out
}

/// Searches what the server holds outside the bus.
async fn audit(data_dir: &Path, needles: &[Needle], server_id: &str) {
    let key = data_dir.display().to_string();
    let mut sources = files(data_dir);
    let log = data_dir.join("server.log").display().to_string();
    assert!(
        sources
            .iter()
            .any(|(path, bytes)| *path == log && !bytes.is_empty()),
        "the server logged"
    );
    match database_rows(&key) {
        Some(rows) => {
            shows(std::slice::from_ref(&rows), "PostgreSQL", server_id);
            sources.push(rows);
        }
        None => {
            let database: Vec<Source> = sources
                .iter()
                .filter(|(path, _)| path.ends_with(".db") || path.ends_with(".db-wal"))
                .cloned()
                .collect();
            shows(&database, "the SQLite database", server_id);
        }
    }
    let objects = store_objects(&key).await;
    assert!(
        !sealpost_store::testing::on_s3() || !objects.is_empty(),
        "the S3 bucket holds the sealed photo"
    );
    sources.extend(objects);
    let found = leaks(&sources, needles);
    assert!(found.is_empty(), "the server holds plaintext: {found:#?}");
}

#[tokio::test]
async fn the_server_never_holds_plaintext_media_keys_or_captions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = std::fs::File::create(dir.path().join("server.log")).expect("log");
    tracing_subscriber::fmt()
        .with_env_filter("debug,sealpost=trace")
        .json()
        .with_writer(std::sync::Mutex::new(log))
        .try_init()
        .expect("the only subscriber of this test binary");
    let app = TestApp::start(settings_in(dir.path())).await;
    let (alice, bob) = (cli_user(&app.base).await, cli_user(&app.base).await);
    let photo = photo_jpeg(640, 480);
    let path = alice.path().join(FILE_NAME);
    std::fs::write(&path, &photo).expect("photo");

    // Bob is offline: both messages wait on the server.
    let mut send = seal(alice.path(), &app.base);
    send.args(["send", "--to", &bob.phone, "--text", TEXT]);
    let out = run(send).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut send = seal(alice.path(), &app.base);
    send.args(["send", "--to", &bob.phone, "--caption", CAPTION, "--file"]);
    send.arg(&path);
    let out = run(send).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let server_id = text(&out.stdout).trim().to_owned();
    let mut create = seal(alice.path(), &app.base);
    create.args(["group", "create", "--member", &bob.phone]);
    let out = run(create).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let group = text(&out.stdout).trim().to_owned();
    let mut send = seal(alice.path(), &app.base);
    send.args(["send", "--group", &group, "--text", GROUP_TEXT]);
    let out = run(send).await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    let mut needles = vec![
        Needle::new("the text", TEXT.as_bytes()),
        Needle::new("the caption", CAPTION.as_bytes()),
        Needle::new("the group message", GROUP_TEXT.as_bytes()),
        Needle::new("the file name", FILE_NAME.as_bytes()),
    ];
    needles.extend(Needle::windows("the photo", &photo));
    // The search itself sees a secret two base64 layers down, at any alignment.
    let hidden = format!("{{\"body\":\"{}\"}}", STANDARD.encode(format!("x{TEXT}")));
    let probe = ("a probe".to_owned(), STANDARD.encode(hidden).into_bytes());
    let found = leaks(&[probe], &needles[..1]);
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("the text (raw) in base64 inside base64 inside a probe")),
        "{found:?}"
    );
    audit(dir.path(), &needles, &server_id).await;

    // Bob comes online, decrypts all three (and hears of the group) and saves the photo with
    // its MediaRef.
    let saved = bob.path().join("received");
    let got = listen_with(
        bob.path(),
        &app.base,
        4,
        &["--save-to", &saved.display().to_string()],
    )
    .await;
    // The group's messages and Alice's to Bob are two conversations: in order within each.
    let texts: Vec<&str> = got.iter().filter_map(|m| m["text"].as_str()).collect();
    let direct: Vec<&str> = texts.iter().copied().filter(|t| *t != GROUP_TEXT).collect();
    assert_eq!(direct, [TEXT, CAPTION], "{got:?}");
    assert!(texts.contains(&GROUP_TEXT), "{got:?}");
    assert!(std::fs::read(saved.join(FILE_NAME)).expect("saved") == photo);
    let reference: sealpost_proto::MediaRef = serde_json::from_slice(
        &std::fs::read(saved.join(format!("{FILE_NAME}.ref.json"))).expect("ref"),
    )
    .expect("MediaRef");

    needles.push(Needle::new("the media key", &reference.media_key));
    needles.push(Needle::new(
        "the plaintext's SHA-256",
        &hex::decode(&reference.plaintext_sha256).expect("hex"),
    ));
    let thumbnail = reference.thumbnail.expect("the photo's thumbnails");
    let inline = STANDARD
        .decode(thumbnail.inline_jpeg.expect("an inline thumbnail"))
        .expect("base64");
    needles.extend(Needle::windows("the inline thumbnail", &inline));
    needles.push(Needle::new(
        "the BlurHash",
        thumbnail.blurhash.expect("a BlurHash").as_bytes(),
    ));
    let sealed = thumbnail.blob.expect("a sealed thumbnail");
    needles.push(Needle::new("the thumbnail's media key", &sealed.media_key));
    needles.push(Needle::new(
        "the thumbnail's SHA-256",
        &hex::decode(&sealed.plaintext_sha256).expect("hex"),
    ));
    audit(dir.path(), &needles, &server_id).await;

    let records = bus_records(&dir.path().display().to_string()).await;
    shows(&records, "the bus", &server_id);
    let found = leaks(&records, &needles);
    assert!(found.is_empty(), "the bus carries plaintext: {found:#?}");
    app.shutdown().await;
}
