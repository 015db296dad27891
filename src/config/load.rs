//! Loading: read every layer (reporting which), merge them with figment,
//! deserialize key by key so that every bad value is reported, then check.

use std::collections::BTreeSet;
use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use figment::value::Dict;
use serde::Serialize;

use super::check::{Raw, check};
use super::env::{Environment, remove_path};
use super::problem::{Problem, dotted};
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

/// More bad values than this in one config and the rest go unreported.
const MAX_VALUE_PROBLEMS: usize = 100;

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

/// What the loader read: shown by `check-config` and logged at start.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sources {
    pub config_dir: PathBuf,
    /// Config files in layer order, each `read` or `missing, skipped`.
    pub files: Vec<FileLayer>,
    /// The `.env` file read, if any, and how many variables it set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dotenv: Option<String>,
    /// How many `CHATGATE_<SECTION>__<KEY>` variables were read as config keys.
    pub env_vars: usize,
    /// Things that load but deserve a look (missing config dir, unset provider keys).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileLayer {
    pub path: PathBuf,
    pub status: &'static str,
}

impl Sources {
    /// One line: `built-in defaults, config/default.toml, … , 2 CHATGATE_* variables`.
    pub fn describe(&self) -> String {
        let mut parts = vec!["built-in defaults".to_owned()];
        for f in &self.files {
            match f.status {
                "read" => parts.push(f.path.display().to_string()),
                other => parts.push(format!("{} ({other})", f.path.display())),
            }
        }
        if let Some(dotenv) = &self.dotenv {
            parts.push(dotenv.clone());
        }
        parts.push(format!("{} CHATGATE_* variables", self.env_vars));
        parts.join(", ")
    }
}

/// Merges every layer, resolves secrets and checks. Returns every problem at once.
pub fn load(opts: &LoadOptions) -> Result<Config, Vec<Problem>> {
    let profile = match opts.app_env.as_deref().unwrap_or("development") {
        "development" => Profile::Development,
        "staging" => Profile::Staging,
        "production" => Profile::Production,
        other => {
            return Err(vec![Problem::new(
                "APP_ENV",
                format!(
                    "expected development, staging or production, got {other:?}{}",
                    super::problem::did_you_mean(other, &["development", "staging", "production"])
                        .map(|s| format!("; did you mean `{s}`?"))
                        .unwrap_or_default()
                ),
            )]);
        }
    };

    let mut problems = Vec::new();
    let mut sources = Sources {
        config_dir: opts.config_dir.clone(),
        ..Sources::default()
    };
    if !opts.config_dir.is_dir() {
        sources.warnings.push(format!(
            "config directory {} does not exist: only built-in defaults, --config and \
             CHATGATE_* variables apply (run from the repository root, or set CHATGATE_CONFIG_DIR)",
            opts.config_dir.display()
        ));
    }

    let mut figment = Figment::new().merge(Toml::string(BUILTIN_MAPS));
    let mut files = vec![
        opts.config_dir.join("default.toml"),
        opts.config_dir.join(format!("{}.toml", profile.as_str())),
    ];
    if let Some(file) = &opts.extra_file {
        if file.is_file() {
            files.push(file.clone());
        } else {
            problems.push(Problem::new(
                "--config",
                format!("config file {} does not exist", file.display()),
            ));
        }
    }
    for path in files {
        if !path.is_file() {
            sources.files.push(FileLayer {
                path,
                status: "missing, skipped",
            });
            continue;
        }
        // Each file on its own first, so a syntax error in one is reported
        // with the others still read.
        match Figment::from(Toml::file(&path)).extract::<Dict>() {
            Ok(_) => {
                figment = figment.merge(Toml::file(&path));
                sources.files.push(FileLayer {
                    path,
                    status: "read",
                });
            }
            Err(e) => {
                problems.push(Problem::new(
                    path.display().to_string(),
                    format!("not valid TOML: {}", e.kind),
                ));
                sources.files.push(FileLayer {
                    path,
                    status: "invalid",
                });
            }
        }
    }
    if let Some((path, set)) = opts.env.dotenv() {
        sources.dotenv = Some(format!("{} ({set} variables set)", path.display()));
    }
    let env_layer = opts.env.config_layer();
    sources.env_vars = env_layer.vars.len();
    figment = figment.merge(Serialized::defaults(&env_layer.dict));

    let mut merged: Dict = match figment.extract() {
        Ok(dict) => dict,
        Err(e) => {
            problems.push(Problem::new("config", e.kind.to_string()));
            return Err(problems);
        }
    };

    // serde stops at the first bad value; so take that one out (its default
    // applies), note it, and go again until the rest deserializes.
    let mut failed = BTreeSet::new();
    let raw = loop {
        match Figment::from(Serialized::defaults(&merged)).extract_lossy::<Raw>() {
            Ok(raw) => break Some(raw),
            Err(errors) => {
                let mut removed_any = false;
                for err in errors {
                    let var = env_layer.var_for(&dotted(&err.path));
                    let problem = Problem::from_figment(&err.path, &err.kind, var);
                    // A required field taken out for its bad value is already reported.
                    if !failed.contains(&problem.path) {
                        problems.push(problem);
                    }
                    // A list is taken out whole; a missing field takes its table.
                    let cut: Vec<String> = err
                        .path
                        .iter()
                        .take_while(|s| s.parse::<usize>().is_err())
                        .cloned()
                        .collect();
                    if remove_path(&mut merged, &cut) {
                        failed.insert(dotted(&cut));
                        removed_any = true;
                    }
                }
                if !removed_any || problems.len() >= MAX_VALUE_PROBLEMS {
                    break None;
                }
            }
        }
    };

    let Some(raw) = raw else {
        return Err(problems);
    };
    match check(raw, profile, &opts.env, sources, &failed) {
        Ok((mut config, warnings)) if problems.is_empty() => {
            config.sources.warnings.extend(warnings);
            Ok(config)
        }
        Ok(_) => Err(problems),
        Err(more) => {
            problems.extend(more);
            Err(problems)
        }
    }
}
