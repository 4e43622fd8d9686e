//! `sealpost transcode`, the media worker's child process, on a real image, a video and
//! hostile files: a JSON report, the renditions on disk, a stable code and exit status 3 for bad
//! input.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

mod common;

fn run(input: &Path, output: &Path, extra: &[&str]) -> (Option<i32>, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_sealpost"))
        .arg("transcode")
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(output)
        .args(extra)
        .output()
        .expect("run sealpost transcode");
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code(), report)
}

fn photo(path: &Path) {
    std::fs::write(path, common::photo_jpeg(1000, 750)).expect("write");
}

#[test]
fn an_image_becomes_its_thumbnail_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.jpg");
    photo(&input);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("out dir");
    let (status, report) = run(&input, &out, &[]);
    assert_eq!(status, Some(0), "{report}");
    assert_eq!(report["outcome"], "ready");
    assert_eq!(
        (report["width"].as_u64(), report["height"].as_u64()),
        (Some(1000), Some(750))
    );
    let renditions = report["renditions"].as_array().expect("renditions");
    assert_eq!(renditions.len(), 10);
    for r in renditions {
        let file = out.join(r["file"].as_str().expect("file"));
        let image = image::open(&file).expect("decodes");
        assert_eq!(
            (u64::from(image.width()), u64::from(image.height())),
            (
                r["width"].as_u64().expect("w"),
                r["height"].as_u64().expect("h")
            )
        );
    }
}

#[test]
fn hostile_input_is_refused_with_a_code_and_status_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.jpg");
    photo(&input);
    let whole = std::fs::read(&input).expect("read");
    let truncated = dir.path().join("truncated.jpg");
    std::fs::write(&truncated, &whole[..whole.len() / 2]).expect("write");
    let page = dir.path().join("page.jpg");
    std::fs::write(&page, b"<html>not an image</html>").expect("write");
    let media = |name: &str| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/media")
            .join(name)
    };
    let (corrupt, long) = (media("corrupt-moov.mp4"), media("long.mp4"));
    for (file, extra, code) in [
        (&truncated, &[][..], "corrupt-media"),
        (&page, &[][..], "unsupported-media"),
        (&input, &["--max-pixels", "1000"][..], "image-too-large"),
        (&corrupt, &[][..], "corrupt-media"),
        (&long, &["--max-duration", "5"][..], "media-too-long"),
    ] {
        let (status, report) = run(file, dir.path(), extra);
        assert_eq!(status, Some(3), "{report}");
        assert_eq!(report["outcome"], "failed");
        assert_eq!(report["code"], code, "{report}");
        assert_eq!(report["transient"], false);
    }
}

#[test]
fn a_video_becomes_poster_thumbnails_and_a_web_rendition() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/media/portrait.mp4");
    let (status, report) = run(&input, dir.path(), &[]);
    assert_eq!(status, Some(0), "{report}");
    assert_eq!(
        (
            report["mime"].as_str(),
            report["width"].as_u64(),
            report["height"].as_u64()
        ),
        (Some("video/mp4"), Some(360), Some(640))
    );
    assert!(
        report["duration_ms"]
            .as_u64()
            .is_some_and(|ms| (1900..=2200).contains(&ms)),
        "{report}"
    );
    let renditions = report["renditions"].as_array().expect("renditions");
    assert_eq!(
        renditions.len(),
        11,
        "ten poster thumbnails and the web rendition"
    );
    let web = renditions.iter().find(|r| r["name"] == "web").expect("web");
    assert_eq!(
        (
            web["mime"].as_str(),
            web["width"].as_u64(),
            web["height"].as_u64()
        ),
        (Some("video/mp4"), Some(360), Some(640))
    );
    assert!(
        dir.path()
            .join(web["file"].as_str().expect("file"))
            .is_file()
    );
}
