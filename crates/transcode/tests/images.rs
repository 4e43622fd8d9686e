//! The image pipeline on generated files: the thumbnail set's sizes and formats, EXIF
//! orientation applied, metadata gone, and every hostile file refused with its code.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::codecs::gif::GifEncoder;
use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, Frame, ImageEncoder, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use sealpost_transcode::image::{Format, Shape, THUMBNAILS, preview, probe, thumbnails};
use sealpost_transcode::{ImageLimits, MediaType, TranscodeError};

/// A landscape picture whose top-left quarter is red and the rest blue.
fn picture(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        if x < width / 2 && y < height / 2 {
            Rgb([230, 20, 20])
        } else {
            Rgb([20, 20, 230])
        }
    })
}

/// A little-endian EXIF block with an orientation and a GPS latitude reference.
fn exif(orientation: u8) -> Vec<u8> {
    let mut exif = b"II\x2a\0\x08\0\0\0".to_vec();
    exif.extend_from_slice(&[2, 0]); // two entries
    exif.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, orientation, 0, 0, 0]);
    // An ASCII tag holding a recognisable "GPS" string, to prove metadata is dropped.
    exif.extend_from_slice(&[0x0E, 0x01, 2, 0, 4, 0, 0, 0, b'G', b'P', b'S', 0]);
    exif.extend_from_slice(&[0, 0, 0, 0]);
    exif
}

fn jpeg(image: &RgbImage, orientation: Option<u8>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = JpegEncoder::new_with_quality(&mut out, 90);
    if let Some(o) = orientation {
        encoder.set_exif_metadata(exif(o)).expect("exif");
    }
    encoder
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .expect("jpeg");
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write");
    path
}

fn decoded(bytes: &[u8], format: Format) -> DynamicImage {
    let format = match format {
        Format::Jpeg => ImageFormat::Jpeg,
        Format::WebP => ImageFormat::WebP,
    };
    image::load_from_memory_with_format(bytes, format).expect("rendition decodes")
}

fn is_red(px: Rgba<u8>) -> bool {
    px[0] > 150 && px[2] < 100
}

#[test]
fn a_turned_jpeg_gets_every_thumbnail_upright_and_without_metadata() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Stored 1200x800 with orientation 6: shown turned 90° clockwise, 800x1200, with the red
    // quarter top-right.
    let path = write(dir.path(), "photo.jpg", &jpeg(&picture(1200, 800), Some(6)));
    let limits = ImageLimits::default();
    let info = probe(&path, &limits).expect("probe");
    assert_eq!(
        (info.media_type, info.width, info.height, info.frames),
        (MediaType::Jpeg, 800, 1200, 1)
    );

    let thumbs = thumbnails(&path, &limits).expect("thumbnails");
    assert_eq!(thumbs.renditions.len(), THUMBNAILS.len() * 2);
    assert!(!thumbs.blurhash.is_empty() && thumbs.blurhash.is_ascii());
    for spec in THUMBNAILS {
        let expected = match spec.shape {
            Shape::Crop(side) => (side, side),
            // 800x1200 scaled so that the long side is `long`: 2/3 of it, rounded.
            Shape::Fit(long, _) => ((long * 2 + 1) / 3, long),
        };
        for format in [Format::Jpeg, Format::WebP] {
            let r = thumbs
                .renditions
                .iter()
                .find(|r| r.name == spec.name && r.format == format)
                .expect("rendition");
            assert_eq!((r.width, r.height), expected, "{}", spec.name);
            let image = decoded(&r.bytes, format);
            assert_eq!(
                (image.width(), image.height()),
                expected,
                "{} {format:?}",
                spec.name
            );
            let rgba = image.to_rgba8();
            if let Shape::Fit(..) = spec.shape {
                assert!(
                    is_red(*rgba.get_pixel(r.width - 2, 1)),
                    "{} {format:?}: upright",
                    spec.name
                );
                assert!(
                    !is_red(*rgba.get_pixel(1, 1)),
                    "{} {format:?}: upright",
                    spec.name
                );
            }
            let has = |needle: &[u8]| r.bytes.windows(needle.len()).any(|w| w == needle);
            assert!(
                !has(b"Exif") && !has(b"EXIF") && !has(b"GPS"),
                "{} {format:?}: metadata",
                spec.name
            );
        }
    }
}

