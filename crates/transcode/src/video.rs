//! Video and audio (FFmpeg through ffmpeg-next): what a file holds (container, codecs,
//! duration, size, rotation) under limits, a poster frame, and the web rendition: H.264 + AAC
//! in MP4 with `faststart`, at most `max_height` lines, upright, bitrate-capped; audio alone
//! becomes AAC in M4A. Only the demuxers and the `file` protocol a phone's media needs are
//! enabled, so a crafted file cannot make FFmpeg open playlists, other files or the network.

use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use ff::{Dictionary, Rational, codec, filter, format, frame, media};
use ffmpeg_next as ff;
use image::{DynamicImage, RgbImage};

use crate::sniff::{MediaType, sniff_file};
use crate::{TranscodeError, VideoLimits};

/// Demuxers a preview may use: MP4/MOV/3GP, Matroska/WebM, Ogg, MP3, WAV, FLAC.
const DEMUXERS: &str = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,ogg,mp3,wav,flac";
/// The longest side of a decoded poster frame.
const POSTER_SIDE: u32 = 1280;
/// The AAC frame size.
const AAC_FRAME: u32 = 1024;

/// One stream's codec, by FFmpeg's short name (`h264`, `hevc`, `vp9`, `aac`, `opus`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoStream {
    /// The codec.
    pub codec: String,
    /// Coded width.
    pub width: u32,
    /// Coded height.
    pub height: u32,
    /// The shape of a pixel, width to height (`(1, 1)`: square; anamorphic video differs).
    pub pixel_aspect: (u32, u32),
    /// Clockwise rotation to apply for display: 0, 90, 180 or 270.
    pub rotation: u32,
}

impl VideoStream {
    /// Width and height as displayed: square pixels, rotation applied.
    pub fn displayed(&self) -> (u32, u32) {
        let (n, d) = self.pixel_aspect;
        let wide = u32::try_from(u64::from(self.width) * u64::from(n) / u64::from(d.max(1)))
            .unwrap_or(self.width)
            .max(1);
        if self.rotation % 180 == 90 {
            (self.height, wide)
        } else {
            (wide, self.height)
        }
    }
}

/// What a probed video or audio file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaInfo {
    /// Its real type, from its bytes.
    pub media_type: MediaType,
    /// The demuxer that read it.
    pub container: String,
    /// Duration.
    pub duration: Duration,
    /// The main video stream, if any (cover art in audio files does not count).
    pub video: Option<VideoStream>,
    /// The main audio stream's codec, if any.
    pub audio: Option<String>,
}

/// The web rendition a transcode wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebRendition {
    /// Width (0 for audio).
    pub width: u32,
    /// Height (0 for audio).
    pub height: u32,
    /// Whether it has video (MP4) or is audio alone (M4A).
    pub has_video: bool,
}

impl WebRendition {
    /// Its MIME type.
    pub fn mime(self) -> &'static str {
        if self.has_video {
            "video/mp4"
        } else {
            "audio/mp4"
        }
    }
}

fn init() -> Result<(), TranscodeError> {
    static INIT: Once = Once::new();
    let mut result = Ok(());
    INIT.call_once(|| {
        result = ff::init().map_err(|e| TranscodeError::Encode(format!("FFmpeg: {e}")));
        ff::util::log::set_level(ff::util::log::Level::Quiet);
    });
    result
}

/// Whether this module takes files of `media_type`.
pub fn handles(media_type: MediaType) -> bool {
    match media_type {
        MediaType::IsoMedia { brand } => !matches!(
            &brand,
            b"heic" | b"heix" | b"mif1" | b"msf1" | b"avif" | b"avis"
        ),
        MediaType::Matroska { .. }
        | MediaType::Ogg
        | MediaType::Mp3
        | MediaType::Wav
        | MediaType::Flac => true,
        _ => false,
    }
}

/// Reads what the file at `path` holds, refusing it if it breaks `limits`.
pub fn probe(path: &Path, limits: &VideoLimits) -> Result<MediaInfo, TranscodeError> {
    Opened::open(path, limits).map(|opened| opened.info)
}

