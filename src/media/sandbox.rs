//! Runs `sealpost transcode` on one untrusted file in a child process under `prlimit`
//! (address space, CPU time, file size, no core dumps) and a wall-clock timeout, and turns how
//! it ended into a [`ChildRun`]. Whatever the input does to the decoder, only the child dies.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context;
use sealpost_transcode::{ImageLimits, VideoLimits};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::child::ChildReport;
use crate::config::MediaSettings;

/// The most report a child may print; a report is a few hundred bytes.
const MAX_REPORT: u64 = 64 << 10;
/// The most of a child's stderr that is logged.
const MAX_STDERR: u64 = 4 << 10;
/// `SIGXCPU` (Linux): the soft CPU-time limit ran out.
const SIGXCPU: i32 = 24;
/// Seconds between the soft CPU limit (`SIGXCPU`) and the hard one (`SIGKILL`).
const CPU_GRACE: u64 = 2;

/// How one run of the child ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildRun {
    /// It reported, with the exit status its report implies.
    Report(ChildReport),
    /// It ran out of wall-clock or CPU time and was stopped.
    TimedOut,
    /// It died some other way (a signal, the memory limit) or printed no usable report.
    Crashed(String),
    /// It could not be run at all (this node's fault, not the input's): worth retrying.
    Unavailable(String),
}

/// The child process's launcher and limits.
#[derive(Debug, Clone)]
pub struct Sandbox {
    prlimit: PathBuf,
    program: PathBuf,
    image: ImageLimits,
    video: VideoLimits,
    memory_limit: u64,
    cpu_limit: Duration,
    timeout: Duration,
}

impl Sandbox {
    /// A launcher for these settings; fails when `prlimit` (util-linux) or the transcoder
    /// cannot be found.
    pub fn new(settings: &MediaSettings) -> anyhow::Result<Self> {
        let prlimit = find_on_path("prlimit").context(
            "the media worker needs `prlimit` (Debian package util-linux) on PATH to limit \
             the process that decodes untrusted files",
        )?;
        let program = match &settings.transcoder {
            Some(path) => path.clone(),
            None => std::env::current_exe().context("cannot find this executable")?,
        };
        anyhow::ensure!(
            program.is_file(),
            "media.transcoder {} is not a file",
            program.display()
        );
        Ok(Self {
            prlimit,
            program,
            image: settings.image_limits(),
            video: settings.video_limits(),
            memory_limit: settings.memory_limit,
            cpu_limit: settings.cpu_limit,
            timeout: settings.timeout,
        })
    }

    /// Makes the renditions of `input` into the directory `output`.
    pub async fn transcode(&self, input: &Path, output: &Path) -> ChildRun {
        let mut command = Command::new(&self.prlimit);
        command
            .arg(format!("--as={}", self.memory_limit))
            .arg({
                // Soft limit first, so the kernel says SIGXCPU (a timeout) rather than SIGKILL.
                let soft = self.cpu_limit.as_secs().max(1);
                format!("--cpu={soft}:{}", soft + CPU_GRACE)
            })
            .arg(format!(
                "--fsize={}",
                self.image.max_bytes.max(self.video.max_bytes).max(16 << 20)
            ))
            .arg("--core=0")
            .arg("--")
            .arg(&self.program)
            .arg("transcode")
            .arg("--input")
            .arg(input)
            .arg("--output")
            .arg(output)
            .arg(format!("--max-bytes={}", self.image.max_bytes))
            .arg(format!("--max-pixels={}", self.image.max_pixels))
            .arg(format!("--max-side={}", self.image.max_side))
            .arg(format!("--max-frames={}", self.image.max_frames))
            .arg(format!("--max-alloc={}", self.image.max_alloc))
            .arg(format!("--max-video-bytes={}", self.video.max_bytes))
            .arg(format!(
                "--max-duration={}",
                self.video.max_duration.as_secs()
            ))
            .arg(format!("--max-video-pixels={}", self.video.max_pixels))
            .arg(format!("--max-video-side={}", self.video.max_side))
            .arg(format!("--max-height={}", self.video.max_height))
            .arg(format!("--video-bitrate={}", self.video.video_bitrate))
            .arg(format!("--audio-bitrate={}", self.video.audio_bitrate))
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => return ChildRun::Unavailable(format!("cannot start the child process: {e}")),
        };
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return ChildRun::Unavailable("the child process has no output pipes".into());
        };
        let run = async {
            let (status, report, stderr) = tokio::join!(
                child.wait(),
                read_at_most(stdout, MAX_REPORT),
                read_at_most(stderr, MAX_STDERR)
            );
            (status, report, stderr)
        };
        // Dropping the child on timeout kills it (`kill_on_drop`).
        let Ok((status, report, stderr)) = tokio::time::timeout(self.timeout, run).await else {
            return ChildRun::TimedOut;
        };
        let status = match status {
            Ok(status) => status,
            Err(e) => {
                return ChildRun::Unavailable(format!("cannot wait for the child process: {e}"));
            }
        };
        if !stderr.is_empty() {
            tracing::debug!(stderr = %String::from_utf8_lossy(&stderr), "media child stderr");
        }
        judge(status, &report)
    }
}

