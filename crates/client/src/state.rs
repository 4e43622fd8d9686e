//! What a resumable upload keeps on disk between runs: the media key and header (so the same
//! ciphertext can be reproduced), the hashes, and the upload's URL. One JSON file per source
//! file, readable by its owner only, removed once the upload is complete.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A sealed upload in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UploadState {
    /// The source file's size and modification time when it was sealed: a changed file starts
    /// over.
    pub(crate) size: u64,
    pub(crate) modified_ns: u128,
    /// Hex of the 32-byte media key.
    pub(crate) media_key: String,
    /// Hex of the header's salt and nonce prefix.
    pub(crate) salt: String,
    pub(crate) nonce_prefix: String,
    pub(crate) plaintext_sha256: String,
    pub(crate) ciphertext_sha256: String,
    /// The upload's URL once created.
    pub(crate) upload_url: Option<String>,
}

/// The state file for `file` in `dir`.
pub(crate) fn path_for(dir: &Path, file: &Path) -> PathBuf {
    let canonical = file.canonicalize().unwrap_or_else(|_| file.to_path_buf());
    let id = hex::encode(Sha256::digest(canonical.display().to_string().as_bytes()));
    dir.join(format!("{id}.json"))
}

/// The saved state for `file`, if it still describes the file as it is now.
pub(crate) fn load(dir: &Path, file: &Path, size: u64, modified_ns: u128) -> Option<UploadState> {
    let text = std::fs::read_to_string(path_for(dir, file)).ok()?;
    let state: UploadState = serde_json::from_str(&text).ok()?;
    (state.size == size && state.modified_ns == modified_ns).then_some(state)
}

/// Saves `state` atomically, readable by the owner only.
pub(crate) fn save(dir: &Path, file: &Path, state: &UploadState) -> std::io::Result<()> {
    write_private_json(&path_for(dir, file), state)
}

/// Writes `value` as pretty JSON to `path`, readable by the owner only (mode 0600 on Unix),
/// atomically (a temporary file renamed over it), creating the directory if needed. For
/// secrets such as keys, tokens and upload state.
///
/// # Errors
/// The file cannot be written.
pub fn write_private_json(path: &Path, value: &impl Serialize) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut out = private_options().create(true).truncate(true).open(&tmp)?;
    out.write_all(&serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?)?;
    out.sync_all()?;
    std::fs::rename(tmp, path)
}

/// Options that write a file readable by its owner only (when they create it).
pub(crate) fn private_options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Forgets the state for `file`.
pub(crate) fn remove(dir: &Path, file: &Path) {
    let _ = std::fs::remove_file(path_for(dir, file));
}
