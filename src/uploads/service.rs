//! The upload state machine shared by both protocols: creation, append (streaming, hashing,
//! checkpointing, takeover), completion into a content-addressed blob, termination and expiry.

use std::sync::Arc;

use axum::body::Body;
use futures_util::StreamExt;
use rand::Rng;
use sealpost_auth::{AuthError, RateLimiter, unix_now};
use sealpost_bus::Bus;
use sealpost_db::{Db, NewUpload, UploadRow, UploadUsage};
use sealpost_proto::{StoredUsage, UnfinishedUsage, UploadKind, UploadState, Usage};
use sealpost_store::{BlobId, BlobStore, Manifest, StoreError};
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::protocol::{Checksum, Concat, Metadata};
use super::sink::{Durable, Finished, Sink, restore_sha256, save_sha256};
use super::takeover::{Takeover, UploadGuard};
use super::transfers::{Lapse, Pace, Refusal, Transfers};
use crate::config::UploadSettings;
use crate::error::{ApiError, ApiResult};
use crate::media::worker::publish_job;
use crate::metrics::{Metrics, ReasonLabels};

/// What a creation request asks for.
#[derive(Debug, Clone)]
pub struct CreateSpec {
    /// Declared total length, if known.
    pub length: Option<u64>,
    /// Parsed `Upload-Metadata`.
    pub metadata: Metadata,
    /// tus concatenation, if any.
    pub concat: Option<Concat>,
}

/// What an append request carries.
#[derive(Debug)]
pub struct AppendSpec {
    /// The request's `Upload-Offset`.
    pub offset: u64,
    /// The body.
    pub body: Body,
    /// `Content-Length`, if sent.
    pub content_length: Option<u64>,
    /// A length declared with this request (`Upload-Length`).
    pub declared_length: Option<u64>,
    /// The draft's `Upload-Complete`; `None` for tus, where reaching the length completes.
    pub complete: Option<bool>,
    /// `Upload-Checksum` over this request's body.
    pub checksum: Option<Checksum>,
}

/// Why streaming stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    End,
    Interrupted,
    TooSlow,
    Superseded,
    Shutdown,
    TooLarge,
}

/// Who appends to an upload: its client, or the server concatenating a final upload's parts
/// (the only writer a final upload takes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Writer {
    Client,
    Concatenation,
}

/// Whether the upload is a tus final upload (a concatenation).
pub fn is_final(row: &UploadRow) -> bool {
    row.concat
        .as_deref()
        .is_some_and(|c| c.starts_with("final;"))
}

/// Whether the upload is a tus partial upload.
pub fn is_partial(row: &UploadRow) -> bool {
    row.concat.as_deref() == Some("partial")
}

/// Whether all the upload's bytes are there: complete, or a finished partial upload (`parked`,
/// or `joining` while a final upload reads it).
pub fn is_complete(row: &UploadRow) -> bool {
    matches!(row.state.as_str(), "complete" | "parked" | "joining")
}

/// Uploads and their lifecycle.
#[derive(Debug)]
pub struct UploadService {
    pub(super) db: Db,
    pub(super) store: Arc<dyn BlobStore>,
    settings: UploadSettings,
    /// How long an uploaded blob counts in its account's storage quota (the blob retention).
    retention: std::time::Duration,
    takeover: Arc<Takeover>,
    transfers: Arc<Transfers>,
    /// `uploads.requests_per_account_per_minute`, if set.
    requests: Option<RateLimiter>,
    shutdown: CancellationToken,
    pub(super) metrics: Arc<Metrics>,
    bus: Arc<dyn Bus>,
}

