//! The `sealpost` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::app::{Application, open_database, shutdown_signal};
use crate::config::{LogFormat, Overrides, Settings};
use crate::media::child::{ChildReport, transcode_image};
use sealpost_transcode::ImageLimits;

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
    /// Print the OpenAPI document.
    Openapi,
    /// Make the thumbnail set of one untrusted image into a directory and print a JSON report
    /// (the media worker runs this in a child process, under resource limits). Exit status: 0
    /// processed, 3 refused (bad input), 1 failed (worth retrying); any other status (2: bad
    /// arguments, a signal: killed at a limit) comes with no report.
    TranscodeImage {
        /// The image.
        #[arg(long)]
        input: PathBuf,
        /// An existing directory for the renditions.
        #[arg(long)]
        output: PathBuf,
        /// Largest file, bytes.
        #[arg(long, default_value_t = ImageLimits::default().max_bytes)]
        max_bytes: u64,
        /// Most pixels.
        #[arg(long, default_value_t = ImageLimits::default().max_pixels)]
        max_pixels: u64,
        /// Longest side, pixels.
        #[arg(long, default_value_t = ImageLimits::default().max_side)]
        max_side: u32,
        /// Most animation frames.
        #[arg(long, default_value_t = ImageLimits::default().max_frames)]
        max_frames: u32,
        /// Most memory one decode may allocate, bytes.
        #[arg(long, default_value_t = ImageLimits::default().max_alloc)]
        max_alloc: u64,
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
        Command::Openapi => print!("{}", crate::openapi::spec_json()),
        Command::TranscodeImage {
            input,
            output,
            max_bytes,
            max_pixels,
            max_side,
            max_frames,
            max_alloc,
        } => {
            let limits = ImageLimits {
                max_bytes,
                max_pixels,
                max_side,
                max_frames,
                max_alloc,
            };
            let report = transcode_image(&input, &output, &limits);
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
