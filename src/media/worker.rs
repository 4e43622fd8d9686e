//! The media worker: takes preview jobs from the bus topic `media.jobs` (consumer group
//! `media-workers`), decodes each preview in a sandboxed child process, stores every rendition
//! as a blob of its own and records the outcome once. Transient failures (database, store, the
//! child's own I/O) retry with backoff, up to `media.max_attempts`; bad input fails at once,
//! with the code the child or the sandbox gives. A job is committed on the bus only once its
//! outcome is durable, so a worker that dies mid-job leaves it to another; a job lost before
//! it reached the bus is found by [`MediaWorker::requeue_stale`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sealpost_auth::{secs, unix_now};
use sealpost_bus::{Backoff, Bus, BusError, Membership, Record, Start};
use sealpost_db::{Db, MediaOutcome, RenditionRow};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::child::ChildReport;
use super::sandbox::{ChildRun, Sandbox};
use crate::blobs::BlobService;
use crate::config::MediaSettings;
use crate::error::ApiError;
use crate::metrics::{MediaJobLabels, Metrics, OutcomeLabels};

/// The topic preview jobs go to, keyed by blob id.
pub const TOPIC: &str = "media.jobs";
/// The consumer group of the media workers.
pub const GROUP: &str = "media-workers";
/// The longest wait between two retries.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Stale previews requeued per sweep at most.
const REQUEUE_BATCH: i64 = 500;

/// One job: process this preview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaJob {
    /// The preview's blob id.
    pub blob_id: String,
}

/// Publishes the job for preview `blob_id`.
pub async fn publish_job(bus: &dyn Bus, blob_id: &str) -> Result<(), BusError> {
    let job = MediaJob {
        blob_id: blob_id.to_owned(),
    };
    let payload = serde_json::to_vec(&job).map_err(|e| BusError::Config(e.to_string()))?;
    bus.publish(TOPIC, blob_id.as_bytes(), &payload).await
}

/// Processes preview jobs.
#[derive(Debug)]
pub struct MediaWorker {
    db: Db,
    blobs: Arc<BlobService>,
    bus: Arc<dyn Bus>,
    sandbox: Sandbox,
    settings: MediaSettings,
    metrics: Arc<Metrics>,
}

/// Why one attempt at a job did not finish it: worth another try.
type Transient = anyhow::Error;

impl MediaWorker {
    /// A worker over these backends; fails if the sandbox cannot be set up.
    pub fn new(
        db: Db,
        blobs: Arc<BlobService>,
        bus: Arc<dyn Bus>,
        settings: MediaSettings,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let sandbox = Sandbox::new(&settings)?;
        Ok(Self {
            db,
            blobs,
            bus,
            sandbox,
            settings,
            metrics,
        })
    }

    /// Starts `media.concurrency` members of the consumer group; they stop at `shutdown`,
    /// leaving the job in hand uncommitted.
    pub fn spawn(
        self: &Arc<Self>,
        shutdown: &CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        (0..self.settings.concurrency)
            .map(|_| tokio::spawn(self.clone().member(shutdown.clone())))
            .collect()
    }

    async fn member(self: Arc<Self>, shutdown: CancellationToken) {
        let backoff = self.backoff();
        let membership = Membership {
            topic: TOPIC,
            group: GROUP,
            start: Start::Oldest,
        };
        sealpost_bus::consume(&*self.bus, membership, backoff, &shutdown, |record| {
            let (worker, shutdown) = (&self, &shutdown);
            async move { worker.handle(&record, shutdown).await }
        })
        .await;
    }