/// A poster frame of the video at `path` (the frame one second after it starts, or the last
/// one before that in a shorter video), upright, at most 1280 pixels on its long side.
pub fn poster(
    path: &Path,
    limits: &VideoLimits,
) -> Result<(MediaInfo, DynamicImage), TranscodeError> {
    let mut opened = Opened::open(path, limits)?;
    let video = opened
        .info
        .video
        .clone()
        .ok_or(TranscodeError::Unsupported("audio without video"))?;
    let stream = opened
        .input
        .streams()
        .best(media::Type::Video)
        .ok_or(TranscodeError::Unsupported("no video stream"))?;
    let index = stream.index();
    let time_base = stream.time_base();
    let target = seconds_to_pts(1.0, time_base).saturating_add(opened.origin(index));
    let mut decoder = video_decoder(&stream, limits)?;
    let (width, height) = fit_within(video.displayed(), POSTER_SIDE);
    let spec = format!(
        "{}scale={width}:{height}:flags=bilinear,setsar=1,format=rgb24",
        rotation_filter(video.rotation)
    );
    let mut shape = None;
    let mut decoded = frame::Video::empty();
    let mut best: Option<frame::Video> = None;
    let mut frames = 0u64;
    let max_frames = frame_budget(limits, VIDEO_FRAMES_PER_SECOND);
    let mut take = |decoder: &mut ff::decoder::Video,
                    best: &mut Option<frame::Video>|
     -> Result<bool, TranscodeError> {
        while decoder.receive_frame(&mut decoded).is_ok() {
            check_shape(&mut shape, &decoded, limits)?;
            frames += 1;
            if frames > max_frames {
                return Err(too_many_frames(limits));
            }
            let pts = decoded.timestamp().unwrap_or(i64::MIN);
            if best.is_none() || pts <= target {
                *best = Some(decoded.clone());
            }
            if pts >= target {
                return Ok(true);
            }
        }
        Ok(false)
    };
    let mut done = false;
    while let Some(packet) = opened.next_packet()? {
        if packet.stream() != index || decoder.send_packet(&packet).is_err() {
            continue;
        }
        if take(&mut decoder, &mut best)? {
            done = true;
            break;
        }
    }
    if !done {
        let _ = decoder.send_eof();
        take(&mut decoder, &mut best)?;
    }
    let mut chosen =
        best.ok_or_else(|| TranscodeError::Corrupt("no decodable video frame".into()))?;
    chosen.set_pts(Some(0));
    let mut graph = video_graph(&chosen, time_base, &spec)?;
    push(&mut graph, Some(&chosen))?;
    let mut rgb = frame::Video::empty();
    if !pull(&mut graph, &mut rgb) {
        return Err(TranscodeError::Encode(
            "the poster filter gave no frame".into(),
        ));
    }
    Ok((opened.info, DynamicImage::ImageRgb8(to_rgb_image(&rgb)?)))
}

/// What a sender attaches to a video it sends, as for an image ([`crate::image::preview`]):
/// a tiny inline JPEG, a BlurHash and a 320 px JPEG of the poster frame; `info` has the
/// displayed size and no frames. Also the file's duration.
pub fn preview(
    path: &Path,
    limits: &VideoLimits,
) -> Result<(MediaInfo, crate::image::Preview), TranscodeError> {
    let (info, poster) = poster(path, limits)?;
    let (width, height) = info
        .video
        .as_ref()
        .map_or((poster.width(), poster.height()), VideoStream::displayed);
    let still = crate::image::ImageInfo {
        media_type: info.media_type,
        width,
        height,
        frames: 0,
    };
    let preview = crate::image::preview_of(still, &poster)?;
    Ok((info, preview))
}

/// Transcodes the file at `path` into `output` (MP4, `faststart`): H.264 (libx264, `veryfast`,
/// CRF 23, capped at `limits.video_bitrate`) + AAC (`limits.audio_bitrate`), at most
/// `limits.max_height` lines and upright; audio alone becomes AAC in M4A. Timestamps start at
/// zero.
pub fn transcode(
    path: &Path,
    output: &Path,
    limits: &VideoLimits,
) -> Result<(MediaInfo, WebRendition), TranscodeError> {
    let mut opened = Opened::open(path, limits)?;
    let mut out = format::output_as(&output, "mp4").map_err(encode)?;
    let global_header = out.format().flags().contains(format::Flags::GLOBAL_HEADER);
    let video_stream = opened.input.streams().best(media::Type::Video);
    let audio_stream = opened.input.streams().best(media::Type::Audio);
    // One origin for both streams keeps them in sync: the earlier of their starts.
    let origin = [&video_stream, &audio_stream]
        .into_iter()
        .flatten()
        .filter_map(|s| start_seconds(s))
        .fold(f64::INFINITY, f64::min);
    let origin = if origin.is_finite() { origin } else { 0.0 };
    let mut size = (0, 0);
    let mut video = match (&opened.info.video, video_stream) {
        (Some(v), Some(stream)) => {
            let (lane, frame_size) =
                video_lane(&stream, v, &mut out, limits, global_header, origin)?;
            size = frame_size;
            Some(lane)
        }
        _ => None,
    };
    let mut audio = match audio_stream {
        Some(stream) => Some(audio_lane(
            &stream,
            &mut out,
            limits,
            global_header,
            origin,
        )?),
        None => None,
    };
    let mut options = Dictionary::new();
    options.set("movflags", "+faststart");
    out.write_header_with(options).map_err(encode)?;
    let time_bases: Vec<Rational> = out.streams().map(|s| s.time_base()).collect();
    while let Some(packet) = opened.next_packet()? {
        let index = packet.stream();
        if let Some(lane) = video.as_mut().filter(|l| l.input == index) {
            lane.feed(&packet, &mut out, &time_bases)?;
        } else if let Some(lane) = audio.as_mut().filter(|l| l.input == index) {
            lane.feed(&packet, &mut out, &time_bases)?;
        }
    }
    for lane in video.iter_mut().chain(audio.iter_mut()) {
        lane.finish(&mut out, &time_bases)?;
    }
    out.write_trailer().map_err(mux_error)?;
    let rendition = WebRendition {
        width: size.0,
        height: size.1,
        has_video: video.is_some(),
    };
    Ok((opened.info, rendition))
}

