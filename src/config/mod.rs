//! Configuration: the typed shape of every knob, and loading it from layers.
//!
//! Layers, lowest first: built-in defaults → `config/default.toml` →
//! `config/{APP_ENV}.toml` → `--config FILE` → `CHATGATE_<SECTION>__<KEY>`.
//! Loading never touches the process environment: it reads an [`Environment`]
//! snapshot, so tests can build any environment without `set_var`.

mod load;
mod secrets;
mod validate;

pub use load::{Environment, LoadOptions, load};
pub use secrets::sha256_hex;
pub use validate::Problem;

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::IpNet;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

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

/// The whole effective configuration, after every layer is merged.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Not a config key: set from `APP_ENV` by the loader.
    #[serde(skip_deserializing)]
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
    pub chat: ChatConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    /// The whole request, retries and fallbacks included (504 past it).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_concurrent_requests: usize,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How long a client may take to send its request headers (slowloris guard).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    pub trusted_proxies: Vec<IpNet>,
    pub cors_allowed_origins: Vec<String>,
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub enabled: bool,
    pub keys: BTreeMap<String, ClientKeyConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            keys: BTreeMap::new(),
        }
    }
}

/// One client key: stored as a SHA-256 hash, or read from an environment variable.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ClientKeyConfig {
    #[serde(serialize_with = "secrets::redact_opt")]
    pub sha256: Option<SecretString>,
    pub env: Option<String>,
    pub requests_per_minute: Option<u32>,
    /// Burst for the per-key bucket; defaults to `requests_per_minute` (a minute's worth at once).
    pub burst: Option<u32>,
    /// Filled by the loader from `env`; never deserialized.
    #[serde(skip_deserializing, serialize_with = "secrets::redact_opt")]
    pub resolved: Option<SecretString>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub per_ip_requests_per_minute: u32,
    pub per_ip_burst: u32,
    /// IPv6 clients share one per-IP bucket per prefix of this length (1..=128):
    /// one subscriber usually holds a whole /64.
    pub ipv6_prefix: u8,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_ip_requests_per_minute: 60,
            per_ip_burst: 20,
            ipv6_prefix: 64,
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    pub level: String,
    pub format: LogFormat,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Pretty,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Openai,
    Anthropic,
    Mock,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// One attempt.
    #[serde(default = "defaults::provider_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "defaults::max_retries")]
    pub max_retries: u32,
    #[serde(default = "defaults::backoff_initial", with = "humantime_serde")]
    pub backoff_initial: Duration,
    #[serde(default = "defaults::backoff_max", with = "humantime_serde")]
    pub backoff_max: Duration,
    #[serde(default = "defaults::circuit_failure_threshold")]
    pub circuit_failure_threshold: u32,
    #[serde(default = "defaults::circuit_cooldown", with = "humantime_serde")]
    pub circuit_cooldown: Duration,
    /// Filled by the loader from `api_key_env`; never deserialized.
    #[serde(skip_deserializing, serialize_with = "secrets::redact_opt")]
    pub api_key: Option<SecretString>,
}

/// Named defaults for provider knobs (the contract's values).
mod defaults {
    use std::time::Duration;
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
    pub fn circuit_failure_threshold() -> u32 {
        5
    }
    pub fn circuit_cooldown() -> Duration {
        Duration::from_secs(30)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// `provider:model`, tried in order.
    pub targets: Vec<String>,
    pub max_tokens: Option<u32>,
    pub system_prompt: Option<String>,
    pub fallback_message: Option<String>,
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    pub backend: StateBackend,
    pub redis_url_env: String,
    pub on_redis_error: OnRedisError,
    /// Filled by the loader from `redis_url_env`; never deserialized.
    #[serde(skip_deserializing, serialize_with = "secrets::redact_opt")]
    pub redis_url: Option<SecretString>,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            backend: StateBackend::Memory,
            redis_url_env: "CHATGATE_REDIS_URL".into(),
            on_redis_error: OnRedisError::Local,
            redis_url: None,
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
