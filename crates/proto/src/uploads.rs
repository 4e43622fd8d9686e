use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What an upload holds, from its `kind` metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UploadKind {
    /// Ciphertext sealed on the client; the server never sees plaintext (default).
    Encrypted,
    /// A plaintext preview (profile photo, status, channel post) that the media worker processes.
    Preview,
}

impl UploadKind {
    /// The metadata and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Encrypted => "encrypted",
            Self::Preview => "preview",
        }
    }

    /// Parses the metadata spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "encrypted" => Some(Self::Encrypted),
            "preview" => Some(Self::Preview),
            _ => None,
        }
    }
}

/// Where an upload is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UploadState {
    /// Accepting bytes.
    Active,
    /// All bytes received and verified; stored as the blob `blob_id`.
    Complete,
    /// Finished but rejected (see `error`); nothing was stored.
    Failed,
}

impl UploadState {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Complete => "complete",
            Self::Failed => "failed",
        }
    }

    /// Parses the database spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "complete" => Some(Self::Complete),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// JSON status of one upload (`GET /v1/uploads/{id}`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UploadStatus {
    /// Upload id (the last segment of its URL).
    pub id: String,
    /// Lifecycle state.
    pub state: UploadState,
    /// Bytes durably received.
    pub offset: u64,
    /// Declared total length; absent while deferred.
    pub length: Option<u64>,
    /// What the upload holds.
    pub kind: UploadKind,
    /// Client-supplied file name, if any.
    pub filename: Option<String>,
    /// Client-supplied media type, if any.
    pub content_type: Option<String>,
    /// Lowercase hex SHA-256 of the bytes once complete: the blob id.
    pub blob_id: Option<String>,
    /// Problem code when `state` is `failed`.
    pub error: Option<String>,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// When an unfinished upload expires, RFC 3339.
    pub expires_at: Option<String>,
}

/// What an account uses of its quotas (`GET /v1/usage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    /// Blobs the account uploaded within the blob retention.
    pub stored: StoredUsage,
    /// Its unfinished uploads.
    pub unfinished: UnfinishedUsage,
}

/// Blobs held: each blob the account completed an upload of counts until the retention has
/// passed since its last upload by this account, whoever else uploaded the same bytes.
/// Unfinished uploads also count against these limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StoredUsage {
    /// Blobs held.
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Most blobs (with unfinished uploads) the account may hold: past it, `429 blob-quota-exceeded`.
    pub max_blobs: u64,
    /// Most bytes (with unfinished uploads): past it, `413 storage-quota-exceeded`.
    pub max_bytes: u64,
    /// Seconds a blob counts after its upload (the blob retention).
    pub counted_for: u64,
}

/// Unfinished uploads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UnfinishedUsage {
    /// How many.
    pub uploads: u64,
    /// Their declared lengths (a deferred one: its offset).
    pub bytes: u64,
    /// Most at once: past it, `429 too-many-uploads`.
    pub max_uploads: u32,
    /// Most bytes at once: past it, `429 upload-quota-exceeded`.
    pub max_bytes: u64,
    /// Previews uploading or waiting for the media worker.
    pub previews: u64,
    /// Most previews at once: past it, creating one gets `429 too-many-previews`.
    pub max_previews: u32,
}