/// Decoded video frames a second may hold at most, for the frame budget.
const VIDEO_FRAMES_PER_SECOND: u64 = 240;
/// Decoded audio frames a second may hold at most (Vorbis short blocks, Opus 2.5 ms frames).
const AUDIO_FRAMES_PER_SECOND: u64 = 1_000;
/// Streams a container may declare.
const MAX_STREAMS: &str = "16";

/// How many frames a stream of at most `limits.max_duration` can hold: past it, the file's
/// timestamps lied about its length.
fn frame_budget(limits: &VideoLimits, per_second: u64) -> u64 {
    (limits.max_duration.as_secs() + 1).saturating_mul(per_second)
}

fn too_many_frames(limits: &VideoLimits) -> TranscodeError {
    TranscodeError::TooLong {
        duration: limits.max_duration + Duration::from_secs(1),
        limit: limits.max_duration,
    }
}

/// Checks a decoded frame against the first one (a stream whose frame size or format changes
/// mid-stream is refused: filters are set up for one shape) and the limits.
fn check_shape(
    shape: &mut Option<(u32, u32, format::Pixel)>,
    frame: &frame::Video,
    limits: &VideoLimits,
) -> Result<(), TranscodeError> {
    let now = (frame.width(), frame.height(), frame.format());
    match shape {
        None => {
            crate::limits::check_frame(now.0, now.1, limits.max_side, limits.max_pixels)?;
            if now.2 == format::Pixel::None || now.0 == 0 || now.1 == 0 {
                return Err(TranscodeError::Corrupt(
                    "a frame without size or format".into(),
                ));
            }
            *shape = Some(now);
            Ok(())
        }
        Some(first) if *first == now => Ok(()),
        Some(_) => Err(TranscodeError::Corrupt(
            "the frame size or format changes mid-stream".into(),
        )),
    }
}

/// An input opened and checked against the limits.
struct Opened {
    info: MediaInfo,
    input: format::context::Input,
    /// Per stream: time base and start time (in that time base; 0 when unknown).
    clocks: Vec<(Rational, i64)>,
    max_duration: Duration,
}

impl Opened {
    fn open(path: &Path, limits: &VideoLimits) -> Result<Self, TranscodeError> {
        let size = std::fs::metadata(path)?.len();
        if size > limits.max_bytes {
            return Err(TranscodeError::FileTooLarge {
                size,
                limit: limits.max_bytes,
            });
        }
        let media_type = sniff_file(path)?.ok_or(TranscodeError::Unsupported("unknown"))?;
        if !handles(media_type) {
            return Err(TranscodeError::Unsupported(media_type.name()));
        }
        init()?;
        let mut options = Dictionary::new();
        options.set("format_whitelist", DEMUXERS);
        options.set("protocol_whitelist", "file");
        options.set("max_streams", MAX_STREAMS);
        let input = format::input_with_dictionary(&path, options).map_err(corrupt)?;
        let duration = Duration::from_micros(u64::try_from(input.duration()).unwrap_or(0));
        if duration > limits.max_duration {
            return Err(TranscodeError::TooLong {
                duration,
                limit: limits.max_duration,
            });
        }
        let video = match input.streams().best(media::Type::Video) {
            Some(stream) if !is_cover_art(&stream) => Some(video_stream(&stream, limits)?),
            _ => None,
        };
        let audio = input
            .streams()
            .best(media::Type::Audio)
            .map(|s| s.parameters().id().name().to_owned());
        if video.is_none() && audio.is_none() {
            return Err(TranscodeError::Corrupt(
                "the container holds no readable audio or video stream".into(),
            ));
        }
        let clocks = input
            .streams()
            .map(|s| {
                let start = s.start_time();
                (s.time_base(), if start == i64::MIN { 0 } else { start })
            })
            .collect();
        let container = input.format().name().to_owned();
        Ok(Self {
            info: MediaInfo {
                media_type,
                container,
                duration,
                video,
                audio,
            },
            input,
            clocks,
            max_duration: limits.max_duration,
        })
    }

