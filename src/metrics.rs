//! Prometheus metrics of a node: HTTP requests by route, uploads, downloads and media jobs,
//! beside the chat's and the bus's (registered from their crates). Every label value comes
//! from the code (a matched route, a method from a fixed list, an outcome), never from what a
//! client sent, so the exposition stays the same size whatever clients send.
//! docs/operations.md lists them.

use axum::http::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use sealpost_bus::BusMetrics;
use sealpost_chat::ChatMetrics;

use crate::config::Role;

/// Upper bounds of the request-latency buckets, seconds.
const REQUEST_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// Upper bounds of the buckets of whole transfers and jobs, seconds.
const LONG_BUCKETS: [f64; 14] = [
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 86_400.0,
];
/// Upper bounds of the upload-size buckets, bytes (64 KiB to 4 GiB, by fours).
const SIZE_BUCKETS: [f64; 9] = [
    65_536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
    268_435_456.0,
    1_073_741_824.0,
    4_294_967_296.0,
];

/// The methods requests are counted under; any other is `other`.
const METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

/// A request method as the metrics name it: one of a fixed few.
pub fn method_label(method: &Method) -> &'static str {
    METHODS
        .iter()
        .find(|m| *m == method)
        .map_or("other", Method::as_str)
}

/// Labels of `sealpost_http_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Route template, e.g. `/v1/uploads/{id}`, or `unmatched`.
    pub route: String,
    /// HTTP method, from [`method_label`].
    pub method: &'static str,
    /// Status code.
    pub status: u16,
}

/// Labels of `sealpost_http_request_duration_seconds`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Route template, or `unmatched`.
    pub route: String,
    /// HTTP method, from [`method_label`].
    pub method: &'static str,
}

/// Labels of `sealpost_media_jobs_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MediaJobLabels {
    /// `ready`, `failed` (with `code`), or `retried` (a transient failure).
    pub outcome: &'static str,
    /// The failure code (the worker's or the transcoder's); empty otherwise.
    pub code: String,
}

/// Labels of the metrics with an outcome only.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// What happened.
    pub outcome: &'static str,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Which cap: `node_limit`, `address_limit` or `account_limit`.
    pub reason: &'static str,
}

/// How a tus final upload was joined: `copy` or `stream`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    /// `copy` or `stream`.
    pub method: &'static str,
}

/// Labels of `sealpost_build_info`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    role: &'static str,
}

/// Every metric a node exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests by route, method and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Time until the response head, by route and method.
    pub request_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Upload bytes received (before they are committed).
    pub upload_bytes: Counter,
    /// Upload requests streaming right now on this node.
    pub transfers_active: Gauge,
    /// How long each upload request streamed.
    pub transfer_seconds: Histogram,
    /// Upload requests refused a transfer slot, by which cap they hit.
    pub transfers_refused: Family<ReasonLabels, Counter>,
    /// Upload requests stopped for bringing less than the minimum rate.
    pub transfers_too_slow: Counter,
    /// Upload requests refused by `uploads.requests_per_account_per_minute`.
    pub upload_requests_limited: Counter,
    /// Unfinished uploads in the database (refreshed at scrape).
    pub uploads_in_progress: Gauge,
    /// Uploads completed as blobs.
    pub uploads_completed: Counter,
    /// Client connections open on this node.
    pub connections_open: Gauge,
    /// Connections closed as they were accepted, by which cap they hit.
    pub connections_refused: Family<ReasonLabels, Counter>,
    /// Connections closed because a request's header (or the next request) did not come in
    /// time.
    pub header_timeouts: Counter,
    /// tus final uploads joined, by how: `copy` (server-side, by the store) or `stream`.
    pub concatenations: Family<MethodLabels, Counter>,
    /// An upload's creation to its completion.
    pub upload_seconds: Histogram,
    /// Sizes of completed uploads.
    pub upload_size: Histogram,
    /// Blob bytes streamed to clients.
    pub download_bytes: Counter,
    /// Blob download responses by outcome.
    pub downloads: Family<OutcomeLabels, Counter>,
    /// A caching proxy's authorisation checks by outcome.
    pub authorizations: Family<OutcomeLabels, Counter>,
    /// Media job attempts by outcome.
    pub media_jobs: Family<MediaJobLabels, Counter>,
    /// Media job attempts' durations by outcome.
    pub media_job_seconds: Family<OutcomeLabels, Histogram, fn() -> Histogram>,
}

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS)
}

