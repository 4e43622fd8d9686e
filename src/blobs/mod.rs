//! Stored blobs after upload: who may read them (bearer tokens and signed links), how long they
//! are kept (retention from their last upload or link), and the sweep that deletes expired ones.

pub mod files;
pub mod links;

use std::sync::Arc;
use std::time::Duration;

use sealpost_auth::{AuthService, bearer_token, secs, unix_now};
use sealpost_db::{BlobRow, Db};
use sealpost_store::{BlobId, BlobStore};

use crate::config::BlobSettings;
use crate::error::{ApiError, ApiResult};
use links::{LinkKeys, LinkParams, LinkRefusal};

/// Blobs: access, links, retention.
#[derive(Debug)]
pub struct BlobService {
    db: Db,
    store: Arc<dyn BlobStore>,
    auth: Arc<AuthService>,
    keys: LinkKeys,
    settings: BlobSettings,
}

/// What let a request read a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A bearer token.
    Token,
    /// A signed link valid until `expires` (Unix seconds).
    Link {
        /// The link's expiry.
        expires: i64,
    },
}

/// How many blobs one sweep pass expires or deletes at most.
const SWEEP_BATCH: i64 = 500;

impl BlobService {
    /// A service over these backends.
    pub fn new(
        db: Db,
        store: Arc<dyn BlobStore>,
        auth: Arc<AuthService>,
        keys: LinkKeys,
        settings: BlobSettings,
    ) -> Self {
        Self {
            db,
            store,
            auth,
            keys,
            settings,
        }
    }

    /// Checks that a request may read blob `id`: with a valid, unexpired signed link to it when
    /// the query carries one, else with a bearer token. Any authenticated account may read any
    /// blob whose id it knows (the id is the capability; see docs/downloads.md).
    pub async fn authorize(
        &self,
        id: &str,
        headers: &axum::http::HeaderMap,
        link: &LinkParams,
    ) -> ApiResult<Access> {
        if link.present() {
            return match self.keys.verify(id, link, unix_now()) {
                Ok(expires) => Ok(Access::Link { expires }),
                Err(LinkRefusal::Invalid) => Err(ApiError::LinkInvalid),
                Err(LinkRefusal::Expired) => Err(ApiError::LinkExpired),
            };
        }
        let token = bearer_token(headers)?;
        self.auth.authenticate(token).await?;
        Ok(Access::Token)
    }

    /// Whether redirect mode sends a download with this access elsewhere. A link request is
    /// served here when the target is the CDN: it is the CDN fetching (redirecting it back to
    /// the CDN would loop).
    pub fn redirects(&self, access: Access) -> bool {
        access == Access::Token || self.settings.cdn_base_url.is_none()
    }

    /// The `Cache-Control` of a blob response. Immutable bytes may be kept a year; with a link,
    /// no longer than the link is valid, so that no cache (shared or the browser's) serves a
    /// link after it expired.
    pub fn cache_control(access: Access) -> String {
        const YEAR: i64 = 31_536_000;
        let max_age = match access {
            Access::Token => YEAR,
            Access::Link { expires } => (expires - unix_now()).clamp(0, YEAR),
        };
        format!("public, max-age={max_age}, immutable")
    }

    /// The live blob `id`: 404 if it never existed, 410 `blob-expired` once retention ran out.
    pub async fn live(&self, id: &str) -> ApiResult<(BlobId, BlobRow)> {
        let blob: BlobId = id.parse().map_err(|_| ApiError::NotFound("no such blob"))?;
        let row = self
            .db
            .blob(blob.as_str())
            .await?
            .ok_or(ApiError::NotFound("no such blob"))?;
        if !row.is_live(unix_now(), self.retention()) {
            return Err(ApiError::BlobExpired);
        }
        Ok((blob, row))
    }

    /// Mints a link to a live blob valid for `expires_in` (the default when `None`), and
    /// restarts the blob's retention. Returns `(query, expires_at)`.
    pub async fn mint_link(&self, id: &str, expires_in: Option<u64>) -> ApiResult<(String, i64)> {
        let ttl = match expires_in {
            None => self.settings.link_ttl,
            Some(0) => {
                return Err(ApiError::BadRequest(
                    "invalid-expiry",
                    "expires_in must be at least 1 second".into(),
                ));
            }
            Some(s) if Duration::from_secs(s) > self.settings.max_link_ttl => {
                return Err(ApiError::BadRequest(
                    "invalid-expiry",
                    format!(
                        "expires_in may be at most {} seconds",
                        self.settings.max_link_ttl.as_secs()
                    ),
                ));
            }
            Some(s) => Duration::from_secs(s),
        };
        let (blob, _) = self.live(id).await?;
        let now = unix_now();
        if !self.db.touch_blob(blob.as_str(), now).await? {
            return Err(ApiError::BlobExpired);
        }
        let expires = now.saturating_add(secs(ttl));
        Ok((self.link_query(blob.as_str(), expires), expires))
    }

    /// The query string of a link to `blob` expiring at `expires`.
    pub fn link_query(&self, blob: &str, expires: i64) -> String {
        let (kid, sig) = self.keys.sign(blob, expires);
        format!("expires={expires}&kid={kid}&sig={sig}")
    }

    /// Where redirect mode sends an authorised download of `blob`: a short-lived signed link on
    /// the CDN base URL when one is configured, else a presigned URL from the store.
    pub async fn redirect_target(&self, blob: &BlobId, row: &BlobRow) -> ApiResult<String> {
        let ttl = self.settings.redirect_ttl;
        if let Some(base) = &self.settings.cdn_base_url {
            let expires = unix_now().saturating_add(secs(ttl));
            let query = self.link_query(blob.as_str(), expires);
            return Ok(format!(
                "{}/v1/blobs/{blob}?{query}",
                base.trim_end_matches('/')
            ));
        }
        self.store
            .presign(&row.storage_key, ttl)
            .await?
            .ok_or_else(|| ApiError::Internal("redirect mode without a target".into()))
    }

    /// Retention in seconds.
    fn retention(&self) -> i64 {
        secs(self.settings.retention)
    }

    /// Expires blobs untouched for the retention period and deletes their bytes; returns how
    /// many blobs it expired.
    pub async fn sweep(&self) -> ApiResult<usize> {
        let cutoff = unix_now() - self.retention();
        let mut expired = 0;
        for (id, key) in self.db.due_blobs(cutoff, SWEEP_BATCH).await? {
            if self.db.expire_blob(&id, &key, cutoff).await? {
                expired += 1;
            }
        }
        self.db.forget_holdings(cutoff).await?;
        // Also finishes deletions an earlier sweep (on any node) was interrupted in.
        for (id, key) in self.db.expired_blobs(SWEEP_BATCH).await? {
            match self.store.delete(&key).await {
                Ok(()) => self.db.forget_blob(&id, &key).await?,
                Err(e) => tracing::warn!(blob = %id, error = %e, "cannot delete an expired blob"),
            }
        }
        if expired > 0 {
            tracing::info!(expired, "blob retention sweep");
        }
        Ok(expired)
    }
}
