//! The media worker's child process: `sealpost transcode-image` decodes one untrusted file
//! (the parent runs it under `prlimit` with a timeout), writes the thumbnail set into a
//! directory and reports on stdout, as one JSON object, what it made or why it refused.

use std::path::{Path, PathBuf};

use sealpost_transcode::ImageLimits;
use sealpost_transcode::image::{Format, thumbnails};
use serde::{Deserialize, Serialize};

/// One rendition the child wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildRendition {
    /// The thumbnail spec's name (`crop-32`, `fit-320x240`, …).
    pub name: String,
    /// Its MIME type.
    pub mime: String,
    /// Width.
    pub width: u32,
    /// Height.
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
        /// Displayed width.
        width: u32,
        /// Displayed height.
        height: u32,
        /// Frames (1 unless animated).
        frames: u32,
        /// A BlurHash of the image.
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

/// Processes `input` into `output` within `limits`.
pub fn transcode_image(input: &Path, output: &Path, limits: &ImageLimits) -> ChildReport {
    let made = match thumbnails(input, limits) {
        Ok(made) => made,
        Err(e) => {
            return ChildReport::Failed {
                code: e.code().to_owned(),
                detail: e.to_string(),
                transient: e.is_transient(),
            };
        }
    };
    let mut renditions = Vec::with_capacity(made.renditions.len());
    for r in made.renditions {
        let extension = match r.format {
            Format::Jpeg => "jpg",
            Format::WebP => "webp",
        };
        let file = format!("{}.{extension}", r.name);
        let path: PathBuf = output.join(&file);
        if let Err(e) = std::fs::write(&path, &r.bytes) {
            return ChildReport::Failed {
                code: "processing-failed".into(),
                detail: format!("cannot write {}: {e}", path.display()),
                transient: true,
            };
        }
        renditions.push(ChildRendition {
            name: r.name.to_owned(),
            mime: r.format.mime().to_owned(),
            width: r.width,
            height: r.height,
            file,
        });
    }
    ChildReport::Ready {
        mime: made.info.media_type.mime().to_owned(),
        width: made.info.width,
        height: made.info.height,
        frames: made.info.frames,
        blurhash: made.blurhash,
        renditions,
    }
}