    /// Works on one record until the outcome of the preview it took is durable (true), or
    /// shutdown, or until failures that are not even counted (the database is away) outlast
    /// the attempts a job gets (false: the record stays uncommitted and is delivered again).
    /// A record is a turn, not an order: the worker takes the pending preview
    /// [`Db::take_media`] gives it, so each account gets its turn whatever the bus's order.
    async fn handle(&self, record: &Record, shutdown: &CancellationToken) -> bool {
        if let Err(e) = serde_json::from_slice::<MediaJob>(&record.payload) {
            tracing::warn!(offset = record.offset, error = %e, "skipping a malformed media job");
            return true;
        }
        let mut taken: Option<String> = None;
        let mut failures = 0;
        loop {
            let attempt = match &taken {
                Some(blob_id) => self.try_once(blob_id).await,
                None => match self.take_next().await {
                    Ok(Some(blob_id)) => {
                        let attempt = self.try_once(&blob_id).await;
                        taken = Some(blob_id);
                        attempt
                    }
                    Ok(None) => return true,
                    Err(e) => Err(e.into()),
                },
            };
            let Err(e) = attempt else {
                return true;
            };
            failures += 1;
            self.count("retried", "");
            tracing::warn!(blob = ?taken, error = %format!("{e:#}"), "media job failed; retrying");
            if failures > 2 * self.settings.max_attempts
                || !self.backoff().pause(failures, shutdown).await
            {
                return false;
            }
        }
    }

    /// Takes the next pending preview in fair order; a preview taken longer than
    /// `media.stale_after` ago counts as untaken (its worker died).
    async fn take_next(&self) -> Result<Option<String>, sealpost_db::DbError> {
        let now = unix_now();
        self.db
            .take_media(now, now - secs(self.settings.stale_after))
            .await
    }

    /// The waits between retries.
    fn backoff(&self) -> Backoff {
        Backoff {
            base: self.settings.retry_backoff,
            max: MAX_BACKOFF,
        }
    }

    /// One attempt: does nothing for a preview that is finished (or no longer queued),
    /// records the outcome otherwise, or fails with a reason to retry.
    async fn try_once(&self, blob_id: &str) -> Result<(), Transient> {
        let Some(row) = self.db.media(blob_id).await? else {
            return Ok(());
        };
        if row.state != "pending" {
            return Ok(());
        }
        let attempts = self.db.count_media_attempt(blob_id, unix_now()).await?;
        let max = i64::from(self.settings.max_attempts);
        let outcome = if attempts > max {
            gave_up(max, "earlier attempts did not finish")
        } else {
            let started = std::time::Instant::now();
            let processed = self.process(blob_id).await;
            let outcome = match &processed {
                Ok(MediaOutcome::Ready { .. }) => "ready",
                Ok(MediaOutcome::Failed { .. }) => "failed",
                Err(_) => "retried",
            };
            self.metrics
                .media_job_seconds
                .get_or_create(&OutcomeLabels { outcome })
                .observe(started.elapsed().as_secs_f64());
            match processed {
                Ok(outcome) => outcome,
                Err(e) if attempts >= max => gave_up(max, &format!("{e:#}")),
                Err(e) => return Err(e),
            }
        };
        match &outcome {
            MediaOutcome::Ready { renditions, .. } => {
                self.count("ready", "");
                tracing::info!(blob = %blob_id, renditions = renditions.len(), "preview processed");
            }
            MediaOutcome::Failed { code, detail } => {
                self.count("failed", code);
                tracing::info!(blob = %blob_id, code, detail, "preview refused");
            }
        }
        // False when another worker finished it first: its renditions are the same blobs.
        self.db.finish_media(blob_id, &outcome, unix_now()).await?;
        Ok(())
    }

