//! Providers: one small trait, typed errors classified once, and the three kinds.
//!
//! A provider makes exactly one upstream attempt per call. Retries, timeouts,
//! circuit breaking and failover live in `resilience`, never here.

mod anthropic;
mod http;
mod known;
pub use http::Client;
mod mock;
pub mod openai;
pub mod sse;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

use crate::chat::{Block, Completion, Message, Params, StreamEvent};
use crate::config::{ProviderConfig, Upstream};
use crate::context::Outcome;

/// Largest SSE line or event an upstream may send; a larger one is an unusable answer.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;
/// Largest whole upstream answer, streamed or not; a larger one is an unusable answer.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// What a provider's stream yields: text as it arrives, then `Finished`.
pub type EventStream = BoxStream<'static, Result<StreamEvent, ProviderError>>;

/// One request as sent to one target.
#[derive(Debug, Clone)]
pub struct ProviderRequest {
    /// The upstream model (`provider_model`).
    pub model: String,
    /// Messages with the model's `system_prompt` already prepended; shared by every target.
    pub messages: Arc<[Message]>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub stop: Arc<[String]>,
    pub user: Option<String>,
    /// Tools, sampling hints, output format and every field chatgate does
    /// not own (OpenAI route); shared by every target.
    pub params: Arc<Params>,
    /// Forwarded upstream as `x-request-id`.
    pub request_id: String,
}

#[cfg(test)]
impl ProviderRequest {
    /// A request to `model` with `messages` and nothing else set (unit tests).
    pub(crate) fn of(model: &str, messages: Vec<Message>) -> Self {
        Self {
            model: model.into(),
            messages: Arc::from(messages),
            max_tokens: None,
            temperature: None,
            top_p: None,
            stop: Arc::from(Vec::<String>::new()),
            user: None,
            params: Arc::default(),
            request_id: "r".into(),
        }
    }
}

/// A feature a request uses that some provider kinds cannot serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    Tools,
    Images,
    /// `n` > 1.
    Choices,
    ResponseFormat,
    Logprobs,
}

impl Feature {
    /// For humans, in the `unsupported_feature` message and the skip log.
    pub fn as_str(self) -> &'static str {
        match self {
            Feature::Tools => "tools",
            Feature::Images => "images",
            Feature::Choices => "n > 1",
            Feature::ResponseFormat => "response_format",
            Feature::Logprobs => "logprobs",
        }
    }

    /// The request field that asks for it (the error's `param`).
    pub fn param(self) -> &'static str {
        match self {
            Feature::Tools => "tools",
            Feature::Images => "messages",
            Feature::Choices => "n",
            Feature::ResponseFormat => "response_format",
            Feature::Logprobs => "logprobs",
        }
    }

    /// The features `req` uses, in a fixed order.
    pub fn used_by(req: &ProviderRequest) -> impl Iterator<Item = Feature> + '_ {
        let p = &req.params;
        let images = || {
            req.messages
                .iter()
                .flat_map(|m| &m.blocks)
                .any(|b| matches!(b, Block::Image { .. }))
        };
        [
            (Feature::Tools, !p.tools.is_empty()),
            (Feature::Images, images()),
            (Feature::Choices, p.n.is_some_and(|n| n > 1)),
            (Feature::ResponseFormat, p.wants_format()),
            (Feature::Logprobs, p.wants_logprobs()),
        ]
        .into_iter()
        .filter_map(|(f, used)| used.then_some(f))
    }
}

/// One upstream attempt.
pub trait Provider: Send + Sync {
    fn complete<'a>(
        &'a self,
        req: &'a ProviderRequest,
    ) -> BoxFuture<'a, Result<Completion, ProviderError>>;
    /// Resolves once the upstream accepted the request (status 2xx); text follows on the stream.
    fn stream<'a>(
        &'a self,
        req: &'a ProviderRequest,
    ) -> BoxFuture<'a, Result<EventStream, ProviderError>>;
    /// Whether this kind can serve `feature` at all: a target that cannot is
    /// skipped for the request, without an attempt (see `resilience::call`).
    fn supports(&self, feature: Feature) -> bool;
}

/// The first feature of `req` that `provider` cannot serve.
pub fn unsupported(provider: &dyn Provider, req: &ProviderRequest) -> Option<Feature> {
    Feature::used_by(req).find(|f| !provider.supports(*f))
}