    /// Stream `index`'s start time in its own time base.
    fn origin(&self, index: usize) -> i64 {
        self.clocks.get(index).map_or(0, |c| c.1)
    }

    /// The next packet, `None` at the end. A read error other than the end refuses the file
    /// (retrying a read the demuxer failed would loop), and so does a packet stamped past the
    /// duration limit (the container's duration can lie).
    fn next_packet(&mut self) -> Result<Option<ff::Packet>, TranscodeError> {
        let mut packet = ff::Packet::empty();
        match packet.read(&mut self.input) {
            Ok(()) => {}
            Err(ff::Error::Eof) => return Ok(None),
            Err(e) => return Err(corrupt(e)),
        }
        if let (Some(ts), Some(&(base, start))) = (
            packet.pts().or(packet.dts()),
            self.clocks.get(packet.stream()),
        ) && base.denominator() > 0
        {
            #[allow(clippy::cast_precision_loss)]
            let at = ts.saturating_sub(start) as f64 * f64::from(base.numerator())
                / f64::from(base.denominator());
            if at > self.max_duration.as_secs_f64() + 1.0 {
                return Err(TranscodeError::TooLong {
                    duration: Duration::from_secs_f64(at),
                    limit: self.max_duration,
                });
            }
        }
        Ok(Some(packet))
    }
}

/// A stream's start time in seconds, if known.
fn start_seconds(stream: &format::stream::Stream<'_>) -> Option<f64> {
    let start = stream.start_time();
    let base = stream.time_base();
    #[allow(clippy::cast_precision_loss)]
    (start != i64::MIN && base.denominator() > 0)
        .then(|| start as f64 * f64::from(base.numerator()) / f64::from(base.denominator()))
}

/// An attached picture (an MP3's or M4A's cover) is not a video.
fn is_cover_art(stream: &format::stream::Stream<'_>) -> bool {
    stream
        .disposition()
        .contains(format::stream::Disposition::ATTACHED_PIC)
}

fn video_stream(
    stream: &format::stream::Stream<'_>,
    limits: &VideoLimits,
) -> Result<VideoStream, TranscodeError> {
    let parameters = codec::context::Context::from_parameters(stream.parameters())
        .and_then(|c| c.decoder().video())
        .map_err(corrupt)?;
    let (width, height) = (parameters.width(), parameters.height());
    if width == 0 || height == 0 {
        return Err(TranscodeError::Corrupt(
            "the video has no frame size".into(),
        ));
    }
    crate::limits::check_frame(width, height, limits.max_side, limits.max_pixels)?;
    let aspect = parameters.aspect_ratio();
    let pixel_aspect = match (
        u32::try_from(aspect.numerator()),
        u32::try_from(aspect.denominator()),
    ) {
        (Ok(n), Ok(d)) if n > 0 && d > 0 && n <= d * 8 && d <= n * 8 => (n, d),
        _ => (1, 1),
    };
    Ok(VideoStream {
        codec: stream.parameters().id().name().to_owned(),
        width,
        height,
        pixel_aspect,
        rotation: rotation(stream),
    })
}

/// Opens a video decoder on all cores, refusing frames over the pixel limit.
fn video_decoder(
    stream: &format::stream::Stream<'_>,
    limits: &VideoLimits,
) -> Result<ff::decoder::Video, TranscodeError> {
    let mut context =
        codec::context::Context::from_parameters(stream.parameters()).map_err(corrupt)?;
    context.set_threading(codec::threading::Config {
        kind: codec::threading::Type::Frame,
        count: 0,
        ..Default::default()
    });
    let codec = ff::decoder::find(stream.parameters().id()).ok_or(TranscodeError::Unsupported(
        "a video codec this build cannot decode",
    ))?;
    let mut options = Dictionary::new();
    options.set("max_pixels", &limits.max_pixels.to_string());
    context
        .decoder()
        .open_as_with(codec, options)
        .and_then(ff::decoder::Opened::video)
        .map_err(corrupt)
}

