//! A config problem, named by its key path (and by the environment variable
//! when the value came from one), worded for the person who wrote the value.

use figment::error::{Actual, Kind};

/// One thing wrong with the config, named by its key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key path: `server.port`, `models.default.targets[1]`, `APP_ENV`.
    pub path: String,
    pub message: String,
    /// The environment variable the value came from, if it did.
    pub var: Option<String>,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
            var: None,
        }
    }

    /// A figment (type) error at `path`, reworded. `secret` withholds the value.
    pub(super) fn from_figment(path: &[String], kind: &Kind, var: Option<&str>) -> Self {
        let mut path = dotted(path);
        let secret = path.ends_with(".sha256") || path.ends_with(".token");
        let message = match kind {
            Kind::UnknownField(name, known) => {
                let hint = match did_you_mean(name, known) {
                    Some(near) => match var {
                        Some(v) => format!("; did you mean {}?", sibling_var(v, near)),
                        None => format!("; did you mean `{near}`?"),
                    },
                    None => format!(" (known keys: {})", known.join(", ")),
                };
                format!("unknown key{hint}")
            }
            Kind::UnknownVariant(value, known) => {
                let hint = did_you_mean(value, known)
                    .map(|near| format!("; did you mean `{near}`?"))
                    .unwrap_or_default();
                format!("expected one of {}, got {value:?}{hint}", known.join(", "))
            }
            Kind::MissingField(field) => {
                path = format!("{path}.{field}");
                "is required".to_owned()
            }
            Kind::InvalidValue(Actual::Unsigned(0), expected) if expected.contains("nonzero") => {
                "must be at least 1, got 0".to_owned()
            }
            Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
                let what = expectation(expected, &path);
                if secret {
                    format!("expected {what} (value not shown)")
                } else {
                    format!("expected {what}, got {}", got(actual))
                }
            }
            Kind::Message(text) => text.clone(),
            other => other.to_string(),
        };
        Self {
            path,
            message,
            var: var.map(str::to_owned),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.var {
            Some(var) => write!(f, "{var} ({}): {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// `["models", "default", "targets", "1"]` → `models.default.targets[1]`.
pub(super) fn dotted(path: &[String]) -> String {
    let mut out = String::new();
    for segment in path {
        if segment.parse::<usize>().is_ok() {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    if out.is_empty() { "config".into() } else { out }
}

/// The closest of `known` to a mistyped `word`, if it is close enough to be a typo.
pub(crate) fn did_you_mean<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(word, k), *k))
        .filter(|(distance, k)| *distance <= (k.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k)
}

/// `CHATGATE_MODELS__DEFAULT__MAX_TOKEN` + `max_tokens` → `CHATGATE_MODELS__DEFAULT__MAX_TOKENS`.
fn sibling_var(var: &str, key: &str) -> String {
    match var.rsplit_once("__") {
        Some((parent, _)) => format!("{parent}__{}", key.to_ascii_uppercase()),
        None => key.to_owned(),
    }
}

/// What serde expected, in the words of a config file.
fn expectation(expected: &str, path: &str) -> String {
    let e = expected.trim_start_matches("a ").trim_start_matches("an ");
    match e {
        "u16" if path.ends_with("port") => "a port number (0-65535)".into(),
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "bool" | "boolean" => "true or false".into(),
        "sequence" => "a list".into(),
        "map" => "a table".into(),
        "string" => "a string".into(),
        _ => expected.to_owned(),
    }
}

/// The value that was found, as the user wrote it.
fn got(actual: &Actual) -> String {
    match actual {
        Actual::Str(s) => format!("{s:?}"),
        Actual::Unsigned(n) => n.to_string(),
        Actual::Signed(n) => n.to_string(),
        Actual::Float(n) => n.to_string(),
        Actual::Bool(b) => b.to_string(),
        Actual::Seq => "a list".into(),
        Actual::Map => "a table".into(),
        other => other.to_string(),
    }
}