/// Accessors over a stored upload row.
pub trait UploadView {
    /// Durable offset.
    fn offset(&self) -> u64;
    /// Declared length.
    fn length(&self) -> Option<u64>;
    /// Lifecycle state.
    fn upload_state(&self) -> UploadState;
    /// Content kind.
    fn upload_kind(&self) -> UploadKind;
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl UploadView for UploadRow {
    fn offset(&self) -> u64 {
        to_u64(self.upload_offset)
    }
    fn length(&self) -> Option<u64> {
        self.length.map(to_u64)
    }
    fn upload_state(&self) -> UploadState {
        match self.state.as_str() {
            "expired" => UploadState::Failed,
            "parked" | "joining" => UploadState::Complete,
            s => UploadState::parse(s).unwrap_or(UploadState::Failed),
        }
    }
    fn upload_kind(&self) -> UploadKind {
        UploadKind::parse(&self.kind).unwrap_or(UploadKind::Encrypted)
    }
}

/// Whether an upload can no longer be used because it expired.
pub fn is_expired(row: &UploadRow, now: i64) -> bool {
    row.state == "expired" || (expires(row) && row.expires_at <= now)
}

/// Whether the upload's expiry applies to it: it is active, or a finished partial upload.
pub fn expires(row: &UploadRow) -> bool {
    matches!(row.state.as_str(), "active" | "parked" | "joining")
}

impl UploadService {
    /// A service over the given backends.
    pub fn new(
        db: Db,
        store: Arc<dyn BlobStore>,
        settings: UploadSettings,
        retention: std::time::Duration,
        shutdown: CancellationToken,
        metrics: Arc<Metrics>,
        bus: Arc<dyn Bus>,
    ) -> Self {
        let transfers = Transfers::new(
            settings.max_concurrent_transfers,
            settings.max_transfers_per_account,
        );
        let requests = (settings.requests_per_account_per_minute > 0)
            .then(|| RateLimiter::new(settings.requests_per_account_per_minute));
        Self {
            db,
            store,
            settings,
            retention,
            takeover: Arc::default(),
            transfers,
            requests,
            shutdown,
            metrics,
            bus,
        }
    }

    /// The configured limits.
    pub fn settings(&self) -> &UploadSettings {
        &self.settings
    }

    /// Takes one of `account`'s upload requests a minute, or refuses with `rate-limited`.
    pub fn admit(&self, account: &str) -> ApiResult<()> {
        let Some(requests) = &self.requests else {
            return Ok(());
        };
        requests.check(account).map_err(|seconds| {
            self.metrics.upload_requests_limited.inc();
            ApiError::Auth(AuthError::RateLimited(seconds))
        })
    }

    /// Gives `account` one request back for each whole MiB a request of it stored.
    fn credit(&self, account: &str, stored: u64) {
        if let Some(requests) = &self.requests {
            requests.give(account, stored >> 20);
        }
    }

    pub(super) fn expiry(&self, now: i64) -> i64 {
        now + to_i64(self.settings.ttl.as_secs())
    }

    /// Creates an upload for `account` after checking size and quota.
    pub async fn create(&self, account: &str, spec: CreateSpec) -> ApiResult<UploadRow> {
        if let Some(length) = spec.length {
            self.check_max_size(length)?;
        }
        let now = unix_now();
        let mut raw_id = [0u8; 16];
        rand::rng().fill_bytes(&mut raw_id);
        let meta = spec.metadata;
        let meta_kind = meta.kind.unwrap_or(UploadKind::Encrypted);
        let new = NewUpload {
            id: hex::encode(raw_id),
            account_id: account.to_owned(),
            kind: meta_kind.as_str().to_owned(),
            length: spec.length.map(to_i64),
            hash_state: save_sha256(&Sha256::new()),
            declared_sha256: meta.sha256,
            filename: meta.filename,
            content_type: meta.content_type,
            metadata: meta.raw,
            now,
            expires_at: self.expiry(now),
            concat: spec.concat.as_ref().map(Concat::stored),
        };
        // A final upload holds no bytes of its own: its parts were counted when created.
        let is_final = matches!(spec.concat, Some(Concat::Final(_)));
        let added = spec.length.unwrap_or(0);
        let new_upload = Some(meta_kind);
        let fits =
            |usage: &UploadUsage| is_final || self.check_usage(usage, added, new_upload).is_ok();
        let (usage, inserted) = self
            .db
            .insert_upload_if(&new, now, self.held_since(now), fits)
            .await?;
        if !inserted {
            return Err(self
                .check_usage(&usage, added, new_upload)
                .err()
                .unwrap_or_else(|| {
                    ApiError::Internal("the upload quota check disagreed with itself".into())
                }));
        }
        tracing::info!(upload = %new.id, length = ?spec.length, "upload created");
        let row = self
            .db
            .upload(&new.id)
            .await?
            .ok_or(ApiError::NotFound("upload vanished"))?;
        if spec.length == Some(0) {
            let row = self
                .db
                .take_upload_lease(&row.id, now, self.expiry(now))
                .await?
                .ok_or(ApiError::NotFound("upload vanished"))?;
            return self.finalize(&row, row.lease).await;
        }
        Ok(row)
    }

