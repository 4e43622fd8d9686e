//! Images: what a file is (type, displayed size, frames) under limits, then the thumbnail set
//! (WebP and JPEG, orientation applied, no metadata) and a BlurHash.

use std::fs::File;
use std::io::{BufRead, Cursor, Read, Seek};
use std::path::Path;
use std::sync::Arc;

use fast_image_resize::{ResizeOptions, Resizer};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

use crate::sniff::{MediaType, SNIFF_LEN, sniff};
use crate::{ImageLimits, TranscodeError};

/// What a probed image is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    /// Its real type.
    pub media_type: MediaType,
    /// Width as displayed (EXIF orientation applied).
    pub width: u32,
    /// Height as displayed.
    pub height: u32,
    /// Frames (1 unless animated).
    pub frames: u32,
}

/// The shape of a thumbnail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A centred square crop of this side.
    Crop(u32),
    /// Scaled to fit a box: the long side at most the first number, the short side at most
    /// the second, whichever way the image is turned.
    Fit(u32, u32),
}

/// One thumbnail of the set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThumbnailSpec {
    /// Its name, e.g. `fit-320x240`.
    pub name: &'static str,
    /// Its shape.
    pub shape: Shape,
}

/// The thumbnail set; none is ever larger than the image.
pub const THUMBNAILS: [ThumbnailSpec; 5] = [
    ThumbnailSpec {
        name: "crop-32",
        shape: Shape::Crop(32),
    },
    ThumbnailSpec {
        name: "crop-96",
        shape: Shape::Crop(96),
    },
    ThumbnailSpec {
        name: "fit-320x240",
        shape: Shape::Fit(320, 240),
    },
    ThumbnailSpec {
        name: "fit-640x480",
        shape: Shape::Fit(640, 480),
    },
    ThumbnailSpec {
        name: "fit-800x600",
        shape: Shape::Fit(800, 600),
    },
];

/// An encoding of a rendition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JPEG, quality 80.
    Jpeg,
    /// Lossy WebP, quality 75.
    WebP,
}

impl Format {
    /// The MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::WebP => "image/webp",
        }
    }
}

