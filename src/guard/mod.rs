//! Content safety, one step of the request path: sanitising message text,
//! client system messages, guard rules on input and output, the
//! system-prompt leak check, and HTML escaping for the native route.
//!
//! Built once at start from the checked config (`[guard]`, `[output]`); the
//! dispatch calls [`Guard::admit`] on the way in and [`Guard::screen_answer`]
//! or [`Guard::screen_stream`] on the way out. Blocked requests and answers
//! are also meant for the audit trail, which does not exist yet (see
//! `admit`'s note).

mod escape;
mod leak;
mod rules;
mod sanitize;

pub use escape::{escape_html, escape_html_owned};
pub use leak::{LEAK_CHARS, LeakIndex};
pub use sanitize::strip_invisible;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt;

use crate::chat::{ChatRequest, Message, Role, StreamEvent};
use crate::config::Config;
use crate::config::guard::{Action, GuardRule, LEAK_RULE, RuleSets, SideRules, SystemMessages};
use crate::error::ApiError;
use crate::providers::{EventStream, ProviderError};

/// The guard's verdict on an answer: which rule blocked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub rule: Arc<str>,
}

impl Blocked {
    /// The client's 400 `content_blocked` for a blocked answer.
    pub fn error(&self) -> ApiError {
        ApiError::ContentBlocked {
            rule: self.rule.clone(),
            answer: true,
        }
    }
}

pub use crate::context::Flags;

/// A message's text as the rules read it (its text blocks joined, as
/// [`Message::text`]), borrowed when it is one block: the common case
/// allocates nothing.
fn text_of(m: &Message) -> Cow<'_, str> {
    let mut texts = m.texts();
    match (texts.next(), texts.next()) {
        (None, _) => Cow::Borrowed(""),
        (Some(only), None) => Cow::Borrowed(only),
        (Some(_), Some(_)) => Cow::Owned(m.text()),
    }
}

/// One configured rule, as the run time needs it.
struct Rule {
    name: Arc<str>,
    action: Action,
    /// `chatgate_guard_matches_total{rule,action}`, registered at start.
    matches: ::metrics::Counter,
}

pub struct Guard {
    strip_invisible: bool,
    system_messages: SystemMessages,
    rules: Vec<Rule>,
    sets: RuleSets,
    /// Per client-facing model with a system prompt of 40+ characters, when
    /// `block_system_prompt_leak` is on.
    leaks: HashMap<String, Arc<LeakIndex>>,
    leak_name: Arc<str>,
    leak_matches: ::metrics::Counter,
}

