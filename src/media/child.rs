//! The media worker's child process: `sealpost transcode` decodes one untrusted file (the
//! parent runs it under `prlimit` with a timeout), writes its renditions into a directory and
//! reports on stdout, as one JSON object, what it made or why it refused. An image gets the
//! thumbnail set; a video gets the thumbnail set of its poster frame and a web rendition
//! (H.264 + AAC MP4); audio gets an AAC M4A. The parent trusts a report only with the exit
//! status it implies (0 ready, 3 refused, 1 worth retrying), and only the files it names.

use std::path::Path;

use sealpost_transcode::image::{Format, Rendition, thumbnail_set, thumbnails};
use sealpost_transcode::sniff::sniff_file;
use sealpost_transcode::video::{self, WebRendition};
use sealpost_transcode::{ImageLimits, TranscodeError, VideoLimits};
use serde::{Deserialize, Serialize};

/// The web rendition's name.
pub const WEB: &str = "web";

/// One rendition the child wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildRendition {
    /// `crop-32`, `fit-320x240`, … (thumbnails) or `web` (the playable MP4 or M4A).
    pub name: String,
    /// Its MIME type.
    pub mime: String,
    /// Width (0 for audio).
    pub width: u32,
    /// Height (0 for audio).
    pub height: u32,
    /// Its file name in the output directory.
    pub file: String,
}

/// What the child reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum ChildReport {
    /// Processed.
    Ready {
        /// The source's real MIME type.
        mime: String,
        /// Displayed width (0 for audio).
        width: u32,
        /// Displayed height (0 for audio).
        height: u32,
        /// Frames of an image (1 unless animated); 0 for video and audio.
        frames: u32,
        /// Video and audio: duration in milliseconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_ms: Option<u64>,
        /// A BlurHash of the image or poster frame; empty for audio.
        blurhash: String,
        /// The renditions, in the output directory.
        renditions: Vec<ChildRendition>,
    },
    /// Refused or failed.
    Failed {
        /// The stable code.
        code: String,
        /// What happened, for people.
        detail: String,
        /// Whether trying again could help.
        transient: bool,
    },
}

/// Processes `input` into `output` within the limits. A decoder that panics on the input is
/// a refusal of the input, not a crash without a report.
pub fn transcode(
    input: &Path,
    output: &Path,
    image: &ImageLimits,
    video: &VideoLimits,
) -> ChildReport {
    std::panic::catch_unwind(|| {
        process(input, output, image, video).unwrap_or_else(|e| ChildReport::Failed {
            code: e.code().to_owned(),
            detail: e.to_string(),
            transient: e.is_transient(),
        })
    })
    .unwrap_or_else(|_| ChildReport::Failed {
        code: "corrupt-media".into(),
        detail: "the decoder gave up on this file".into(),
        transient: false,
    })
}

fn process(
    input: &Path,
    output: &Path,
    image_limits: &ImageLimits,
    video_limits: &VideoLimits,
) -> Result<ChildReport, TranscodeError> {
    match sniff_file(input)? {
        Some(kind) if kind.is_image() => {
            let made = thumbnails(input, image_limits)?;
            let renditions = write_thumbnails(output, made.renditions)?;
            Ok(ChildReport::Ready {
                mime: made.info.media_type.mime().to_owned(),
                width: made.info.width,
                height: made.info.height,
                frames: made.info.frames,
                duration_ms: None,
                blurhash: made.blurhash,
                renditions,
            })
        }
        Some(kind) if video::handles(kind) => av(input, output, video_limits),
        Some(kind) => Err(TranscodeError::Unsupported(kind.name())),
        None => Err(TranscodeError::Unsupported("unknown")),
    }
}

/// Video or audio: the web rendition, and the poster's thumbnails (video).
fn av(input: &Path, output: &Path, limits: &VideoLimits) -> Result<ChildReport, TranscodeError> {
    let file = format!("{WEB}.mp4");
    let partial = output.join(format!(".{file}.partial"));
    let (info, web): (_, WebRendition) = video::transcode(input, &partial, limits)?;
    std::fs::rename(&partial, output.join(&file))?;
    let web = ChildRendition {
        name: WEB.to_owned(),
        mime: web.mime().to_owned(),
        width: web.width,
        height: web.height,
        file,
    };
    let (mut renditions, blurhash) = if info.video.is_some() {
        let (_, poster) = video::poster(input, limits)?;
        let (blurhash, thumbs) = thumbnail_set(&poster)?;
        (write_thumbnails(output, thumbs)?, blurhash)
    } else {
        (Vec::new(), String::new())
    };
    renditions.push(web);
    let (width, height) = info
        .video
        .as_ref()
        .map_or((0, 0), video::VideoStream::displayed);
    Ok(ChildReport::Ready {
        mime: info.media_type.mime().to_owned(),
        width,
        height,
        frames: 0,
        duration_ms: Some(u64::try_from(info.duration.as_millis()).unwrap_or(u64::MAX)),
        blurhash,
        renditions,
    })
}

/// Writes thumbnails under temporary names and renames them: a file named in a report is
/// complete.
fn write_thumbnails(
    output: &Path,
    made: Vec<Rendition>,
) -> Result<Vec<ChildRendition>, TranscodeError> {
    let mut renditions = Vec::with_capacity(made.len());
    for r in made {
        let extension = match r.format {
            Format::Jpeg => "jpg",
            Format::WebP => "webp",
        };
        let file = format!("{}.{extension}", r.name);
        let partial = output.join(format!(".{file}.partial"));
        std::fs::write(&partial, &r.bytes)?;
        std::fs::rename(&partial, output.join(&file))?;
        renditions.push(ChildRendition {
            name: r.name.to_owned(),
            mime: r.format.mime().to_owned(),
            width: r.width,
            height: r.height,
            file,
        });
    }
    Ok(renditions)
}
