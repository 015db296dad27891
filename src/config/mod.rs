//! Configuration: the checked shape of every knob, and loading it from layers.
//!
//! Layers, lowest first: built-in defaults → `config/default.toml` →
//! `config/{APP_ENV}.toml` → `--config FILE` → `CHATGATE_<SECTION>__<KEY>`.
//! Loading never touches the process environment: it reads an [`Environment`]
//! snapshot, so tests can build any environment without `set_var`.
//!
//! Parse, don't validate: values deserialize into checked types (`values`),
//! and `check` turns the merged layers into a [`Config`] (secrets resolved,
//! cross-field rules applied), so building the app from it cannot fail.

mod canary;
mod check;
mod cost;
mod env;
pub mod guard;
mod jwt;
mod load;
mod problem;
mod secrets;
mod values;

pub use canary::{CanaryConfig, Percent, Sticky};
pub use cost::{
    BudgetsConfig, CacheConfig, Caps, FaqRegex, FaqRule, Fraction, Price, Usd,
    normalise as faq_normalise,
};
pub use env::Environment;
pub use guard::{GuardConfig, OutputConfig};
pub use jwt::{JwksSource, JwksUrl, JwtAlgorithm, JwtConfig};
pub use load::{LoadOptions, Sources, load};
pub use problem::Problem;
pub use secrets::sha256_hex;
pub use values::{BaseUrl, Ipv6Prefix, KeyHash, LogLevel, Origin, OtlpEndpoint, Ratio, TargetRef};

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use ipnet::IpNet;
use secrecy::SecretString;
use serde::{Deserialize, Serialize, Serializer};

use values::{duration, nonzero};

/// The deployment profile, chosen by `APP_ENV`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    #[default]
    Development,
    Staging,
    Production,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Development => "development",
            Profile::Staging => "staging",
            Profile::Production => "production",
        }
    }
}

/// The whole effective configuration, checked: every layer merged, every
/// value parsed, every secret resolved. Only [`load`] makes one.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Not a config key: set from `APP_ENV` by the loader.
    pub profile: Profile,
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub rate_limit: RateLimitConfig,
    pub logging: LoggingConfig,
    pub metrics: MetricsConfig,
    pub providers: BTreeMap<String, ProviderConfig>,
    pub models: BTreeMap<String, ModelConfig>,
    pub state: StateConfig,
    pub interaction_log: InteractionLogConfig,
    pub audit: AuditConfig,
    pub chat: ChatConfig,
    pub tracing: TracingConfig,
    pub reload: ReloadConfig,
    pub admin: AdminConfig,
    pub budgets: BudgetsConfig,
    pub cache: CacheConfig,
    pub faq: Vec<FaqRule>,
    pub guard: GuardConfig,
    pub output: OutputConfig,
    pub docs: DocsConfig,
    pub playground: PlaygroundConfig,
    /// Not a config key: what the loader read, and what it warns about.
    #[serde(rename = "layers")]
    pub sources: Sources,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    /// The whole request, retries and fallbacks included (504 past it).
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_concurrent_requests: usize,
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
    /// How long a client may take to send its request headers (slowloris guard).
    #[serde(with = "duration")]
    pub header_read_timeout: Duration,
    pub trusted_proxies: Vec<IpNet>,
    pub cors_allowed_origins: Vec<Origin>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            request_timeout: Duration::from_secs(60),
            max_body_bytes: 1024 * 1024,
            max_concurrent_requests: 1024,
            shutdown_grace: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            trusted_proxies: Vec::new(),
            cors_allowed_origins: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AuthConfig {
    pub enabled: bool,
    pub keys: BTreeMap<String, ClientKeyConfig>,
    /// `[auth.jwt.<name>]`: IdPs whose JWTs are accepted as Bearer values.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub jwt: BTreeMap<String, JwtConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            keys: BTreeMap::new(),
            jwt: BTreeMap::new(),
        }
    }
}

/// One client key, as its SHA-256 digest (the key itself is never kept).
#[derive(Debug, Clone)]
pub struct ClientKeyConfig {
    pub source: KeySource,
    pub requests_per_minute: Option<NonZeroU32>,
    /// Burst for the per-key bucket; `None`: `requests_per_minute` (a minute's worth at once).
    pub burst: Option<NonZeroU32>,
    /// This key's budgets (`usd_per_day`, …); empty: none.
    pub budget: Caps,
}

