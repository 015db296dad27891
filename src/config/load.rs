//! Loading: merge the layers with figment, then resolve secrets from the environment.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Value};
use secrecy::SecretString;

use super::validate::{Problem, validate};
use super::{Config, Profile};

/// Built-in defaults that are maps, so they can be merged key by key: the mock
/// provider and a `default` model on it. Every scalar default lives in the
/// `Default` impls of the config types.
const BUILTIN_MAPS: &str = r#"
[providers.mock]
kind = "mock"

[models.default]
targets = ["mock:echo"]
"#;

/// Prefix of every environment variable that is a config key.
const ENV_PREFIX: &str = "CHATGATE_";
/// Separator between the section and the key in an environment variable name.
const ENV_SEPARATOR: &str = "__";

/// A snapshot of environment variables: the process's at start-up, or any map in tests.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    vars: HashMap<String, String>,
}

impl Environment {
    /// The process environment, plus `.env` in the working directory for
    /// variables that are not already set.
    pub fn from_process() -> Self {
        let env = Self {
            vars: std::env::vars().collect(),
        };
        env.with_dotenv(Path::new(".env"))
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// Adds the variables of a dotenv file without overriding any that are set.
    /// A missing or unreadable file adds nothing.
    pub fn with_dotenv(mut self, path: &Path) -> Self {
        if let Ok(iter) = dotenvy::from_path_iter(path) {
            for (key, value) in iter.flatten() {
                self.vars.entry(key).or_insert(value);
            }
        }
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The `CHATGATE_<SECTION>__<KEY>` variables as a nested figment dictionary.
    /// Other `CHATGATE_` variables (`CHATGATE_CONFIG`, secrets) are not config keys.
    fn config_layer(&self) -> Dict {
        let mut root = Dict::new();
        for (name, raw) in &self.vars {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if !rest.contains(ENV_SEPARATOR) {
                continue;
            }
            let path: Vec<String> = rest
                .split(ENV_SEPARATOR)
                .map(str::to_ascii_lowercase)
                .collect();
            if path.iter().any(String::is_empty) {
                continue;
            }
            // Lists and tables parse (`["a:1", "b:2"]`); a scalar stays its exact
            // text, so a numeric-looking secret keeps its digits (and its errors
            // never echo it as a number). Numbers and booleans are read from the
            // text at extraction (`extract_lossy`).
            let value = match raw.parse::<Value>() {
                Ok(v @ (Value::Dict(..) | Value::Array(..) | Value::String(..))) => v,
                _ => Value::from(raw.clone()),
            };
            insert_path(&mut root, &path, value);
        }
        root
    }
}

fn insert_path(dict: &mut Dict, path: &[String], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry(first.clone())
                .or_insert_with(|| Value::from(Dict::new()));
            if !matches!(entry, Value::Dict(..)) {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert_path(inner, rest, value);
            }
        }
    }
}

/// Where the layers come from.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub config_dir: PathBuf,
    /// `APP_ENV`, unparsed, so a bad value is reported as a problem.
    pub app_env: Option<String>,
    /// `--config FILE` or `CHATGATE_CONFIG`.
    pub extra_file: Option<PathBuf>,
    pub env: Environment,
}

impl LoadOptions {
    /// Options as the binary sees them: `APP_ENV`, `CHATGATE_CONFIG_DIR` and
    /// `CHATGATE_CONFIG` from `env`, with `--config` winning over the latter.
    pub fn from_env(env: Environment, cli_config: Option<PathBuf>) -> Self {
        Self {
            config_dir: env
                .get("CHATGATE_CONFIG_DIR")
                .map_or_else(|| PathBuf::from("config"), PathBuf::from),
            app_env: env.get("APP_ENV").map(str::to_owned),
            extra_file: cli_config.or_else(|| env.get("CHATGATE_CONFIG").map(PathBuf::from)),
            env,
        }
    }
}

/// Merges every layer, resolves secrets and validates. Returns every problem at once.
pub fn load(opts: &LoadOptions) -> Result<Config, Vec<Problem>> {
    let profile = match opts.app_env.as_deref().unwrap_or("development") {
        "development" => Profile::Development,
        "staging" => Profile::Staging,
        "production" => Profile::Production,
        other => {
            return Err(vec![Problem::new(
                "APP_ENV",
                format!("unknown profile `{other}` (expected development, staging or production)"),
            )]);
        }
    };

    let mut figment = Figment::new()
        .merge(Toml::string(BUILTIN_MAPS))
        .merge(Toml::file(opts.config_dir.join("default.toml")))
        .merge(Toml::file(
            opts.config_dir.join(format!("{}.toml", profile.as_str())),
        ));
    if let Some(file) = &opts.extra_file {
        if !file.is_file() {
            return Err(vec![Problem::new(
                "--config",
                format!("config file {} does not exist", file.display()),
            )]);
        }
        figment = figment.merge(Toml::file(file));
    }
    figment = figment.merge(Serialized::defaults(opts.env.config_layer()));

    let mut config: Config = figment.extract_lossy().map_err(|err| {
        err.into_iter()
            .map(Problem::from_figment)
            .collect::<Vec<_>>()
    })?;
    config.profile = profile;
    resolve_secrets(&mut config, &opts.env);

    let problems = validate(&config, &opts.env);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

/// Reads every secret that the config names by variable into a `SecretString`.
fn resolve_secrets(config: &mut Config, env: &Environment) {
    let secret = |name: &str| env.get(name).map(|v| SecretString::from(v.to_owned()));
    for provider in config.providers.values_mut() {
        provider.api_key = provider.api_key_env.as_deref().and_then(secret);
    }
    for key in config.auth.keys.values_mut() {
        key.resolved = key.env.as_deref().and_then(secret);
    }
    config.state.redis_url = secret(&config.state.redis_url_env);
}
