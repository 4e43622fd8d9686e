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

mod common;

use std::process::{Command, Stdio};
use std::time::Instant;

use bytes::Bytes;
use common::{
    BenchResult, cpu_seconds, create_upload, login, patch_whole, peak_rss_kib, start_server,
};

const CHUNK: usize = 1 << 20;

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
async fn main() -> BenchResult<()> {
    let total: u64 = std::env::var("SEALPOST_BENCH_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 30);
    let dir = match std::env::var_os("SEALPOST_BENCH_DIR") {
        Some(parent) => tempfile::tempdir_in(parent)?,
        None => tempfile::tempdir()?,
    };
    let s3 = std::env::var("SEALPOST_BENCH_S3").ok();
    let mut args = Vec::new();
    if let Some(url) = &s3 {
        args.extend(["--blob-store", url.as_str()]);
    }
    let server = start_server(dir.path(), &args, &[])?;
    let base = server.base.clone();
    let client = reqwest::Client::new();
    let token = login(&client, &base).await?;

    let location = create_upload(&client, &base, &token, total).await?;

    let body = futures_util::stream::iter(chunks(total).map(Ok::<_, std::io::Error>));
    let cpu_before = cpu_seconds(server.child.id());
    let started = Instant::now();
    let blob = patch_whole(
        &client,
        &base,
        &token,
        &location,
        total,
        reqwest::Body::wrap_stream(body),
    )
    .await?;
    let elapsed = started.elapsed().as_secs_f64();
    let rss = peak_rss_kib(server.child.id());
    let server_cpu = cpu_seconds(server.child.id()) - cpu_before;
    drop(server);

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
async fn direct_s3_upload(url: &str, total: u64, unsigned: bool) -> BenchResult<f64> {
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