/// The clockwise rotation a stream's display matrix asks for, rounded to a quarter turn.
fn rotation(stream: &format::stream::Stream<'_>) -> u32 {
    let matrix = stream
        .side_data()
        .find(|d| d.kind() == codec::packet::side_data::Type::DisplayMatrix)
        .map(|d| d.data().to_vec());
    let Some(matrix) = matrix.filter(|m| m.len() >= 36) else {
        return 0;
    };
    let at = |i: usize| {
        let mut word = [0u8; 4];
        word.copy_from_slice(&matrix[i * 4..i * 4 + 4]);
        f64::from(i32::from_ne_bytes(word))
    };
    let (a, b, c, d) = (at(0), at(1), at(3), at(4));
    let (scale0, scale1) = (a.hypot(c), b.hypot(d));
    if scale0 == 0.0 || scale1 == 0.0 {
        return 0;
    }
    // FFmpeg's av_display_rotation_get is counter-clockwise; display needs its opposite.
    let degrees = (b / scale1).atan2(a / scale0).to_degrees();
    let quarter = (degrees / 90.0).round().rem_euclid(4.0);
    if quarter >= 3.0 {
        270
    } else if quarter >= 2.0 {
        180
    } else if quarter >= 1.0 {
        90
    } else {
        0
    }
}

/// Filters that turn a frame upright.
fn rotation_filter(rotation: u32) -> &'static str {
    match rotation {
        90 => "transpose=clock,",
        180 => "hflip,vflip,",
        270 => "transpose=cclock,",
        _ => "",
    }
}

/// `(width, height)` scaled to fit `side` on its long side (never up), both even.
fn fit_within((width, height): (u32, u32), side: u32) -> (u32, u32) {
    let long = width.max(height);
    let (w, h) = if long <= side {
        (width, height)
    } else {
        let scale = f64::from(side) / f64::from(long);
        (
            scaled(f64::from(width) * scale),
            scaled(f64::from(height) * scale),
        )
    };
    (even(w), even(h))
}

/// The frame size of the web rendition: at most `max_height` lines on the short side of a
/// portrait or landscape video (720p means 1280×720 or 720×1280), never upscaled, even.
fn web_size((width, height): (u32, u32), max_height: u32) -> (u32, u32) {
    let short = width.min(height);
    if short <= max_height {
        return (even(width), even(height));
    }
    let scale = f64::from(max_height) / f64::from(short);
    (
        even(scaled(f64::from(width) * scale)),
        even(scaled(f64::from(height) * scale)),
    )
}

fn scaled(v: f64) -> u32 {
    // Frame sizes are far below u32::MAX; the cast only drops the fraction.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let rounded = v.round().max(2.0) as u32;
    rounded
}

fn even(v: u32) -> u32 {
    (v & !1).max(2)
}

fn seconds_to_pts(seconds: f64, time_base: Rational) -> i64 {
    if time_base.numerator() == 0 {
        return 0;
    }
    let ticks = seconds * f64::from(time_base.denominator()) / f64::from(time_base.numerator());
    #[allow(clippy::cast_possible_truncation)]
    let ticks = ticks.round() as i64;
    ticks
}

/// A graph from a buffer source shaped like `first` (the first decoded frame) through `spec`
/// to a sink.
fn video_graph(
    first: &frame::Video,
    time_base: Rational,
    spec: &str,
) -> Result<filter::Graph, TranscodeError> {
    let mut graph = filter::Graph::new();
    let aspect = first.aspect_ratio();
    let aspect = if aspect.numerator() > 0 && aspect.denominator() > 0 {
        aspect
    } else {
        Rational(1, 1)
    };
    let pixel = first
        .format()
        .descriptor()
        .map(|d| d.name())
        .ok_or_else(|| TranscodeError::Corrupt("unknown pixel format".into()))?;
    let args = format!(
        "video_size={}x{}:pix_fmt={pixel}:time_base={}/{}:pixel_aspect={}/{}",
        first.width(),
        first.height(),
        time_base.numerator(),
        time_base.denominator().max(1),
        aspect.numerator(),
        aspect.denominator()
    );
    build_graph(&mut graph, "buffer", &args, "buffersink", spec)?;
    Ok(graph)
}

/// A graph from an audio buffer source shaped like `first` through `spec` to a sink that
/// hands out `frame_size` samples at a time.
fn audio_graph(
    first: &frame::Audio,
    time_base: Rational,
    spec: &str,
    frame_size: u32,
) -> Result<filter::Graph, TranscodeError> {
    if first.format() == format::Sample::None || first.rate() == 0 || first.channels() == 0 {
        return Err(TranscodeError::Corrupt(
            "audio without a sample format, rate or channels".into(),
        ));
    }
    let layout = if first.channel_layout().bits() == 0 {
        ff::ChannelLayout::default(i32::from(first.channels()))
    } else {
        first.channel_layout()
    };
    let args = format!(
        "time_base={}/{}:sample_rate={}:sample_fmt={}:channel_layout=0x{:x}",
        time_base.numerator(),
        time_base.denominator().max(1),
        first.rate(),
        first.format().name(),
        layout.bits()
    );
    let mut graph = filter::Graph::new();
    build_graph(&mut graph, "abuffer", &args, "abuffersink", spec)?;
    if let Some(mut sink) = graph.get("out") {
        sink.sink().set_frame_size(frame_size);
    }
    Ok(graph)
}