    /// Checks an account's usage, with `added` more bytes (and one more upload of this kind
    /// when `new_upload`), against every per-account limit: unfinished uploads and their
    /// bytes, previews waiting for the worker, then blobs held within the retention and their
    /// bytes (unfinished uploads count in those too: they become blobs).
    fn check_usage(
        &self,
        usage: &UploadUsage,
        added: u64,
        new_upload: Option<UploadKind>,
    ) -> ApiResult<()> {
        let s = &self.settings;
        let (count, bytes) = (to_u64(usage.count), to_u64(usage.bytes));
        if new_upload.is_some() && count >= u64::from(s.max_active_per_account) {
            return Err(ApiError::Quota(
                "too-many-uploads",
                format!(
                    "this account already has {count} unfinished uploads (limit {}); finish or delete some first",
                    s.max_active_per_account
                ),
            ));
        }
        let active = bytes.saturating_add(added);
        if active > s.max_active_bytes_per_account {
            return Err(ApiError::Quota(
                "upload-quota-exceeded",
                format!(
                    "unfinished uploads of this account would total {active} bytes (limit {})",
                    s.max_active_bytes_per_account
                ),
            ));
        }
        let previews = to_u64(usage.previews);
        if new_upload == Some(UploadKind::Preview)
            && previews >= u64::from(s.max_previews_per_account)
        {
            return Err(ApiError::Quota(
                "too-many-previews",
                format!(
                    "this account has {previews} previews uploading or waiting to be processed (limit {}); wait until they are ready",
                    s.max_previews_per_account
                ),
            ));
        }
        let blobs = to_u64(usage.stored_blobs) + count + u64::from(new_upload.is_some());
        if blobs > s.max_stored_blobs_per_account {
            return Err(ApiError::Quota(
                "blob-quota-exceeded",
                format!(
                    "this account would hold {blobs} blobs uploaded within the retention (limit {}); see GET /v1/usage",
                    s.max_stored_blobs_per_account
                ),
            ));
        }
        let stored = to_u64(usage.stored_bytes).saturating_add(active);
        if stored > s.max_stored_bytes_per_account {
            return Err(ApiError::TooLarge(
                "storage-quota-exceeded",
                format!(
                    "this account would hold {stored} bytes of blobs uploaded within the retention (limit {}); see GET /v1/usage",
                    s.max_stored_bytes_per_account
                ),
            ));
        }
        Ok(())
    }

    /// Blobs uploaded after this count in an account's storage quota.
    fn held_since(&self, now: i64) -> i64 {
        now - to_i64(self.retention.as_secs())
    }

    /// An account's usage and limits, for `GET /v1/usage`.
    pub async fn usage(&self, account: &str) -> ApiResult<Usage> {
        let now = unix_now();
        let usage = self
            .db
            .upload_usage(account, now, self.held_since(now))
            .await?;
        let s = &self.settings;
        Ok(Usage {
            stored: StoredUsage {
                blobs: to_u64(usage.stored_blobs),
                bytes: to_u64(usage.stored_bytes),
                max_blobs: s.max_stored_blobs_per_account,
                max_bytes: s.max_stored_bytes_per_account,
                counted_for: self.retention.as_secs(),
            },
            unfinished: UnfinishedUsage {
                uploads: to_u64(usage.count),
                bytes: to_u64(usage.bytes),
                max_uploads: s.max_active_per_account,
                max_bytes: s.max_active_bytes_per_account,
                previews: to_u64(usage.previews),
                max_previews: s.max_previews_per_account,
            },
        })
    }

    pub(super) fn check_max_size(&self, length: u64) -> ApiResult<()> {
        if length > self.settings.max_size {
            return Err(ApiError::TooLarge(
                "upload-too-large",
                format!(
                    "the upload is {length} bytes; the limit is {}",
                    self.settings.max_size
                ),
            ));
        }
        Ok(())
    }

    /// Reads an upload `account` owns; 404 for anyone else's.
    pub async fn owned(&self, account: &str, id: &str) -> ApiResult<UploadRow> {
        match self.db.upload(id).await? {
            Some(row) if row.account_id == account => Ok(row),
            _ => Err(ApiError::NotFound("no such upload")),
        }
    }

    fn check_writable(row: &UploadRow, now: i64) -> ApiResult<()> {
        if is_expired(row, now) {
            return Err(ApiError::UploadExpired);
        }
        match row.state.as_str() {
            "complete" | "parked" | "joining" => Err(ApiError::CompletedUpload),
            "failed" => Err(ApiError::UploadFailed(
                row.error.clone().unwrap_or_default(),
            )),
            _ => Ok(()),
        }
    }