/// Where a client key came from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// `sha256 = "<hex>"` in a config file.
    Sha256(KeyHash),
    /// `env = "VAR"`: the digest of that variable's value.
    Env { var: String, hash: KeyHash },
}

impl ClientKeyConfig {
    /// A key stored as its hash, with no per-key limit.
    pub fn hashed(hash: KeyHash) -> Self {
        Self {
            source: KeySource::Sha256(hash),
            requests_per_minute: None,
            burst: None,
            budget: Caps::default(),
        }
    }

    pub fn hash(&self) -> &KeyHash {
        match &self.source {
            KeySource::Sha256(hash) | KeySource::Env { hash, .. } => hash,
        }
    }
}

/// Shown as `sha256 = "[REDACTED]"`, or `env` plus `key = "[REDACTED] from VAR"`.
impl Serialize for ClientKeyConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            sha256: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            env: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            key: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            requests_per_minute: Option<NonZeroU32>,
            #[serde(skip_serializing_if = "Option::is_none")]
            burst: Option<NonZeroU32>,
            #[serde(flatten)]
            budget: &'a Caps,
        }
        let (sha256, env, key) = match &self.source {
            KeySource::Sha256(_) => (Some(secrets::REDACTED), None, None),
            KeySource::Env { var, .. } => (
                None,
                Some(var.as_str()),
                Some(format!("{} from {var}", secrets::REDACTED)),
            ),
        };
        View {
            sha256,
            env,
            key,
            requests_per_minute: self.requests_per_minute,
            burst: self.burst,
            budget: &self.budget,
        }
        .serialize(s)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub per_ip_requests_per_minute: NonZeroU32,
    pub per_ip_burst: NonZeroU32,
    /// IPv6 clients share one per-IP bucket per prefix of this length (1..=128):
    /// one subscriber usually holds a whole /64.
    pub ipv6_prefix: Ipv6Prefix,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        const PER_MINUTE: NonZeroU32 = nonzero(60);
        const BURST: NonZeroU32 = nonzero(20);
        Self {
            per_ip_requests_per_minute: PER_MINUTE,
            per_ip_burst: BURST,
            ipv6_prefix: Ipv6Prefix::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    pub level: LogLevel,
    pub format: LogFormat,
}

/// OpenTelemetry traces; off while `otlp_endpoint` is empty.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    pub otlp_endpoint: OtlpEndpoint,
    pub service_name: String,
    /// Of traces started here; a client's `traceparent` decides for its own.
    pub sample_ratio: Ratio,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: OtlpEndpoint::default(),
            service_name: "chatgate".into(),
            sample_ratio: Ratio::ONE,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// When set, `/metrics` needs `Authorization: Bearer <token>`.
    #[serde(serialize_with = "secrets::redact_opt")]
    pub token: Option<SecretString>,
}

/// `[docs]`: the API reference (`/openapi.json` and `/docs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DocsConfig {
    /// Off: both routes answer 404.
    pub enabled: bool,
}

impl Default for DocsConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// `[playground]`: the chat page at `/` (config/development.toml turns it on;
/// off by default so no other profile serves a page nobody asked for).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlaygroundConfig {
    pub enabled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Openai,
    Anthropic,
    Mock,
}

impl ProviderKind {
    /// The base URL used when `base_url` is not set; `None` for `mock` (no network).
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            ProviderKind::Openai => Some("https://api.openai.com/v1"),
            ProviderKind::Anthropic => Some("https://api.anthropic.com/v1"),
            ProviderKind::Mock => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// As configured; the effective one is in `upstream`.
    #[serde(default)]
    pub base_url: Option<BaseUrl>,
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// One attempt.
    #[serde(default = "defaults::provider_timeout", with = "duration")]
    pub timeout: Duration,
    #[serde(default = "defaults::max_retries")]
    pub max_retries: u32,
    #[serde(default = "defaults::backoff_initial", with = "duration")]
    pub backoff_initial: Duration,
    #[serde(default = "defaults::backoff_max", with = "duration")]
    pub backoff_max: Duration,
    #[serde(default = "defaults::circuit_failure_threshold")]
    pub circuit_failure_threshold: NonZeroU32,
    #[serde(default = "defaults::circuit_cooldown", with = "duration")]
    pub circuit_cooldown: Duration,
    /// USD per million tokens, by upstream model name.
    #[serde(default)]
    pub prices: BTreeMap<String, Price>,
    /// Set by the check from `kind`, `base_url` and `api_key_env`; never deserialized.
    #[serde(skip)]
    pub upstream: Upstream,
}