/// Why an attempt failed. Messages are ours: never an upstream's raw body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("attempt timed out")]
    Timeout,
    /// A non-2xx status. `detail` is the upstream's error code, kept only when
    /// it is a short identifier (e.g. `context_length_exceeded`).
    #[error("upstream answered {status}")]
    Status {
        status: u16,
        retry_after: Option<Duration>,
        detail: Option<String>,
    },
    /// A body that does not parse or breaks the provider API's shape.
    #[error("unusable answer: {0}")]
    Decode(String),
    /// Not the upstream's doing: the gateway's guard ended the stream at this
    /// rule (an output rule or the system-prompt leak check).
    #[error("blocked by guard rule {0}")]
    Blocked(Arc<str>),
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Transient: retry the same target (connection errors, timeouts, 408, 429, 5xx gateway codes).
    Retryable,
    /// The client's request is bad (400, 422): answer 400, no retry, no failover.
    ClientError,
    /// Our configuration is wrong (401, 403, 404): log at ERROR, next target.
    Misconfigured,
    /// Unusable answer or an unexpected status: next target without retrying.
    Failed,
}

impl ProviderError {
    pub fn class(&self) -> Class {
        match self {
            ProviderError::Connect(_) | ProviderError::Timeout => Class::Retryable,
            ProviderError::Status { status, .. } => match status {
                // 529 is Anthropic's "overloaded": transient like 503.
                408 | 429 | 500 | 502 | 503 | 504 | 529 => Class::Retryable,
                400 | 422 => Class::ClientError,
                401 | 403 | 404 => Class::Misconfigured,
                _ => Class::Failed,
            },
            ProviderError::Decode(_) => Class::Failed,
            ProviderError::Blocked(_) => Class::ClientError,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The `outcome` label of `chatgate_upstream_requests_total`.
    pub fn outcome(&self) -> Outcome {
        match self {
            ProviderError::Timeout => Outcome::Timeout,
            ProviderError::Status { status: 429, .. } => Outcome::RateLimited,
            _ => Outcome::Error,
        }
    }
}

/// `error.type` on the attempt's trace span: the status, or the kind of failure.
impl crate::otel::ErrorType for ProviderError {
    fn error_type(&self) -> std::borrow::Cow<'static, str> {
        match self {
            ProviderError::Status { status, .. } => status.to_string().into(),
            ProviderError::Timeout => "timeout".into(),
            ProviderError::Connect(_) => "connect".into(),
            ProviderError::Decode(_) => "unusable_answer".into(),
            ProviderError::Blocked(_) => "content_blocked".into(),
        }
    }
}

/// Builds the provider a config entry describes, on the shared HTTP client.
pub fn build(config: &ProviderConfig, client: Client) -> Arc<dyn Provider> {
    match &config.upstream {
        Upstream::Mock => Arc::new(mock::Mock),
        Upstream::Openai(api) => Arc::new(openai::OpenAi::new(api, client)),
        Upstream::Anthropic(api) => Arc::new(anthropic::Anthropic::new(api, client)),
    }
}

/// The HTTP client for calls that are not upstream chat requests (JWKS
/// fetches): reqwest, rustls, no OpenSSL.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        // Following a redirect could carry a credential elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("chatgate/", env!("CARGO_PKG_VERSION")))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> ProviderError {
        ProviderError::Status {
            status: code,
            retry_after: None,
            detail: None,
        }
    }

    #[test]
    fn classification_follows_the_contract() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert_eq!(status(code).class(), Class::Retryable, "{code}");
        }
        for code in [400, 422] {
            assert_eq!(status(code).class(), Class::ClientError, "{code}");
        }
        for code in [401, 403, 404] {
            assert_eq!(status(code).class(), Class::Misconfigured, "{code}");
        }
        assert_eq!(ProviderError::Timeout.class(), Class::Retryable);
        assert_eq!(
            ProviderError::Connect("refused".into()).class(),
            Class::Retryable
        );
        assert_eq!(
            ProviderError::Decode("garbage".into()).class(),
            Class::Failed
        );
        assert_eq!(status(429).outcome().as_str(), "rate_limited");
        assert_eq!(ProviderError::Timeout.outcome().as_str(), "timeout");
        assert_eq!(status(500).outcome().as_str(), "error");
    }
}
