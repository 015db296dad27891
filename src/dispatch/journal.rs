//! The interaction-log line of one sampled chat: what it keeps while the
//! chat runs (a capped copy of a streamed answer), written when it ends.

use std::sync::Arc;

use tokio::time::Instant;

use crate::chat::{Message, Usage};
use crate::context::{Ctx, Flags, Outcome};
use crate::interaction_log::{Interaction, InteractionLog};
use crate::models::Model;
use crate::state::AppState;

/// The interaction-log line of one sampled chat, written when it ends.
pub(super) struct Journal {
    log: InteractionLog,
    request_id: String,
    key_id: Option<Arc<str>>,
    started: Instant,
    model: Arc<str>,
    messages: Arc<[Message]>,
    flags: Flags,
    /// At most this many characters of an answer are logged (`chat.max_message_chars`,
    /// what one message may hold), so a long stream cannot grow the buffer without end.
    answer_cap: usize,
}

impl Journal {
    /// `None` when the log is off or this chat is not sampled.
    pub(super) fn start(
        state: &AppState,
        ctx: &Ctx,
        model: &Model,
        messages: &Arc<[Message]>,
    ) -> Option<Self> {
        let log = state.interactions.as_ref().filter(|log| log.sampled())?;
        Some(Self {
            log: log.clone(),
            request_id: ctx.request_id.clone(),
            key_id: ctx.key_id.clone(),
            started: ctx.started,
            model: model.name.clone(),
            messages: messages.clone(),
            flags: ctx.flags(),
            answer_cap: state.config.chat.max_message_chars,
        })
    }

    /// Appends `delta` to a streamed answer's `text` (`chars` characters so
    /// far), up to the cap; past it, a delta costs nothing.
    pub(super) fn keep(&self, text: &mut String, chars: &mut usize, delta: &str) {
        let room = self.answer_cap.saturating_sub(*chars);
        if room == 0 {
            return;
        }
        let before = text.len();
        text.extend(delta.chars().take(room));
        *chars += text[before..].chars().count();
    }

    pub(super) fn write(
        self,
        provider: Option<Arc<str>>,
        answer: String,
        usage: Usage,
        outcome: Outcome,
    ) {
        let answer = match answer.char_indices().nth(self.answer_cap) {
            Some((at, _)) => answer[..at].to_owned(),
            None => answer,
        };
        self.log.record(Interaction {
            request_id: self.request_id,
            key_id: self.key_id,
            model: self.model,
            provider,
            usage,
            latency_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            outcome,
            messages: self.messages,
            flags: self.flags.names(),
            answer,
        });
    }
}
