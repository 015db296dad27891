//! Live configuration: a reload (SIGHUP, `POST /admin/v1/reload`, or a
//! changed config file with `[reload] watch = true`) loads and checks every
//! layer again exactly as at start-up (same [`LoadOptions`], so the same
//! environment snapshot), then builds a whole new [`AppState`] and router
//! from it and swaps them in at once ([`Live::router`] is read once per
//! request, so a request in flight finishes on the config it started with).
//!
//! What lives longer than one config is handed over, not rebuilt: the
//! metrics recorder, the HTTP client, the interaction log's writer, the
//! limiter's buckets (every rate that did not change; see
//! `Limiter::reconfigure`), each unchanged provider's handle and circuit, the
//! Redis connection. Restart-only keys keep their running values, with a WARN
//! each. Reloads run one at a time, in one task.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

pub mod handle;

use handle::Request;
pub use handle::{Outcome, ReloadHandle, Source, config_hash};

use crate::budget::{Budgets, Clock, SpendStore};
use crate::cache::{AnswerStore, Cache};
use crate::canary::shared::{self, Overrides};
use crate::config::{self, Config, LoadOptions, Problem};
use crate::faq::Faq;
use crate::guard::Guard;
use crate::interaction_log::InteractionLog;
use crate::jwt::Verifier;
use crate::limiter::{self, Limiter};
use crate::meters::Metrics;
use crate::middleware::auth::KeyStore;
use crate::models::Catalog;
use crate::routes;
use crate::state::{AppState, Shared};

/// Reload requests waiting for the reload task; a signal or file change
/// beyond this is dropped (a reload is already pending and reads the newest files).
const QUEUE: usize = 8;
/// File events closer together than this become one reload (an editor's
/// save or a ConfigMap swap is several events).
const DEBOUNCE: Duration = Duration::from_millis(300);

/// Where spend and cached answers live: they outlive every config.
pub struct Stores {
    pub spend: Arc<dyn SpendStore>,
    pub answers: Arc<dyn AnswerStore>,
    /// The wall clock budgets read (tests set their own).
    pub clock: Clock,
    /// The JWT IdPs and their JWKS refresh tasks (`auth.jwt` needs a restart).
    pub jwt: Arc<Verifier>,
    /// Admin canary overrides, shared through Redis when the backend is Redis.
    pub overrides: Overrides,
}

/// What outlives every config.
struct Lasting {
    stores: Stores,
    metrics: Metrics,
    client: crate::providers::Client,
    shutting_down: Arc<AtomicBool>,
    started_at: u64,
    extra: Router<AppState>,
    reload: ReloadHandle,
    audit: Option<crate::audit::Audit>,
}

/// The running state and its router, swapped whole.
pub struct Running {
    pub state: AppState,
    pub router: Router,
}

/// The app's current config, state and router, and how to replace them.
pub struct Live {
    running: ArcSwap<Running>,
    lasting: Lasting,
    /// Where the layers come from; `None` for an app built from a `Config`
    /// alone (embedders, most tests): then a reload has nothing to read.
    opts: Option<LoadOptions>,
}

impl Live {
    /// The first state and router, and the reload task. Must run inside a
    /// tokio runtime.
    pub(crate) fn start(
        config: Config,
        opts: Option<LoadOptions>,
        extra: Router<AppState>,
        metrics: Metrics,
        client: crate::providers::Client,
        limiter: Arc<dyn Limiter>,
        stores: Stores,
    ) -> Arc<Self> {
        // Unix seconds at start-up (`created` of `/api/v1/models`).
        let started_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (tx, rx) = mpsc::channel(QUEUE);
        let audit = crate::audit::Audit::start(&config.audit, metrics.clone());
        let lasting = Lasting {
            stores,
            metrics,
            client,
            shutting_down: Arc::new(AtomicBool::new(false)),
            started_at,
            extra,
            reload: ReloadHandle::new(tx),
            audit,
        };
        let watch = config.reload.watch;
        metrics_hash(&lasting.metrics, &config);
        let interactions = InteractionLog::start(&config.interaction_log, lasting.metrics.clone());
        let catalog = Catalog::build(&config, &lasting.client, &lasting.metrics, None);
        let state = build_state(&lasting, config, limiter, catalog, interactions);
        let router = routes::router(state.clone(), lasting.extra.clone());
        let live = Arc::new(Self {
            running: ArcSwap::from_pointee(Running { state, router }),
            lasting,
            opts,
        });
        if watch {
            match &live.opts {
                Some(opts) => watch_files(opts, live.lasting.reload.clone()),
                None => {
                    tracing::warn!("reload.watch is on but this app has no config files to watch")
                }
            }
        }
        tokio::spawn(serve_reloads(Arc::clone(&live), rx));
        if live.lasting.stores.overrides.is_shared() {
            tokio::spawn(follow_overrides(Arc::downgrade(&live)));
        }
        live
    }

