//! Video and audio from the fixtures (`fixtures/media/generate.sh`): probing, posters and web
//! renditions, checked with ffprobe (an independent reader), and hostile files refused with
//! their codes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sealpost_transcode::video::{poster, probe, transcode};
use sealpost_transcode::{TranscodeError, VideoLimits};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/media")
        .join(name)
}

/// ffprobe's view of a file: its streams and format.
fn ffprobe(path: &Path) -> Value {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_streams",
            "-show_format",
        ])
        .arg(path)
        .output()
        .expect("ffprobe (Debian package ffmpeg) runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ffprobe JSON")
}

fn streams<'a>(probe: &'a Value, kind: &str) -> Vec<&'a Value> {
    probe["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .filter(|s| s["codec_type"] == kind)
        .collect()
}

/// Whether the MP4 at `path` has its index (`moov`) before its media data (`mdat`).
fn is_faststart(path: &Path) -> bool {
    let bytes = std::fs::read(path).expect("read");
    let find = |tag: &[u8]| bytes.windows(4).position(|w| w == tag);
    matches!((find(b"moov"), find(b"mdat")), (Some(moov), Some(mdat)) if moov < mdat)
}

fn code<T: std::fmt::Debug>(result: Result<T, TranscodeError>) -> &'static str {
    result.expect_err("refused").code()
}

#[test]
fn probing_reads_container_codecs_duration_and_rotation() {
    let limits = VideoLimits::default();
    let landscape = probe(&fixture("landscape.mp4"), &limits).expect("probe");
    let video = landscape.video.expect("video");
    assert_eq!(
        (
            video.codec.as_str(),
            video.width,
            video.height,
            video.rotation
        ),
        ("h264", 640, 360, 0)
    );
    assert_eq!(landscape.audio.as_deref(), Some("aac"));
    assert!(
        landscape.duration >= Duration::from_millis(1900)
            && landscape.duration <= Duration::from_millis(2200)
    );
    assert_eq!(landscape.media_type.mime(), "video/mp4");

    let portrait = probe(&fixture("portrait.mp4"), &limits).expect("probe");
    assert_eq!(portrait.video.expect("video").displayed(), (360, 640));

    let song = probe(&fixture("song.mp3"), &limits).expect("probe");
    assert!(song.video.is_none(), "cover art is not video");
    assert_eq!(song.audio.as_deref(), Some("mp3"));
    let voice = probe(&fixture("voice.ogg"), &limits).expect("probe");
    assert_eq!(voice.audio.as_deref(), Some("vorbis"));
}

/// ffmpeg's own frame `at` seconds into `path`, displayed as it displays it (rotation
/// applied) and scaled to `width`×`height`, as RGB.
fn ffmpeg_frame(path: &Path, at: &str, width: u32, height: u32) -> image::RgbImage {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-ss", at, "-i"])
        .arg(path)
        .args(["-frames:v", "1", "-vf"])
        .arg(format!("scale={width}:{height}"))
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    image::RgbImage::from_raw(width, height, out.stdout).expect("a whole frame")
}

/// Mean absolute difference per channel of two same-size pictures.
fn difference(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.as_raw().len() as f64
}

#[test]
fn the_poster_is_upright_and_matches_what_ffmpeg_shows() {
    let limits = VideoLimits::default();
    for (name, size) in [
        ("landscape.mp4", (640, 360)),
        ("portrait.mp4", (360, 640)),
        ("upside-down.mp4", (640, 360)),
        ("anamorphic.mp4", (640, 360)),
        ("late.mkv", (640, 360)),
    ] {
        let path = fixture(name);
        let (_, image) = poster(&path, &limits).expect("poster");
        let image = image.to_rgb8();
        assert_eq!(image.dimensions(), size, "{name}");
        let mean = difference(&image, &ffmpeg_frame(&path, "1", size.0, size.1));
        assert!(
            mean < 12.0,
            "{name}: mean difference {mean} from ffmpeg's frame"
        );
    }
}