fn long_histogram() -> Histogram {
    Histogram::new(LONG_BUCKETS)
}

impl Metrics {
    /// The metrics of a node running `role`, with the chat's and the bus's.
    pub fn new(role: Role, chat: &ChatMetrics, bus: &BusMetrics) -> Self {
        let mut metrics = Self {
            registry: Registry::with_prefix("sealpost"),
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(request_histogram),
            upload_bytes: Counter::default(),
            transfers_active: Gauge::default(),
            transfer_seconds: long_histogram(),
            transfers_refused: Family::default(),
            transfers_too_slow: Counter::default(),
            upload_requests_limited: Counter::default(),
            uploads_in_progress: Gauge::default(),
            uploads_completed: Counter::default(),
            concatenations: Family::default(),
            connections_open: Gauge::default(),
            connections_refused: Family::default(),
            header_timeouts: Counter::default(),
            upload_seconds: long_histogram(),
            upload_size: Histogram::new(SIZE_BUCKETS),
            download_bytes: Counter::default(),
            downloads: Family::default(),
            authorizations: Family::default(),
            media_jobs: Family::default(),
            media_job_seconds: Family::new_with_constructor(long_histogram),
        };
        let r = &mut metrics.registry;
        // A gauge of 1, as Prometheus's own build_info (an OpenMetrics info would be the
        // same, but the classic text format, which promtool reads, has no such type).
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                role: role.as_str(),
            })
            .set(1);
        r.register("build_info", "The running version and role", build);
        r.register(
            "http_requests",
            "HTTP requests by route, method and status",
            metrics.requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "Time until the response head, by route and method (a download's bytes stream \
             after it; an upload request has read its body by then)",
            metrics.request_seconds.clone(),
        );
        r.register(
            "upload_received_bytes",
            "Upload bytes received",
            metrics.upload_bytes.clone(),
        );
        r.register(
            "upload_transfers_active",
            "Upload requests streaming now",
            metrics.transfers_active.clone(),
        );
        r.register(
            "upload_transfer_duration_seconds",
            "How long each upload request streamed bytes",
            metrics.transfer_seconds.clone(),
        );
        r.register(
            "upload_transfers_refused",
            "Upload requests refused a transfer slot, by cap (node_limit: uploads.max_concurrent_transfers, 503 too-busy; account_limit: the account's share, 429 too-many-transfers)",
            metrics.transfers_refused.clone(),
        );
        r.register(
            "upload_transfers_too_slow",
            "Upload requests stopped for bringing less than uploads.min_transfer_rate over uploads.transfer_rate_window (408 transfer-too-slow, progress kept)",
            metrics.transfers_too_slow.clone(),
        );
        r.register(
            "upload_requests_limited",
            "Upload requests refused by uploads.requests_per_account_per_minute (429 rate-limited)",
            metrics.upload_requests_limited.clone(),
        );
        r.register(
            "uploads_in_progress",
            "Unfinished uploads",
            metrics.uploads_in_progress.clone(),
        );
        r.register(
            "uploads_completed",
            "Uploads completed as blobs",
            metrics.uploads_completed.clone(),
        );
        r.register(
            "http_connections_open",
            "Client connections open on this node",
            metrics.connections_open.clone(),
        );
        r.register(
            "http_connections_refused",
            "Connections closed as they were accepted, by cap (node_limit: connections.max; address_limit: connections.max_per_address)",
            metrics.connections_refused.clone(),
        );
        r.register(
            "http_header_timeouts",
            "Connections closed because a request header did not arrive within connections.header_read_timeout (or none came on an idle connection)",
            metrics.header_timeouts.clone(),
        );
        r.register(
            "upload_concatenations",
            "tus final uploads joined from their partial uploads, by method (copy: server-side by the store; stream: through this node)",
            metrics.concatenations.clone(),
        );
        r.register(
            "upload_duration_seconds",
            "An upload's creation to its completion, across resumptions",
            metrics.upload_seconds.clone(),
        );
        r.register(
            "upload_size_bytes",
            "Sizes of completed uploads",
            metrics.upload_size.clone(),
        );
        r.register(
            "download_sent_bytes",
            "Blob bytes streamed to clients",
            metrics.download_bytes.clone(),
        );
        r.register(
            "download_responses",
            "Blob download responses by outcome: full, partial, not_modified, if_range_stale, \
             unsatisfiable, redirect",
            metrics.downloads.clone(),
        );
        r.register(
            "download_authorizations",
            "A caching proxy's per-request authorisation checks, allowed or refused",
            metrics.authorizations.clone(),
        );
        r.register(
            "media_jobs",
            "Media processing attempts by outcome",
            metrics.media_jobs.clone(),
        );
        r.register(
            "media_job_duration_seconds",
            "Media processing attempts' durations by outcome",
            metrics.media_job_seconds.clone(),
        );
        chat.register(r);
        bus.register(r);
        metrics
    }

    /// Counts a download response.
    pub fn download(&self, outcome: &'static str) {
        self.downloads
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Counts a connection refused at a cap.
    pub fn connection_refused(&self, reason: &'static str) {
        self.connections_refused
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Counts a caching proxy's authorisation check.
    pub fn authorization(&self, outcome: &'static str) {
        self.authorizations
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The classic Prometheus text exposition (version 0.0.4), for scrapers and tools that do
    /// not ask for OpenMetrics (promtool, curl).
    pub fn encode_classic(&self) -> String {
        classic(&self.encode())
    }
}

/// An OpenMetrics text exposition in the classic Prometheus text format: a counter family is
/// named with its `_total` suffix, an `unknown` one is `untyped`, and there are no `# UNIT` or
/// `# EOF` lines. (prometheus-client writes help text as it is given; ours has no line breaks
/// or backslashes, which both formats would want escaped.)
fn classic(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let family = |name: &str| {
        if counters.contains(name) {
            format!("{name}_total")
        } else {
            name.to_owned()
        }
    };
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if let Some((name, kind)) = line.strip_prefix("# TYPE ").and_then(|r| r.split_once(' ')) {
            let kind = if kind == "unknown" { "untyped" } else { kind };
            out.push_str(&format!("# TYPE {} {kind}\n", family(name)));
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            out.push_str(&format!("# HELP {} {text}\n", family(name)));
        } else if !(line.starts_with("# UNIT ") || line == "# EOF") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classic_format_names_counters_with_their_suffix_and_has_no_openmetrics_lines() {
        let openmetrics = "# HELP a_bytes Bytes sent.\n# TYPE a_bytes counter\n# UNIT a_bytes bytes\n\
                           a_bytes_total 3\n# HELP b A gauge.\n# TYPE b gauge\nb{x=\"1\"} 2\n# EOF\n";
        assert_eq!(
            classic(openmetrics),
            "# HELP a_bytes_total Bytes sent.\n# TYPE a_bytes_total counter\na_bytes_total 3\n\
             # HELP b A gauge.\n# TYPE b gauge\nb{x=\"1\"} 2\n"
        );
    }

    #[test]
    fn methods_outside_the_list_are_other() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let brew = Method::from_bytes(b"BREW").expect("method");
        assert_eq!(method_label(&brew), "other");
    }
}
