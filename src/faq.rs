//! FAQ answers: `[[faq]]` rules matched on the last user message, before
//! the cache and any provider, answering with a canned text at no cost.
//! Phrases match whole words of the normalised message
//! ([`crate::config::faq_normalise`]); a regex matches the raw text.

use std::sync::Arc;

use crate::chat::{Message, Role};
use crate::config::{FaqRule, faq_normalise};

struct Rule {
    name: Arc<str>,
    /// Normalised, each padded with a space on both sides (whole words).
    phrases: Vec<String>,
    regex: Option<regex::Regex>,
    answer: Arc<str>,
    models: Option<Vec<String>>,
}

/// The rule that answered.
#[derive(Debug, Clone)]
pub struct Hit {
    pub rule: Arc<str>,
    pub answer: Arc<str>,
}

/// Every rule, in file order.
pub struct Faq {
    rules: Vec<Rule>,
}

impl Faq {
    pub fn new(rules: &[FaqRule]) -> Self {
        let rules = rules
            .iter()
            .map(|r| Rule {
                name: Arc::from(r.name.as_str()),
                phrases: r
                    .phrases
                    .iter()
                    .map(|p| format!(" {} ", faq_normalise(p)))
                    .collect(),
                regex: r.regex.as_ref().map(|re| re.0.clone()),
                answer: Arc::from(r.answer.as_str()),
                models: r.models.clone(),
            })
            .collect();
        Self { rules }
    }

    /// The first rule for `model` that matches the last user message.
    pub fn answer(&self, model: &str, messages: &[Message]) -> Option<Hit> {
        if self.rules.is_empty() {
            return None;
        }
        let last = messages.iter().rev().find(|m| m.role == Role::User)?;
        let raw = last.text();
        let normal = format!(" {} ", faq_normalise(&raw));
        self.rules
            .iter()
            .filter(|r| {
                r.models
                    .as_ref()
                    .is_none_or(|ms| ms.iter().any(|m| m == model))
            })
            .find(|r| match &r.regex {
                Some(re) => re.is_match(&raw),
                None => r.phrases.iter().any(|p| normal.contains(p.as_str())),
            })
            .map(|r| Hit {
                rule: r.name.clone(),
                answer: r.answer.clone(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, phrases: &[&str], models: Option<&[&str]>) -> FaqRule {
        FaqRule {
            name: name.into(),
            phrases: phrases.iter().map(|p| p.to_string()).collect(),
            regex: None,
            answer: format!("answer of {name}"),
            models: models.map(|ms| ms.iter().map(|m| m.to_string()).collect()),
        }
    }

    fn user(text: &str) -> Vec<Message> {
        vec![Message::user_text(text)]
    }

    #[test]
    fn phrases_match_whole_words_after_normalisation_first_rule_wins() {
        let faq = Faq::new(&[
            rule("hours", &["Delivery hours"], None),
            rule("also-hours", &["delivery"], None),
            rule("support-only", &["refund"], Some(&["support"])),
        ]);
        let hit = faq.answer("default", &user("What are your DELIVERY-hours?!"));
        assert_eq!(hit.map(|h| h.rule.to_string()), Some("hours".into()));
        assert!(faq.answer("default", &user("redelivery hoursx")).is_none());
        assert!(faq.answer("default", &user("refund please")).is_none());
        assert!(faq.answer("support", &user("refund please")).is_some());
    }
}
