//! Validation: every problem of a merged config, each with its key path, and
//! the production profile's refusals of unsafe settings.

use secrecy::ExposeSecret;

use super::load::Environment;
use super::secrets::{DEV_KEY, sha256_hex};
use super::{Config, Profile, ProviderKind, StateBackend};

/// One thing wrong with the config, named by its key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }

    /// A figment (parse or type) error, named by the key path figment reports.
    pub(super) fn from_figment(err: figment::Error) -> Self {
        let path = if err.path.is_empty() {
            "config".to_owned()
        } else {
            err.path.join(".")
        };
        Self {
            path,
            message: err.kind.to_string(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem of `config`, in a stable order (empty when it is valid).
pub fn validate(config: &Config, env: &Environment) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut bad = |path: String, message: String| out.push(Problem::new(path, message));
    let production = config.profile == Profile::Production;

    let s = &config.server;
    if s.request_timeout.is_zero() {
        bad(
            "server.request_timeout".into(),
            "must be greater than zero".into(),
        );
    }
    if s.max_body_bytes == 0 {
        bad("server.max_body_bytes".into(), "must be at least 1".into());
    }
    if s.max_concurrent_requests == 0 {
        bad(
            "server.max_concurrent_requests".into(),
            "must be at least 1".into(),
        );
    }
    if s.header_read_timeout.is_zero() {
        bad(
            "server.header_read_timeout".into(),
            "must be greater than zero".into(),
        );
    }
    for (i, origin) in s.cors_allowed_origins.iter().enumerate() {
        let well_formed = (origin.starts_with("http://") || origin.starts_with("https://"))
            && http::HeaderValue::from_str(origin).is_ok()
            && !origin.ends_with('/');
        if !well_formed {
            bad(
                format!("server.cors_allowed_origins[{i}]"),
                format!("`{origin}` is not an origin like https://app.example.com"),
            );
        }
    }

    for (id, key) in &config.auth.keys {
        let path = format!("auth.keys.{id}");
        match (&key.sha256, &key.env) {
            (Some(_), Some(_)) => bad(
                path.clone(),
                "set either `sha256` or `env`, not both".into(),
            ),
            (None, None) => bad(
                path.clone(),
                "set `sha256` (hex of the key) or `env` (variable holding it)".into(),
            ),
            (Some(hash), None) => {
                let h = hash.expose_secret();
                if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    bad(
                        format!("{path}.sha256"),
                        "must be 64 hex characters (see `chatgate hash-key`)".into(),
                    );
                }
            }
            (None, Some(var)) => {
                if env.get(var).is_none() {
                    bad(
                        format!("{path}.env"),
                        format!("environment variable {var} is not set"),
                    );
                }
            }
        }
        if key.requests_per_minute == Some(0) {
            bad(
                format!("{path}.requests_per_minute"),
                "must be at least 1".into(),
            );
        }
        if key.burst == Some(0) {
            bad(format!("{path}.burst"), "must be at least 1".into());
        }
        if production && is_dev_key(key) {
            bad(
                path.clone(),
                format!("the development key `{DEV_KEY}` is refused in production"),
            );
        }
    }
    if production && !config.auth.enabled {
        bad("auth.enabled".into(), "must be true in production".into());
    }
    if production && config.auth.keys.is_empty() {
        bad(
            "auth.keys".into(),
            "production needs at least one client key".into(),
        );
    }

    if config.rate_limit.per_ip_requests_per_minute == 0 {
        bad(
            "rate_limit.per_ip_requests_per_minute".into(),
            "must be at least 1".into(),
        );
    }
    if config.rate_limit.per_ip_burst == 0 {
        bad(
            "rate_limit.per_ip_burst".into(),
            "must be at least 1".into(),
        );
    }
    if !(1..=128).contains(&config.rate_limit.ipv6_prefix) {
        bad(
            "rate_limit.ipv6_prefix".into(),
            "must be between 1 and 128".into(),
        );
    }

    if tracing_subscriber::EnvFilter::try_new(&config.logging.level).is_err() {
        bad(
            "logging.level".into(),
            format!("`{}` is not a log level or filter", config.logging.level),
        );
    }

    // Providers some model targets: only those need their key in production.
    let targeted: std::collections::BTreeSet<&str> = config
        .models
        .values()
        .flat_map(|m| {
            m.targets
                .iter()
                .filter_map(|t| t.split_once(':').map(|(p, _)| p))
        })
        .collect();
    for (name, p) in &config.providers {
        let path = format!("providers.{name}");
        let needs_key = production && targeted.contains(name.as_str());
        if name.contains(':') {
            bad(path.clone(), "a provider name cannot contain `:`".into());
        }
        if let Some(url) = &p.base_url
            && (!(url.starts_with("http://") || url.starts_with("https://"))
                || reqwest::Url::parse(url).is_err())
        {
            bad(
                format!("{path}.base_url"),
                format!("`{url}` is not an http(s) URL"),
            );
        }
        if p.kind != ProviderKind::Mock && needs_key {
            match &p.api_key_env {
                Some(var) if p.api_key.is_none() => {
                    bad(
                        format!("{path}.api_key_env"),
                        format!("environment variable {var} is not set"),
                    );
                }
                None => bad(
                    format!("{path}.api_key_env"),
                    "is required in production".into(),
                ),
                _ => {}
            }
        }
        if p.timeout.is_zero() {
            bad(
                format!("{path}.timeout"),
                "must be greater than zero".into(),
            );
        }
        if p.backoff_initial > p.backoff_max {
            bad(
                format!("{path}.backoff_initial"),
                "must not exceed backoff_max".into(),
            );
        }
        if p.circuit_failure_threshold == 0 {
            bad(
                format!("{path}.circuit_failure_threshold"),
                "must be at least 1".into(),
            );
        }
    }

    for (name, m) in &config.models {
        let path = format!("models.{name}");
        if m.targets.is_empty() {
            bad(
                format!("{path}.targets"),
                "needs at least one `provider:model`".into(),
            );
        }
        for (i, target) in m.targets.iter().enumerate() {
            let tpath = format!("{path}.targets[{i}]");
            match target.split_once(':') {
                Some((provider, model)) if !provider.is_empty() && !model.is_empty() => {
                    match config.providers.get(provider) {
                        None => bad(tpath, format!("unknown provider `{provider}`")),
                        Some(p) if production && p.kind == ProviderKind::Mock => {
                            bad(tpath, "the mock provider is refused in production".into())
                        }
                        Some(_) => {}
                    }
                }
                _ => bad(tpath, format!("`{target}` is not `provider:model`")),
            }
        }
        if m.max_tokens == Some(0) {
            bad(format!("{path}.max_tokens"), "must be at least 1".into());
        }
    }
    if !config.models.contains_key(&config.chat.default_model) {
        bad(
            "chat.default_model".into(),
            format!(
                "no model named `{}` under [models]",
                config.chat.default_model
            ),
        );
    }
    if config.chat.max_messages == 0 {
        bad("chat.max_messages".into(), "must be at least 1".into());
    }
    if config.chat.max_message_chars == 0 {
        bad("chat.max_message_chars".into(), "must be at least 1".into());
    }

    if config.state.backend == StateBackend::Redis {
        match &config.state.redis_url {
            None => bad(
                "state.redis_url_env".into(),
                format!(
                    "environment variable {} is not set",
                    config.state.redis_url_env
                ),
            ),
            Some(url) => {
                let u = url.expose_secret();
                if !(u.starts_with("redis://")
                    || u.starts_with("rediss://")
                    || u.starts_with("unix://"))
                {
                    // The value is a secret: say what is wrong without echoing it.
                    bad(
                        "state.redis_url_env".into(),
                        "the URL must start with redis://, rediss:// or unix://".into(),
                    );
                }
            }
        }
    }

    let il = &config.interaction_log;
    if !(0.0..=1.0).contains(&il.sample_rate) {
        bad(
            "interaction_log.sample_rate".into(),
            "must be between 0.0 and 1.0".into(),
        );
    }
    if il.path.is_empty() {
        bad(
            "interaction_log.path".into(),
            "must be a file path or `-`".into(),
        );
    }

    out
}

fn is_dev_key(key: &super::ClientKeyConfig) -> bool {
    let dev_hash = sha256_hex(DEV_KEY);
    key.sha256
        .as_ref()
        .is_some_and(|h| h.expose_secret().eq_ignore_ascii_case(&dev_hash))
        || key
            .resolved
            .as_ref()
            .is_some_and(|k| k.expose_secret() == DEV_KEY)
}
