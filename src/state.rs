//! What every handler can reach.

use std::sync::Arc;

use axum::extract::FromRef;
use sealpost_auth::AuthService;
use sealpost_bus::Bus;
use sealpost_chat::Chat;
use sealpost_db::Db;
use sealpost_store::BlobStore;

use crate::blobs::BlobService;
use crate::config::Settings;
use crate::http::client::TrustedProxies;
use crate::metrics::Metrics;
use crate::uploads::UploadService;

/// Shared application state; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Effective settings.
    pub settings: Arc<Settings>,
    /// The proxies whose `X-Forwarded-For` is believed (`settings.trusted_proxies`).
    pub proxies: Arc<TrustedProxies>,
    /// Metadata database.
    pub db: Db,
    /// Blob store.
    pub store: Arc<dyn BlobStore>,
    /// Message bus.
    pub bus: Arc<dyn Bus>,
    /// Accounts and tokens.
    pub auth: Arc<AuthService>,
    /// Uploads.
    pub uploads: Arc<UploadService>,
    /// Blob access, links and retention.
    pub blobs: Arc<BlobService>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The chat server of this node.
    pub chat: Arc<Chat>,
}

impl FromRef<AppState> for Arc<Chat> {
    fn from_ref(state: &AppState) -> Self {
        state.chat.clone()
    }
}

impl FromRef<AppState> for Arc<AuthService> {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}