    /// Takes the upload over for a new request, if `check` accepts its row (before the
    /// takeover, which stops any request streaming into it, and again after).
    pub(super) async fn take_over(
        &self,
        account: &str,
        id: &str,
        check: impl Fn(&UploadRow) -> ApiResult<()>,
    ) -> ApiResult<(UploadGuard, UploadRow)> {
        check(&self.owned(account, id).await?)?;
        let guard = self
            .takeover
            .acquire(id)
            .await
            .ok_or(ApiError::Superseded)?;
        let now = unix_now();
        let row = self
            .db
            .take_upload_lease(id, now, self.expiry(now))
            .await?
            .ok_or(ApiError::NotFound("no such upload"))?;
        check(&row)?;
        Ok((guard, row))
    }

    /// Refuses a request that would touch a partial upload a final upload is reading.
    fn not_joining(row: &UploadRow) -> ApiResult<()> {
        if row.state == "joining" {
            return Err(ApiError::PartInUse);
        }
        Ok(())
    }

    /// Runs `work` in a task of its own, so that it finishes (and releases the upload) even if
    /// the client goes away and the request's future is dropped.
    pub(super) async fn detached<F>(work: F) -> ApiResult<UploadRow>
    where
        F: Future<Output = ApiResult<UploadRow>> + Send + 'static,
    {
        tokio::spawn(work)
            .await
            .map_err(|e| ApiError::Internal(format!("upload task: {e}")))?
    }

    /// The upload's state for offset retrieval: stops any request still streaming into it
    /// (it commits what it received first). With `repair` (tus, where reaching the length is
    /// completion), also completes an upload whose bytes are all there but whose completion was
    /// cut short by a crash.
    pub async fn head(
        self: &Arc<Self>,
        account: &str,
        id: &str,
        repair: bool,
    ) -> ApiResult<UploadRow> {
        let this = self.clone();
        let (account, id) = (account.to_owned(), id.to_owned());
        Self::detached(async move {
            let (_guard, row) = this.take_over(&account, &id, |_| Ok(())).await?;
            if is_expired(&row, unix_now()) {
                return Err(ApiError::UploadExpired);
            }
            if repair && row.state == "active" && row.length() == Some(row.offset()) {
                return this.finalize(&row, row.lease).await;
            }
            Ok(row)
        })
        .await
    }

    /// Appends a request body at `spec.offset`.
    pub async fn append(
        self: &Arc<Self>,
        account: &str,
        id: &str,
        spec: AppendSpec,
    ) -> ApiResult<UploadRow> {
        let from = spec.offset;
        let row = self.append_as(account, id, spec, Writer::Client).await?;
        self.credit(account, row.offset().saturating_sub(from));
        Ok(row)
    }

    pub(super) async fn append_as(
        self: &Arc<Self>,
        account: &str,
        id: &str,
        spec: AppendSpec,
        writer: Writer,
    ) -> ApiResult<UploadRow> {
        let this = self.clone();
        let (account, id) = (account.to_owned(), id.to_owned());
        Self::detached(async move { this.append_inner(&account, &id, spec, writer).await }).await
    }

