//! Start-up: open the backends, bind the listener (port 0 works), serve until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sealpost_auth::AuthService;
use sealpost_bus::BusMetrics;
use sealpost_chat::{Chat, ChatMetrics};
use sealpost_db::{Backend, Db};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::blobs::BlobService;
use crate::blobs::links::LinkKeys;
use crate::config::{DownloadMode, Settings};
use crate::http::client::TrustedProxies;
use crate::http::interim::InterimListener;
use crate::media::worker::MediaWorker;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::uploads::UploadService;

/// A built server, bound and ready to run.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    state: AppState,
    media: Option<Arc<MediaWorker>>,
    shutdown: CancellationToken,
}

/// Opens the database named by the settings and applies migrations.
pub async fn open_database(settings: &Settings) -> anyhow::Result<Db> {
    if settings.database_url.is_none() {
        std::fs::create_dir_all(&settings.data_dir).with_context(|| {
            format!(
                "cannot create data directory {}",
                settings.data_dir.display()
            )
        })?;
    }
    let url = settings.database_url();
    let db = Db::connect(&url, settings.database_max_connections)
        .await
        .context("cannot open the database")?;
    db.migrate().await.context("cannot migrate the database")?;
    Ok(db)
}

impl Application {
    /// Opens the backends and binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.uploads.validate()?;
        settings.connections.validate()?;
        settings.blobs.validate()?;
        settings.media.validate()?;
        settings.chat.validate()?;
        let proxies = Arc::new(TrustedProxies::parse(&settings.trusted_proxies)?);
        let db = open_database(&settings).await?;
        let store = sealpost_store::open(&settings.blob_store_url())
            .await
            .context("cannot open the blob store")?;
        store
            .check()
            .await
            .context("the blob store is not usable")?;
        let bus_metrics = BusMetrics::default();
        let bus = sealpost_bus::metered(
            sealpost_bus::open(&settings.bus)
                .await
                .context("cannot open the bus")?,
            &bus_metrics,
        );
        bus.check().await.context("the bus is not usable")?;
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let shutdown = CancellationToken::new();
        let chat_metrics = ChatMetrics::default();
        let metrics = Arc::new(Metrics::new(settings.role, &chat_metrics, &bus_metrics));
        let auth = Arc::new(AuthService::new(db.clone(), settings.auth_config()));
        let uploads = Arc::new(UploadService::new(
            db.clone(),
            store.clone(),
            settings.uploads.clone(),
            settings.blobs.retention,
            shutdown.clone(),
            metrics.clone(),
            bus.clone(),
        ));
        let keys = LinkKeys::load(&settings.blobs.link_keys, &settings.data_dir)
            .context("cannot load the link-signing keys")?;
        if settings.role.serves_api()
            && settings.blobs.link_keys.is_empty()
            && settings.database_url.is_some()
        {
            tracing::warn!(
                "blobs.link_keys is not set: links are signed with a key in the data directory, \
                 which other nodes do not share"
            );
        }
        if settings.downloads == DownloadMode::Redirect
            && settings.blobs.cdn_base_url.is_none()
            && store
                .presign("probe", settings.blobs.redirect_ttl)
                .await?
                .is_none()
        {
            anyhow::bail!(
                "--downloads redirect needs a blob store that presigns URLs (s3://…) or \
                 blobs.cdn_base_url"
            );
        }
        let blobs = Arc::new(BlobService::new(
            db.clone(),
            store.clone(),
            auth.clone(),
            keys,
            settings.blobs.clone(),
        ));
        let media = if settings.role.runs_workers() {
            Some(Arc::new(
                MediaWorker::new(
                    db.clone(),
                    blobs.clone(),
                    bus.clone(),
                    settings.media.clone(),
                    metrics.clone(),
                )
                .context("cannot start the media workers")?,
            ))
        } else {
            None
        };
        let chat = Chat::new(
            db.clone(),
            bus.clone(),
            auth.clone(),
            settings.chat.config(),
            shutdown.clone(),
            chat_metrics,
        );
        let state = AppState {
            settings: Arc::new(settings),
            proxies,
            db,
            store,
            bus,
            auth,
            uploads,
            blobs,
            metrics,
            chat,
        };
        Ok(Self {
            listener,
            state,
            media,
            shutdown,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `signal` resolves, then stops accepting, lets upload requests commit what
    /// they received, and waits (up to the grace period) for in-flight requests.
    pub async fn run_until(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            state,
            media,
            shutdown,
        } = self;
        let addr = listener.local_addr()?;
        let role = state.settings.role;
        tracing::info!(%addr, ?role, "sealpost listening on http://{addr}");
        if role.runs_workers() {
            // Before any new send, so that lost ones keep their place.
            state
                .chat
                .recover()
                .await
                .context("cannot publish again the chat sends the last process lost")?;
        }
        let mut tasks = Vec::new();
        if state.db.backend() == Backend::Sqlite {
            let db = state.db.clone();
            tasks.push(every(
                Duration::from_secs(1),
                &shutdown,
                "database checkpoint",
                move || {
                    let db = db.clone();
                    async move { db.checkpoint().await }
                },
            ));
        }
        if role.serves_api() {
            tasks.extend(api_sweeps(&state, &shutdown));
        }
        if role.serves_chat() {
            tasks.push(state.chat.spawn_wakeups(&shutdown));
        }
        if role.runs_workers() {
            tasks.extend(state.chat.spawn_delivery(&shutdown));
            let chat = state.chat.clone();
            tasks.push(every(
                state.settings.chat.sweep_interval,
                &shutdown,
                "chat sweep",
                move || {
                    let chat = chat.clone();
                    async move { chat.sweep().await.map(drop) }
                },
            ));
        }
        if let Some(media) = media {
            tasks.extend(media.spawn(&shutdown));
            let requeue = media.clone();
            tasks.push(every(
                state.settings.media.sweep_interval,
                &shutdown,
                "media requeue sweep",
                move || {
                    let media = requeue.clone();
                    async move { media.requeue_stale().await.map(drop) }
                },
            ));
        }
        let grace = state.settings.shutdown_grace;
        let db = state.db.clone();
        let connections = state.settings.connections.clone();
        let (proxies, metrics) = (state.proxies.clone(), state.metrics.clone());
        let app = crate::http::router(state)?;
        let stop = shutdown.clone();
        let graceful = async move {
            signal.await;
            tracing::info!("shutting down: finishing in-flight requests");
            stop.cancel();
        };
        let server = crate::http::server::serve(
            InterimListener::new(listener),
            app,
            connections,
            proxies,
            metrics,
            graceful,
        );
        let mut served = tokio::spawn(server);
        tokio::select! {
            result = &mut served => result.context("server task")?.context("server")?,
            () = shutdown.cancelled() => match tokio::time::timeout(grace, served).await {
                Ok(result) => result.context("server task")?.context("server")?,
                Err(_) => tracing::warn!(?grace, "grace period over; dropping remaining connections"),
            },
        }
        for task in &tasks {
            task.abort();
        }
        db.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The periodic tasks of a node that serves the API: upload expiry, blob retention, and the
/// purge of used-up login credentials.
fn api_sweeps(state: &AppState, shutdown: &CancellationToken) -> [tokio::task::JoinHandle<()>; 3] {
    let uploads = state.uploads.clone();
    let blobs = state.blobs.clone();
    let auth = state.auth.clone();
    [
        every(
            state.settings.uploads.sweep_interval,
            shutdown,
            "upload sweep",
            move || {
                let uploads = uploads.clone();
                async move { uploads.sweep().await.map(drop) }
            },
        ),
        every(
            state.settings.blobs.sweep_interval,
            shutdown,
            "blob retention sweep",
            move || {
                let blobs = blobs.clone();
                async move { blobs.sweep().await.map(drop) }
            },
        ),
        every(
            Duration::from_secs(300),
            shutdown,
            "credential purge",
            move || {
                let auth = auth.clone();
                async move { auth.purge_expired().await.map(drop) }
            },
        ),
    ]
}

/// Runs `task` every `interval` (the first time at once) until `shutdown`; a failure is logged
/// as `what` and the next tick tries again.
fn every<F, Fut, E>(
    interval: Duration,
    shutdown: &CancellationToken,
    what: &'static str,
    mut task: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: std::fmt::Display,
{
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = task().await {
                tracing::warn!(error = %e, "{what} failed");
            }
        }
    })
}

/// Registers SIGTERM and SIGINT (Ctrl-C) handlers now, so a signal that arrives while the
/// server starts is not lost, and returns a future that resolves on the first of them.
#[cfg(unix)]
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