fn build_graph(
    graph: &mut filter::Graph,
    source: &str,
    args: &str,
    sink: &str,
    spec: &str,
) -> Result<(), TranscodeError> {
    let find = |name: &str| {
        filter::find(name)
            .ok_or_else(|| TranscodeError::Encode(format!("FFmpeg lacks the {name} filter")))
    };
    graph.add(&find(source)?, "in", args).map_err(corrupt)?;
    graph.add(&find(sink)?, "out", "").map_err(encode)?;
    graph
        .output("in", 0)
        .and_then(|p| p.input("out", 0))
        .and_then(|p| p.parse(spec))
        .map_err(encode)?;
    graph.validate().map_err(encode)
}

/// Feeds a frame (or, with `None`, the end) to a graph's input.
fn push(graph: &mut filter::Graph, frame: Option<&ff::Frame>) -> Result<(), TranscodeError> {
    let mut input = graph
        .get("in")
        .ok_or_else(|| TranscodeError::Encode("filter graph without input".into()))?;
    let mut source = input.source();
    match frame {
        Some(frame) => source.add(frame).map_err(corrupt),
        None => source.flush().map_err(encode),
    }
}

/// Takes the next frame out of a graph; false when it has none now. `frame` must hold no
/// data: the sink moves its frame in without releasing what was there (pass a fresh one).
fn pull(graph: &mut filter::Graph, frame: &mut ff::Frame) -> bool {
    graph
        .get("out")
        .is_some_and(|mut output| output.sink().frame(frame).is_ok())
}

fn to_rgb_image(frame: &frame::Video) -> Result<RgbImage, TranscodeError> {
    let (width, height) = (frame.width(), frame.height());
    let stride = frame.stride(0);
    let data = frame.data(0);
    let row = width as usize * 3;
    let mut pixels = Vec::with_capacity(row * height as usize);
    for y in 0..height as usize {
        let line = data
            .get(y * stride..y * stride + row)
            .ok_or_else(|| TranscodeError::Encode("short RGB frame".into()))?;
        pixels.extend_from_slice(line);
    }
    RgbImage::from_raw(width, height, pixels)
        .ok_or_else(|| TranscodeError::Encode("RGB frame of the wrong size".into()))
}

/// A scratch frame of a lane's kind.
enum Scratch {
    Video(frame::Video),
    Audio(frame::Audio),
}

impl Scratch {
    /// Releases the frame held (a filter sink overwrites a frame without releasing it).
    fn clear(&mut self) {
        *self = match self {
            Self::Video(_) => Self::Video(frame::Video::empty()),
            Self::Audio(_) => Self::Audio(frame::Audio::empty()),
        };
    }

    fn frame(&mut self) -> &mut ff::Frame {
        match self {
            Self::Video(f) => f,
            Self::Audio(f) => f,
        }
    }
}

/// Decode → filter → encode → mux for one stream. The filter graph is built from the first
/// decoded frame, so it is shaped like what the decoder really gives.
struct Lane {
    input: usize,
    output: usize,
    decoder: ff::decoder::Opened,
    /// The filters from the decoded frame to what the encoder takes.
    spec: String,
    graph: Option<filter::Graph>,
    encoder: ff::encoder::Encoder,
    /// The stream's time base (decoded frames) and the encoder's.
    in_base: Rational,
    out_base: Rational,
    /// The common start, in `in_base`: output timestamps start at zero.
    origin: i64,
    last_pts: Option<i64>,
    /// Video: the first frame's shape, which every frame must keep.
    shape: Option<(u32, u32, format::Pixel)>,
    limits: VideoLimits,
    frames: u64,
    max_frames: u64,
    encoded: u64,
    decoded: Scratch,
    filtered: Scratch,
}