/// Where a provider's requests go, with which key: what the build code reads.
#[derive(Debug, Clone, Default)]
pub enum Upstream {
    /// No network. (Also the value before the check has run.)
    #[default]
    Mock,
    Openai(HttpApi),
    Anthropic(HttpApi),
}

/// An HTTP provider API: the effective base URL and the key read from `api_key_env`.
#[derive(Debug, Clone)]
pub struct HttpApi {
    pub base_url: BaseUrl,
    pub api_key: Option<SecretString>,
}

impl ProviderConfig {
    fn http(&self) -> Option<&HttpApi> {
        match &self.upstream {
            Upstream::Mock => None,
            Upstream::Openai(api) | Upstream::Anthropic(api) => Some(api),
        }
    }

    /// The effective base URL (the kind's default when not set); `None` for `mock`.
    pub fn effective_base_url(&self) -> Option<&BaseUrl> {
        self.http().map(|api| &api.base_url)
    }

    /// The key read from `api_key_env`, if it is set.
    pub fn api_key(&self) -> Option<&SecretString> {
        self.http().and_then(|api| api.api_key.as_ref())
    }
}

/// Shown with the effective `base_url` and `api_key` as `"[REDACTED] from VAR"`
/// or `"missing (VAR unset)"`.
impl Serialize for ProviderConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            kind: ProviderKind,
            #[serde(skip_serializing_if = "Option::is_none")]
            base_url: Option<&'a BaseUrl>,
            #[serde(skip_serializing_if = "Option::is_none")]
            api_key_env: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            api_key: Option<String>,
            #[serde(with = "duration")]
            timeout: Duration,
            max_retries: u32,
            #[serde(with = "duration")]
            backoff_initial: Duration,
            #[serde(with = "duration")]
            backoff_max: Duration,
            circuit_failure_threshold: NonZeroU32,
            #[serde(with = "duration")]
            circuit_cooldown: Duration,
            #[serde(skip_serializing_if = "BTreeMap::is_empty")]
            prices: &'a BTreeMap<String, Price>,
        }
        let api_key = self.api_key_env.as_deref().map(|var| match self.api_key() {
            Some(_) => format!("{} from {var}", secrets::REDACTED),
            None => format!("missing ({var} unset)"),
        });
        View {
            kind: self.kind,
            base_url: self.effective_base_url(),
            api_key_env: self.api_key_env.as_deref(),
            api_key,
            timeout: self.timeout,
            max_retries: self.max_retries,
            backoff_initial: self.backoff_initial,
            backoff_max: self.backoff_max,
            circuit_failure_threshold: self.circuit_failure_threshold,
            circuit_cooldown: self.circuit_cooldown,
            prices: &self.prices,
        }
        .serialize(s)
    }
}

/// Named defaults for provider knobs (the contract's values).
mod defaults {
    use std::num::NonZeroU32;
    use std::time::Duration;

    use super::nonzero;