/// What an exit status and the report printed with it mean together.
fn judge(status: ExitStatus, report: &[u8]) -> ChildRun {
    if let Some(signal) = status.signal() {
        return if signal == SIGXCPU {
            ChildRun::TimedOut
        } else {
            ChildRun::Crashed(format!(
                "the decoder was killed by signal {signal} (a crash, or its memory limit)"
            ))
        };
    }
    let parsed: Option<ChildReport> = serde_json::from_slice(report).ok();
    match (status.code(), parsed) {
        (Some(0), Some(report @ ChildReport::Ready { .. }))
        | (
            Some(1),
            Some(
                report @ ChildReport::Failed {
                    transient: true, ..
                },
            ),
        )
        | (
            Some(3),
            Some(
                report @ ChildReport::Failed {
                    transient: false, ..
                },
            ),
        ) => ChildRun::Report(report),
        // prlimit's own failures: the transcoder could not be run (missing, not executable).
        (Some(code @ (126 | 127)), _) => {
            ChildRun::Unavailable(format!("the transcoder could not be run (status {code})"))
        }
        (code, _) => ChildRun::Crashed(format!(
            "the decoder exited with status {} and no valid report",
            code.map_or_else(|| "?".to_owned(), |c| c.to_string())
        )),
    }
}

/// Reads up to `limit` bytes, then drains (and drops) the rest so the child never blocks on
/// a full pipe.
async fn read_at_most(mut pipe: impl AsyncRead + Unpin, limit: u64) -> Vec<u8> {
    let mut kept = Vec::new();
    let _ = (&mut pipe).take(limit).read_to_end(&mut kept).await;
    let _ = tokio::io::copy(&mut pipe, &mut tokio::io::sink()).await;
    kept
}

/// The first executable file named `name` on `PATH`.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    #[test]
    fn a_report_counts_only_with_the_exit_status_it_implies() {
        let ready = br#"{"outcome":"ready","mime":"image/png","width":1,"height":1,"frames":1,"blurhash":"x","renditions":[]}"#;
        let refused =
            br#"{"outcome":"failed","code":"corrupt-media","detail":"d","transient":false}"#;
        assert!(matches!(
            judge(exited(0), ready),
            ChildRun::Report(ChildReport::Ready { .. })
        ));
        assert!(matches!(
            judge(exited(3), refused),
            ChildRun::Report(ChildReport::Failed { .. })
        ));
        for (code, report) in [
            (3, &ready[..]),
            (0, &refused[..]),
            (1, &refused[..]),
            (0, b"garbage"),
            (101, b""),
            (2, b""),
        ] {
            assert!(
                matches!(judge(exited(code), report), ChildRun::Crashed(_)),
                "{code} {report:?}"
            );
        }
        assert!(matches!(judge(exited(127), b""), ChildRun::Unavailable(_)));
        assert_eq!(
            judge(ExitStatus::from_raw(SIGXCPU), b""),
            ChildRun::TimedOut
        );
        assert!(matches!(
            judge(ExitStatus::from_raw(11), ready),
            ChildRun::Crashed(_)
        ));
    }
}