#[test]
fn web_renditions_are_h264_aac_faststart_upright_and_at_most_720p() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = VideoLimits::default();
    for (name, size, audio) in [
        ("landscape.mp4", Some((640, 360)), true),
        ("portrait.mp4", Some((360, 640)), true),
        ("upside-down.mp4", Some((640, 360)), true),
        ("anamorphic.mp4", Some((640, 360)), false),
        ("late.mkv", Some((640, 360)), true),
        ("big.mkv", Some((1280, 720)), false),
        ("voice.ogg", None, true),
        ("song.mp3", None, true),
    ] {
        let out = dir.path().join(format!("{name}.mp4"));
        let (_, rendition) = transcode(&fixture(name), &out, &limits).expect(name);
        let probed = ffprobe(&out);
        let videos = streams(&probed, "video");
        match size {
            Some((w, h)) => {
                assert_eq!(
                    (rendition.width, rendition.height, rendition.mime()),
                    (w, h, "video/mp4"),
                    "{name}"
                );
                assert_eq!(videos.len(), 1, "{name}");
                assert_eq!(videos[0]["codec_name"], "h264", "{name}");
                assert_eq!(
                    (videos[0]["width"].as_u64(), videos[0]["height"].as_u64()),
                    (Some(u64::from(w)), Some(u64::from(h))),
                    "{name}"
                );
                assert_eq!(videos[0]["pix_fmt"], "yuv420p", "{name}");
                assert!(
                    videos[0].get("side_data_list").is_none(),
                    "{name}: no rotation left to apply"
                );
                assert!(
                    matches!(
                        videos[0]["sample_aspect_ratio"].as_str(),
                        None | Some("1:1")
                    ),
                    "{name}: square pixels"
                );
                // The picture itself: as ffmpeg shows the source at that size.
                let mean = difference(
                    &ffmpeg_frame(&out, "0.5", w, h),
                    &ffmpeg_frame(&fixture(name), "0.5", w, h),
                );
                assert!(mean < 15.0, "{name}: mean difference {mean}");
            }
            None => {
                assert!(videos.is_empty(), "{name}: audio stays audio");
                assert_eq!(rendition.mime(), "audio/mp4");
            }
        }
        let audios = streams(&probed, "audio");
        assert_eq!(audios.len(), usize::from(audio), "{name}");
        if audio {
            assert_eq!(audios[0]["codec_name"], "aac", "{name}");
        }
        assert!(is_faststart(&out), "{name}: moov before mdat");
        let number = |v: &Value| v.as_str().and_then(|v| v.parse::<f64>().ok());
        let duration = number(&probed["format"]["duration"]).expect("duration");
        let expected = if name == "big.mkv" { 1.0 } else { 2.0 };
        assert!(
            (duration - expected).abs() < 0.3,
            "{name}: lasts {duration} s, not {expected}"
        );
        let start = number(&probed["format"]["start_time"]).expect("start");
        assert!(start.abs() < 0.1, "{name}: starts at {start} s");
    }
}

#[test]
fn renditions_carry_no_metadata_of_the_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.mp4");
    let source = ffprobe(&fixture("located.mp4"));
    assert!(
        source["format"]["tags"]["location"].is_string(),
        "the fixture has a location"
    );
    transcode(&fixture("located.mp4"), &out, &VideoLimits::default()).expect("transcode");
    let probed = ffprobe(&out);
    let tags = probed["format"]["tags"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for key in tags.keys() {
        assert!(
            matches!(
                key.as_str(),
                "major_brand" | "minor_version" | "compatible_brands" | "encoder"
            ),
            "the rendition carries {key}: {tags:?}"
        );
    }
}

#[test]
fn hostile_and_oversized_media_are_refused_with_their_codes() {
    let limits = VideoLimits::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.mp4");
    assert_eq!(
        code(transcode(&fixture("corrupt-moov.mp4"), &out, &limits)),
        "corrupt-media"
    );
    assert_eq!(
        code(probe(&fixture("image-named.mp4"), &limits)),
        "unsupported-media"
    );
    let short = VideoLimits {
        max_duration: Duration::from_secs(5),
        ..limits
    };
    assert_eq!(code(probe(&fixture("long.mp4"), &short)), "media-too-long");
    let small = VideoLimits {
        max_side: 1000,
        ..limits
    };
    assert_eq!(
        code(probe(&fixture("big.mkv"), &small)),
        "image-side-too-long"
    );
    let tiny = VideoLimits {
        max_bytes: 1000,
        ..limits
    };
    assert_eq!(
        code(probe(&fixture("landscape.mp4"), &tiny)),
        "file-too-large"
    );
    // A truncated file (its index whole, its media data cut) gives the part it has.
    let (_, web) = transcode(&fixture("truncated.mp4"), &out, &limits).expect("truncated");
    assert_eq!((web.width, web.height), (640, 360));
    let kept: f64 = ffprobe(&out)["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .expect("duration");
    assert!(kept > 0.0 && kept < 1.9, "kept {kept} s of 2");
}
