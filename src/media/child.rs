//! The media worker's child process: `sealpost transcode-image` decodes one untrusted file
//! (the parent runs it under `prlimit` with a timeout), writes the thumbnail set into a
//! directory and reports on stdout, as one JSON object, what it made or why it refused. The
//! parent trusts a report only with the exit status it implies (0 ready, 3 refused, 1 worth
//! retrying), and only the files a `ready` report names.

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

/// Processes `input` into `output` within `limits`. A decoder that panics on the input is a
/// refusal of the input, not a crash without a report.
pub fn transcode_image(input: &Path, output: &Path, limits: &ImageLimits) -> ChildReport {
    std::panic::catch_unwind(|| process(input, output, limits)).unwrap_or_else(|_| {
        ChildReport::Failed {
            code: "corrupt-media".into(),
            detail: "the decoder gave up on this file".into(),
            transient: false,
        }
    })
}

fn process(input: &Path, output: &Path, limits: &ImageLimits) -> ChildReport {
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
        // Written under a temporary name and renamed: a file named in a report is complete.
        let path: PathBuf = output.join(&file);
        let partial = output.join(format!(".{file}.partial"));
        let written =
            std::fs::write(&partial, &r.bytes).and_then(|()| std::fs::rename(&partial, &path));
        if let Err(e) = written {
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