    pub fn provider_timeout() -> Duration {
        Duration::from_secs(20)
    }
    pub fn max_retries() -> u32 {
        2
    }
    pub fn backoff_initial() -> Duration {
        Duration::from_millis(200)
    }
    pub fn backoff_max() -> Duration {
        Duration::from_secs(5)
    }
    pub fn circuit_failure_threshold() -> NonZeroU32 {
        const FIVE: NonZeroU32 = nonzero(5);
        FIVE
    }
    pub fn circuit_cooldown() -> Duration {
        Duration::from_secs(30)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// `provider:model`, tried in order.
    pub targets: Vec<TargetRef>,
    pub max_tokens: Option<NonZeroU32>,
    pub system_prompt: Option<String>,
    pub fallback_message: Option<String>,
    /// Opt-in response cache: how long an answer of this model is reused.
    #[serde(with = "values::duration_opt", skip_serializing_if = "Option::is_none")]
    pub cache_ttl: Option<Duration>,
    /// A second variant taking `percent` of this model's traffic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    #[default]
    Memory,
    Redis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnRedisError {
    #[default]
    Local,
    Deny,
}

/// How the Redis of `backend = "redis"` is deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    /// One server: the URL variable holds one URL.
    #[default]
    Standalone,
    /// A Redis Cluster: the URL variable holds comma-separated seed node URLs.
    Cluster,
    /// A master/replica set watched by Redis Sentinel: the URL variable holds
    /// comma-separated sentinel URLs; `sentinel_master` names the master.
    Sentinel,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    pub backend: StateBackend,
    pub redis_mode: RedisMode,
    pub redis_url_env: String,
    /// `redis_mode = "sentinel"` only: the master's name as the sentinels
    /// monitor it (`sentinel monitor <name> …`).
    pub sentinel_master: Option<String>,
    /// `redis_mode = "sentinel"` only: the variable holding the master's
    /// password (the sentinel URLs' own userinfo authenticates to the
    /// sentinels, which often have another password or none). Unset: the
    /// master is used without AUTH.
    pub sentinel_master_password_env: Option<String>,
    pub on_redis_error: OnRedisError,
    /// Set by the check from `sentinel_master_password_env` (sentinel mode
    /// only); never deserialized.
    #[serde(skip_deserializing, serialize_with = "secrets::redact_opt")]
    pub sentinel_master_password: Option<SecretString>,
    /// Set by the check from `redis_url_env` when `backend = "redis"` (and only
    /// then); never deserialized.
    #[serde(skip_deserializing, serialize_with = "secrets::redact_opt")]
    pub redis_url: Option<SecretString>,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            backend: StateBackend::Memory,
            redis_mode: RedisMode::Standalone,
            redis_url_env: "CHATGATE_REDIS_URL".into(),
            sentinel_master: None,
            sentinel_master_password_env: None,
            on_redis_error: OnRedisError::Local,
            sentinel_master_password: None,
            redis_url: None,
        }
    }
}

/// `[audit]`: one JSON line per admin call, reload, canary rollback, budget
/// refusal and failed authentication. Restart-only (the writer is opened once).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    pub enabled: bool,
    /// A file path, or `-` for stdout.
    pub path: String,
    /// Lines waiting for the writer; beyond this they are dropped (and counted).
    pub queue_capacity: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            path: "audit.jsonl".into(),
            queue_capacity: 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InteractionLogConfig {
    pub enabled: bool,
    /// A file path, or `-` for stdout.
    pub path: String,
    pub sample_rate: f64,
    /// Lines waiting for the writer; beyond this they are dropped (and counted).
    pub queue_capacity: usize,
}

impl Default for InteractionLogConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            path: "interactions.jsonl".into(),
            sample_rate: 1.0,
            queue_capacity: 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChatConfig {
    pub default_model: String,
    pub max_messages: usize,
    pub max_message_chars: usize,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            default_model: "default".into(),
            max_messages: 100,
            max_message_chars: 32_000,
        }
    }
}

/// `[reload]`: live reload (SIGHUP and `POST /admin/v1/reload` always work).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ReloadConfig {
    /// Reload when a config file changes (Kubernetes ConfigMap swaps included).
    pub watch: bool,
}

/// `[admin]`: the keys of `/admin/v1` (none: every `/admin` path is 404).
#[derive(Debug, Clone, Serialize, Default)]
pub struct AdminConfig {
    pub keys: BTreeMap<String, ClientKeyConfig>,
}

impl Config {
    /// Why serving this config would be useless, though it loads: auth on and
    /// no client key answers 401 to every request. (Production refuses that at
    /// load; `check-config` shows these as warnings.)
    pub fn start_refusals(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.auth.enabled && self.auth.keys.is_empty() && self.auth.jwt.is_empty() {
            out.push(Problem::new(
                "auth.keys",
                format!(
                    "auth is on but no client key is configured, so every request would get 401: \
                     add [auth.keys.<id>] with `sha256` or `env` (or [auth.jwt.<name>]), \
                     or set auth.enabled = false \
                     (profile {})",
                    self.profile.as_str()
                ),
            ));
        }
        out
    }
}
