//! Ranged downloads of a 64 MiB blob at concurrency 32, with `wrk`, from a release
//! `sealpost serve` (file store), beside nginx serving the very same file from disk on the same
//! machine. Each request asks for 1 MiB at a random offset (a player seeking, a CDN filling
//! slices). Measured for sealpost with a bearer token and with a signed link, and for nginx as
//! a static file server; then through the shipped nginx cache (deploy/nginx/sealpost.conf) in
//! front of sealpost, cache warm, every request still authorised by sealpost. Reports
//! throughput, requests a second, sealpost's CPU and peak RSS.
//!
//! Needs `wrk` and `nginx` (Debian: `apt-get install wrk nginx-light`).
//! Run: `cargo bench --bench download_throughput` (`SEALPOST_BENCH_SECONDS`, default 10,
//! `SEALPOST_BENCH_CONNECTIONS`, default 32).

mod common;
#[path = "../tests/common/nginx.rs"]
mod nginx;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{
    BenchResult, cpu_seconds, create_upload, login, patch_whole, peak_rss_kib, start_server,
};
use nginx::Nginx;
use serde_json::Value;

const BLOB: usize = 64 << 20;
const RANGE: u64 = 1 << 20;

/// A wrk script: every request a 1 MiB range at a random offset of the blob.
const WRK_SCRIPT: &str = r#"
local size = tonumber(os.getenv("BLOB_SIZE"))
local range = tonumber(os.getenv("RANGE_SIZE"))
local auth = os.getenv("AUTHORIZATION")
math.randomseed(os.time() + math.floor(os.clock() * 1000000))
request = function()
  local start = math.random(0, size - range)
  wrk.headers["Range"] = "bytes=" .. start .. "-" .. (start + range - 1)
  if auth ~= nil and auth ~= "" then wrk.headers["Authorization"] = auth end
  return wrk.format("GET")
end
"#;

struct Run {
    mb_s: f64,
    requests_s: f64,
}

/// Runs wrk against `url` and parses its summary.
fn wrk(
    url: &str,
    auth: Option<&str>,
    script: &Path,
    seconds: u32,
    connections: u32,
) -> BenchResult<Run> {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "-s",
        ])
        .arg(script)
        .arg(url)
        .env("BLOB_SIZE", BLOB.to_string())
        .env("RANGE_SIZE", RANGE.to_string())
        .env("AUTHORIZATION", auth.unwrap_or(""))
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run wrk ({e}): apt-get install wrk"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("Non-2xx") {
        return Err(format!("wrk saw errors:\n{text}").into());
    }
    let value = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .map(|v| v.trim().to_owned())
            .ok_or_else(|| format!("no {prefix} in wrk's output:\n{text}"))
    };
    let requests_s: f64 = value("Requests/sec:")?.parse()?;
    Ok(Run {
        // Every response is one full range, so bytes a second follow from requests a second
        // (wrk's own Transfer/sec also counts headers).
        #[allow(clippy::cast_precision_loss)]
        mb_s: requests_s * RANGE as f64 / 1e6,
        requests_s,
    })
}

/// The file the file store keeps blob `id` in.
fn blob_file(data_dir: &Path, id: &str) -> BenchResult<PathBuf> {
    let dir = data_dir.join("blobs").join(&id[0..2]).join(&id[2..4]);
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(id))
        {
            return Ok(path);
        }
    }
    Err(format!("no file for blob {id} in {}", dir.display()).into())
}

#[tokio::main]
async fn main() -> BenchResult<()> {
    let env = |name: &str, default: u32| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let seconds = env("SEALPOST_BENCH_SECONDS", 10);
    let connections = env("SEALPOST_BENCH_CONNECTIONS", 32);
    let dir = tempfile::tempdir()?;
    let server = start_server(dir.path(), &[], &[])?;
    let base = server.base.clone();
    let client = reqwest::Client::new();
    let token = login(&client, &base).await?;

    let data: Vec<u8> = (0..BLOB)
        .map(|i| (i * 7 + i / 251).to_le_bytes()[0])
        .collect();
    let location = create_upload(&client, &base, &token, BLOB as u64).await?;
    let id = patch_whole(&client, &base, &token, &location, BLOB as u64, data.into()).await?;
    let link: Value = client
        .post(format!("{base}/v1/blobs/{id}/links"))
        .bearer_auth(&token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let link_url = format!("{base}{}", link["url"].as_str().ok_or("url")?);
    let file = blob_file(dir.path(), &id)?;

    let script = dir.path().join("ranges.lua");
    std::fs::write(&script, WRK_SCRIPT)?;
    let blob_file_path = file.display().to_string();
    let nginx = Nginx::start(|port, _| {
        format!(
            "server {{ listen 127.0.0.1:{port}; location = /blob {{ alias {blob_file_path}; }} }}"
        )
    })
    .await;
    let nginx_url = nginx.url("/blob");

    // Warm the page cache for both, then measure.
    wrk(&nginx_url, None, &script, 2, connections)?;
    let reference = wrk(&nginx_url, None, &script, seconds, connections)?;
    drop(nginx);

    let bearer = format!("Bearer {token}");
    let blob_url = format!("{base}/v1/blobs/{id}");
    wrk(&blob_url, Some(&bearer), &script, 2, connections)?;
    let pid = server.child.id();
    let cpu = cpu_seconds(pid);
    let with_token = wrk(&blob_url, Some(&bearer), &script, seconds, connections)?;
    let cpu_token = cpu_seconds(pid) - cpu;
    let cpu = cpu_seconds(pid);
    let with_link = wrk(&link_url, None, &script, seconds, connections)?;
    let cpu_link = cpu_seconds(pid) - cpu;
    let rss = peak_rss_kib(pid);

    // The shipped deployment: nginx's cache in front (deploy/nginx/sealpost.conf), warmed, with
    // every request still authorised by sealpost.
    let origin = base.trim_start_matches("http://").to_owned();
    let proxy = Nginx::caching_proxy(&origin).await;
    let cached_url = proxy.url(link["url"].as_str().ok_or("url")?);
    wrk(&cached_url, None, &script, 4, connections)?;
    let cpu = cpu_seconds(pid);
    let cached = wrk(&cached_url, None, &script, seconds, connections)?;
    let cpu_cached = cpu_seconds(pid) - cpu;
    drop(proxy);

    println!(
        "{connections} connections, {seconds} s each, 1 MiB ranges at random offsets of a 64 MiB blob (page cache warm)"
    );
    println!("| server | throughput | requests/s | server CPU | ratio to nginx |");
    println!("|---|---|---|---|---|");
    println!(
        "| nginx, static file (sendfile) | {:.0} MB/s | {:.0} | n/a | 1.00x |",
        reference.mb_s, reference.requests_s
    );
    for (name, run, cpu) in [
        ("sealpost, bearer token", &with_token, cpu_token),
        ("sealpost, signed link", &with_link, cpu_link),
        (
            "nginx cache (deploy/nginx) in front of sealpost, signed link, cache warm",
            &cached,
            cpu_cached,
        ),
    ] {
        println!(
            "| {name} | {:.0} MB/s | {:.0} | {:.2} CPU-s/s | {:.2}x |",
            run.mb_s,
            run.requests_s,
            cpu / f64::from(seconds),
            run.mb_s / reference.mb_s
        );
    }
    println!("sealpost peak RSS: {:.1} MiB", rss as f64 / 1024.0);
    Ok(())
}
