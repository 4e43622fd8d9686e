use sealpost_crypto::CryptoError;

/// What went wrong, in terms a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server cannot be reached (after retries).
    #[error("cannot reach the server: {0}")]
    Network(#[source] reqwest::Error),
    /// The server refused the request.
    #[error("the server answered {status} {code}: {detail}")]
    Server {
        /// HTTP status.
        status: u16,
        /// The problem's stable code.
        code: String,
        /// The problem's human message.
        detail: String,
    },
    /// No token: log in first.
    #[error("not logged in")]
    NotLoggedIn,
    /// The downloaded ciphertext is not the blob the reference names.
    #[error("the downloaded blob does not match its id (SHA-256 {actual}, expected {expected})")]
    HashMismatch {
        /// Expected hex SHA-256.
        expected: String,
        /// What arrived.
        actual: String,
    },
    /// The ciphertext does not open (wrong key, damaged, truncated, …).
    #[error("the file does not decrypt: {0}")]
    Tampered(#[from] CryptoError),
    /// The decrypted file is not the one the sender hashed.
    #[error("the decrypted file does not match the sender's SHA-256")]
    PlaintextMismatch,
    /// A plaintext range outside the file.
    #[error("range {0:?} is outside the file's {1} bytes")]
    BadRange(std::ops::Range<u64>, u64),
    /// The caller stopped the transfer (progress callback); it can be resumed.
    #[error("stopped; run the same upload again to resume")]
    Interrupted,
    /// A local file could not be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The chat server refused a frame, or ended the session.
    #[error("chat: {code}: {message}")]
    Chat {
        /// The stable code (docs/protocol.md), or `replaced`, `revoked`, `token-expired`,
        /// `session-ended` for a session that ended.
        code: String,
        /// What happened, for people.
        message: String,
        /// `rate-limited`: seconds to wait.
        retry_after: Option<u64>,
    },
    /// The chat WebSocket failed.
    #[error("chat connection: {0}")]
    Socket(String),
    /// The server's answer made no sense.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// End-to-end encryption failed: a peer's keys do not check out, a message does not
    /// decrypt, or this device's saved state does not open.
    #[error("end-to-end encryption: {0}")]
    E2e(String),
    /// This device's end-to-end state is open in another process (it may open once at a time).
    #[error("{} is in use by another process of this device", .0.display())]
    StateInUse(std::path::PathBuf),
}

impl ClientError {
    /// Whether trying again later may succeed (network trouble, 5xx, a takeover race).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Network(_) | Self::Socket(_) => true,
            Self::Chat { code, .. } => code == "rate-limited" || code == "internal",
            Self::Server { status, code, .. } => {
                *status >= 500 || *status == 429 || code == "upload-superseded"
            }
            _ => false,
        }
    }
}
