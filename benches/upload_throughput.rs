//! Uploads 1 GiB (override with `SEALPOST_BENCH_BYTES`) in one tus upload over loopback to a
//! release `sealpost serve` on the file store, then reports throughput, the server's peak RSS
//! (VmHWM) and `openssl speed -evp sha256` on the same machine. `SEALPOST_BENCH_DIR` puts the
//! data directory elsewhere (e.g. `/dev/shm` to take the disk out of the measurement).
//!
//! With `SEALPOST_BENCH_S3=s3://BUCKET?endpoint=URL` (and the AWS credential variables) the
//! server stores blobs in that bucket instead, and the bench then uploads the same bytes
//! straight to the same bucket with an aws-sdk-s3 multipart upload (same part size, one part in
//! flight, as the server does) for comparison: once with the SDK's defaults, once with unsigned
//! payloads as the server sends them.
//!
//! Run: `cargo bench --bench upload_throughput`.
#![allow(clippy::cast_possible_truncation)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};

const CHUNK: usize = 1 << 20;

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// User + system CPU seconds the process has used (`/proc/PID/stat`, 100 ticks a second).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / 100.0
}

fn openssl_sha256_mb_s() -> Option<f64> {
    let out = Command::new("openssl")
        .args(["speed", "-evp", "sha256", "-seconds", "3"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.starts_with("sha256"))?;
    let last = line.split_whitespace().last()?.trim_end_matches('k');
    last.parse::<f64>().ok().map(|kb| kb * 1000.0 / 1e6)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let total: u64 = std::env::var("SEALPOST_BENCH_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 30);
    let dir = match std::env::var_os("SEALPOST_BENCH_DIR") {
        Some(parent) => tempfile::tempdir_in(parent)?,
        None => tempfile::tempdir()?,
    };
    let s3 = std::env::var("SEALPOST_BENCH_S3").ok();
    let mut command = Command::new(env!("CARGO_BIN_EXE_sealpost"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path());
    if let Some(url) = &s3 {
        command.args(["--blob-store", url]);
    }
    let mut server = command
        .env("SEALPOST__LOG_FORMAT", "json")
        .env("RUST_LOG", "warn,sealpost::app=info")
        .stderr(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(server.stderr.take().ok_or("stderr")?).lines();
    let base = loop {
        let line = lines.next().ok_or("server exited")??;
        if let Some(at) = line.find("http://127.0.0.1:") {
            let rest = &line[at..];
            break rest[..rest.find('"').unwrap_or(rest.len())].to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    let client = reqwest::Client::new();

    let key = SigningKey::from_bytes(&rand::random());
    let phone = "+15550000001";
    client
        .post(format!("{base}/v1/accounts"))
        .json(&json!({"phone": phone, "name": "bench", "identity_key": STANDARD.encode(key.verifying_key().as_bytes())}))
        .send()
        .await?
        .error_for_status()?;
    let c: Value = client
        .post(format!("{base}/v1/auth/challenge"))
        .json(&json!({"phone": phone}))
        .send()
        .await?
        .json()
        .await?;
    let challenge = c["challenge"].as_str().ok_or("challenge")?;
    let sig = key.sign(&STANDARD.decode(challenge)?);
    let t: Value = client
        .post(format!("{base}/v1/auth/token"))
        .json(&json!({"phone": phone, "challenge": challenge, "signature": STANDARD.encode(sig.to_bytes())}))
        .send()
        .await?
        .json()
        .await?;
    let token = t["token"].as_str().ok_or("token")?.to_owned();

    let created = client
        .post(format!("{base}/v1/uploads"))
        .bearer_auth(&token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", total.to_string())
        .send()
        .await?
        .error_for_status()?;
    let location = created
        .headers()
        .get("location")
        .ok_or("location")?
        .to_str()?
        .to_owned();

    let body = futures_util::stream::iter(chunks(total).map(Ok::<_, std::io::Error>));
    let cpu_before = cpu_seconds(server.id());
    let started = Instant::now();
    let res = client
        .patch(format!("{base}{location}"))
        .bearer_auth(&token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .header("Content-Length", total.to_string())
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await?
        .error_for_status()?;
    let elapsed = started.elapsed().as_secs_f64();
    let blob = res
        .headers()
        .get("sealpost-blob-id")
        .ok_or("no blob id")?
        .to_str()?
        .to_owned();
    let rss = peak_rss_kib(server.id());
    let server_cpu = cpu_seconds(server.id()) - cpu_before;
    let _ = server.kill();
    let _ = server.wait();

    let mb_s = total as f64 / elapsed / 1e6;
    let store = if s3.is_some() { "S3" } else { "file" };
    let direct = match &s3 {
        Some(url) => Some((
            direct_s3_upload(url, total, false).await?,
            direct_s3_upload(url, total, true).await?,
        )),
        None => None,
    };
    let openssl = openssl_sha256_mb_s();
    println!("uploaded {total} bytes in {elapsed:.2} s -> blob {blob}");
    println!(
        "| upload | throughput | server CPU | server peak RSS | openssl sha256 (16 KiB blocks) | ratio |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {} MiB, 1 tus PATCH, loopback, {store} store | {mb_s:.0} MB/s | {server_cpu:.2} s ({:.0} MB per CPU-second) | {:.1} MiB | {} | {} |",
        total >> 20,
        total as f64 / server_cpu.max(0.01) / 1e6,
        rss as f64 / 1024.0,
        openssl.map_or("n/a".into(), |o| format!("{o:.0} MB/s")),
        openssl.map_or("n/a".into(), |o| format!("{:.2}x", mb_s / o)),
    );
    if let Some((signed, unsigned)) = direct {
        for (how, secs) in [("SDK defaults", signed), ("unsigned payload", unsigned)] {
            let direct_mb_s = total as f64 / secs / 1e6;
            println!(
                "direct aws-sdk-s3 multipart upload of the same bytes ({how}): {secs:.2} s, {direct_mb_s:.0} MB/s; sealpost/direct = {:.2}x",
                mb_s / direct_mb_s
            );
        }
    }
    Ok(())
}

/// The upload's bytes, generated on the fly in 1 MiB chunks.
fn chunks(total: u64) -> impl Iterator<Item = Bytes> {
    let chunk = Bytes::from(
        (0..CHUNK)
            .map(|i| (i * 7 + i / 251) as u8)
            .collect::<Vec<u8>>(),
    );
    (0..total.div_ceil(CHUNK as u64)).map(move |i| {
        let len = (total - i * CHUNK as u64).min(CHUNK as u64) as usize;
        chunk.slice(..len)
    })
}

/// Uploads `total` bytes to the bucket of `url` as one multipart upload with the part size the
/// server picks for that length (5 MiB for up to ~50 GB), one part at a time, with the SDK's
/// default signed payloads or (`unsigned`) `UNSIGNED-PAYLOAD` as the server sends; returns
/// seconds.
async fn direct_s3_upload(
    url: &str,
    total: u64,
    unsigned: bool,
) -> Result<f64, Box<dyn std::error::Error>> {
    const MIB: u64 = 1 << 20;
    let parsed = url::Url::parse(url)?;
    let bucket = parsed.host_str().ok_or("bucket")?.to_owned();
    let query = |name: &str| {
        parsed
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = query("region") {
        loader = loader.region(aws_config::Region::new(region));
    }
    let mut config = aws_sdk_s3::config::Builder::from(&loader.load().await).force_path_style(true);
    if let Some(endpoint) = query("endpoint") {
        config = config.endpoint_url(endpoint);
    }
    let s3 = aws_sdk_s3::Client::from_conf(config.build());
    let part_size = (total.div_ceil(10_000).max(5 * MIB).div_ceil(MIB) * MIB) as usize;
    let key = "bench/direct-upload";
    let started = Instant::now();
    let upload_id = s3
        .create_multipart_upload()
        .bucket(&bucket)
        .key(key)
        .send()
        .await?
        .upload_id()
        .ok_or("upload id")?
        .to_owned();
    let mut parts = Vec::new();
    let mut buffer = Vec::with_capacity(part_size);
    let mut source = chunks(total).peekable();
    while source.peek().is_some() || !buffer.is_empty() {
        while buffer.len() < part_size {
            let Some(chunk) = source.next() else { break };
            buffer.extend_from_slice(&chunk);
        }
        let rest = buffer.split_off(buffer.len().min(part_size));
        let part = std::mem::replace(&mut buffer, rest);
        let number = i32::try_from(parts.len() + 1)?;
        let request = s3
            .upload_part()
            .bucket(&bucket)
            .key(key)
            .upload_id(&upload_id)
            .part_number(number)
            .body(aws_sdk_s3::primitives::ByteStream::from(part));
        let uploaded = if unsigned {
            request.customize().disable_payload_signing().send().await?
        } else {
            request.send().await?
        };
        parts.push(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(number)
                .set_e_tag(uploaded.e_tag().map(str::to_owned))
                .build(),
        );
    }
    s3.complete_multipart_upload()
        .bucket(&bucket)
        .key(key)
        .upload_id(&upload_id)
        .multipart_upload(
            aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await?;
    let elapsed = started.elapsed().as_secs_f64();
    s3.delete_object().bucket(&bucket).key(key).send().await?;
    Ok(elapsed)
}