    async fn append_inner(
        &self,
        account: &str,
        id: &str,
        spec: AppendSpec,
        writer: Writer,
    ) -> ApiResult<UploadRow> {
        // A body that could not get a transfer slot is refused before any database work, unless
        // it takes over a request of this node (whose slot it would get back).
        if writer == Writer::Client
            && spec.content_length != Some(0)
            && !self.takeover.in_use(id)
            && let Some(refusal) = self.transfers.refusal(Some(account))
        {
            return Err(self.refused(refusal));
        }
        // A final upload takes no client's bytes: checked before the takeover, which would stop
        // the concatenation streaming into it.
        let (guard, row) = self
            .take_over(account, id, |row| match writer {
                Writer::Client if is_final(row) => Err(ApiError::FinalUpload),
                _ => Self::not_joining(row),
            })
            .await?;
        let now = unix_now();
        let empty = spec.content_length == Some(0);
        if is_complete(&row) && empty && spec.offset == row.offset() && spec.complete != Some(false)
        {
            return Ok(row);
        }
        Self::check_writable(&row, now)?;
        let offset = row.offset();
        if spec.offset != offset {
            return Err(ApiError::OffsetMismatch {
                expected: offset,
                provided: spec.offset,
            });
        }
        let length = self
            .resolve_length(
                &row,
                spec.declared_length,
                spec.complete,
                spec.content_length,
                now,
            )
            .await?;
        let budget = self.budget(&row, length, now).await?;
        if spec.content_length.is_some_and(|cl| cl > budget) {
            return Err(Self::over_budget(length));
        }
        let wants_completion = spec.complete.unwrap_or(true);
        if empty && wants_completion && length == Some(offset) {
            // Nothing left to send: complete (also repairs a completion cut short by a crash).
            self.commit(&row, offset, &row.hash_state, &Manifest::new(), length)
                .await?;
            return self.finalize(&row, row.lease).await;
        }
        let _slot = self.transfer_slot(account, writer)?;
        self.metrics.transfers_active.inc();
        let started = std::time::Instant::now();
        let streamed = self
            .stream_body(
                &guard,
                &row,
                spec.body,
                budget,
                spec.checksum.as_ref().map(|c| c.algorithm),
            )
            .await;
        self.metrics.transfers_active.dec();
        self.metrics
            .transfer_seconds
            .observe(started.elapsed().as_secs_f64());
        let (stop, received, finished) = streamed?;

        if stop == Stop::TooLarge {
            return Err(Self::over_budget(length));
        }
        if let Some(expected) = &spec.checksum {
            if stop != Stop::End {
                return Err(self.stop_error(stop));
            }
            if finished.checksum.as_deref() != Some(expected.digest.as_slice()) {
                return Err(ApiError::ChecksumMismatch(
                    "the body does not match Upload-Checksum; nothing from this request was kept"
                        .into(),
                ));
            }
        }
        let new_offset = offset + received;
        let completes = stop == Stop::End
            && match spec.complete {
                Some(complete) => complete,
                None => length == Some(new_offset),
            };
        let inconsistent = completes && length.is_some_and(|l| l != new_offset);
        let length = if completes && !inconsistent {
            Some(new_offset)
        } else {
            length
        };
        self.commit(
            &row,
            new_offset,
            &finished.hash_state,
            &finished.manifest,
            length,
        )
        .await?;
        if stop != Stop::End {
            tracing::info!(upload = %id, offset = new_offset, ?stop, "append stopped early; progress kept");
            return Err(self.stop_error(stop));
        }
        if inconsistent {
            return Err(ApiError::InconsistentLength(format!(
                "Upload-Complete says the upload ends at {new_offset} but its length is {length:?}"
            )));
        }
        let row = self
            .db
            .upload(id)
            .await?
            .ok_or(ApiError::NotFound("no such upload"))?;
        if completes {
            return self.finalize(&row, row.lease).await;
        }
        Ok(row)
    }

    /// Commits durable progress under `row`'s lease. Fenced off: 410 if the upload expired
    /// meanwhile, else 409 (a newer request holds it).
    pub(super) async fn commit(
        &self,
        row: &UploadRow,
        offset: u64,
        hash_state: &[u8],
        manifest: &Manifest,
        length: Option<u64>,
    ) -> ApiResult<()> {
        let now = unix_now();
        let committed = self
            .db
            .commit_upload_progress(
                &row.id,
                row.lease,
                to_i64(offset),
                hash_state,
                length.map(to_i64),
                manifest,
                now,
                self.expiry(now),
            )
            .await?;
        if committed {
            self.release_staged(&row.id, manifest).await;
            return Ok(());
        }
        match self.db.upload(&row.id).await? {
            Some(current) if current.state == "expired" => Err(ApiError::UploadExpired),
            _ => Err(ApiError::Superseded),
        }
    }

    /// How many more bytes this upload may take: up to its length, the size limit, and (for a
    /// length not yet declared) what is left of the account's quota.
    async fn budget(&self, row: &UploadRow, length: Option<u64>, now: i64) -> ApiResult<u64> {
        let offset = row.offset();
        if let Some(length) = length {
            return Ok(length.saturating_sub(offset));
        }
        let usage = self
            .db
            .upload_usage(&row.account_id, now, self.held_since(now))
            .await?;
        let s = &self.settings;
        let active = to_u64(usage.bytes);
        let quota_left = s.max_active_bytes_per_account.saturating_sub(active).min(
            s.max_stored_bytes_per_account
                .saturating_sub(to_u64(usage.stored_bytes).saturating_add(active)),
        );
        Ok(s.max_size.saturating_sub(offset).min(quota_left))
    }

    fn over_budget(length: Option<u64>) -> ApiError {
        match length {
            Some(l) => ApiError::TooLarge(
                "upload-length-exceeded",
                format!("the body would take the upload past its length {l}"),
            ),
            None => ApiError::TooLarge(
                "upload-too-large",
                "the body would take the upload past the size limit or what is left of the account's quotas (see GET /v1/usage)".into(),
            ),
        }
    }

