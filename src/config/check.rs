//! The check: the merged layers, deserialized into `Raw`, become a [`Config`]
//! (secrets resolved from the environment, provider defaults applied) or
//! every problem at once, each with its key path. Rules that span fields
//! and the production profile's refusals live here and nowhere else.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;

use secrecy::SecretString;
use serde::Deserialize;

use super::env::Environment;
use super::problem::Problem;
use super::secrets::{DEV_KEY, PLACEHOLDER_PREFIX};
use super::values::KeyHash;
use super::*;

/// The config as the layers spell it. Sections whose checked shape needs the
/// environment (client keys) differ from [`Config`]; the rest are the same types.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct Raw {
    server: ServerConfig,
    auth: RawAuth,
    rate_limit: RateLimitConfig,
    logging: LoggingConfig,
    metrics: MetricsConfig,
    providers: BTreeMap<String, ProviderConfig>,
    models: BTreeMap<String, ModelConfig>,
    state: StateConfig,
    interaction_log: InteractionLogConfig,
    audit: AuditConfig,
    chat: ChatConfig,
    tracing: TracingConfig,
    reload: ReloadConfig,
    admin: RawAdmin,
    budgets: BudgetsConfig,
    cache: CacheConfig,
    faq: Vec<FaqRule>,
    guard: GuardConfig,
    output: OutputConfig,
    docs: DocsConfig,
    playground: super::PlaygroundConfig,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawAdmin {
    keys: BTreeMap<String, RawAdminKey>,
}

/// An admin key: a client key's sources, no rate (admin calls are never limited).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawAdminKey {
    sha256: Option<KeyHash>,
    env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAuth {
    enabled: bool,
    keys: BTreeMap<String, RawClientKey>,
    jwt: BTreeMap<String, super::jwt::RawJwt>,
}