/// The video lane (upright, square pixels, scaled to at most `max_height`, H.264) and its
/// frame size.
fn video_lane(
    stream: &format::stream::Stream<'_>,
    info: &VideoStream,
    out: &mut format::context::Output,
    limits: &VideoLimits,
    global_header: bool,
    origin: f64,
) -> Result<(Lane, (u32, u32)), TranscodeError> {
    let decoder = video_decoder(stream, limits)?;
    let time_base = stream.time_base();
    let (width, height) = web_size(info.displayed(), limits.max_height);
    let spec = format!(
        "{}scale={width}:{height}:flags=bicubic,setsar=1,format=yuv420p",
        rotation_filter(info.rotation)
    );
    let h264 = ff::encoder::find_by_name("libx264")
        .or_else(|| ff::encoder::find(codec::Id::H264))
        .ok_or_else(|| TranscodeError::Encode("FFmpeg has no H.264 encoder".into()))?;
    let mut ost = out.add_stream(h264).map_err(encode)?;
    let output = ost.index();
    let mut encoder = codec::context::Context::new_with_codec(h264)
        .encoder()
        .video()
        .map_err(encode)?;
    encoder.set_width(width);
    encoder.set_height(height);
    encoder.set_format(format::Pixel::YUV420P);
    encoder.set_time_base(time_base);
    encoder.set_aspect_ratio(Rational(1, 1));
    if let Some(rate) = stream_rate(stream) {
        encoder.set_frame_rate(Some(rate));
    }
    encoder.set_max_bit_rate(usize::try_from(limits.video_bitrate).unwrap_or(usize::MAX));
    if global_header {
        encoder.set_flags(codec::Flags::GLOBAL_HEADER);
    }
    let mut options = Dictionary::new();
    options.set("preset", "veryfast");
    options.set("crf", "23");
    options.set("maxrate", &limits.video_bitrate.to_string());
    options.set("bufsize", &(limits.video_bitrate * 2).to_string());
    options.set("profile", "high");
    let encoder = encoder.open_as_with(h264, options).map_err(encode)?;
    ost.set_parameters(&encoder);
    ost.set_time_base(time_base);
    let lane = Lane {
        input: stream.index(),
        output,
        decoder: decoder.0,
        spec,
        graph: None,
        encoder: encoder.0.0,
        in_base: time_base,
        out_base: time_base,
        origin: seconds_to_pts(origin, time_base),
        last_pts: None,
        shape: None,
        limits: *limits,
        frames: 0,
        max_frames: frame_budget(limits, VIDEO_FRAMES_PER_SECOND),
        encoded: 0,
        decoded: Scratch::Video(frame::Video::empty()),
        filtered: Scratch::Video(frame::Video::empty()),
    };
    Ok((lane, (width, height)))
}

/// Sample rates the AAC encoder takes.
const AAC_RATES: [u32; 12] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
];

/// The audio lane: resampled to stereo float planes at a rate AAC takes, 1024 samples a frame.
fn audio_lane(
    stream: &format::stream::Stream<'_>,
    out: &mut format::context::Output,
    limits: &VideoLimits,
    global_header: bool,
    origin: f64,
) -> Result<Lane, TranscodeError> {
    let decoder = codec::context::Context::from_parameters(stream.parameters())
        .and_then(|c| c.decoder().audio())
        .map_err(corrupt)?;
    let aac = ff::encoder::find(codec::Id::AAC)
        .ok_or_else(|| TranscodeError::Encode("FFmpeg has no AAC encoder".into()))?;
    let mut ost = out.add_stream(aac).map_err(encode)?;
    let output = ost.index();
    let mut encoder = codec::context::Context::new_with_codec(aac)
        .encoder()
        .audio()
        .map_err(encode)?;
    let rate = if AAC_RATES.contains(&decoder.rate()) && decoder.rate() <= 48_000 {
        decoder.rate()
    } else {
        48_000
    };
    let rate = i32::try_from(rate).unwrap_or(48_000);
    encoder.set_rate(rate);
    encoder.set_channel_layout(ff::ChannelLayout::STEREO);
    encoder.set_channels(2);
    encoder.set_format(format::Sample::F32(format::sample::Type::Planar));
    encoder.set_bit_rate(usize::try_from(limits.audio_bitrate).unwrap_or(128_000));
    let out_base = Rational(1, rate);
    encoder.set_time_base(out_base);
    if global_header {
        encoder.set_flags(codec::Flags::GLOBAL_HEADER);
    }
    let encoder = encoder.open_as(aac).map_err(encode)?;
    ost.set_parameters(&encoder);
    ost.set_time_base(out_base);
    let in_base = stream.time_base();
    Ok(Lane {
        input: stream.index(),
        output,
        decoder: decoder.0,
        spec: format!("aresample={rate},aformat=sample_fmts=fltp:channel_layouts=stereo"),
        graph: None,
        encoder: encoder.0.0,
        in_base,
        out_base,
        origin: seconds_to_pts(origin, in_base),
        last_pts: None,
        shape: None,
        limits: *limits,
        frames: 0,
        max_frames: frame_budget(limits, AUDIO_FRAMES_PER_SECOND),
        encoded: 0,
        decoded: Scratch::Audio(frame::Audio::empty()),
        filtered: Scratch::Audio(frame::Audio::empty()),
    })
}

impl Lane {
    /// Takes one packet of the lane's stream. A packet the decoder refuses is skipped, as
    /// players do; a stream with nothing decodable fails at the end.
    fn feed(
        &mut self,
        packet: &ff::Packet,
        out: &mut format::context::Output,
        time_bases: &[Rational],
    ) -> Result<(), TranscodeError> {
        if self.decoder.send_packet(packet).is_ok() {
            self.drain_decoder(out, time_bases)?;
        }
        Ok(())
    }

