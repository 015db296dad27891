//! `App`: build (bind the listener, build state and router), `local_addr`,
//! and `run` until shutdown, draining in-flight requests within the grace period.
//! Connections speak HTTP/1.1 or HTTP/2 (h2c, prior knowledge); idle ones are closed.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::telemetry::Scope;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tower::ServiceExt;

use crate::budget::{self, Clock, MemorySpend, RedisSpend, SpendStore};
use crate::cache::{AnswerStore, MemoryCache, RedisCache};
use crate::canary::shared::Overrides;
use crate::config::{Config, LoadOptions};
use crate::jwt::Verifier;
use crate::limiter::{Limiter, MemoryLimiter, Rate, RedisLimiter};
use crate::meters::Metrics;
use crate::middleware::body_guard;
use crate::providers;
use crate::redis_link::RedisLink;
use crate::reload::ReloadHandle;
use crate::reload::{Live, Stores};
use crate::state::AppState;

/// How often histogram samples are folded into buckets.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);
/// Pause after a failed `accept` (e.g. out of file descriptors) before the next one.
/// hyper's own bound on a request head (HTTP/1.1 read buffer, HTTP/2 header
/// list), set explicitly above `header_limit::MAX_HEADER_BYTES`: a head between
/// the two reaches our stack and gets the contract's 431 JSON; only a larger
/// one gets hyper's bodiless 431.
pub const HYPER_HEAD_LIMIT: u32 = 64 * 1024;
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("invalid Redis URL (value not shown): {0}")]
    Redis(redis::RedisError),
    /// Found only at start (a `jwks_url` that cannot be fetched): reported as config problems.
    #[error("invalid configuration: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Config(Vec<crate::config::Problem>),
}

pub struct App {
    listener: TcpListener,
    live: Arc<Live>,
}

fn limiter(config: &Config, link: Option<&Arc<RedisLink>>, jwt: &Verifier) -> Arc<dyn Limiter> {
    let ip_rate = crate::limiter::ip_rate(config);
    let key_rates = crate::limiter::key_rates(config);
    // Per-subject buckets of the IdPs with `requests_per_minute` (a minute's worth at once).
    let user_rates: HashMap<String, Rate> = jwt
        .subject_rates()
        .map(|(idp, per_minute)| {
            let rate = Rate {
                per_minute,
                burst: per_minute,
            };
            (idp.to_owned(), rate)
        })
        .collect();
    match link {
        Some(link) => RedisLimiter::new(link.clone(), ip_rate, key_rates, user_rates),
        None => {
            let limiter = MemoryLimiter::with_users(ip_rate, key_rates, user_rates);
            limiter.spawn_eviction();
            limiter
        }
    }
}

/// Where spend and cached answers live, for as long as the app does (a
/// reload keeps them): in Redis when `link` is set, else in this process;
/// and the JWT IdPs.
fn stores(
    config: &Config,
    link: Option<&Arc<RedisLink>>,
    clock: Clock,
    jwt: Arc<Verifier>,
    metrics: &Metrics,
) -> Stores {
    let (spend, answers): (Arc<dyn SpendStore>, Arc<dyn AnswerStore>) = match link {
        Some(link) => (
            Arc::new(RedisSpend::new(link.clone())),
            Arc::new(RedisCache::new(link.clone())),
        ),
        None => (
            Arc::new(MemorySpend::new()),
            Arc::new(MemoryCache::new(
                config.cache.max_entries.get(),
                config.cache.max_bytes.get(),
                metrics.clone(),
            )),
        ),
    };
    Stores {
        spend,
        answers,
        clock,
        jwt,
        overrides: Overrides::new(link.cloned()),
    }
}

impl App {
    /// Binds `server.host:server.port` (port 0 picks a free one) and builds
    /// everything a request needs. Must run inside a tokio runtime.
    pub async fn build(config: Config) -> Result<Self, BuildError> {
        Self::build_with_routes(config, Router::new()).await
    }

    /// Like `build`, with extra routes behind the same middleware stack.
    pub async fn build_with_routes(
        config: Config,
        extra: Router<AppState>,
    ) -> Result<Self, BuildError> {
        Self::build_reloadable(config, None, extra).await
    }

    /// Like `build_with_routes`, with the wall clock budgets read (tests
    /// stand at any date with their own).
    pub async fn build_with(
        config: Config,
        extra: Router<AppState>,
        clock: Clock,
    ) -> Result<Self, BuildError> {
        Self::build_full(config, None, extra, clock).await
    }

    /// Like `build_with_routes`; with `opts` (the layers `config` was loaded
    /// from) the app can reload its config (see `reload`).
    pub async fn build_reloadable(
        config: Config,
        opts: Option<LoadOptions>,
        extra: Router<AppState>,
    ) -> Result<Self, BuildError> {
        Self::build_full(config, opts, extra, budget::system_clock()).await
    }