    fn stop_error(&self, stop: Stop) -> ApiError {
        match stop {
            Stop::Superseded => ApiError::Superseded,
            Stop::TooSlow => ApiError::TooSlow(format!(
                "the body brought fewer than {} bytes a second over {:?}; resume from the upload's offset",
                self.settings.min_transfer_rate, self.settings.transfer_rate_window
            )),
            Stop::Shutdown => ApiError::Unavailable(
                "shutting-down",
                "the server is shutting down; resume from Upload-Offset".into(),
            ),
            _ => ApiError::BadRequest(
                "request-interrupted",
                "the body ended early; resume from the upload's offset".into(),
            ),
        }
    }

    /// Checks any length this request declares against what is known (and, for a newly declared
    /// length, against the account's quota), returning the length.
    async fn resolve_length(
        &self,
        row: &UploadRow,
        declared: Option<u64>,
        complete: Option<bool>,
        content_length: Option<u64>,
        now: i64,
    ) -> ApiResult<Option<u64>> {
        let offset = row.offset();
        let mut length = row.length();
        let mut declare = |l: u64, source: &str| -> ApiResult<()> {
            if length.is_some_and(|known| known != l) || l < offset {
                return Err(ApiError::InconsistentLength(format!(
                    "{source} says {l} bytes but the upload has length {length:?} and offset {offset}"
                )));
            }
            self.check_max_size(l)?;
            length = Some(l);
            Ok(())
        };
        if let Some(l) = declared {
            declare(l, "Upload-Length")?;
        }
        if complete == Some(true)
            && let Some(cl) = content_length
        {
            declare(
                offset.saturating_add(cl),
                "Upload-Complete with Content-Length",
            )?;
        }
        if let (None, Some(new_length)) = (row.length(), length) {
            let usage = self
                .db
                .upload_usage(&row.account_id, now, self.held_since(now))
                .await?;
            // The usage counts this upload at its offset until its length is known.
            self.check_usage(&usage, new_length.saturating_sub(offset), None)?;
        }
        Ok(length)
    }

    async fn stream_body(
        &self,
        guard: &UploadGuard,
        row: &UploadRow,
        body: Body,
        budget: u64,
        checksum: Option<super::protocol::ChecksumAlgorithm>,
    ) -> ApiResult<(Stop, u64, Finished)> {
        let hasher = restore_sha256(&row.hash_state)
            .ok_or_else(|| ApiError::Internal("corrupt hash state".into()))?;
        let max_len = row.length().unwrap_or(self.settings.max_size);
        let manifest = self.db.upload_manifest(&row.id).await?;
        let writer = self
            .store
            .open_staged(&row.id, row.offset(), max_len, &manifest)
            .await?;
        // With a per-request checksum the request is all or nothing: no intermediate commits.
        let every = checksum
            .is_none()
            .then_some(self.settings.checkpoint_bytes.max(1));
        let (sink, mut durable) = Sink::start(writer, hasher, checksum, every);
        let mut stream = body.into_data_stream();
        let mut received = 0u64;
        let window = self.settings.transfer_rate_window;
        let mut pace = Pace::new(
            self.settings.idle_timeout,
            self.settings.min_transfer_rate,
            window,
            Instant::now(),
            window.mul_f64(rand::random_range(0.0..0.5)),
        );
        let mut lease_check = tokio::time::interval(self.settings.lease_check_interval);
        lease_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stop: ApiResult<Stop> = async {
            loop {
                let next = tokio::select! {
                    biased;
                    () = guard.cancelled().cancelled() => return Ok(Stop::Superseded),
                    () = self.shutdown.cancelled() => return Ok(Stop::Shutdown),
                    _ = lease_check.tick() => {
                        let busy = Instant::now();
                        if self.db.upload_lease(&row.id).await? != Some(row.lease) {
                            return Ok(Stop::Superseded);
                        }
                        pace.paused(busy.elapsed());
                        continue;
                    }
                    Some(checkpoint) = durable.recv() => {
                        let busy = Instant::now();
                        if !self.commit_checkpoint(row, checkpoint?).await? {
                            return Ok(Stop::Superseded);
                        }
                        pace.paused(busy.elapsed());
                        continue;
                    }
                    () = tokio::time::sleep_until(pace.deadline()) => {
                        match pace.check(Instant::now()) {
                            Some(Lapse::Idle) => return Ok(Stop::Interrupted),
                            Some(Lapse::TooSlow) => {
                                self.metrics.transfers_too_slow.inc();
                                return Ok(Stop::TooSlow);
                            }
                            None => continue,
                        }
                    }
                    next = stream.next() => next,
                };
                let chunk = match next {
                    Some(Ok(chunk)) => chunk,
                    None => return Ok(Stop::End),
                    Some(Err(e)) => {
                        tracing::debug!(upload = %row.id, error = %e, "the body failed");
                        return Ok(Stop::Interrupted);
                    }
                };
                let len = chunk.len() as u64;
                if received + len > budget {
                    return Ok(Stop::TooLarge);
                }
                received += len;
                self.metrics.upload_bytes.inc_by(len);
                let arrived = Instant::now();
                pace.received(len, arrived);
                sink.write(chunk).await?;
                pace.paused(arrived.elapsed());
            }
        }
        .await;
        // Always wait for the writer thread, even on error, so that no write of this request
        // can land after the upload is released to the next one.
        let finished = sink.finish().await;
        let (stop, finished) = (stop?, finished?);
        Ok((stop, received, finished))
    }

