//! Shared test support: the real app on 127.0.0.1:0 with config from TOML
//! strings, a scriptable upstream, and small HTTP/SSE helpers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod answers;
pub mod binary;
pub mod browser;
pub mod cli;
pub mod external;
pub mod hostile;
pub mod observability;
pub mod otlp;
pub mod prometheus;
pub mod redis;
pub mod redis_cluster;
pub mod redis_sentinel;
pub mod reloadable;
pub mod upstream;

use std::net::SocketAddr;
use std::time::Duration;

use chatgate::config::{self, Environment, LoadOptions, Problem};
use chatgate::{App, Config};
use serde_json::Value;
use tokio::sync::oneshot;

pub use answers::*;
pub use prometheus::metric;
pub use upstream::{Reply, Upstream};

/// The client key every test app accepts.
pub const KEY: &str = "test-key";

/// Base config for tests: a free port, the test key, limits out of the way.
pub fn base_toml() -> String {
    format!(
        r#"
[server]
host = "127.0.0.1"
port = 0
request_timeout = "10s"

[auth.keys.test]
sha256 = "{}"

[rate_limit]
per_ip_requests_per_minute = 100000
per_ip_burst = 100000
"#,
        config::sha256_hex(KEY)
    )
}

/// Loads config from `extra` TOML (merged over `base_toml()`) and `env`, as
/// the binary would, without touching the process environment.
pub fn load_config(extra: &str, env: &[(&str, &str)]) -> Result<Config, Vec<Problem>> {
    load_config_profile("development", extra, env)
}

/// [`load_config`] for another profile (`staging`, `production`): `extra` is
/// that profile's file.
pub fn load_config_profile(
    profile: &str,
    extra: &str,
    env: &[(&str, &str)],
) -> Result<Config, Vec<Problem>> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("default.toml"), base_toml()).unwrap();
    std::fs::write(dir.path().join(format!("{profile}.toml")), extra).unwrap();
    let opts = LoadOptions {
        config_dir: dir.path().to_owned(),
        app_env: Some(profile.into()),
        extra_file: None,
        env: Environment::from_pairs(env.iter().map(|(k, v)| (k.to_string(), v.to_string()))),
    };
    config::load(&opts)
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub state: chatgate::state::AppState,
    shutdown: Option<oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POST JSON with the test key.
    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(KEY)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn chat(&self, body: Value) -> reqwest::Response {
        self.post("/api/v1/chat", &body).await
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.text().await.unwrap()
    }

    /// Triggers the same graceful shutdown as SIGTERM.
    pub fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub async fn spawn_app(extra: &str) -> TestApp {
    spawn_app_with_env(extra, &[]).await
}

pub async fn spawn_app_with_env(extra: &str, env: &[(&str, &str)]) -> TestApp {
    let config = load_config(extra, env).unwrap_or_else(|p| panic!("test config invalid: {p:?}"));
    spawn_config(config).await
}

pub async fn spawn_config(config: Config) -> TestApp {
    spawn_config_with_routes(config, axum::Router::new()).await
}

/// The app with extra routes behind the full middleware stack.
pub async fn spawn_config_with_routes(
    config: Config,
    extra: axum::Router<chatgate::state::AppState>,
) -> TestApp {
    serve(App::build_with_routes(config, extra).await.unwrap()).await
}

