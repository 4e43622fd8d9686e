//! A 320 px JPEG thumbnail of a 12 MP JPEG, beside `vipsthumbnail` (Debian libvips-tools) on
//! the same file: wall time and peak RSS of each, as separate processes measured by GNU time.
//! Also times the resize step alone with `fast_image_resize` and with `image`'s resizer.
//!
//! Needs `vipsthumbnail` and `/usr/bin/time` (`apt-get install libvips-tools time`).
//! Run: `cargo bench -p sealpost-transcode --bench thumbnail`.

use std::path::Path;
use std::time::Instant;

use image::{DynamicImage, RgbImage};
use sealpost_transcode::ImageLimits;
use sealpost_transcode::image::{Format, THUMBNAILS, thumbnail};

mod common;

use common::{median, timed};

const RUNS: usize = 7;

/// A 4000x3000 photo-like picture: smooth gradients with fine detail, so JPEG works as hard
/// as on a real photo.
fn picture() -> RgbImage {
    RgbImage::from_fn(4000, 3000, |x, y| {
        let detail = (x.wrapping_mul(7919) ^ y.wrapping_mul(104_729)) % 23;
        let r = (x / 16 + detail) % 256;
        let g = (y / 12 + detail * 2) % 256;
        let b = ((x + y) / 28) % 256;
        image::Rgb([r, g, b].map(|v| u8::try_from(v).unwrap_or(0)))
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // Child mode: one thumbnail, as vipsthumbnail does.
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        let input = Path::new(&args[pos + 1]);
        let spec = THUMBNAILS[2];
        let rendition =
            thumbnail(input, &ImageLimits::default(), spec, Format::Jpeg).expect("thumbnail");
        std::fs::write(&args[pos + 2], rendition.bytes).expect("write");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("photo.jpg");
    DynamicImage::ImageRgb8(picture())
        .save_with_format(&input, image::ImageFormat::Jpeg)
        .expect("write the 12 MP JPEG");
    let me = std::env::current_exe().expect("own path");
    let me = me.to_str().expect("utf-8 path");
    let input_s = input.to_str().expect("utf-8 path");
    let ours_out = dir.path().join("ours.jpg");
    let vips_out = format!("{}[Q=80]", dir.path().join("vips.jpg").display());
    let mut results = Vec::new();
    for (name, command) in [
        (
            "sealpost-transcode (fit 320x240, JPEG q80)",
            vec![me, "--child", input_s, ours_out.to_str().expect("path")],
        ),
        (
            "vipsthumbnail -s 320x240 (JPEG Q=80)",
            vec![
                "vipsthumbnail",
                input_s,
                "-s",
                "320x240",
                "-o",
                vips_out.as_str(),
            ],
        ),
    ] {
        timed(&command);
        let runs: Vec<(f64, u64)> = (0..RUNS).map(|_| timed(&command)).collect();
        let secs = median(runs.iter().map(|r| r.0).collect());
        let rss = runs.iter().map(|r| r.1).max().unwrap_or(0);
        results.push((name, secs, rss));
    }
    println!("12 MP JPEG (4000x3000) -> 320 px JPEG; median of {RUNS} runs, each a fresh process");
    println!("| tool | time | peak RSS |");
    println!("|---|---|---|");
    for (name, secs, rss) in &results {
        println!(
            "| {name} | {:.0} ms | {:.1} MiB |",
            secs * 1000.0,
            *rss as f64 / 1024.0
        );
    }
    let (ours, vips) = (&results[0], &results[1]);
    println!(
        "ratio: time {:.2}x, memory {:.2}x (targets <= 1.0x and <= 1.5x)",
        ours.1 / vips.1,
        ours.2 as f64 / vips.2 as f64
    );

    // The resize step alone, on the decoded picture.
    let source = DynamicImage::ImageRgb8(picture());
    let started = Instant::now();
    for _ in 0..RUNS {
        let mut out = DynamicImage::new(320, 240, source.color());
        fast_image_resize::Resizer::new()
            .resize(&source, &mut out, None)
            .expect("resize");
    }
    let fast = started.elapsed().as_secs_f64() / RUNS as f64;
    let started = Instant::now();
    for _ in 0..RUNS {
        let _ = source.resize_exact(320, 240, image::imageops::FilterType::Lanczos3);
    }
    let slow = started.elapsed().as_secs_f64() / RUNS as f64;
    println!(
        "resize 4000x3000 -> 320x240 (Lanczos3): fast_image_resize {:.1} ms, image {:.1} ms",
        fast * 1000.0,
        slow * 1000.0
    );
}