    /// A transfer slot for `account`'s request, or why not (the server's own concatenation
    /// counts only against the node's slots).
    fn transfer_slot(&self, account: &str, writer: Writer) -> ApiResult<super::transfers::Slot> {
        let owner = (writer == Writer::Client).then_some(account);
        self.transfers
            .acquire(owner)
            .map_err(|refusal| self.refused(refusal))
    }

    /// The answer to a request refused a transfer slot, counted.
    fn refused(&self, refusal: Refusal) -> ApiError {
        let reason = match refusal {
            Refusal::Node => "node_limit",
            Refusal::Account(_) => "account_limit",
        };
        self.metrics
            .transfers_refused
            .get_or_create(&ReasonLabels { reason })
            .inc();
        match refusal {
            Refusal::Node => ApiError::Unavailable(
                "too-busy",
                "too many uploads are streaming on this node; retry shortly".into(),
            ),
            Refusal::Account(share) => ApiError::Quota(
                "too-many-transfers",
                format!(
                    "this account already streams {share} upload request(s) on this node, its share while the node is this busy; send one upload at a time or retry shortly"
                ),
            ),
        }
    }

    /// Records a durable checkpoint of a request still streaming; false when fenced off.
    async fn commit_checkpoint(&self, row: &UploadRow, checkpoint: Durable) -> ApiResult<bool> {
        let now = unix_now();
        let offset = row.offset() + checkpoint.written;
        let committed = self
            .db
            .commit_upload_progress(
                &row.id,
                row.lease,
                to_i64(offset),
                &checkpoint.hash_state,
                None,
                &checkpoint.manifest,
                now,
                self.expiry(now),
            )
            .await?;
        if committed {
            self.release_staged(&row.id, &checkpoint.manifest).await;
        }
        Ok(committed)
    }

    /// Lets the store drop what it kept only to resume from before the checkpoint whose
    /// manifest entries were just committed (best effort: what it keeps is deleted with the
    /// upload anyway).
    async fn release_staged(&self, id: &str, committed: &Manifest) {
        if let Err(e) = self.store.committed(id, committed).await {
            tracing::warn!(upload = %id, error = %e, "cannot release staged bytes before the committed offset");
        }
    }

