//! The `mock` provider: answers `Echo: <last user message>` without touching
//! the network, counts tokens as whitespace-separated words, streams word by word.

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};

use super::{EventStream, Feature, Provider, ProviderError, ProviderRequest};
use crate::chat::{Completion, FinishReason, Message, Role, StreamEvent, Usage};

pub struct Mock;

fn words(text: &str) -> u32 {
    u32::try_from(text.split_whitespace().count()).unwrap_or(u32::MAX)
}

/// The answer's words (at most `max_tokens` of them), the finish reason and usage.
fn answer(req: &ProviderRequest) -> (Vec<String>, FinishReason, Usage) {
    let last_user = req
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(Message::text)
        .unwrap_or_default();
    let full: Vec<&str> = std::iter::once("Echo:")
        .chain(last_user.split_whitespace())
        .collect();
    let limit = req
        .max_tokens
        .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let finish = if full.len() > limit {
        FinishReason::Length
    } else {
        FinishReason::Stop
    };
    let kept: Vec<String> = full.into_iter().take(limit).map(str::to_owned).collect();
    let usage = Usage {
        input_tokens: req.messages.iter().map(|m| words(&m.text())).sum(),
        output_tokens: u32::try_from(kept.len()).unwrap_or(u32::MAX),
    };
    (kept, finish, usage)
}

impl Provider for Mock {
    fn complete<'a>(
        &'a self,
        req: &'a ProviderRequest,
    ) -> BoxFuture<'a, Result<Completion, ProviderError>> {
        let (words, finish, usage) = answer(req);
        futures_util::future::ready(Ok(Completion::from_text(words.join(" "), finish, usage)))
            .boxed()
    }

    fn stream<'a>(
        &'a self,
        req: &'a ProviderRequest,
    ) -> BoxFuture<'a, Result<EventStream, ProviderError>> {
        let (words, finish, usage) = answer(req);
        let deltas = words
            .into_iter()
            .enumerate()
            .map(|(i, w)| Ok(StreamEvent::Delta(if i == 0 { w } else { format!(" {w}") })));
        let last = Ok(StreamEvent::Finished {
            finish_reason: finish,
            usage,
        });
        let stream: EventStream =
            futures_util::stream::iter(deltas.chain(std::iter::once(last))).boxed();
        futures_util::future::ready(Ok(stream)).boxed()
    }

    /// An echo of text: no tools, images, choices, formats or log probabilities.
    fn supports(&self, _: Feature) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn req(text: &str, max_tokens: Option<u32>) -> ProviderRequest {
        ProviderRequest {
            model: "echo".into(),
            messages: Arc::from(vec![
                Message::system_text("be nice"),
                Message::user_text(text),
            ]),
            max_tokens,
            temperature: None,
            top_p: None,
            stop: Arc::from(Vec::<String>::new()),
            user: None,
            params: Arc::default(),
            request_id: "r".into(),
        }
    }

    #[test]
    fn echoes_the_last_user_message_and_counts_words() {
        let (words, finish, usage) = answer(&req("hello there world", None));
        assert_eq!(words.join(" "), "Echo: hello there world");
        assert_eq!(finish, FinishReason::Stop);
        assert_eq!(
            usage,
            Usage {
                input_tokens: 5,
                output_tokens: 4
            }
        );
    }

    #[test]
    fn max_tokens_truncates_with_length() {
        let (words, finish, usage) = answer(&req("a b c d", Some(2)));
        assert_eq!(words.join(" "), "Echo: a");
        assert_eq!(finish, FinishReason::Length);
        assert_eq!(usage.output_tokens, 2);
    }
}
