//! Prometheus metrics: requests by route and status, upload bytes received, transfers and
//! uploads in progress, media jobs by outcome.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of `sealpost_http_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Route template, e.g. `/v1/uploads/{id}`.
    pub route: String,
    /// HTTP method.
    pub method: String,
    /// Status code.
    pub status: u16,
}

/// Labels of `sealpost_media_jobs_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MediaJobLabels {
    /// `ready`, `failed` (with `code`), or `retried` (a transient failure).
    pub outcome: &'static str,
    /// The failure code; empty otherwise.
    pub code: String,
}

/// Every metric the server exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests by route, method and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Upload bytes received (before they are committed).
    pub upload_bytes: Counter,
    /// Upload requests streaming right now on this node.
    pub transfers_active: Gauge,
    /// Unfinished uploads in the database (refreshed at scrape).
    pub uploads_in_progress: Gauge,
    /// Uploads completed as blobs.
    pub uploads_completed: Counter,
    /// Media job attempts by outcome.
    pub media_jobs: Family<MediaJobLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sealpost");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        let upload_bytes = Counter::default();
        registry.register(
            "upload_received_bytes",
            "Upload bytes received",
            upload_bytes.clone(),
        );
        let transfers_active = Gauge::default();
        registry.register(
            "upload_transfers_active",
            "Upload requests streaming now",
            transfers_active.clone(),
        );
        let uploads_in_progress = Gauge::default();
        registry.register(
            "uploads_in_progress",
            "Unfinished uploads",
            uploads_in_progress.clone(),
        );
        let uploads_completed = Counter::default();
        registry.register(
            "uploads_completed",
            "Uploads completed as blobs",
            uploads_completed.clone(),
        );
        let media_jobs = Family::<MediaJobLabels, Counter>::default();
        registry.register(
            "media_jobs",
            "Media processing attempts by outcome",
            media_jobs.clone(),
        );
        Self {
            registry,
            requests,
            upload_bytes,
            transfers_active,
            uploads_in_progress,
            uploads_completed,
            media_jobs,
        }
    }
}

impl Metrics {
    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
