//! A 10 s 1080p H.264 + AAC video to the 720p web rendition, by `sealpost-transcode` and by the
//! ffmpeg CLI with the same settings (libx264 `veryfast`, CRF 23, maxrate 2.5 Mb/s, High
//! profile, bicubic scaling, AAC 128 kb/s stereo, `faststart`): wall time and peak RSS of each,
//! as separate processes measured by GNU time.
//!
//! Needs `ffmpeg` and `/usr/bin/time` (`apt-get install ffmpeg time`).
//! Run: `cargo bench -p sealpost-transcode --bench video`.

use std::path::Path;
use std::process::Command;

use sealpost_transcode::VideoLimits;
use sealpost_transcode::video::transcode;

mod common;

use common::{median, timed};

const RUNS: usize = 3;

fn runs() -> usize {
    std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(RUNS)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // Child mode: one transcode, as the media worker's child does it.
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        transcode(
            Path::new(&args[pos + 1]),
            Path::new(&args[pos + 2]),
            &VideoLimits::default(),
        )
        .expect("transcode");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.mp4");
    let made = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=1920x1080:rate=30:duration=10")
        .args(["-f", "lavfi", "-i", "sine=frequency=440:duration=10"])
        .args(["-c:v", "libx264", "-preset", "veryfast", "-b:v", "12M"])
        .args([
            "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "192k", "-ac", "2",
        ])
        .arg(&input)
        .status()
        .expect("ffmpeg makes the 1080p input");
    assert!(made.success());
    let me = std::env::current_exe().expect("own path");
    let me = me.to_str().expect("utf-8 path");
    let input_s = input.to_str().expect("utf-8 path");
    let ours_out = dir.path().join("ours.mp4");
    let ffmpeg_out = dir.path().join("ffmpeg.mp4");
    let ffmpeg = vec![
        "ffmpeg",
        "-v",
        "error",
        "-y",
        "-i",
        input_s,
        "-vf",
        "scale=1280:720:flags=bicubic,setsar=1,format=yuv420p",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "23",
        "-maxrate",
        "2500000",
        "-bufsize",
        "5000000",
        "-profile:v",
        "high",
        "-c:a",
        "aac",
        "-b:a",
        "128k",
        "-ac",
        "2",
        "-movflags",
        "+faststart",
        ffmpeg_out.to_str().expect("path"),
    ];
    let mut results = Vec::new();
    for (name, command) in [
        (
            "sealpost-transcode",
            vec![me, "--child", input_s, ours_out.to_str().expect("path")],
        ),
        ("ffmpeg CLI, same settings", ffmpeg),
    ] {
        let runs: Vec<(f64, u64)> = (0..runs()).map(|_| timed(&command)).collect();
        let secs = median(runs.iter().map(|r| r.0).collect());
        let rss = runs.iter().map(|r| r.1).max().unwrap_or(0);
        results.push((name, secs, rss));
    }
    println!(
        "10 s 1920x1080 30 fps H.264 + AAC -> 1280x720 H.264 + AAC MP4; median of {} runs",
        runs()
    );
    println!("| tool | time | peak RSS | output |");
    println!("|---|---|---|---|");
    for ((name, secs, rss), out) in results.iter().zip([&ours_out, &ffmpeg_out]) {
        let size = std::fs::metadata(out).map_or(0, |m| m.len());
        println!(
            "| {name} | {secs:.2} s | {:.0} MiB | {:.0} KiB |",
            *rss as f64 / 1024.0,
            size as f64 / 1024.0
        );
    }
    let (ours, theirs) = (&results[0], &results[1]);
    println!(
        "ratio: time {:.2}x (target <= 1.1x), memory {:.2}x",
        ours.1 / theirs.1,
        ours.2 as f64 / theirs.2 as f64
    );
}
