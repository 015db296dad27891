//! The `[guard]` and `[output]` sections: content-safety knobs, guard rules
//! whose patterns are checked regexes from deserialization on, and the rule
//! sets the check compiles once (one `RegexSet` per side).

use regex::RegexSet;
use serde::{Deserialize, Serialize, Serializer};

use super::problem::Problem;

/// Rule names are metric labels and log values: short, plain, and unique.
pub const MAX_RULE_NAME_CHARS: usize = 64;
/// The rule name the system-prompt leak check reports (so no rule may take it).
pub const LEAK_RULE: &str = "system_prompt_leak";
/// Streams keep at most this many bytes of earlier text for the output rules:
/// a match of an unbounded pattern (`.*`, `\s+`) longer than this that spans
/// deltas is missed (see the README's Safety section).
pub const STREAM_WINDOW_MAX_BYTES: usize = 4096;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    /// Remove zero-width, bidi, tag characters and C0/C1 controls (but `\n \r \t`).
    pub strip_invisible: bool,
    pub client_system_messages: SystemMessages,
    /// Block answers repeating ≥ 40 consecutive characters of the model's system prompt.
    pub block_system_prompt_leak: bool,
    pub rules: Vec<GuardRule>,
    /// Set by the check from `rules`; never deserialized.
    #[serde(skip)]
    pub sets: RuleSets,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            strip_invisible: true,
            client_system_messages: SystemMessages::Allow,
            block_system_prompt_leak: false,
            rules: Vec::new(),
            sets: RuleSets::default(),
        }
    }
}

/// What happens to system messages a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SystemMessages {
    #[default]
    Allow,
    /// Removed before the model's own `system_prompt` is prepended.
    Drop,
    /// 400 `invalid_request` naming `messages[i].role`.
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// User messages, after sanitising.
    Input,
    /// The answer, whole or as it streams.
    Output,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Input => "input",
            Side::Output => "output",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Block,
    Flag,
}

impl Action {
    /// The `action` label of `chatgate_guard_matches_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Block => "block",
            Action::Flag => "flag",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardRule {
    pub name: String,
    pub pattern: Pattern,
    pub on: Side,
    pub action: Action,
}

/// A regex that compiles, with the longest text it can match (in bytes) when
/// that is bounded: streams keep exactly that much earlier text.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct Pattern {
    source: String,
    max_len: Option<usize>,
}

impl Pattern {
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The longest match in bytes; `None` when unbounded (`+`, `*`, `{n,}`).
    pub fn max_len(&self) -> Option<usize> {
        self.max_len
    }
}

impl TryFrom<String> for Pattern {
    type Error = String;
    fn try_from(source: String) -> Result<Self, String> {
        if let Err(e) = regex::Regex::new(&source) {
            // The syntax error's last line says what is wrong; the lines above draw a caret.
            let text = e.to_string();
            let last = text.lines().last().unwrap_or("invalid").trim();
            return Err(format!("not a valid regex: {last}"));
        }
        let max_len = regex_syntax::Parser::new()
            .parse(&source)
            .ok()
            .and_then(|hir| hir.properties().maximum_len());
        Ok(Self { source, max_len })
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

/// The compiled rules of both sides.
#[derive(Debug, Clone, Default)]
pub struct RuleSets {
    pub input: SideRules,
    pub output: SideRules,
}

/// One side's rules as one `RegexSet`: pattern `i` of `set` is rule `rules[i]`
/// of `guard.rules`.
#[derive(Debug, Clone)]
pub struct SideRules {
    pub set: RegexSet,
    pub rules: Vec<usize>,
    /// Bytes of earlier text a stream keeps: the longest match of any rule,
    /// at most [`STREAM_WINDOW_MAX_BYTES`].
    pub window: usize,
    /// Whether every rule's longest match fits the window (no match can be missed).
    pub exact: bool,
}

impl Default for SideRules {
    fn default() -> Self {
        Self {
            set: RegexSet::empty(),
            rules: Vec::new(),
            window: 0,
            exact: true,
        }
    }
}

impl SideRules {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// The cross-field part of the check: names unique and label-safe, and each
/// side compiled into one set. Every problem is returned, with its key path.
pub(super) fn compile(rules: &[GuardRule]) -> Result<RuleSets, Vec<Problem>> {
    let mut problems = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let path = format!("guard.rules[{i}].name");
        let plain = rule
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if rule.name.is_empty() || rule.name.chars().count() > MAX_RULE_NAME_CHARS || !plain {
            problems.push(Problem::new(
                path,
                format!(
                    "must be 1 to {MAX_RULE_NAME_CHARS} characters of letters, digits, `-`, `_` or `.`"
                ),
            ));
        } else if rule.name == LEAK_RULE {
            problems.push(Problem::new(
                path,
                format!("`{LEAK_RULE}` is the name of the system-prompt leak check"),
            ));
        } else if rules[..i].iter().any(|r| r.name == rule.name) {
            problems.push(Problem::new(
                path,
                format!("another rule is already named `{}`", rule.name),
            ));
        }
    }
    let mut side = |on: Side| {
        let picked: Vec<usize> = (0..rules.len()).filter(|&i| rules[i].on == on).collect();
        let set = RegexSet::new(picked.iter().map(|&i| rules[i].pattern.as_str()));
        match set {
            Ok(set) => {
                let longest = picked
                    .iter()
                    .map(|&i| rules[i].pattern.max_len())
                    .try_fold(0, |acc, len| len.map(|l| acc.max(l)));
                Some(SideRules {
                    set,
                    window: longest
                        .map_or(STREAM_WINDOW_MAX_BYTES, |l| l.min(STREAM_WINDOW_MAX_BYTES)),
                    exact: longest.is_some_and(|l| l <= STREAM_WINDOW_MAX_BYTES),
                    rules: picked,
                })
            }
            Err(e) => {
                problems.push(Problem::new(
                    "guard.rules",
                    format!("the {} rules do not compile together: {e}", on.as_str()),
                ));
                None
            }
        }
    };
    let input = side(Side::Input);
    let output = side(Side::Output);
    match (input, output) {
        (Some(input), Some(output)) if problems.is_empty() => Ok(RuleSets { input, output }),
        _ => Err(problems),
    }
}

/// `[output]`: how answers are shaped for the page that shows them.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Native route only: answer text and stream deltas HTML-escaped (`& < > " '`).
    pub escape_html: bool,
}
