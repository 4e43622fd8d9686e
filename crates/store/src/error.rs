/// Errors from a blob store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The configuration (URL, paths) is unusable.
    #[error("{0}")]
    Config(String),
    /// The blob or staged upload does not exist.
    #[error("not found")]
    NotFound,
    /// Another writer still holds the upload's staged bytes.
    #[error("another writer still holds the upload")]
    Busy,
    /// An id that cannot name a blob or upload.
    #[error("invalid id {0:?}")]
    InvalidId(String),
    /// Staged bytes are not the size the caller expected.
    #[error("staged size {actual} does not match expected {expected}")]
    SizeMismatch {
        /// Bytes the caller committed.
        expected: u64,
        /// Bytes found.
        actual: u64,
    },
    /// Committed bytes were overwritten by a writer that had lost the upload; the upload
    /// cannot be completed.
    #[error("the staged bytes were overwritten by a fenced-off writer")]
    Conflict,
    /// An I/O error from the backend.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}