    /// The router new requests run on.
    pub fn router(&self) -> Router {
        self.running.load().router.clone()
    }

    pub fn state(&self) -> AppState {
        self.running.load().state.clone()
    }

    pub fn handle(&self) -> ReloadHandle {
        self.lasting.reload.clone()
    }

    fn audit_reload(&self, source: Source, detail: serde_json::Value) {
        let event = crate::audit::Event {
            event: "reload",
            actor: Some(source.as_str().to_owned()),
            detail,
            ..Default::default()
        };
        crate::audit::record(self.lasting.audit.as_ref(), event);
    }

    /// One reload: load, check, keep restart-only keys, build, swap.
    fn reload(&self, source: Source) -> Outcome {
        let metrics = &self.lasting.metrics;
        let loaded = match &self.opts {
            Some(opts) => config::load(opts).and_then(|config| {
                let refusals = config.start_refusals();
                if refusals.is_empty() {
                    Ok(config)
                } else {
                    Err(refusals)
                }
            }),
            None => Err(vec![Problem::new(
                "reload",
                "this app was built without config layers to reload".to_owned(),
            )]),
        };
        let mut config = match loaded {
            Ok(config) => config,
            Err(problems) => {
                metrics.config_reload("error");
                let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
                self.audit_reload(source, json!({"result": "error", "problems": list}));
                tracing::error!(
                    source = source.as_str(),
                    problems = %list.join("; "),
                    "config reload refused: the running config stays"
                );
                return Err(problems);
            }
        };
        let old = self.running.load();
        for key in keep_restart_only(&old.state.config, &mut config) {
            tracing::warn!(
                key,
                "config reload: {key} changed but needs a restart; the running value stays"
            );
        }
        for warning in &config.sources.warnings {
            tracing::warn!("{warning}");
        }
        let hash = metrics_hash(metrics, &config);
        let prev = &old.state;
        let limiter = prev
            .limiter
            .reconfigure(limiter::ip_rate(&config), limiter::key_rates(&config));
        let catalog = Catalog::build(&config, &self.lasting.client, metrics, Some(&prev.catalog));
        let interactions = match &prev.interactions {
            Some(log) if config.interaction_log.enabled => {
                Some(log.with_sample_rate(config.interaction_log.sample_rate))
            }
            _ => InteractionLog::start(&config.interaction_log, metrics.clone()),
        };
        let state = build_state(&self.lasting, config, limiter, catalog, interactions);
        let router = routes::router(state.clone(), self.lasting.extra.clone());
        self.running.store(Arc::new(Running { state, router }));
        metrics.config_reload("success");
        tracing::info!(source = source.as_str(), hash, "config reloaded");
        self.audit_reload(source, json!({"result": "success", "hash": hash}));
        Ok(hash)
    }
}

fn metrics_hash(metrics: &Metrics, config: &Config) -> String {
    let hash = config_hash(config);
    metrics.set_config_hash(&hash);
    hash
}

fn build_state(
    lasting: &Lasting,
    config: Config,
    limiter: Arc<dyn Limiter>,
    catalog: Catalog,
    interactions: Option<InteractionLog>,
) -> AppState {
    let stores = &lasting.stores;
    let metrics = &lasting.metrics;
    // Entries over the whole cache's size are never stored.
    let max_entry = usize::try_from(config.cache.max_bytes.get()).unwrap_or(usize::MAX);
    AppState::new(Shared {
        guard: Arc::new(Guard::new(&config, |rule, action| {
            metrics.guard_match(rule, action)
        })),
        faq: Faq::new(&config.faq),
        budgets: Budgets::new(
            &config,
            stores.spend.clone(),
            stores.clock.clone(),
            metrics.clone(),
        ),
        cache: Cache::new(stores.answers.clone(), max_entry, metrics.clone()),
        overrides: stores.overrides.clone(),
        keys: Arc::new(KeyStore::new(&config.auth).with_jwt(stores.jwt.clone())),
        admin_keys: Arc::new(KeyStore::admin(&config.admin)),
        limiter,
        catalog: Arc::new(catalog),
        interactions,
        audit: lasting.audit.clone(),
        metrics: lasting.metrics.clone(),
        shutting_down: Arc::clone(&lasting.shutting_down),
        started_at: lasting.started_at,
        reload: lasting.reload.clone(),
        config: Arc::new(config),
    })
}

/// Applies other replicas' canary overrides within a poll interval, in its
/// own task (a slow Redis delays the next poll, never a request).
async fn follow_overrides(live: std::sync::Weak<Live>) {
    let mut tick = tokio::time::interval(shared::POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(live) = live.upgrade() else {
            return;
        };
        let (overrides, state) = (live.lasting.stores.overrides.clone(), live.state());
        drop(live);
        overrides.poll(&state.catalog.rollouts()).await;
    }
}