#[test]
fn small_images_are_never_upscaled_and_transparency_survives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = RgbaImage::from_fn(60, 40, |x, _| {
        if x < 30 {
            Rgba([0, 200, 0, 0])
        } else {
            Rgba([0, 200, 0, 255])
        }
    });
    let mut png = Vec::new();
    DynamicImage::ImageRgba8(image)
        .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
        .expect("png");
    // Named .jpg: the name lies, the bytes decide.
    let path = write(dir.path(), "lies.jpg", &png);
    let thumbs = thumbnails(&path, &ImageLimits::default()).expect("thumbnails");
    assert_eq!(thumbs.info.media_type, MediaType::Png);
    for r in &thumbs.renditions {
        assert!(r.width <= 60 && r.height <= 40, "{r:?}");
        let image = decoded(&r.bytes, r.format).to_rgba8();
        let left = *image.get_pixel(0, image.height() / 2);
        match r.format {
            Format::Jpeg => assert!(
                left[0] > 200 && left[2] > 200,
                "transparent shows white: {left:?}"
            ),
            Format::WebP => assert!(left[3] < 50, "WebP keeps transparency: {left:?}"),
        }
    }
    let crop = thumbs
        .renditions
        .iter()
        .find(|r| r.name == "crop-96")
        .expect("crop");
    assert_eq!((crop.width, crop.height), (40, 40));
}

fn animated_gif(frames: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = GifEncoder::new(&mut out);
        for i in 0..frames {
            let shade = u8::try_from(i * 40 % 256).unwrap_or(0);
            let frame = RgbaImage::from_pixel(16, 12, Rgba([shade, 0, 0, 255]));
            encoder.encode_frame(Frame::new(frame)).expect("frame");
        }
    }
    out
}

#[test]
fn animations_are_counted_without_decoding_and_limited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "anim.gif", &animated_gif(3));
    let info = probe(&path, &ImageLimits::default()).expect("probe");
    assert_eq!(
        (info.media_type, info.frames, info.width, info.height),
        (MediaType::Gif, 3, 16, 12)
    );
    let limits = ImageLimits {
        max_frames: 2,
        ..ImageLimits::default()
    };
    assert_eq!(code(probe(&path, &limits)), "too-many-frames");
}

fn code<T: std::fmt::Debug>(result: Result<T, TranscodeError>) -> &'static str {
    result.expect_err("refused").code()
}

/// CRC-32 (IEEE), for hand-made PNG chunks.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        out.extend_from_slice(&u32::try_from(data.len()).expect("len").to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(b"IEND", &[]);
    out
}

/// A GIF with a 1x1 screen and an 11000x11000 frame (tiny on disk, huge decoded).
fn gif_with_frame_outside_the_screen() -> Vec<u8> {
    let mut gif = b"GIF89a\x01\0\x01\0\0\0\0".to_vec();
    gif.push(0x2C);
    gif.extend_from_slice(&[0, 0, 0, 0]);
    gif.extend_from_slice(&11_000u16.to_le_bytes());
    gif.extend_from_slice(&11_000u16.to_le_bytes());
    gif.extend_from_slice(&[0, 2, 0, 0x3B]);
    gif
}