    /// Verifies the declared SHA-256 and publishes the bytes as a blob.
    pub(super) async fn finalize(&self, row: &UploadRow, lease: i64) -> ApiResult<UploadRow> {
        let hasher = restore_sha256(&row.hash_state)
            .ok_or_else(|| ApiError::Internal("corrupt hash state".into()))?;
        let digest: [u8; 32] = hasher.finalize().into();
        let blob = BlobId::from_digest(&digest);
        let now = unix_now();
        if row
            .declared_sha256
            .as_deref()
            .is_some_and(|d| d != blob.as_str())
        {
            self.store.discard_staged(&row.id).await?;
            self.db
                .fail_upload(&row.id, lease, "sha256-mismatch", now)
                .await?;
            tracing::info!(upload = %row.id, "upload failed: sha256 mismatch");
            return Err(ApiError::Sha256Mismatch);
        }
        let size = row.offset();
        // Every upload publishes its own copy; the database then decides, atomically with the
        // completion, whether the copy becomes the blob's (new or expired blob) or is dropped
        // (the blob is live already). Deciding before publishing would race the retention sweep.
        let manifest = self.db.upload_manifest(&row.id).await?;
        let key = match self.store.publish(&row.id, &blob, size, &manifest).await {
            Ok(key) => key,
            Err(StoreError::Conflict) => {
                self.store.discard_staged(&row.id).await?;
                self.db
                    .fail_upload(&row.id, lease, "upload-conflict", now)
                    .await?;
                tracing::warn!(upload = %row.id, "upload failed: a fenced-off writer overwrote committed bytes");
                return Err(ApiError::UploadConflict);
            }
            Err(e) => return Err(e.into()),
        };
        if is_partial(row) {
            let kept = self
                .db
                .complete_partial_upload(&row.id, lease, to_i64(size), &key, now, self.expiry(now))
                .await?;
            if !kept {
                return Err(ApiError::Superseded);
            }
            tracing::info!(upload = %row.id, size, "partial upload complete");
            return self
                .db
                .upload(&row.id)
                .await?
                .ok_or(ApiError::NotFound("no such upload"));
        }
        let Some(completion) = self
            .db
            .complete_upload(&row.id, lease, blob.as_str(), to_i64(size), &key, now)
            .await?
        else {
            // Fenced off: the newer holder of the lease publishes to the same key (keys are per
            // upload), so the copy is not ours to delete.
            return Err(ApiError::Superseded);
        };
        for unused in &completion.unused {
            self.delete_copy(unused).await;
        }
        self.metrics.uploads_completed.inc();
        self.metrics
            .upload_seconds
            .observe(now.saturating_sub(row.created_at).max(0) as f64);
        self.metrics.upload_size.observe(size as f64);
        tracing::info!(upload = %row.id, blob = %blob, size, "upload complete");
        if completion.media_queued {
            // Off the request: the database row is the job's record, and the workers' sweep
            // publishes it again if this fails, so the client need not wait for the bus.
            let bus = self.bus.clone();
            let blob = blob.clone();
            tokio::spawn(async move {
                if let Err(e) = publish_job(bus.as_ref(), blob.as_str()).await {
                    tracing::warn!(blob = %blob, error = %e, "cannot publish a media job; it will be requeued");
                }
            });
        }
        self.db
            .upload(&row.id)
            .await?
            .ok_or(ApiError::NotFound("no such upload"))
    }

    /// Deletes a copy of a blob nobody refers to (best effort: a failure leaves an orphan
    /// object, never a missing one).
    pub(super) async fn delete_copy(&self, key: &str) {
        if let Err(e) = self.store.delete(key).await {
            tracing::warn!(key, error = %e, "cannot delete an unused copy of a blob");
        }
    }

    /// Terminates an upload: stops any request streaming into it, deletes its bytes and row.
    pub async fn terminate(self: &Arc<Self>, account: &str, id: &str) -> ApiResult<()> {
        let this = self.clone();
        let (account, id) = (account.to_owned(), id.to_owned());
        Self::detached(async move {
            let (_guard, row) = this.take_over(&account, &id, Self::not_joining).await?;
            this.store.discard_staged(&id).await?;
            if let Some(key) = &row.storage_key {
                this.store.delete(key).await?;
            }
            this.db.delete_upload(&id).await?;
            tracing::info!(upload = %id, "upload terminated");
            Ok(row)
        })
        .await
        .map(drop)
    }

    /// Expires due uploads (deleting their bytes) and deletes old finished rows.
    pub async fn sweep(&self) -> ApiResult<(usize, u64)> {
        let now = unix_now();
        let mut expired = 0;
        for (id, key) in self.db.due_uploads(now, 500).await? {
            // A finished part's bytes first: the expired row forgets where they are. (No final
            // upload can claim a part that is due.)
            if let Some(key) = key
                && let Err(e) = self.store.delete(&key).await
            {
                tracing::warn!(upload = %id, key, error = %e, "cannot delete an expired partial upload's bytes; retrying next sweep");
                continue;
            }
            if self.db.expire_upload(&id, now).await? {
                expired += 1;
                if let Err(e) = self.store.discard_staged(&id).await {
                    tracing::warn!(upload = %id, error = %e, "cannot delete an expired upload's bytes");
                }
            }
        }
        let cutoff = now - to_i64(self.settings.finished_retention.as_secs());
        let purged = self.db.purge_finished_uploads(cutoff).await?;
        if expired > 0 || purged > 0 {
            tracing::info!(expired, purged, "upload sweep");
        }
        Ok((expired, purged))
    }
}