    async fn build_full(
        config: Config,
        opts: Option<LoadOptions>,
        extra: Router<AppState>,
        clock: Clock,
    ) -> Result<Self, BuildError> {
        let addr = format!("{}:{}", config.server.host, config.server.port);
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|source| BuildError::Bind { addr, source })?;
        let metrics = Metrics::new();
        let client = providers::http_client()?;
        // The check sets `redis_url` exactly when `backend = "redis"`: one
        // connection for every kind of shared state.
        let link = match &config.state.redis_url {
            Some(url) => Some(
                RedisLink::start(url, &config.state, metrics.clone()).map_err(BuildError::Redis)?,
            ),
            None => None,
        };
        // JWKS URLs are fetched now; the IdPs live as long as the app
        // (`auth.jwt` needs a restart).
        let jwt = Arc::new(
            Verifier::start(&config.auth.jwt, &client)
                .await
                .map_err(BuildError::Config)?,
        );
        let limiter = limiter(&config, link.as_ref(), &jwt);
        let stores = stores(&config, link.as_ref(), clock, jwt, &metrics);
        let live = Live::start(
            config,
            opts,
            extra,
            metrics.clone(),
            providers::Client::new(),
            limiter,
            stores,
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(METRICS_UPKEEP);
            loop {
                tick.tick().await;
                metrics.upkeep();
            }
        });
        Ok(Self { listener, live })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The state new requests see (a reload replaces it).
    pub fn state(&self) -> AppState {
        self.live.state()
    }

    /// Asks for config reloads (the binary sends SIGHUP here).
    pub fn reload_handle(&self) -> ReloadHandle {
        self.live.handle()
    }

    /// Serves until `shutdown` resolves; then readiness turns 503, no new
    /// connection is accepted, and in-flight requests and streams get
    /// `shutdown_grace` to finish.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> std::io::Result<()> {
        let Self { listener, live } = self;
        let state = live.state();
        // Restart-only keys: these stay as they were at start.
        let server = &state.config.server;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(server.header_read_timeout)
            .max_buf_size(HYPER_HEAD_LIMIT as usize);
        builder.http2().max_header_list_size(HYPER_HEAD_LIMIT);
        // Server shutdown, seen by every connection; and the drain: each
        // connection task holds a sender, so `recv` ends when the last one has.
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (drain_tx, mut drain_rx) = mpsc::channel::<()>(1);
        let idle_limit = server.header_read_timeout;
        tracing::info!(addr = %listener.local_addr()?, profile = state.config.profile.as_str(), "chatgate listening");

        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(conn) => conn,
                        Err(error) => {
                            tracing::warn!(%error, "accept failed");
                            tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_connection(
                        stream,
                        peer,
                        Arc::clone(&live),
                        builder.clone(),
                        idle_limit,
                        shutdown_rx.clone(),
                        drain_tx.clone(),
                    ));
                }
                () = &mut shutdown => break,
            }
        }

        state.shutting_down.store(true, Ordering::Relaxed);
        drop(listener);
        drop(drain_tx);
        shutdown_tx.send_replace(true);
        // The grace of the config running now (a reload may have changed it).
        let grace = live.state().config.server.shutdown_grace;
        tracing::info!(?grace, "shutting down: draining in-flight requests");
        tokio::select! {
            _ = drain_rx.recv() => tracing::info!("all connections drained"),
            () = tokio::time::sleep(grace) => tracing::warn!("shutdown grace expired; closing remaining connections"),
        }
        Ok(())
    }
}

/// Requests in progress on one connection, and how many it has started (so
/// a request that began and ended between two looks still counts as activity).
#[derive(Debug, Clone, Copy, Default)]
struct Activity {
    active: usize,
    started: u64,
}

/// One request in progress on its connection; ends with the response body.
struct Busy(watch::Sender<Activity>);

impl Busy {
    fn enter(activity: &watch::Sender<Activity>) -> Self {
        activity.send_modify(|a| {
            a.active += 1;
            a.started = a.started.wrapping_add(1);
        });
        Self(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0
            .send_modify(|a| a.active = a.active.saturating_sub(1));
    }
}

/// Resolves once the connection has had no request in progress for `limit`.
async fn idle_for(mut activity: watch::Receiver<Activity>, limit: Duration) {
    loop {
        let seen = activity
            .wait_for(|a| a.active == 0)
            .await
            .map(|a| a.started);
        let Ok(seen) = seen else {
            // The connection's service is gone: so is the connection.
            return std::future::pending().await;
        };
        let woke = tokio::time::timeout(
            limit,
            activity.wait_for(|a| a.active > 0 || a.started != seen),
        )
        .await;
        if woke.is_err() {
            return;
        }
    }
}

/// Serves one connection, HTTP/1.1 or HTTP/2 (h2c), until it ends. It is
/// closed gracefully (in-progress requests finish; HTTP/2 gets GOAWAY) when
/// it has had no request in progress for `idle_limit` (HTTP/2 has no header
/// timeout of its own, and HTTP/1 keep-alive none between requests) or when
/// the server shuts down.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    live: Arc<Live>,
    builder: auto::Builder<TokioExecutor>,
    idle_limit: Duration,
    mut shutdown: watch::Receiver<bool>,
    _drain: mpsc::Sender<()>,
) {
    // hyper's header timeout starts at the first byte: a client that
    // connects and sends nothing must not hold the connection forever.
    let mut first = [0u8; 1];
    match tokio::time::timeout(idle_limit, stream.peek(&mut first)).await {
        Ok(Ok(n)) if n > 0 => {}
        _ => return,
    }
    let (activity, watching) = watch::channel(Activity::default());
    let service = tower::service_fn(move |mut req: axum::http::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let busy = Busy::enter(&activity);
        // The router is read once per request: a reload during it changes
        // nothing for it.
        let response = live.router().oneshot(req);
        async move {
            let response = response.await?;
            Ok::<_, std::convert::Infallible>(body_guard::hold(response, busy, Scope::none()))
        }
    });
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service));
    tokio::pin!(conn);
    let idle = idle_for(watching, idle_limit);
    tokio::pin!(idle);
    let mut closing = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            () = &mut idle, if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = shutdown.wait_for(|down| *down), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