/// One encoded thumbnail.
#[derive(Clone, PartialEq, Eq)]
pub struct Rendition {
    /// The spec's name.
    pub name: &'static str,
    /// Its encoding.
    pub format: Format,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// The encoded file.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Rendition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rendition")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// An image's thumbnails.
#[derive(Debug, Clone)]
pub struct Thumbnails {
    /// The source image.
    pub info: ImageInfo,
    /// A BlurHash of the whole image (4×3 components, 3×4 when portrait).
    pub blurhash: String,
    /// Each spec of [`THUMBNAILS`] in JPEG and in WebP.
    pub renditions: Vec<Rendition>,
}

/// Reads what the image at `path` is, from its header, refusing it if it breaks `limits`.
pub fn probe(path: &Path, limits: &ImageLimits) -> Result<ImageInfo, TranscodeError> {
    open(path, limits).map(|opened| opened.info)
}

/// Makes the thumbnail set and a BlurHash of the image at `path`, within `limits`.
pub fn thumbnails(path: &Path, limits: &ImageLimits) -> Result<Thumbnails, TranscodeError> {
    let (info, image) = decode(path, limits)?;
    let (blurhash, renditions) = thumbnail_set(&image)?;
    Ok(Thumbnails {
        info,
        blurhash,
        renditions,
    })
}

/// The thumbnail set and a BlurHash of an image already decoded and upright (a video's
/// poster frame).
pub fn thumbnail_set(image: &DynamicImage) -> Result<(String, Vec<Rendition>), TranscodeError> {
    let mut resizer = Resizer::new();
    let mut renditions = Vec::with_capacity(THUMBNAILS.len() * 2);
    for spec in THUMBNAILS {
        let thumb = render(&mut resizer, image, spec.shape)?;
        for format in [Format::Jpeg, Format::WebP] {
            renditions.push(Rendition::encode(spec, &thumb, format)?);
        }
    }
    Ok((blurhash(&mut resizer, image)?, renditions))
}

/// Makes one thumbnail of the image at `path`, within `limits`.
pub fn thumbnail(
    path: &Path,
    limits: &ImageLimits,
    spec: ThumbnailSpec,
    format: Format,
) -> Result<Rendition, TranscodeError> {
    let (_, image) = decode(path, limits)?;
    let thumb = render(&mut Resizer::new(), &image, spec.shape)?;
    Rendition::encode(spec, &thumb, format)
}

/// What a sender attaches to an image it sends (WhatsApp-style): a tiny inline JPEG, a
/// BlurHash, and a larger JPEG thumbnail to upload (encrypted) as its own blob.
#[derive(Debug, Clone)]
pub struct Preview {
    /// The source image.
    pub info: ImageInfo,
    /// A JPEG at most 32 pixels on its long side, a few hundred bytes.
    pub inline_jpeg: Vec<u8>,
    /// A BlurHash of the whole image.
    pub blurhash: String,
    /// A JPEG fitting 320×240 (never larger than the image).
    pub thumbnail: Rendition,
}

/// Makes the [`Preview`] of the image at `path`, within `limits`.
pub fn preview(path: &Path, limits: &ImageLimits) -> Result<Preview, TranscodeError> {
    let (info, image) = decode(path, limits)?;
    preview_of(info, &image)
}

/// Makes the [`Preview`] of an image already decoded and upright (a video's poster frame),
/// described by `info`.
pub fn preview_of(info: ImageInfo, image: &DynamicImage) -> Result<Preview, TranscodeError> {
    let mut resizer = Resizer::new();
    let tiny = render(&mut resizer, image, Shape::Fit(32, 32))?;
    let inline_jpeg = encode_jpeg(&tiny, 60)?;
    let spec = THUMBNAILS[2];
    let thumb = render(&mut resizer, image, spec.shape)?;
    let thumbnail = Rendition::encode(spec, &thumb, Format::Jpeg)?;
    let blurhash = blurhash(&mut resizer, image)?;
    Ok(Preview {
        info,
        inline_jpeg,
        blurhash,
        thumbnail,
    })
}

/// The image at `path`, within `limits`, upright, as 8-bit RGB or RGBA.
fn decode(path: &Path, limits: &ImageLimits) -> Result<(ImageInfo, DynamicImage), TranscodeError> {
    let Opened {
        info,
        mut decoder,
        orientation,
        bytes,
    } = open(path, limits)?;
    let mut image = if info.media_type == MediaType::Jpeg {
        drop(decoder);
        strict_jpeg(&bytes, limits)?
    } else {
        let mut decode_limits = Limits::default();
        decode_limits.max_alloc = Some(limits.max_alloc);
        decoder
            .set_limits(decode_limits)
            .map_err(|e| image_error(&e, limits))?;
        DynamicImage::from_decoder(decoder).map_err(|e| image_error(&e, limits))?
    };
    image.apply_orientation(orientation);
    let image = if image.color().has_alpha() {
        DynamicImage::ImageRgba8(image.into_rgba8())
    } else {
        DynamicImage::ImageRgb8(image.into_rgb8())
    };
    Ok((info, image))
}

/// A file whose header was read and found within limits.
struct Opened {
    info: ImageInfo,
    decoder: Box<dyn ImageDecoder>,
    orientation: Orientation,
    bytes: Arc<[u8]>,
}

fn open(path: &Path, limits: &ImageLimits) -> Result<Opened, TranscodeError> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    if size > limits.max_bytes {
        return Err(TranscodeError::FileTooLarge {
            size,
            limit: limits.max_bytes,
        });
    }
    // Read once (at most the size limit, even if the file grows meanwhile): the header checks,
    // the frame count, the orientation and the pixels all come from these same bytes.
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(limits.max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limits.max_bytes {
        return Err(TranscodeError::FileTooLarge {
            size: bytes.len() as u64,
            limit: limits.max_bytes,
        });
    }
    let bytes: Arc<[u8]> = bytes.into();
    let media_type = sniff(&bytes[..bytes.len().min(SNIFF_LEN)])
        .ok_or(TranscodeError::Unsupported("unknown"))?;
    let format = match media_type {
        MediaType::Jpeg => ImageFormat::Jpeg,
        MediaType::Png => ImageFormat::Png,
        MediaType::Gif => ImageFormat::Gif,
        MediaType::WebP => ImageFormat::WebP,
        other => return Err(TranscodeError::Unsupported(other.name())),
    };
    let mut reader = Cursor::new(bytes.clone());
    let frames = match media_type {
        MediaType::Gif => count_gif_frames(&mut reader, limits.max_frames)?,
        MediaType::WebP => count_webp_frames(&mut reader, limits.max_frames, bytes.len() as u64)?,
        _ => 1,
    };
    reader.rewind()?;
    // The header alone: no pixel is decoded before the size is checked.
    // Whatever the header parse allocates (a PNG's compressed ICC profile, say) stays within
    // the decode memory limit.
    let mut image_reader = ImageReader::with_format(reader, format);
    let mut header_limits = Limits::default();
    header_limits.max_alloc = Some(limits.max_alloc);
    image_reader.limits(header_limits);
    let mut decoder = image_reader
        .into_decoder()
        .map_err(|e| image_error(&e, limits))?;
    let (width, height) = decoder.dimensions();
    crate::limits::check_frame(width, height, limits.max_side, limits.max_pixels)?;
    // Decoding needs the pixels, a converted copy and a turned copy at once, at most.
    let needed = decoder.total_bytes().saturating_mul(3);
    if needed > limits.max_alloc {
        return Err(TranscodeError::MemoryLimit {
            needed,
            limit: limits.max_alloc,
        });
    }
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let turned = matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    );
    let (width, height) = if turned {
        (height, width)
    } else {
        (width, height)
    };
    Ok(Opened {
        info: ImageInfo {
            media_type,
            width,
            height,
            frames,
        },
        decoder: Box::new(decoder),
        orientation,
        bytes,
    })
}

