//! The write side of one append: a blocking thread that hashes each chunk (the upload's running
//! SHA-256 and an optional per-request checksum) and writes it to the staged bytes, fed through
//! a bounded channel so neither hashing nor disk I/O runs on the async executor and memory stays
//! bounded by the channel's capacity.

use bytes::Bytes;
use sealpost_store::{StagedWriter, StoreError};
use sha1::Sha1;
use sha2::Digest;
use sha2::Sha256;
use sha2::digest::common::hazmat::SerializableState;
use tokio::sync::{mpsc, oneshot};

use super::protocol::ChecksumAlgorithm;

/// Chunks queued between the network and the writer thread.
const QUEUE: usize = 16;

/// Restores a running SHA-256 from its serialized state.
pub(super) fn restore_sha256(state: &[u8]) -> Option<Sha256> {
    let array = state.try_into().ok()?;
    Sha256::deserialize(&array).ok()
}

/// Serializes a running SHA-256.
pub(super) fn save_sha256(hasher: &Sha256) -> Vec<u8> {
    hasher.serialize().to_vec()
}

/// The hashes after the bytes written so far, all durable.
#[derive(Debug, Clone)]
pub(super) struct Snapshot {
    /// Serialized upload SHA-256 state.
    pub(super) hash_state: Vec<u8>,
    /// The per-request checksum's digest (only from [`Sink::finish`]).
    pub(super) checksum: Option<Vec<u8>>,
}

enum Command {
    Data(Bytes),
    Sync(oneshot::Sender<Result<Snapshot, StoreError>>),
    Finish(oneshot::Sender<Result<Snapshot, StoreError>>),
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
    /// Starts the writer thread over `writer`, continuing `hasher`.
    pub(super) fn start(
        writer: Box<dyn StagedWriter>,
        hasher: Sha256,
        checksum: Option<ChecksumAlgorithm>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let request = checksum.map(|a| match a {
            ChecksumAlgorithm::Sha1 => RequestHasher::Sha1(Sha1::new()),
            ChecksumAlgorithm::Sha256 => RequestHasher::Sha256(Sha256::new()),
        });
        tokio::task::spawn_blocking(move || run(rx, writer, hasher, request));
        Self { tx }
    }

    /// Queues a chunk; waits while the queue is full.
    pub(super) async fn write(&self, chunk: Bytes) -> Result<(), StoreError> {
        self.tx.send(Command::Data(chunk)).await.map_err(|_| gone())
    }

    /// Makes everything queued so far durable and returns the hash state after it.
    pub(super) async fn sync(&self) -> Result<Snapshot, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Sync(reply))
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Like [`Sink::sync`], also returning the per-request checksum, and stops the thread.
    pub(super) async fn finish(self) -> Result<Snapshot, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Finish(reply))
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

fn run(
    mut rx: mpsc::Receiver<Command>,
    mut writer: Box<dyn StagedWriter>,
    mut hasher: Sha256,
    mut request: Option<RequestHasher>,
) {
    let mut failed: Option<StoreError> = None;
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
                }
            }
            Command::Sync(reply) => {
                let _ = reply.send(snapshot(&mut *writer, &hasher, &mut failed, None));
            }
            Command::Finish(reply) => {
                let checksum = request.take().map(|r| match r {
                    RequestHasher::Sha1(h) => h.finalize().to_vec(),
                    RequestHasher::Sha256(h) => h.finalize().to_vec(),
                });
                let _ = reply.send(snapshot(&mut *writer, &hasher, &mut failed, checksum));
                return;
            }
        }
    }
}

fn snapshot(
    writer: &mut dyn StagedWriter,
    hasher: &Sha256,
    failed: &mut Option<StoreError>,
    checksum: Option<Vec<u8>>,
) -> Result<Snapshot, StoreError> {
    if let Some(e) = failed.take() {
        return Err(e);
    }
    writer.sync()?;
    Ok(Snapshot {
        hash_state: save_sha256(hasher),
        checksum,
    })
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