/// Serves reload requests one at a time, for as long as the app lives.
async fn serve_reloads(live: Arc<Live>, mut rx: mpsc::Receiver<Request>) {
    while let Some(req) = rx.recv().await {
        // Loading reads files: off the async workers.
        let l = Arc::clone(&live);
        let outcome = tokio::task::spawn_blocking(move || l.reload(req.source))
            .await
            .unwrap_or_else(|_| {
                Err(vec![Problem::new(
                    "reload",
                    "the reload failed unexpectedly".to_owned(),
                )])
            });
        if let Some(reply) = req.reply {
            let _ = reply.send(outcome);
        }
    }
}

/// Copies every restart-only key's running value into `new`; returns the
/// keys whose value had changed.
fn keep_restart_only(running: &Config, new: &mut Config) -> Vec<&'static str> {
    fn same<T: serde::Serialize>(a: &T, b: &T) -> bool {
        serde_json::to_value(a).ok() == serde_json::to_value(b).ok()
    }
    let mut changed = Vec::new();
    macro_rules! keep {
        ($key:literal, $($field:ident).+) => {
            if !same(&running.$($field).+, &new.$($field).+) {
                changed.push($key);
            }
            new.$($field).+ = running.$($field).+.clone();
        };
    }
    keep!("server.host", server.host);
    keep!("server.port", server.port);
    keep!("server.header_read_timeout", server.header_read_timeout);
    keep!("state.backend", state.backend);
    keep!("state.redis_mode", state.redis_mode);
    keep!("state.redis_url_env", state.redis_url_env);
    keep!("state.sentinel_master", state.sentinel_master);
    keep!(
        "state.sentinel_master_password_env",
        state.sentinel_master_password_env
    );
    keep!("state.on_redis_error", state.on_redis_error);
    keep!("logging.format", logging.format);
    keep!("interaction_log.path", interaction_log.path);
    keep!(
        "interaction_log.queue_capacity",
        interaction_log.queue_capacity
    );
    // The IdPs and their JWKS refresh tasks were started with the app.
    keep!("auth.jwt", auth.jwt);
    // The cache's memory bounds size the store built at start.
    keep!("cache.max_entries", cache.max_entries);
    keep!("cache.max_bytes", cache.max_bytes);
    keep!("audit.enabled", audit.enabled);
    keep!("audit.path", audit.path);
    keep!("audit.queue_capacity", audit.queue_capacity);
    // The URL follows `redis_url_env` (same environment snapshot): keep it too.
    new.state.redis_url = running.state.redis_url.clone();
    new.state.sentinel_master_password = running.state.sentinel_master_password.clone();
    changed
}

/// The files a reload reads, for the watcher: the config dir's layers and
/// the `--config` file.
fn layer_files(opts: &LoadOptions) -> Vec<PathBuf> {
    let profile = opts.app_env.as_deref().unwrap_or("development");
    let mut files = vec![
        opts.config_dir.join("default.toml"),
        opts.config_dir.join(format!("{profile}.toml")),
    ];
    files.extend(opts.extra_file.clone());
    files
}

/// What the layer files hold now (through symlinks): a reload happens only
/// when this changes, so unrelated files in the same folder, or a touch
/// without a change, cost nothing.
fn fingerprint(files: &[PathBuf]) -> [u8; 32] {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.as_os_str().as_encoded_bytes());
        match std::fs::read(f) {
            Ok(bytes) => {
                h.update([1]);
                h.update((bytes.len() as u64).to_le_bytes());
                h.update(bytes);
            }
            Err(_) => h.update([0]),
        }
    }
    h.finalize().into()
}

/// Watches the folders holding the layer files (not the files: an editor
/// replaces a file, and a Kubernetes ConfigMap swaps its `..data` symlink,
/// both of which a watch on the old file would miss) and triggers a reload,
/// debounced, when what the files hold has changed.
fn watch_files(opts: &LoadOptions, reload: ReloadHandle) {
    use notify::{RecursiveMode, Watcher};

    let files = layer_files(opts);
    let mut dirs: Vec<PathBuf> = files
        .iter()
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .map(|d| {
            if d.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                d
            }
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = tx.try_send(());
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(error) => {
            tracing::error!(%error, "reload.watch: cannot watch the config files");
            return;
        }
    };
    for dir in &dirs {
        if let Err(error) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            tracing::error!(%error, dir = %dir.display(), "reload.watch: cannot watch this folder");
        }
    }
    tracing::info!(
        dirs = %dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
        "reload.watch: reloading when a config file changes"
    );
    tokio::spawn(async move {
        let _watcher = watcher;
        let mut last = fingerprint(&files);
        while rx.recv().await.is_some() {
            tokio::time::sleep(DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            let files = files.clone();
            let now = tokio::task::spawn_blocking(move || fingerprint(&files))
                .await
                .unwrap_or(last);
            if now != last {
                last = now;
                reload.trigger(Source::File);
            }
        }
    });
}
