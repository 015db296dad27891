//! The environment the config is read from: a snapshot of variables (the
//! process's plus `.env`, or any map in tests), and the config layer that its
//! `CHATGATE_<SECTION>__<KEY>` variables form.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use figment::value::{Dict, Value};

/// Prefix of every environment variable that is a config key.
const ENV_PREFIX: &str = "CHATGATE_";
/// Separator between the section and the key in an environment variable name.
const ENV_SEPARATOR: &str = "__";

/// A snapshot of environment variables: the process's at start-up, or any map in tests.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    vars: HashMap<String, String>,
    /// The dotenv file read, and how many variables it set.
    dotenv: Option<(PathBuf, usize)>,
}

/// The environment's config layer: values by key path, and the variable each came from.
pub(super) struct EnvLayer {
    pub dict: Dict,
    /// Dotted key path (`server.port`) → variable (`CHATGATE_SERVER__PORT`).
    pub vars: BTreeMap<String, String>,
}

impl EnvLayer {
    /// The variable that set `path` or a table or list above it.
    pub fn var_for(&self, path: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(key, _)| {
                path == key.as_str()
                    || path
                        .strip_prefix(key.as_str())
                        .is_some_and(|rest| rest.starts_with(['.', '[']))
            })
            .map(|(_, var)| var.as_str())
    }
}

impl Environment {
    /// The process environment, plus `.env` in the working directory for
    /// variables that are not already set.
    pub fn from_process() -> Self {
        let env = Self {
            vars: std::env::vars().collect(),
            dotenv: None,
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
            dotenv: None,
        }
    }

    /// Adds the variables of a dotenv file without overriding any that are set.
    /// A missing or unreadable file adds nothing.
    pub fn with_dotenv(mut self, path: &Path) -> Self {
        if let Ok(iter) = dotenvy::from_path_iter(path) {
            let mut set = 0;
            for (key, value) in iter.flatten() {
                if let std::collections::hash_map::Entry::Vacant(slot) = self.vars.entry(key) {
                    slot.insert(value);
                    set += 1;
                }
            }
            self.dotenv = Some((path.to_owned(), set));
        }
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The dotenv file that was read, and how many variables it set.
    pub fn dotenv(&self) -> Option<(&Path, usize)> {
        self.dotenv.as_ref().map(|(p, n)| (p.as_path(), *n))
    }

    /// The `CHATGATE_<SECTION>__<KEY>` variables as a nested figment dictionary.
    /// Other `CHATGATE_` variables (`CHATGATE_CONFIG`, secrets) are not config keys.
    pub(super) fn config_layer(&self) -> EnvLayer {
        let mut layer = EnvLayer {
            dict: Dict::new(),
            vars: BTreeMap::new(),
        };
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
            insert_path(&mut layer.dict, &path, value);
            layer.vars.insert(path.join("."), name.clone());
        }
        layer
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

/// Removes the value at `path` (dict keys; a list index removes the whole
/// list). Returns whether something was removed.
pub(super) fn remove_path(dict: &mut Dict, path: &[String]) -> bool {
    match path {
        [] => false,
        [last] => dict.remove(last).is_some(),
        [first, next, ..] if next.parse::<usize>().is_ok() => dict.remove(first).is_some(),
        [first, rest @ ..] => match dict.get_mut(first) {
            Some(Value::Dict(_, inner)) => remove_path(inner, rest),
            Some(_) => dict.remove(first).is_some(),
            None => false,
        },
    }
}
