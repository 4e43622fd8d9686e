//! The write side of one append, in two blocking threads fed through bounded channels, so that
//! neither hashing nor disk I/O runs on the async executor and memory stays bounded:
//!
//! * the writer hashes each chunk (the upload's running SHA-256 and an optional per-request
//!   checksum) and appends it to the staged bytes; every `checkpoint_every` bytes (or sooner,
//!   when the store says a checkpoint is cheap now) it hands a sync job and the hash state to
//! * the syncer, which makes those bytes durable and reports them as a [`Durable`] checkpoint,
//!   while the writer keeps going: an fsync never stalls the stream.
//!
//! Each checkpoint carries the store's manifest entries for it; [`Finished`] carries every
//! entry of the append, so that committing it alone is enough whichever checkpoints the caller
//! committed before.

use bytes::Bytes;
use sealpost_store::{Manifest, StagedWriter, StoreError, SyncJob};
use sha1::Sha1;
use sha2::Digest;
use sha2::Sha256;
use sha2::digest::common::hazmat::SerializableState;
use tokio::sync::{mpsc, oneshot};

use super::protocol::ChecksumAlgorithm;

/// Chunks queued between the network and the writer thread.
const QUEUE: usize = 16;
/// Checkpoints queued between the writer and the syncer thread.
const SYNC_QUEUE: usize = 2;

/// Restores a running SHA-256 from its serialized state.
pub(super) fn restore_sha256(state: &[u8]) -> Option<Sha256> {
    let array = state.try_into().ok()?;
    Sha256::deserialize(&array).ok()
}

/// Serializes a running SHA-256.
pub(super) fn save_sha256(hasher: &Sha256) -> Vec<u8> {
    hasher.serialize().to_vec()
}

/// Bytes of this request that are durable, and the upload's hash state after them.
#[derive(Debug, Clone)]
pub(super) struct Durable {
    /// Bytes of this request.
    pub(super) written: u64,
    /// Serialized upload SHA-256 state.
    pub(super) hash_state: Vec<u8>,
    /// The store's manifest entries to commit with it.
    pub(super) manifest: Manifest,
}

/// The end of an append: everything written is durable.
#[derive(Debug, Clone)]
pub(super) struct Finished {
    /// The hash state after all of it.
    pub(super) hash_state: Vec<u8>,
    /// The per-request checksum's digest, if one was asked for.
    pub(super) checksum: Option<Vec<u8>>,
    /// Every manifest entry of this append.
    pub(super) manifest: Manifest,
}

enum Command {
    Data(Bytes),
    Finish(oneshot::Sender<Result<Finished, StoreError>>),
}

enum RequestHasher {
    Sha1(Sha1),
    Sha256(Sha256),
}

/// Feeds one append's bytes to its writer thread.
#[derive(Debug)]
pub(super) struct Sink {
    tx: mpsc::Sender<Command>,
}

fn gone() -> StoreError {
    StoreError::Io(std::io::Error::other("upload writer stopped"))
}

impl Sink {
    /// Starts the threads over `writer`, continuing `hasher`. Durable checkpoints (every
    /// `checkpoint_every` bytes, if set) arrive on the returned receiver.
    pub(super) fn start(
        writer: Box<dyn StagedWriter>,
        hasher: Sha256,
        checksum: Option<ChecksumAlgorithm>,
        checkpoint_every: Option<u64>,
    ) -> (Self, mpsc::UnboundedReceiver<Result<Durable, StoreError>>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        // Unbounded so the syncer never waits for the async side (which may itself be waiting
        // for the writer): at most one small message per `checkpoint_every` bytes.
        let (durable_tx, durable_rx) = mpsc::unbounded_channel();
        let request = checksum.map(|a| match a {
            ChecksumAlgorithm::Sha1 => RequestHasher::Sha1(Sha1::new()),
            ChecksumAlgorithm::Sha256 => RequestHasher::Sha256(Sha256::new()),
        });
        let syncer = checkpoint_every.map(|every| {
            let (jobs_tx, jobs_rx) = std::sync::mpsc::sync_channel(SYNC_QUEUE);
            let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
            tokio::task::spawn_blocking(move || {
                let _ = done_tx.send(run_syncer(jobs_rx, durable_tx));
            });
            Syncer {
                every,
                jobs: jobs_tx,
                done: done_rx,
            }
        });
        tokio::task::spawn_blocking(move || run_writer(rx, writer, hasher, request, syncer));
        (Self { tx }, durable_rx)
    }

    /// Queues a chunk; waits while the queue is full.
    pub(super) async fn write(&self, chunk: Bytes) -> Result<(), StoreError> {
        self.tx.send(Command::Data(chunk)).await.map_err(|_| gone())
    }