    /// Decodes the preview in the sandbox and stores its renditions.
    async fn process(&self, blob_id: &str) -> Result<MediaOutcome, Transient> {
        let (_, blob) = match self.blobs.live(blob_id).await {
            Ok(found) => found,
            Err(ApiError::BlobExpired | ApiError::NotFound(_)) => {
                return Ok(failed(
                    "blob-expired",
                    "the preview expired before it was processed",
                ));
            }
            Err(e) => return Err(e.into()),
        };
        // The child holds each kind to its own limit; nothing larger than both is copied.
        let max = self.settings.max_file();
        if u64::try_from(blob.size).unwrap_or(u64::MAX) > max {
            return Ok(failed(
                "file-too-large",
                &format!(
                    "the file is {} bytes; previews are processed up to {max} bytes",
                    blob.size
                ),
            ));
        }
        let mut builder = tempfile::Builder::new();
        builder.prefix("sealpost-media-");
        let work = match &self.settings.work_dir {
            Some(dir) => builder.tempdir_in(dir),
            None => builder.tempdir(),
        }
        .context("cannot create a work directory")?;
        let input = work.path().join("input");
        let output = work.path().join("output");
        tokio::fs::create_dir(&output)
            .await
            .context("cannot create the output directory")?;
        self.blobs.copy_to_file(&blob, &input).await?;
        let report = match self.sandbox.transcode(&input, &output).await {
            ChildRun::Report(report) => report,
            ChildRun::TimedOut => {
                return Ok(failed(
                    "processing-timeout",
                    &format!(
                        "processing took longer than its limit ({} of CPU, {} in all)",
                        humantime::format_duration(self.settings.cpu_limit),
                        humantime::format_duration(self.settings.timeout)
                    ),
                ));
            }
            ChildRun::Crashed(why) => return Ok(failed("processing-crashed", &why)),
            ChildRun::Unavailable(why) => return Err(anyhow::anyhow!(why)),
        };
        match report {
            ChildReport::Ready {
                mime,
                width,
                height,
                frames,
                duration_ms,
                blurhash,
                renditions,
            } => {
                let mut stored = Vec::with_capacity(renditions.len());
                for r in renditions {
                    let Some(path) = rendition_path(&output, &r.file) else {
                        return Ok(failed(
                            "processing-crashed",
                            "the decoder reported a rendition that is not a plain file it wrote",
                        ));
                    };
                    let (id, size) = self.blobs.put_file(&path).await?;
                    stored.push(RenditionRow {
                        name: r.name,
                        mime: r.mime,
                        width: i64::from(r.width),
                        height: i64::from(r.height),
                        size: i64::try_from(size).unwrap_or(i64::MAX),
                        rendition_id: id.to_string(),
                    });
                }
                Ok(MediaOutcome::Ready {
                    mime,
                    width: i64::from(width),
                    height: i64::from(height),
                    frames: i64::from(frames),
                    blurhash,
                    duration_ms: duration_ms.map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
                    renditions: stored,
                })
            }
            ChildReport::Failed {
                transient: true,
                detail,
                ..
            } => Err(anyhow::anyhow!("the decoder could not finish: {detail}")),
            // The report comes from a process that decoded hostile input: only a code the
            // transcoder has is kept (it is shown to clients and counted in the metrics).
            ChildReport::Failed { code, detail, .. } => {
                let code = if sealpost_transcode::ERROR_CODES.contains(&code.as_str()) {
                    code.as_str()
                } else {
                    "processing-failed"
                };
                Ok(failed(code, &detail))
            }
        }
    }

    /// Publishes again the jobs of previews pending longer than `media.stale_after` (lost on
    /// the way to the bus, or their worker died); returns how many.
    pub async fn requeue_stale(&self) -> anyhow::Result<usize> {
        let now = unix_now();
        let cutoff = now - secs(self.settings.stale_after);
        let stale = self
            .db
            .requeue_stale_media(cutoff, now, REQUEUE_BATCH)
            .await?;
        for id in &stale {
            publish_job(self.bus.as_ref(), id).await?;
        }
        if !stale.is_empty() {
            tracing::info!(requeued = stale.len(), "media jobs requeued");
        }
        Ok(stale.len())
    }

    fn count(&self, outcome: &'static str, code: &str) {
        self.metrics
            .media_jobs
            .get_or_create(&MediaJobLabels {
                outcome,
                code: code.to_owned(),
            })
            .inc();
    }
}

/// A rendition the child named, if it is a plain name of a regular file in `output` with no
/// other link to it (the report comes from a process that decoded hostile input: it must not
/// point the worker at a symlink or hard link to a file of the server's). The child has exited
/// by the time this runs.
fn rendition_path(output: &Path, file: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let plain = !file.is_empty()
        && !file.starts_with('.')
        && file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    let path = output.join(file);
    let meta = std::fs::symlink_metadata(&path).ok()?;
    (plain && meta.file_type().is_file() && meta.nlink() == 1).then_some(path)
}

fn failed(code: &str, detail: &str) -> MediaOutcome {
    MediaOutcome::Failed {
        code: code.to_owned(),
        detail: detail.to_owned(),
    }
}

fn gave_up(attempts: i64, why: &str) -> MediaOutcome {
    failed(
        "processing-failed",
        &format!("gave up after {attempts} attempts: {why}"),
    )
}