/// Decodes a JPEG (already checked against the limits) strictly: a truncated or damaged file
/// is refused instead of being shown with grey where its data ended.
fn strict_jpeg(bytes: &[u8], limits: &ImageLimits) -> Result<DynamicImage, TranscodeError> {
    let side = usize::try_from(limits.max_side).unwrap_or(usize::MAX);
    let options = zune_core::options::DecoderOptions::default()
        .jpeg_set_out_colorspace(zune_core::colorspace::ColorSpace::RGB)
        .set_strict_mode(true)
        .set_max_width(side)
        .set_max_height(side);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(
        zune_core::bytestream::ZCursor::new(bytes),
        options,
    );
    let pixels = decoder
        .decode()
        .map_err(|e| TranscodeError::Corrupt(format!("{e:?}")))?;
    let (width, height) = decoder
        .dimensions()
        .ok_or_else(|| TranscodeError::Corrupt("no JPEG frame header".into()))?;
    let width = u32::try_from(width).map_err(|e| TranscodeError::Corrupt(e.to_string()))?;
    let height = u32::try_from(height).map_err(|e| TranscodeError::Corrupt(e.to_string()))?;
    image::RgbImage::from_raw(width, height, pixels)
        .map(DynamicImage::ImageRgb8)
        .ok_or_else(|| TranscodeError::Corrupt("the JPEG decoded to the wrong size".into()))
}

/// What an `image` error means here: past a limit, a failing read (worth retrying), or a file
/// that is not what it claims (truncation included).
fn image_error(e: &image::ImageError, limits: &ImageLimits) -> TranscodeError {
    match e {
        image::ImageError::Limits(_) => TranscodeError::MemoryLimit {
            needed: limits.max_alloc.saturating_add(1),
            limit: limits.max_alloc,
        },
        image::ImageError::IoError(io) if io.kind() != std::io::ErrorKind::UnexpectedEof => {
            TranscodeError::Io(std::io::Error::new(io.kind(), io.to_string()))
        }
        other => TranscodeError::Corrupt(other.to_string()),
    }
}

/// The size a shape gives an image of `width`×`height`: never larger than the image.
fn target_size(width: u32, height: u32, shape: Shape) -> (u32, u32) {
    match shape {
        Shape::Crop(side) => {
            let side = side.min(width).min(height).max(1);
            (side, side)
        }
        Shape::Fit(long, short) => {
            let (w, h) = (f64::from(width), f64::from(height));
            let scale = (f64::from(long) / w.max(h))
                .min(f64::from(short) / w.min(h))
                .min(1.0);
            let side = |v: f64| {
                // In range: v is at most a u32 side times a scale of at most 1.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let rounded = (v * scale).round() as u32;
                rounded.max(1)
            };
            (side(w), side(h))
        }
    }
}