impl Default for RawAuth {
    fn default() -> Self {
        Self {
            enabled: true,
            keys: BTreeMap::new(),
            jwt: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawClientKey {
    sha256: Option<KeyHash>,
    env: Option<String>,
    requests_per_minute: Option<NonZeroU32>,
    burst: Option<NonZeroU32>,
    usd_per_day: Option<Usd>,
    usd_per_month: Option<Usd>,
    tokens_per_day: Option<std::num::NonZeroU64>,
    tokens_per_month: Option<std::num::NonZeroU64>,
}

/// What the check hands back besides the config: warnings for start-up logs
/// and `check-config`.
pub(super) type Checked = (Config, Vec<String>);

/// Every problem of `raw` (none of them about a key path in `skip`, which
/// already failed to parse), or the checked config and its warnings.
pub(super) fn check(
    raw: Raw,
    profile: Profile,
    env: &Environment,
    sources: Sources,
    skip: &BTreeSet<String>,
) -> Result<Checked, Vec<Problem>> {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    let mut bad = |path: String, message: String| {
        if !skipped(skip, &path) {
            out.push(Problem::new(path, message));
        }
    };
    let production = profile == Profile::Production;

    let s = &raw.server;
    for (path, zero) in [
        ("server.request_timeout", s.request_timeout.is_zero()),
        (
            "server.header_read_timeout",
            s.header_read_timeout.is_zero(),
        ),
    ] {
        if zero {
            bad(path.into(), "must be greater than zero".into());
        }
    }
    for (path, zero) in [
        ("server.max_body_bytes", s.max_body_bytes == 0),
        (
            "server.max_concurrent_requests",
            s.max_concurrent_requests == 0,
        ),
        ("chat.max_messages", raw.chat.max_messages == 0),
        ("chat.max_message_chars", raw.chat.max_message_chars == 0),
    ] {
        if zero {
            bad(path.into(), "must be at least 1".into());
        }
    }

    let dev_hash = KeyHash::of(DEV_KEY);
    let keys_empty = raw.auth.keys.is_empty();
    let mut keys = BTreeMap::new();
    for (id, key) in raw.auth.keys {
        let path = format!("auth.keys.{id}");
        let Some(source) = key_source(&path, key.sha256, key.env, env, production, &mut bad) else {
            continue;
        };
        let checked = ClientKeyConfig {
            source,
            requests_per_minute: key.requests_per_minute,
            burst: key.burst,
            budget: Caps {
                usd_per_day: key.usd_per_day,
                usd_per_month: key.usd_per_month,
                tokens_per_day: key.tokens_per_day,
                tokens_per_month: key.tokens_per_month,
            },
        };
        if production && *checked.hash() == dev_hash {
            bad(
                path,
                format!("the development key `{DEV_KEY}` is refused in production"),
            );
        }
        keys.insert(id, checked);
    }
    let mut admin_keys = BTreeMap::new();
    for (id, key) in raw.admin.keys {
        let path = format!("admin.keys.{id}");
        let Some(source) = key_source(&path, key.sha256, key.env, env, production, &mut bad) else {
            continue;
        };
        let checked = ClientKeyConfig {
            source,
            requests_per_minute: None,
            burst: None,
            budget: Default::default(),
        };
        // An admin key that is also a client key would let every frontend
        // reconfigure the gateway.
        if production && *checked.hash() == dev_hash {
            bad(
                path,
                format!("the development key `{DEV_KEY}` is refused in production"),
            );
        } else if production
            && keys
                .values()
                .any(|k: &ClientKeyConfig| k.hash() == checked.hash())
        {
            bad(
                path,
                "an admin key must differ from every client key (production)".into(),
            );
        }
        admin_keys.insert(id, checked);
    }
    let jwt_empty = raw.auth.jwt.is_empty();
    if !raw.auth.enabled && !jwt_empty {
        bad(
            "auth.jwt".into(),
            "is set but auth.enabled = false, so no token would be checked".into(),
        );
    }
    let mut jwt = BTreeMap::new();
    for (name, raw_jwt) in raw.auth.jwt {
        // The IdP's name is its principal's key id: it must not be a static key's too.
        if keys.contains_key(&name) {
            bad(
                format!("auth.jwt.{name}"),
                format!("`{name}` is also a client key id under [auth.keys]; pick another name"),
            );
        }
        if let Some(checked) = super::jwt::check(&name, raw_jwt, env, &mut bad) {
            jwt.insert(name, checked);
        }
    }
    if production && !raw.auth.enabled {
        bad("auth.enabled".into(), "must be true in production".into());
    }
    // Outside production this refuses only to serve (see `Config::start_refusals`).
    if production && raw.auth.enabled && keys_empty && jwt_empty {
        bad(
            "auth.keys".into(),
            "production needs at least one client key (or an [auth.jwt.<name>] IdP)".into(),
        );
    }

    // Providers some model targets: only those need their key.
    let targeted: BTreeSet<&str> = raw
        .models
        .values()
        .flat_map(|m| {
            let canary = m.canary.iter().flat_map(|c| c.targets.iter().flatten());
            m.targets.iter().chain(canary).map(|t| t.provider.as_str())
        })
        .collect();
    let mut providers = BTreeMap::new();
    for (name, mut p) in raw.providers {
        let path = format!("providers.{name}");
        if name.contains(':') {
            bad(path.clone(), "a provider name cannot contain `:`".into());
        }
        let api_key = match &p.api_key_env {
            Some(var) => match env.get(var) {
                Some(value) => {
                    if production
                        && targeted.contains(name.as_str())
                        && value.starts_with(PLACEHOLDER_PREFIX)
                    {
                        bad(
                            format!("{path}.api_key_env"),
                            format!("{var} holds the placeholder from .env.example"),
                        );
                    }
                    Some(SecretString::from(value.to_owned()))
                }
                None => None,
            },
            None => None,
        };
        if p.kind != ProviderKind::Mock && targeted.contains(name.as_str()) {
            match (&p.api_key_env, &api_key) {
                (Some(var), None) if production => bad(
                    format!("{path}.api_key_env"),
                    format!("environment variable {var} is not set"),
                ),
                (Some(var), None) => warnings.push(format!(
                    "{path}.api_key_env: environment variable {var} is not set; \
                     requests to {name} go without a key"
                )),
                (None, _) if production => bad(
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
        let base_url = match (&p.base_url, p.kind.default_base_url()) {
            (Some(url), _) => Some(url.clone()),
            (None, Some(default)) => match BaseUrl::try_from(default.to_owned()) {
                Ok(url) => Some(url),
                Err(e) => {
                    bad(format!("{path}.base_url"), e);
                    None
                }
            },
            (None, None) => None,
        };
        p.upstream = match (p.kind, base_url) {
            (ProviderKind::Openai, Some(base_url)) => {
                Upstream::Openai(HttpApi { base_url, api_key })
            }
            (ProviderKind::Anthropic, Some(base_url)) => {
                Upstream::Anthropic(HttpApi { base_url, api_key })
            }
            _ => Upstream::Mock,
        };
        providers.insert(name, p);
    }

    for (name, m) in &raw.models {
        let path = format!("models.{name}");
        if m.targets.is_empty() {
            bad(
                format!("{path}.targets"),
                "needs at least one `provider:model`".into(),
            );
        }
        if m.canary
            .as_ref()
            .is_some_and(|c| c.rollback_window.is_zero())
        {
            bad(
                format!("{path}.canary.rollback_window"),
                "must be greater than zero".into(),
            );
        }
        let canary = m.canary.as_ref().and_then(|c| c.targets.as_ref());
        if canary.is_some_and(Vec::is_empty) {
            bad(
                format!("{path}.canary.targets"),
                "needs at least one `provider:model` (leave it out to use the model's)".into(),
            );
        }
        let own = m
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("{path}.targets[{i}]"), t));
        let theirs = canary.into_iter().flatten().enumerate();
        let theirs = theirs.map(|(i, t)| (format!("{path}.canary.targets[{i}]"), t));
        for (tpath, target) in own.chain(theirs) {
            match providers.get(&target.provider) {
                None if skipped(skip, &format!("providers.{}", target.provider)) => {}
                None => bad(
                    tpath,
                    format!(
                        "unknown provider `{}` (configured: {})",
                        target.provider,
                        providers.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ),
                Some(p) if production && p.kind == ProviderKind::Mock => {
                    bad(tpath, "the mock provider is refused in production".into())
                }
                Some(_) => {}
            }
        }
    }
    cost_control(
        &raw.models,
        &raw.budgets,
        &raw.faq,
        &providers,
        &keys,
        &mut bad,
        &mut warnings,
    );
    if !raw.models.contains_key(&raw.chat.default_model) {
        bad(
            "chat.default_model".into(),
            format!("no model named `{}` under [models]", raw.chat.default_model),
        );
    }

    let mut state = raw.state;
    state.redis_url = None;
    state.sentinel_master_password = None;
    check_state(&mut state, env, &mut bad);

    let il = &raw.interaction_log;
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

    if raw.tracing.service_name.trim().is_empty() {
        bad(
            "tracing.service_name".into(),
            "must not be empty (it names chatgate in every trace)".into(),
        );
    }
    let mut guard = raw.guard;
    match guard::compile(&guard.rules) {
        Ok(sets) => guard.sets = sets,
        Err(problems) => {
            for p in problems {
                bad(p.path, p.message);
            }
        }
    }

    if !out.is_empty() {
        return Err(out);
    }
    let config = Config {
        profile,
        server: raw.server,
        auth: AuthConfig {
            enabled: raw.auth.enabled,
            keys,
            jwt,
        },
        rate_limit: raw.rate_limit,
        logging: raw.logging,
        metrics: raw.metrics,
        providers,
        models: raw.models,
        state,
        interaction_log: raw.interaction_log,
        audit: raw.audit,
        chat: raw.chat,
        tracing: raw.tracing,
        reload: raw.reload,
        admin: AdminConfig { keys: admin_keys },
        budgets: raw.budgets,
        cache: raw.cache,
        faq: raw.faq,
        guard,
        output: raw.output,
        docs: raw.docs,
        playground: raw.playground,
        sources,
    };
    Ok((config, warnings))
}

/// Where the key at `path` comes from (`sha256` or the variable `env`
/// names), or `None` with the problem reported: client and admin keys alike.
fn key_source(
    path: &str,
    sha256: Option<KeyHash>,
    var: Option<String>,
    env: &Environment,
    production: bool,
    bad: &mut impl FnMut(String, String),
) -> Option<KeySource> {
    match (sha256, var) {
        (Some(_), Some(_)) => {
            bad(path.into(), "set either `sha256` or `env`, not both".into());
            None
        }
        (None, None) => {
            bad(
                path.into(),
                "set `sha256` (hex of the key) or `env` (variable holding it)".into(),
            );
            None
        }
        (Some(hash), None) => Some(KeySource::Sha256(hash)),
        (None, Some(var)) => match env.get(&var) {
            Some(value) => {
                if production && value.starts_with(PLACEHOLDER_PREFIX) {
                    bad(
                        format!("{path}.env"),
                        format!("{var} holds the placeholder from .env.example"),
                    );
                }
                Some(KeySource::Env {
                    hash: KeyHash::of(value),
                    var,
                })
            }
            None => {
                bad(
                    format!("{path}.env"),
                    format!("environment variable {var} is not set"),
                );
                None
            }
        },
    }
}

/// `[state]`: the Redis URL (one, seed nodes or sentinels, by `redis_mode`)
/// and, behind Sentinel, the master's name and password, resolved from the
/// environment. The values are secrets: problems state the rule, never the
/// value.
fn check_state(state: &mut StateConfig, env: &Environment, bad: &mut impl FnMut(String, String)) {
    let sentinel = state.redis_mode == RedisMode::Sentinel;
    if !sentinel {
        for (path, set) in [
            ("state.sentinel_master", state.sentinel_master.is_some()),
            (
                "state.sentinel_master_password_env",
                state.sentinel_master_password_env.is_some(),
            ),
        ] {
            if set {
                bad(
                    path.into(),
                    "only used with redis_mode = \"sentinel\"; remove it".into(),
                );
            }
        }
    }
    if state.backend != StateBackend::Redis {
        return;
    }
    if sentinel {
        if state
            .sentinel_master
            .as_deref()
            .is_none_or(|m| m.trim().is_empty())
        {
            bad(
                "state.sentinel_master".into(),
                "redis_mode = \"sentinel\" needs the monitored master's name".into(),
            );
        }
        if let Some(var) = &state.sentinel_master_password_env {
            match env.get(var) {
                Some(pw) => {
                    state.sentinel_master_password = Some(SecretString::from(pw.to_owned()))
                }
                None => bad(
                    "state.sentinel_master_password_env".into(),
                    format!("environment variable {var} is not set"),
                ),
            }
        }
    }
    let Some(url) = env.get(&state.redis_url_env) else {
        bad(
            "state.redis_url_env".into(),
            format!("environment variable {} is not set", state.redis_url_env),
        );
        return;
    };
    let all = |ok: fn(&str) -> bool| url.split(',').map(str::trim).all(ok);
    let plain = |u: &str| u.starts_with("redis://");
    let tls = |u: &str| u.starts_with("rediss://");
    let rule = match state.redis_mode {
        RedisMode::Standalone if plain(url) || tls(url) || url.starts_with("unix://") => None,
        RedisMode::Standalone => Some("the URL must start with redis://, rediss:// or unix://"),
        // Each cluster node says how to reach it: mixed seeds are fine.
        RedisMode::Cluster if all(|u| u.starts_with("redis://") || u.starts_with("rediss://")) => {
            None
        }
        RedisMode::Cluster => Some(
            "redis_mode = \"cluster\" needs comma-separated seed node URLs, \
             each starting with redis:// or rediss://",
        ),
        // The master is reached the way the sentinels are (TLS or not), so
        // the list must agree.
        RedisMode::Sentinel if all(plain) || all(tls) => None,
        RedisMode::Sentinel => Some(
            "redis_mode = \"sentinel\" needs comma-separated sentinel URLs, \
             all starting with redis:// or all with rediss://",
        ),
    };
    match rule {
        None => state.redis_url = Some(SecretString::from(url.to_owned())),
        Some(rule) => bad("state.redis_url_env".into(), rule.into()),
    }
}

/// Cost control's cross-field rules: every targeted model has a price (a
/// warning, or a problem once USD budgets exist: an unpriced answer would
/// spend nothing), a positive `cache_ttl`, and FAQ rules that can match.
fn cost_control(
    models: &BTreeMap<String, ModelConfig>,
    budgets: &BudgetsConfig,
    faq: &[FaqRule],
    providers: &BTreeMap<String, ProviderConfig>,
    keys: &BTreeMap<String, ClientKeyConfig>,
    bad: &mut impl FnMut(String, String),
    warnings: &mut Vec<String>,
) {
    let usd_budgets = budgets.caps().has_usd() || keys.values().any(|k| k.budget.has_usd());
    let mut unpriced = BTreeSet::new();
    for (name, m) in models {
        if m.cache_ttl.is_some_and(|t| t.is_zero()) {
            bad(
                format!("models.{name}.cache_ttl"),
                "must be greater than zero (leave it out to not cache)".into(),
            );
        }
        let canary = m.canary.iter().flat_map(|c| c.targets.iter().flatten());
        for t in m.targets.iter().chain(canary) {
            let Some(p) = providers.get(&t.provider) else {
                continue;
            };
            if p.kind != ProviderKind::Mock && !p.prices.contains_key(&t.model) {
                unpriced.insert((t.provider.as_str(), t.model.as_str()));
            }
        }
    }
    for (provider, model) in unpriced {
        let path = format!("providers.{provider}.prices.\"{model}\"");
        if usd_budgets {
            bad(path, "no price, but USD budgets are set".into());
        } else {
            warnings.push(format!(
                "{path}: no price; its answers are counted as costing 0"
            ));
        }
    }
    let mut names = BTreeSet::new();
    for (i, rule) in faq.iter().enumerate() {
        let path = format!("faq[{i}]");
        if rule.name.trim().is_empty() {
            bad(format!("{path}.name"), "must not be empty".into());
        } else if !names.insert(rule.name.as_str()) {
            bad(
                format!("{path}.name"),
                format!("`{}` is already the name of an earlier rule", rule.name),
            );
        }
        match (rule.phrases.is_empty(), &rule.regex) {
            (true, None) => bad(path.clone(), "set `phrases` or `regex`".into()),
            (false, Some(_)) => bad(
                path.clone(),
                "set either `phrases` or `regex`, not both".into(),
            ),
            _ => {}
        }
        for (j, phrase) in rule.phrases.iter().enumerate() {
            if super::cost::normalise(phrase).is_empty() {
                bad(
                    format!("{path}.phrases[{j}]"),
                    "has no letters or digits, so it would match every message".into(),
                );
            }
        }
        for model in rule.models.iter().flatten() {
            if !models.contains_key(model) {
                bad(
                    format!("{path}.models"),
                    format!("no model named `{model}` under [models]"),
                );
            }
        }
    }
}

/// Whether `path` is, or lies under, a key path that already failed to parse.
fn skipped(skip: &BTreeSet<String>, path: &str) -> bool {
    skip.iter().any(|s| {
        path == s
            || path
                .strip_prefix(s.as_str())
                .is_some_and(|rest| rest.starts_with(['.', '[']))
    })
}