    /// Makes everything queued durable, stops the threads, and returns the final hashes.
    pub(super) async fn finish(self) -> Result<Finished, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Finish(reply))
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

type SyncRequest = (SyncJob, Durable);

/// The writer's side of the syncer thread.
struct Syncer {
    every: u64,
    jobs: std::sync::mpsc::SyncSender<SyncRequest>,
    /// The syncer's outcome: every manifest entry of the jobs it ran, or the first failure.
    done: std::sync::mpsc::Receiver<Result<Manifest, StoreError>>,
}

impl Syncer {
    /// Waits for the queued jobs to finish.
    fn join(self) -> Result<Manifest, StoreError> {
        drop(self.jobs);
        self.done.recv().map_err(|_| gone())?
    }
}

/// Makes everything written durable, after every queued checkpoint, and returns the append's
/// final hashes and all of its manifest entries.
fn finish(
    writer: &mut dyn StagedWriter,
    syncer: Option<Syncer>,
    hasher: &Sha256,
    request: Option<RequestHasher>,
) -> Result<Finished, StoreError> {
    let mut manifest = match syncer {
        Some(syncer) => syncer.join()?,
        None => Manifest::new(),
    };
    manifest.extend(writer.sync()?);
    Ok(Finished {
        hash_state: save_sha256(hasher),
        checksum: request.map(|r| match r {
            RequestHasher::Sha1(h) => h.finalize().to_vec(),
            RequestHasher::Sha256(h) => h.finalize().to_vec(),
        }),
        manifest,
    })
}

fn run_writer(
    mut rx: mpsc::Receiver<Command>,
    mut writer: Box<dyn StagedWriter>,
    mut hasher: Sha256,
    mut request: Option<RequestHasher>,
    mut syncer: Option<Syncer>,
) {
    let mut failed: Option<StoreError> = None;
    let (mut written, mut unsynced) = (0u64, 0u64);
    while let Some(command) = rx.blocking_recv() {
        match command {
            Command::Data(chunk) => {
                if failed.is_some() {
                    continue;
                }
                hasher.update(&chunk);
                match &mut request {
                    Some(RequestHasher::Sha1(h)) => h.update(&chunk),
                    Some(RequestHasher::Sha256(h)) => h.update(&chunk),
                    None => {}
                }
                if let Err(e) = writer.write_all(&chunk) {
                    failed = Some(e);
                    continue;
                }
                written += chunk.len() as u64;
                unsynced += chunk.len() as u64;
                if let Some(syncer) = &syncer
                    && (unsynced >= syncer.every || writer.wants_checkpoint())
                {
                    unsynced = 0;
                    match writer.checkpoint() {
                        Ok(job) => {
                            let durable = Durable {
                                written,
                                hash_state: save_sha256(&hasher),
                                manifest: Manifest::new(),
                            };
                            // A syncer that is gone failed a job; `finish` reports it.
                            let _ = syncer.jobs.send((job, durable));
                        }
                        Err(e) => failed = Some(e),
                    }
                }
            }
            Command::Finish(reply) => {
                let result = match failed.take() {
                    Some(e) => Err(e),
                    None => finish(writer.as_mut(), syncer.take(), &hasher, request.take()),
                };
                let _ = reply.send(result);
                return;
            }
        }
    }
}

/// Runs sync jobs in order, reporting each durable checkpoint; returns every manifest entry
/// of the jobs, or the first failure.
fn run_syncer(
    jobs: std::sync::mpsc::Receiver<SyncRequest>,
    durable: mpsc::UnboundedSender<Result<Durable, StoreError>>,
) -> Result<Manifest, StoreError> {
    let mut all = Manifest::new();
    while let Ok((job, mut checkpoint)) = jobs.recv() {
        let manifest = match job() {
            Ok(manifest) => manifest,
            Err(e) => {
                let _ = durable.send(Err(e));
                return Err(StoreError::Io(std::io::Error::other(
                    "an earlier checkpoint failed",
                )));
            }
        };
        all.extend(manifest.clone());
        checkpoint.manifest = manifest;
        // The caller no longer listening only means no more intermediate commits.
        let _ = durable.send(Ok(checkpoint));
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_state_round_trips_mid_block() {
        let mut a = Sha256::new();
        a.update(b"resumable uploads hash across requests");
        let mut b = restore_sha256(&save_sha256(&a)).expect("restore");
        a.update(b" and restarts");
        b.update(b" and restarts");
        assert_eq!(a.finalize(), b.finalize());
        assert!(restore_sha256(&[1, 2, 3]).is_none());
    }
}
