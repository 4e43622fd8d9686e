//! Sealing throughput: 1 GiB (override with `SEALPOST_BENCH_BYTES`) sealed from a file on disk
//! through `EncryptingReader`, and the same bytes in memory through `Encryptor`, beside
//! `openssl speed -evp aes-256-gcm` (one core) and Python Tink sealing the same file with the
//! same parameters (`.venv/bin/python` with `tink`, as `make test` installs it). The file goes
//! in `SEALPOST_BENCH_DIR` (default: the temp dir). Run: `cargo bench -p sealpost-crypto`.
#![allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]

use std::io::{Read, Write};
use std::process::Command;
use std::time::Instant;

use sealpost_crypto::{EncryptingReader, Encryptor, Header, MediaKey};

const CHUNK: usize = 1 << 20;

fn openssl_aes_gcm_mb_s() -> Option<f64> {
    let out = Command::new("openssl")
        .args(["speed", "-evp", "aes-256-gcm", "-seconds", "3"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.starts_with("AES-256-GCM"))?;
    let last = line.split_whitespace().last()?.trim_end_matches('k');
    last.parse::<f64>().ok().map(|kb| kb * 1000.0 / 1e6)
}

fn tink_seconds(path: &std::path::Path) -> Option<f64> {
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/python");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/interop/tink_interop.py"
    );
    let out = Command::new(python)
        .arg(script)
        .arg("time-seal")
        .arg(path)
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let total: u64 = std::env::var("SEALPOST_BENCH_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 30);
    let dir = match std::env::var_os("SEALPOST_BENCH_DIR") {
        Some(parent) => tempfile::tempdir_in(parent)?,
        None => tempfile::tempdir()?,
    };
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i * 7 + i / 251) as u8).collect();
    let key = MediaKey::generate();

    // In memory: the cipher alone.
    let started = Instant::now();
    let mut encryptor = Encryptor::new(&key, Header::generate());
    let mut out = Vec::with_capacity(2 * CHUNK);
    let mut left = total;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        encryptor.update(&chunk[..n], &mut out);
        out.clear();
        left -= n as u64;
    }
    encryptor.finish(&mut out);
    let memory = started.elapsed().as_secs_f64();

    let path = dir.path().join("plaintext.bin");
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
        let mut left = total;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            file.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        file.flush()?;
        // Written back before timing, so the page cache's writeback does not compete.
        file.get_ref().sync_all()?;
    }

    // From the file, through the reader adapter.
    let started = Instant::now();
    let mut reader = EncryptingReader::new(std::fs::File::open(&path)?, &key, Header::generate());
    let mut buf = vec![0u8; CHUNK];
    let mut sealed = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sealed += n as u64;
    }
    let file = started.elapsed().as_secs_f64();

    let tink = tink_seconds(&path);
    let openssl = openssl_aes_gcm_mb_s();
    let mb_s = |secs: f64| total as f64 / secs / 1e6;
    println!("sealed {total} bytes into {sealed}");
    println!("| what | throughput | ratio to openssl | ratio to tink |");
    println!("|---|---|---|---|");
    let row = |name: &str, secs: f64| {
        println!(
            "| {name} | {:.0} MB/s | {} | {} |",
            mb_s(secs),
            openssl.map_or("n/a".into(), |o| format!("{:.2}x", mb_s(secs) / o)),
            tink.map_or("n/a".into(), |t| format!("{:.2}x", t / secs)),
        );
    };
    row("sealpost-crypto, in memory (Encryptor)", memory);
    row("sealpost-crypto, file → EncryptingReader", file);
    if let Some(t) = tink {
        row("Python tink 1.16, file → encrypting stream", t);
    }
    println!(
        "| openssl speed -evp aes-256-gcm (16 KiB blocks, one core) | {} | | |",
        openssl.map_or("n/a".into(), |o| format!("{o:.0} MB/s"))
    );
    Ok(())
}