fn render(
    resizer: &mut Resizer,
    image: &DynamicImage,
    shape: Shape,
) -> Result<DynamicImage, TranscodeError> {
    let (width, height) = target_size(image.width(), image.height(), shape);
    let same = (width, height) == (image.width(), image.height());
    if same && matches!(shape, Shape::Fit(..)) {
        return Ok(image.clone());
    }
    let mut out = DynamicImage::new(width, height, image.color());
    // A crop keeps the centre of the image; a fit keeps all of it.
    let options = ResizeOptions::new()
        .resize_alg(fast_image_resize::ResizeAlg::Convolution(
            fast_image_resize::FilterType::Bilinear,
        ))
        .fit_into_destination(None);
    resizer
        .resize(image, &mut out, &options)
        .map_err(|e| TranscodeError::Encode(e.to_string()))?;
    Ok(out)
}

impl Rendition {
    /// The rendition `spec` made of the already resized `thumb`, encoded as `format`.
    fn encode(
        spec: ThumbnailSpec,
        thumb: &DynamicImage,
        format: Format,
    ) -> Result<Self, TranscodeError> {
        Ok(Self {
            name: spec.name,
            format,
            width: thumb.width(),
            height: thumb.height(),
            bytes: encode(thumb, format)?,
        })
    }
}

/// A JPEG of `image` at `quality`, transparency shown over white.
fn encode_jpeg(image: &DynamicImage, quality: u8) -> Result<Vec<u8>, TranscodeError> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(&flatten_on_white(image))
        .map_err(|e| TranscodeError::Encode(e.to_string()))?;
    Ok(out)
}

fn encode(image: &DynamicImage, format: Format) -> Result<Vec<u8>, TranscodeError> {
    let fail = |e: &dyn std::fmt::Display| TranscodeError::Encode(e.to_string());
    match format {
        Format::Jpeg => encode_jpeg(image, 80),
        Format::WebP => {
            let webp_error = |e: webp::WebPEncodingError| fail(&format!("WebP: {e:?}"));
            let encoded = match image {
                DynamicImage::ImageRgba8(rgba) => {
                    webp::Encoder::from_rgba(rgba.as_raw(), image.width(), image.height())
                        .encode_simple(false, 75.0)
                        .map_err(webp_error)?
                }
                _ => {
                    let rgb = image.to_rgb8();
                    webp::Encoder::from_rgb(rgb.as_raw(), rgb.width(), rgb.height())
                        .encode_simple(false, 75.0)
                        .map_err(webp_error)?
                }
            };
            Ok(encoded.to_vec())
        }
    }
}

/// RGB pixels, transparent ones shown over white (JPEG has no alpha).
fn flatten_on_white(image: &DynamicImage) -> image::RgbImage {
    let DynamicImage::ImageRgba8(rgba) = image else {
        return image.to_rgb8();
    };
    let mut rgb = image::RgbImage::new(rgba.width(), rgba.height());
    for (out, px) in rgb.pixels_mut().zip(rgba.pixels()) {
        let alpha = u16::from(px[3]);
        for c in 0..3 {
            let blended = (u16::from(px[c]) * alpha + 255 * (255 - alpha)) / 255;
            out[c] = u8::try_from(blended).unwrap_or(u8::MAX);
        }
    }
    rgb
}

fn blurhash(resizer: &mut Resizer, image: &DynamicImage) -> Result<String, TranscodeError> {
    // Transparent pixels count as white, as in the JPEG thumbnails.
    let small = DynamicImage::ImageRgb8(flatten_on_white(&render(
        resizer,
        image,
        Shape::Fit(64, 64),
    )?))
    .into_rgba8();
    let (x, y) = if small.width() >= small.height() {
        (4, 3)
    } else {
        (3, 4)
    };
    blurhash::encode(x, y, small.width(), small.height(), small.as_raw())
        .map_err(|e| TranscodeError::Encode(e.to_string()))
}