    /// Flushes decoder, graph and encoder at the end of the input.
    fn finish(
        &mut self,
        out: &mut format::context::Output,
        time_bases: &[Rational],
    ) -> Result<(), TranscodeError> {
        let _ = self.decoder.send_eof();
        self.drain_decoder(out, time_bases)?;
        if let Some(graph) = self.graph.as_mut() {
            push(graph, None)?;
            self.drain_graph(out, time_bases)?;
        }
        self.encoder.send_eof().map_err(encode)?;
        self.drain_encoder(out, time_bases)?;
        if self.encoded == 0 {
            return Err(TranscodeError::Corrupt(
                "no frame of the stream could be decoded".into(),
            ));
        }
        Ok(())
    }

    fn drain_decoder(
        &mut self,
        out: &mut format::context::Output,
        time_bases: &[Rational],
    ) -> Result<(), TranscodeError> {
        while self.decoder.receive_frame(self.decoded.frame()).is_ok() {
            self.frames += 1;
            if self.frames > self.max_frames {
                return Err(too_many_frames(&self.limits));
            }
            if let Scratch::Video(frame) = &self.decoded {
                check_shape(&mut self.shape, frame, &self.limits)?;
            }
            if !self.retime() {
                continue;
            }
            if self.graph.is_none() {
                self.graph = Some(match &self.decoded {
                    Scratch::Video(first) => video_graph(first, self.in_base, &self.spec)?,
                    Scratch::Audio(first) => {
                        audio_graph(first, self.in_base, &self.spec, AAC_FRAME)?
                    }
                });
            }
            if let Some(graph) = self.graph.as_mut() {
                push(graph, Some(self.decoded.frame()))?;
            }
            self.drain_graph(out, time_bases)?;
        }
        Ok(())
    }

    /// Rebases the decoded frame's timestamp on the common start; a missing one follows the
    /// last. False for a video frame that would not move time forward (dropped: the muxer
    /// refuses timestamps that go back); such audio continues from the resampler's clock.
    fn retime(&mut self) -> bool {
        let video = matches!(self.decoded, Scratch::Video(_));
        let frame = self.decoded.frame();
        let pts = match frame.timestamp() {
            Some(pts) => pts.saturating_sub(self.origin),
            None => self.last_pts.map_or(0, |last| last.saturating_add(1)),
        };
        if self.last_pts.is_some_and(|last| pts <= last) {
            if video {
                return false;
            }
            frame.set_pts(None);
            return true;
        }
        self.last_pts = Some(pts);
        frame.set_pts(Some(pts));
        true
    }

    fn drain_graph(
        &mut self,
        out: &mut format::context::Output,
        time_bases: &[Rational],
    ) -> Result<(), TranscodeError> {
        loop {
            self.filtered.clear();
            let Some(graph) = self.graph.as_mut() else {
                break;
            };
            if !pull(graph, self.filtered.frame()) {
                break;
            }
            if let Scratch::Video(frame) = &mut self.filtered {
                // The encoder picks its own keyframes rather than copying the source's.
                frame.set_kind(ff::picture::Type::None);
            }
            self.encoder
                .send_frame(self.filtered.frame())
                .map_err(encode)?;
            self.drain_encoder(out, time_bases)?;
        }
        Ok(())
    }

    fn drain_encoder(
        &mut self,
        out: &mut format::context::Output,
        time_bases: &[Rational],
    ) -> Result<(), TranscodeError> {
        let mut packet = ff::Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            self.encoded += 1;
            packet.set_stream(self.output);
            packet.rescale_ts(self.out_base, time_bases[self.output]);
            packet.write_interleaved(out).map_err(mux_error)?;
        }
        Ok(())
    }
}

fn stream_rate(stream: &format::stream::Stream<'_>) -> Option<Rational> {
    [stream.avg_frame_rate(), stream.rate()]
        .into_iter()
        .find(|r| r.numerator() > 0 && r.denominator() > 0)
}

fn corrupt(e: ff::Error) -> TranscodeError {
    TranscodeError::Corrupt(e.to_string())
}

fn encode(e: ff::Error) -> TranscodeError {
    TranscodeError::Encode(e.to_string())
}

/// A muxer's failure: the system's (a full disk: worth retrying), or the input's (timestamps
/// it cannot store).
fn mux_error(e: ff::Error) -> TranscodeError {
    match e {
        ff::Error::Other { errno } => TranscodeError::Io(std::io::Error::from_raw_os_error(errno)),
        other => TranscodeError::Corrupt(other.to_string()),
    }
}