impl Guard {
    /// `counter(rule, action)` registers one series of
    /// `chatgate_guard_matches_total` (`Metrics::guard_match`).
    pub fn new(
        config: &Config,
        counter: impl Fn(&str, &'static str) -> ::metrics::Counter,
    ) -> Self {
        let g = &config.guard;
        let rule = |r: &GuardRule| Rule {
            name: Arc::from(r.name.as_str()),
            action: r.action,
            matches: counter(&r.name, r.action.as_str()),
        };
        let leaks = if g.block_system_prompt_leak {
            config
                .models
                .iter()
                .filter_map(|(name, m)| {
                    let index = LeakIndex::new(m.system_prompt.as_deref()?)?;
                    Some((name.clone(), Arc::new(index)))
                })
                .collect()
        } else {
            HashMap::new()
        };
        Self {
            strip_invisible: g.strip_invisible,
            system_messages: g.client_system_messages,
            rules: g.rules.iter().map(rule).collect(),
            sets: g.sets.clone(),
            leaks,
            leak_name: Arc::from(LEAK_RULE),
            leak_matches: counter(LEAK_RULE, Action::Block.as_str()),
        }
    }

    /// The request as the rest of the path reads it: message text sanitised,
    /// client system messages allowed, dropped or refused, input rules run
    /// on user messages (flags noted in `flags`). Borrowed when unchanged.
    ///
    /// Audit: a refused request belongs in the audit trail once it exists
    /// (the rollout issue); until then it is in the request log
    /// (`content_blocked`) and `chatgate_guard_matches_total`.
    pub fn admit<'r>(
        &self,
        req: &'r ChatRequest,
        flags: &Flags,
    ) -> Result<Cow<'r, ChatRequest>, ApiError> {
        let mut req = Cow::Borrowed(req);
        if self.strip_invisible {
            let dirty = |t: &str| matches!(strip_invisible(t), Cow::Owned(_));
            for i in 0..req.messages.len() {
                if !req.messages[i].any_text(dirty) {
                    continue;
                }
                req.to_mut().messages[i].for_each_text_mut(|t| {
                    if let Cow::Owned(clean) = strip_invisible(t) {
                        *t = clean;
                    }
                });
            }
        }
        let is_system = |m: &crate::chat::Message| m.role == Role::System;
        match self.system_messages {
            SystemMessages::Allow => {}
            SystemMessages::Reject => {
                if let Some(i) = req.messages.iter().position(is_system) {
                    return Err(ApiError::invalid(format!(
                        "messages[{i}].role: system messages are not accepted here \
                         (the model's own system prompt applies)"
                    )));
                }
            }
            SystemMessages::Drop => {
                if req.messages.iter().any(is_system) {
                    req.to_mut().messages.retain(|m| !is_system(m));
                    if req.messages.is_empty() {
                        return Err(ApiError::invalid(
                            "messages: only system messages were sent, and this gateway drops them",
                        ));
                    }
                }
            }
        }
        let side = &self.sets.input;
        let mut hits = Vec::new();
        let mut any = false;
        for m in req.messages.iter().filter(|m| m.role == Role::User) {
            any |= rules::matched(side, &text_of(m), &mut hits);
        }
        if any {
            let fresh: Vec<usize> = (0..hits.len()).filter(|&i| hits[i]).collect();
            if let Some(rule) = self.apply(side, &fresh, flags) {
                return Err(ApiError::ContentBlocked {
                    rule,
                    answer: false,
                });
            }
        }
        Ok(req)
    }

    /// Counts and flags the rules `hits` (indices into `side.rules`); the
    /// first blocking one, in config order, if any.
    fn apply(&self, side: &SideRules, hits: &[usize], flags: &Flags) -> Option<Arc<str>> {
        let mut blocked = None;
        for &i in hits {
            let Some(rule) = side.rules.get(i).and_then(|&r| self.rules.get(r)) else {
                continue;
            };
            rule.matches.increment(1);
            match rule.action {
                Action::Flag => flags.add(&rule.name),
                Action::Block => {
                    blocked.get_or_insert_with(|| rule.name.clone());
                }
            }
        }
        blocked
    }

    fn leak_index(&self, model: &str) -> Option<&Arc<LeakIndex>> {
        self.leaks.get(model)
    }

    /// Runs the output rules and the leak check on a whole answer of `model`
    /// before it is sent. `Some` means it must not be sent (nor cached).
    pub fn screen_answer(&self, model: &str, text: &str, flags: &Flags) -> Option<Blocked> {
        if let Some(index) = self.leak_index(model)
            && index.scan().feed(text)
        {
            self.leak_matches.increment(1);
            return Some(Blocked {
                rule: self.leak_name.clone(),
            });
        }
        let side = &self.sets.output;
        let mut hits = Vec::new();
        if !rules::matched(side, text, &mut hits) {
            return None;
        }
        let fresh: Vec<usize> = (0..hits.len()).filter(|&i| hits[i]).collect();
        self.apply(side, &fresh, flags).map(|rule| Blocked { rule })
    }

    /// `events` of `model`'s answer, screened as text accumulates: a delta
    /// that completes a blocking match is not sent; the stream ends there with
    /// `ProviderError::Blocked` (the client's `error` event `content_blocked`).
    /// What was sent before stays sent.
    pub fn screen_stream(
        self: &Arc<Self>,
        model: &str,
        events: EventStream,
        flags: Flags,
    ) -> EventStream {
        let leak = self.leak_index(model).map(LeakIndex::scan);
        if leak.is_none() && self.sets.output.is_empty() {
            return events;
        }
        let mut screen = StreamScreen {
            guard: self.clone(),
            tail: rules::Tail::new(&self.sets.output),
            leak,
            flags,
        };
        let mut ended = false;
        events
            .scan((), move |(), event| {
                let out = if ended {
                    None
                } else {
                    match event {
                        Ok(StreamEvent::Delta(text)) => match screen.feed(&text) {
                            Some(rule) => {
                                ended = true;
                                Some(Err(ProviderError::Blocked(rule)))
                            }
                            None => Some(Ok(StreamEvent::Delta(text))),
                        },
                        other => Some(other),
                    }
                };
                futures_util::future::ready(out)
            })
            .boxed()
    }
}

/// One stream's screening state.
struct StreamScreen {
    guard: Arc<Guard>,
    tail: rules::Tail,
    leak: Option<leak::LeakScan>,
    flags: Flags,
}

impl StreamScreen {
    /// The rule that blocks the stream at `delta`, if one does.
    fn feed(&mut self, delta: &str) -> Option<Arc<str>> {
        if let Some(scan) = &mut self.leak
            && scan.feed(delta)
        {
            self.guard.leak_matches.increment(1);
            return Some(self.guard.leak_name.clone());
        }
        let side = &self.guard.sets.output;
        if side.is_empty() {
            return None;
        }
        let fresh = self.tail.feed(side, delta);
        if fresh.is_empty() {
            return None;
        }
        self.guard.apply(side, &fresh, &self.flags)
    }
}
