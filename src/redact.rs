//! Redaction of free text for the interaction log: e-mail addresses, phone
//! numbers, card numbers, secrets (API keys, JWTs, AWS key ids, Slack tokens)
//! and IP addresses become typed placeholders. Order matters: longer, more
//! specific shapes go first.

use std::sync::LazyLock;

use regex::Regex;

struct Rule {
    pattern: Regex,
    placeholder: &'static str,
}

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    [
        // Bearer tokens, JWTs (three base64url parts, the first a JSON `{"`),
        // AWS access key ids, Slack tokens, `sk-…`/`pk-…`-style keys, long hex
        // and base64 runs.
        (r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}", "[SECRET]"),
        (r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*", "[SECRET]"),
        (r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", "[SECRET]"),
        (r"\bxox[baprs]-[A-Za-z0-9-]{10,}", "[SECRET]"),
        (r"\b(?:sk|pk|rk|ak)-[A-Za-z0-9_-]{12,}", "[SECRET]"),
        (r"\b[A-Fa-f0-9]{32,}\b", "[SECRET]"),
        (r"\b[A-Za-z0-9+/_-]{40,}={0,2}", "[SECRET]"),
        (r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b", "[EMAIL]"),
        // 13–19 digits, optionally grouped by spaces or dashes.
        (r"\b\d(?:[ -]?\d){12,18}\b", "[CARD]"),
        (r"\b(?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}\b", "[IP]"),
        (r"\b(?:[0-9A-Fa-f]{1,4}:){2,7}[0-9A-Fa-f]{1,4}\b|\b(?:[0-9A-Fa-f]{1,4}:){1,7}:(?:[0-9A-Fa-f]{1,4})?", "[IP]"),
        // International (+…), parenthesised area code, or NANP-shaped numbers.
        (r"\+\d{1,3}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{1,4}(?:[\s.-]?\d{2,4}){2,4}\b", "[PHONE]"),
        (r"\(\d{1,4}\)[\s.-]?\d{3,4}[\s.-]?\d{3,4}\b", "[PHONE]"),
        (r"\b\d{3}[\s.-]\d{3}[\s.-]\d{4}\b", "[PHONE]"),
    ]
    .into_iter()
    .map(|(re, placeholder)| match Regex::new(re) {
        Ok(pattern) => Rule { pattern, placeholder },
        // A shipped rule that does not compile is a bug, never input: fail
        // loudly (at start-up, see `ensure_rules`) rather than redact less.
        Err(error) => panic!("redaction rule {re:?} does not compile: {error}"),
    })
    .collect()
});

/// Compiles every rule now, so a broken one stops start-up instead of the
/// interaction log's writer.
pub fn ensure_rules() {
    LazyLock::force(&RULES);
}

/// `text` with every sensitive span replaced by its placeholder.
pub fn redact(text: &str) -> String {
    let mut out = text.to_owned();
    for rule in RULES.iter() {
        if rule.pattern.is_match(&out) {
            out = rule
                .pattern
                .replace_all(&out, rule.placeholder)
                .into_owned();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{RULES, redact};

    #[test]
    fn every_shipped_rule_compiles() {
        // Forcing the rules compiles each one; one that does not panics here.
        assert!(!RULES.is_empty());
    }

    #[test]
    fn every_kind_is_replaced_by_its_placeholder() {
        let cases = [
            (
                "mail me at jane.doe+x@example.co.uk now",
                "mail me at [EMAIL] now",
            ),
            ("call +1 415-555-0134 today", "call [PHONE] today"),
            ("call (020) 7946 0958", "call [PHONE]"),
            ("card 4111 1111 1111 1111 ok", "card [CARD] ok"),
            ("card 4111-1111-1111-1111", "card [CARD]"),
            ("key sk-proj-AbCdEf0123456789xyz here", "key [SECRET] here"),
            ("hex 0123456789abcdef0123456789abcdef", "hex [SECRET]"),
            (
                "Authorization: Bearer abc.def.ghijklmnop",
                "Authorization: [SECRET]",
            ),
            ("from 192.168.10.24 and 2001:db8::1", "from [IP] and [IP]"),
            (
                "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk end",
                "jwt [SECRET] end",
            ),
            ("aws AKIAIOSFODNN7EXAMPLE key", "aws [SECRET] key"),
            (
                "slack xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp ok",
                "slack [SECRET] ok",
            ),
            ("short eyJhbGciOiJIUzI1NiJ9.eyJ0Ijo.x", "short [SECRET]"),
            (
                "ring 415.555.0134 or +44 20 7946 0958",
                "ring [PHONE] or [PHONE]",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(redact(input), expected, "{input}");
        }
    }

    #[test]
    fn ordinary_text_is_untouched() {
        let text = "Hello! I have 3 cats and 12 dogs, version 1.2 released in 2024.";
        assert_eq!(redact(text), text);
    }
}