/// A wall clock a test sets: unix seconds.
#[derive(Clone, Default)]
pub struct TestClock(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl TestClock {
    pub fn at(unix_secs: u64) -> Self {
        let c = Self::default();
        c.set(unix_secs);
        c
    }
    pub fn set(&self, unix_secs: u64) {
        self.0
            .store(unix_secs, std::sync::atomic::Ordering::Relaxed);
    }
    pub fn clock(&self) -> chatgate::budget::Clock {
        let secs = self.0.clone();
        std::sync::Arc::new(move || {
            std::time::UNIX_EPOCH
                + Duration::from_secs(secs.load(std::sync::atomic::Ordering::Relaxed))
        })
    }
}

/// The app with its budgets reading `clock`.
pub async fn spawn_config_with(
    config: Config,
    extra: axum::Router<chatgate::state::AppState>,
    clock: chatgate::budget::Clock,
) -> TestApp {
    serve(App::build_with(config, extra, clock).await.unwrap()).await
}

/// Runs a built app until the test app is shut down or dropped.
pub async fn serve(app: App) -> TestApp {
    let addr = app.local_addr().unwrap();
    let state = app.state().clone();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    TestApp {
        addr,
        client,
        state,
        shutdown: Some(tx),
        task,
    }
}

/// A user message list with one message.
pub fn say(text: &str) -> Value {
    serde_json::json!([{"role": "user", "content": text}])
}

/// A `[providers.NAME]` section pointing at an upstream: fast to retry and
/// fail over, a circuit that stays closed, each knob settable by name.
#[derive(Debug, Clone)]
pub struct Provider {
    name: String,
    kind: String,
    base_url: String,
    timeout: String,
    max_retries: u32,
    circuit_failure_threshold: u32,
    circuit_cooldown: String,
}

impl Provider {
    pub fn new(name: &str, kind: &str, upstream: &Upstream) -> Self {
        Self {
            name: name.to_owned(),
            kind: kind.to_owned(),
            base_url: upstream.base_url(),
            timeout: "2s".into(),
            max_retries: 2,
            circuit_failure_threshold: 100,
            circuit_cooldown: "30s".into(),
        }
    }

    /// An OpenAI-compatible provider.
    pub fn openai(name: &str, upstream: &Upstream) -> Self {
        Self::new(name, "openai", upstream)
    }

    /// The per-attempt timeout, e.g. `"200ms"`.
    pub fn timeout(mut self, timeout: &str) -> Self {
        self.timeout = timeout.to_owned();
        self
    }

    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// Opens after `threshold` failed requests, for `cooldown` (e.g. `"30s"`).
    pub fn circuit(mut self, threshold: u32, cooldown: &str) -> Self {
        self.circuit_failure_threshold = threshold;
        self.circuit_cooldown = cooldown.to_owned();
        self
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            name,
            kind,
            base_url,
            timeout,
            max_retries,
            circuit_failure_threshold,
            circuit_cooldown,
        } = self;
        write!(
            f,
            r#"
[providers.{name}]
kind = "{kind}"
base_url = "{base_url}"
api_key_env = "TEST_UPSTREAM_KEY"
timeout = "{timeout}"
max_retries = {max_retries}
backoff_initial = "1ms"
backoff_max = "5ms"
circuit_failure_threshold = {circuit_failure_threshold}
circuit_cooldown = "{circuit_cooldown}"
"#
        )
    }
}

/// [`Provider`] with its defaults, as TOML.
pub fn provider_toml(name: &str, kind: &str, upstream: &Upstream) -> String {
    Provider::new(name, kind, upstream).to_string()
}

/// `[rate_limit]` with a per-IP `burst` and a refill so slow (one a minute)
/// that no token comes back mid-test.
pub fn ip_limit(burst: u32) -> String {
    format!("[rate_limit]\nper_ip_requests_per_minute = 1\nper_ip_burst = {burst}\n")
}

/// The upstream key every test provider reads (from the injected environment).
pub const UPSTREAM_KEY: &str = "sk-test-upstream-secret-123456";

pub fn upstream_env() -> Vec<(&'static str, &'static str)> {
    vec![("TEST_UPSTREAM_KEY", UPSTREAM_KEY)]
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct Sse {
    pub event: Option<String>,
    pub data: String,
}

/// Parses a whole SSE body (comments skipped).
pub fn parse_sse(body: &str) -> Vec<Sse> {
    let mut out = Vec::new();
    for block in body.split("\n\n") {
        let mut event = None;
        let mut data = Vec::new();
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                event = Some(v.trim().to_owned());
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
            }
        }
        if event.is_some() || !data.is_empty() {
            out.push(Sse {
                event,
                data: data.join("\n"),
            });
        }
    }
    out
}

/// The text of a native stream: its `delta` events' `content`, concatenated.
pub fn delta_text(events: &[Sse]) -> String {
    events
        .iter()
        .filter(|e| e.event.as_deref() == Some("delta"))
        .map(|e| {
            let v: Value = serde_json::from_str(&e.data).unwrap();
            v["content"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Polls `check` until it holds, for at most `limit` (for effects that happen
/// off the request path, such as a background writer).
pub async fn eventually<F: FnMut() -> bool>(limit: Duration, mut check: F) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