/// A 60-byte WebP whose EXIF chunk claims almost 4 GiB.
fn webp_claiming_a_huge_exif_chunk() -> Vec<u8> {
    let mut webp = b"RIFF\0\0\0\0WEBPVP8X".to_vec();
    webp.extend_from_slice(&10u32.to_le_bytes());
    webp.extend_from_slice(&[0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    webp.extend_from_slice(b"EXIF");
    webp.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    webp.extend_from_slice(&[0; 16]);
    webp
}

/// A real JPEG whose frame header is rewritten to claim `width`×`height`.
fn jpeg_claiming(width: u16, height: u16) -> Vec<u8> {
    let mut bytes = jpeg(&picture(64, 48), None);
    let sof = bytes
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("SOF0");
    bytes[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    bytes
}

#[test]
fn hostile_files_are_refused_with_their_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = ImageLimits::default();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("bomb.png", png_claiming(15_000, 15_000), "image-too-large"),
        (
            "big-frame.gif",
            gif_with_frame_outside_the_screen(),
            "corrupt-media",
        ),
        (
            "exif-bomb.webp",
            webp_claiming_a_huge_exif_chunk(),
            "corrupt-media",
        ),
        ("wide.png", png_claiming(100_000, 10), "image-side-too-long"),
        (
            "huge.jpg",
            jpeg_claiming(60_000, 60_000),
            "image-side-too-long",
        ),
        (
            "page.jpg",
            b"<html><body>not a photo</body></html>".to_vec(),
            "unsupported-media",
        ),
        (
            "clip.jpg",
            b"\0\0\0\x20ftypisom\0\0\x02\0isomiso2".to_vec(),
            "unsupported-media",
        ),
        (
            "garbage.png",
            b"\x89PNG\r\n\x1a\nthis is not a chunk".to_vec(),
            "corrupt-media",
        ),
    ];
    for (name, bytes, expected) in cases {
        let path = write(dir.path(), name, &bytes);
        assert_eq!(code(thumbnails(&path, &limits)), expected, "{name}");
    }
    // Refused by the structure checks, before any decoder allocates what they claim.
    for (name, bytes, why) in [
        (
            "frame.gif",
            gif_with_frame_outside_the_screen(),
            "outside the GIF's screen",
        ),
        (
            "exif.webp",
            webp_claiming_a_huge_exif_chunk(),
            "past the end of the file",
        ),
    ] {
        let path = write(dir.path(), name, &bytes);
        let err = probe(&path, &limits).expect_err(name).to_string();
        assert!(err.contains(why), "{name}: {err}");
    }
    let whole = jpeg(&picture(640, 480), None);
    let truncated = write(dir.path(), "truncated.jpg", &whole[..whole.len() / 2]);
    assert_eq!(code(thumbnails(&truncated, &limits)), "corrupt-media");
    let photo = write(dir.path(), "photo.jpg", &jpeg(&picture(64, 48), None));
    // 64x48 RGB decodes to 9 216 bytes; with its copies that is past a 20 000-byte budget.
    let small_budget = ImageLimits {
        max_alloc: 20_000,
        ..limits
    };
    assert!(matches!(
        probe(&photo, &small_budget),
        Err(TranscodeError::MemoryLimit {
            needed: 27_648,
            limit: 20_000
        })
    ));
    let tiny = ImageLimits {
        max_bytes: 100,
        ..limits
    };
    assert_eq!(code(probe(&photo, &tiny)), "file-too-large");
}

#[test]
fn a_preview_has_a_tiny_inline_jpeg_a_blurhash_and_a_thumbnail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "photo.jpg", &jpeg(&picture(1200, 800), Some(6)));
    let preview = preview(&path, &ImageLimits::default()).expect("preview");
    assert_eq!((preview.info.width, preview.info.height), (800, 1200));
    let tiny = decoded(&preview.inline_jpeg, Format::Jpeg);
    assert_eq!((tiny.width(), tiny.height()), (21, 32));
    assert!(
        preview.inline_jpeg.len() < 2048,
        "{} bytes",
        preview.inline_jpeg.len()
    );
    assert!(!preview.blurhash.is_empty());
    let thumb = decoded(&preview.thumbnail.bytes, Format::Jpeg);
    assert_eq!((thumb.width(), thumb.height()), (213, 320));
}

#[test]
fn animations_made_by_ffmpeg_are_counted_and_thumbnailed() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/media");
    for (name, media_type) in [
        ("animated.gif", MediaType::Gif),
        ("animated.webp", MediaType::WebP),
    ] {
        let made = thumbnails(&fixtures.join(name), &ImageLimits::default()).expect(name);
        assert_eq!(
            (
                made.info.media_type,
                made.info.width,
                made.info.height,
                made.info.frames
            ),
            (media_type, 64, 48, 10),
            "{name}"
        );
        assert_eq!(made.renditions.len(), THUMBNAILS.len() * 2, "{name}");
    }
}