/// Counts a GIF's frames from its block structure, without decoding any; stops past `limit`.
fn count_gif_frames(reader: &mut (impl BufRead + Seek), limit: u32) -> Result<u32, TranscodeError> {
    let truncated = || TranscodeError::Corrupt("the GIF ends early".into());
    let mut byte = [0u8; 1];
    let mut read_byte = |r: &mut dyn Read| -> Result<Option<u8>, TranscodeError> {
        match r.read(&mut byte)? {
            0 => Ok(None),
            _ => Ok(Some(byte[0])),
        }
    };
    let mut header = [0u8; 13];
    reader.read_exact(&mut header).map_err(|_| truncated())?;
    let screen_width = u32::from(u16::from_le_bytes([header[6], header[7]]));
    let screen_height = u32::from(u16::from_le_bytes([header[8], header[9]]));
    if screen_width == 0 || screen_height == 0 {
        return Err(TranscodeError::Corrupt("the GIF's screen is empty".into()));
    }
    skip_color_table(reader, header[10])?;
    let mut frames = 0u32;
    loop {
        match read_byte(reader)? {
            // Trailer, or a file that ends without one (the decoder judges that).
            Some(0x3B) | None => return Ok(frames.max(1)),
            Some(0x21) => {
                read_byte(reader)?.ok_or_else(truncated)?;
                skip_sub_blocks(reader)?;
            }
            Some(0x2C) => {
                frames += 1;
                if frames > limit {
                    return Err(TranscodeError::TooManyFrames { limit });
                }
                let mut descriptor = [0u8; 9];
                reader
                    .read_exact(&mut descriptor)
                    .map_err(|_| truncated())?;
                // A frame outside the screen would make the decoder allocate its size, which
                // the header checks never saw.
                let field =
                    |i: usize| u32::from(u16::from_le_bytes([descriptor[i], descriptor[i + 1]]));
                if field(0) + field(4) > screen_width || field(2) + field(6) > screen_height {
                    return Err(TranscodeError::Corrupt(
                        "a GIF frame lies outside the GIF's screen".into(),
                    ));
                }
                skip_color_table(reader, descriptor[8])?;
                read_byte(reader)?.ok_or_else(truncated)?;
                skip_sub_blocks(reader)?;
            }
            Some(other) => {
                return Err(TranscodeError::Corrupt(format!(
                    "unexpected GIF block 0x{other:02x}"
                )));
            }
        }
    }
}

fn skip_color_table(reader: &mut (impl Read + Seek), packed: u8) -> Result<(), TranscodeError> {
    if packed & 0x80 != 0 {
        let entries = 2i64 << (packed & 7);
        reader.seek_relative(3 * entries)?;
    }
    Ok(())
}

fn skip_sub_blocks(reader: &mut (impl Read + Seek)) -> Result<(), TranscodeError> {
    let mut len = [0u8; 1];
    loop {
        if reader.read(&mut len)? == 0 || len[0] == 0 {
            return Ok(());
        }
        reader.seek_relative(i64::from(len[0]))?;
    }
}

/// Counts an animated WebP's frames (`ANMF` chunks) without decoding; 1 for a still image.
fn count_webp_frames(
    reader: &mut (impl Read + Seek),
    limit: u32,
    size: u64,
) -> Result<u32, TranscodeError> {
    let mut riff = [0u8; 12];
    reader
        .read_exact(&mut riff)
        .map_err(|_| TranscodeError::Corrupt("the WebP ends early".into()))?;
    let mut frames = 0u32;
    let mut chunk = [0u8; 8];
    while reader.read_exact(&mut chunk).is_ok() {
        if &chunk[..4] == b"ANMF" {
            frames += 1;
            if frames > limit {
                return Err(TranscodeError::TooManyFrames { limit });
            }
        }
        let len = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
        // A chunk claiming more than the file holds would make the decoder allocate its
        // claimed size (an EXIF chunk of 4 GiB in a 60-byte file).
        if reader.stream_position()? + u64::from(len) > size {
            return Err(TranscodeError::Corrupt(
                "a WebP chunk runs past the end of the file".into(),
            ));
        }
        reader.seek_relative(i64::from(len) + i64::from(len & 1))?;
    }
    Ok(frames.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbnails_never_upscale_and_keep_the_aspect() {
        assert_eq!(target_size(4000, 3000, Shape::Fit(320, 240)), (320, 240));
        assert_eq!(target_size(3000, 4000, Shape::Fit(320, 240)), (240, 320));
        assert_eq!(target_size(4000, 1000, Shape::Fit(800, 600)), (800, 200));
        assert_eq!(target_size(100, 50, Shape::Fit(800, 600)), (100, 50));
        assert_eq!(target_size(4000, 3000, Shape::Crop(96)), (96, 96));
        assert_eq!(target_size(20, 50, Shape::Crop(96)), (20, 20));
        assert_eq!(target_size(10_000, 1, Shape::Fit(320, 240)), (320, 1));
    }
}
