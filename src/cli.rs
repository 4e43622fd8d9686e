//! The `sealpost` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::app::{Application, open_database, shutdown_signal};
use crate::config::{LogFormat, Overrides, Settings};
use crate::media::child::{ChildReport, transcode};
use sealpost_transcode::{ImageLimits, VideoLimits};

/// Sealpost: resumable, content-addressed media service for an end-to-end encrypted messenger.
#[derive(Debug, Parser)]
#[command(name = "sealpost", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (embedded SQLite and file store by default).
    Serve {
        /// TOML configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(flatten)]
        flags: Overrides,
    },
    /// Apply database migrations and exit.
    Migrate {
        /// TOML configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(flatten)]
        flags: Overrides,
    },
    /// Ask the server this configuration describes (at its `listen` port, on this machine)
    /// whether it is ready (`GET /readyz`: its database, blob store and bus answer); exit 0
    /// when it is. The image's health check.
    Ready {
        /// TOML configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(flatten)]
        flags: Overrides,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Make the renditions of one untrusted image, video or audio file into a directory and
    /// print a JSON report (the media worker runs this in a child process, under resource
    /// limits). Exit status: 0 processed, 3 refused (bad input), 1 failed (worth retrying);
    /// any other status (2: bad arguments, a signal: killed at a limit) comes with no report.
    Transcode {
        /// The file.
        #[arg(long)]
        input: PathBuf,
        /// An existing directory for the renditions.
        #[arg(long)]
        output: PathBuf,
        /// Largest image file, bytes.
        #[arg(long, default_value_t = ImageLimits::default().max_bytes)]
        max_bytes: u64,
        /// Most pixels of an image.
        #[arg(long, default_value_t = ImageLimits::default().max_pixels)]
        max_pixels: u64,
        /// Longest side of an image, pixels.
        #[arg(long, default_value_t = ImageLimits::default().max_side)]
        max_side: u32,
        /// Most animation frames.
        #[arg(long, default_value_t = ImageLimits::default().max_frames)]
        max_frames: u32,
        /// Most memory one image decode may allocate, bytes.
        #[arg(long, default_value_t = ImageLimits::default().max_alloc)]
        max_alloc: u64,
        /// Largest video or audio file, bytes.
        #[arg(long, default_value_t = VideoLimits::default().max_bytes)]
        max_video_bytes: u64,
        /// Longest video or audio, seconds.
        #[arg(long, default_value_t = VideoLimits::default().max_duration.as_secs())]
        max_duration: u64,
        /// Most pixels of a video frame.
        #[arg(long, default_value_t = VideoLimits::default().max_pixels)]
        max_video_pixels: u64,
        /// Longest side of a video frame, pixels.
        #[arg(long, default_value_t = VideoLimits::default().max_side)]
        max_video_side: u32,
        /// The web rendition's short side at most, pixels (720 for 720p).
        #[arg(long, default_value_t = VideoLimits::default().max_height)]
        max_height: u32,
        /// The web rendition's video bitrate cap, bits per second.
        #[arg(long, default_value_t = VideoLimits::default().video_bitrate)]
        video_bitrate: u64,
        /// The web rendition's audio bitrate, bits per second.
        #[arg(long, default_value_t = VideoLimits::default().audio_bitrate)]
        audio_bitrate: u64,
    },
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn load(config: Option<&PathBuf>, flags: &Overrides) -> anyhow::Result<Settings> {
    Settings::load(config.map(PathBuf::as_path), flags)
        .map_err(|e| anyhow::anyhow!("configuration: {e}"))
}

/// A runtime whose blocking pool fits the configured transfers: each streaming upload holds two
/// blocking threads (writer and syncer), and file I/O needs some more.
fn runtime(settings: &Settings) -> anyhow::Result<tokio::runtime::Runtime> {
    let blocking = settings
        .uploads
        .max_concurrent_transfers
        .saturating_mul(2)
        .saturating_add(64);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(blocking)
        .build()
        .context("cannot start the runtime")
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config, flags } => {
            let settings = load(config.as_ref(), &flags)?;
            runtime(&settings)?.block_on(async {
                init_tracing(settings.log_format);
                let signal = shutdown_signal().context("cannot install signal handlers")?;
                Application::build(settings).await?.run_until(signal).await
            })?;
        }
        Command::Migrate { config, flags } => {
            let settings = load(config.as_ref(), &flags)?;
            runtime(&settings)?.block_on(async {
                init_tracing(settings.log_format);
                open_database(&settings).await?.close().await;
                tracing::info!("migrations applied");
                anyhow::Ok(())
            })?;
        }
        Command::Ready { config, flags } => {
            let settings = load(config.as_ref(), &flags)?;
            let status = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the runtime")?
                .block_on(readiness(settings.listen))?;
            if status != 200 {
                eprintln!("not ready: /readyz answered {status}");
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Openapi => print!("{}", crate::openapi::spec_json()),
        Command::Transcode {
            input,
            output,
            max_bytes,
            max_pixels,
            max_side,
            max_frames,
            max_alloc,
            max_video_bytes,
            max_duration,
            max_video_pixels,
            max_video_side,
            max_height,
            video_bitrate,
            audio_bitrate,
        } => {
            let image = ImageLimits {
                max_bytes,
                max_pixels,
                max_side,
                max_frames,
                max_alloc,
            };
            let video = VideoLimits {
                max_bytes: max_video_bytes,
                max_duration: std::time::Duration::from_secs(max_duration),
                max_pixels: max_video_pixels,
                max_side: max_video_side,
                max_height,
                video_bitrate,
                audio_bitrate,
            };
            let report = transcode(&input, &output, &image, &video);
            println!("{}", serde_json::to_string(&report)?);
            return Ok(match report {
                ChildReport::Ready { .. } => ExitCode::SUCCESS,
                ChildReport::Failed {
                    transient: true, ..
                } => ExitCode::FAILURE,
                ChildReport::Failed { .. } => ExitCode::from(3),
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The status `GET /readyz` gets from a server listening on `listen` (an unspecified address
/// is reached on the loopback).
async fn readiness(listen: std::net::SocketAddr) -> anyhow::Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut head = Vec::new();
        (&mut stream).take(64).read_to_end(&mut head).await?;
        anyhow::Ok(head)
    };
    let head = tokio::time::timeout(std::time::Duration::from_secs(5), exchange)
        .await
        .with_context(|| format!("{addr} did not answer within 5 s"))?
        .with_context(|| format!("cannot ask {addr}"))?;
    // "HTTP/1.1 200 OK"
    String::from_utf8_lossy(&head)
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("{addr} did not answer HTTP"))
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
