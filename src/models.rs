//! The model catalog: each client-facing model name → its ordered targets,
//! token cap, system prompt and fallback message, built once at start-up.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::canary::Rollout;
use crate::chat::{ChatRequest, Message};
use crate::config::{Config, Price, ProviderConfig, ProviderKind, TargetRef};
use crate::context::{Served, Variant};
use crate::meters::Metrics;
use crate::providers::{self, Provider, ProviderRequest};
use crate::resilience::circuit::{Circuit, CircuitState};

/// How one provider's attempts are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Bounds one attempt (for streams: until the first event, then between events).
    pub attempt_timeout: Duration,
}

impl From<&ProviderConfig> for RetryPolicy {
    fn from(p: &ProviderConfig) -> Self {
        Self {
            max_retries: p.max_retries,
            backoff_initial: p.backoff_initial,
            backoff_max: p.backoff_max,
            attempt_timeout: p.timeout,
        }
    }
}

/// A configured provider: its name (the key under `[providers]`), client,
/// retry policy and circuit breaker (shared by every target on it).
pub struct ProviderHandle {
    pub name: Arc<str>,
    /// For `gen_ai.system` on attempt spans.
    pub kind: ProviderKind,
    pub client: Arc<dyn Provider>,
    pub policy: RetryPolicy,
    pub circuit: Arc<Circuit>,
}

/// One `provider:model` entry of a model's `targets`.
#[derive(Clone)]
pub struct Target {
    pub provider: Arc<ProviderHandle>,
    pub model: Arc<str>,
    /// USD per million tokens; zero when unpriced (and for the mock).
    pub price: Price,
}

/// A client-facing model.
pub struct Model {
    pub name: Arc<str>,
    pub targets: Vec<Target>,
    pub max_tokens: Option<u32>,
    pub system_prompt: Option<String>,
    pub fallback_message: Option<String>,
    /// How long answers are reused; `None`: never cached.
    pub cache_ttl: Option<Duration>,
    /// `Stable`, or `Canary` for the canary's own `Model`.
    pub variant: Variant,
    /// The stable model's canary, when configured.
    pub canary: Option<Canary>,
    /// The canary's own `Model`: its rollout, where its chats are counted.
    pub rollout: Option<Arc<Rollout>>,
}

/// A model's canary: a second `Model` of the same name (its own targets,
/// caps, prompt and fallback; providers and circuits shared) and its rollout.
pub struct Canary {
    pub model: Arc<Model>,
    pub rollout: Arc<Rollout>,
}

impl Model {
    /// What the request log and the answer name before anything answered.
    pub fn served(&self) -> Served {
        Served {
            variant: self.variant,
            ..Served::model(self.name.clone())
        }
    }

    /// The request every target gets: system prompt prepended, `max_tokens`
    /// lowered to the cap (and set to it when the client sent none).
    pub fn upstream_request(&self, req: &ChatRequest, request_id: &str) -> ProviderRequest {
        let mut messages = Vec::with_capacity(req.messages.len() + 1);
        if let Some(prompt) = &self.system_prompt {
            messages.push(Message::system_text(prompt.clone()));
        }
        messages.extend(req.messages.iter().cloned());
        let max_tokens = match (req.max_tokens, self.max_tokens) {
            (Some(asked), Some(cap)) => Some(asked.min(cap)),
            (asked, cap) => asked.or(cap),
        };
        ProviderRequest {
            model: String::new(),
            messages: messages.into(),
            max_tokens,
            temperature: req.temperature,
            top_p: req.top_p,
            stop: req.stop.clone().into(),
            user: req.user.clone(),
            params: Arc::new(req.params.clone()),
            request_id: request_id.to_owned(),
        }
    }
}

/// Every model and provider, by name.
pub struct Catalog {
    pub models: HashMap<String, Arc<Model>>,
    pub providers: Vec<Arc<ProviderHandle>>,
    pub default_model: String,
    /// Each provider's handle and the settings it was built from, for the
    /// next reload to compare against.
    settings: HashMap<String, (Arc<ProviderHandle>, serde_json::Value)>,
}

/// A provider's settings as comparable data: its redacted view names the
/// key's variable, and the environment is the snapshot read at start, so
/// equal views mean equal settings.
fn settings_of(p: &ProviderConfig) -> serde_json::Value {
    serde_json::to_value(p).unwrap_or(serde_json::Value::Null)
}

impl Catalog {
    /// Builds from a checked config (every target names a known provider).
    /// After a reload, `previous` is the running catalog: a provider whose
    /// settings did not change keeps its handle, so its circuit (and its
    /// client's connection pool) carries over.
    pub fn build(
        config: &Config,
        client: &providers::Client,
        metrics: &Metrics,
        previous: Option<&Catalog>,
    ) -> Self {
        let providers: HashMap<&str, Arc<ProviderHandle>> = config
            .providers
            .iter()
            .map(|(name, p)| {
                let same = previous.and_then(|c| {
                    let (handle, settings) = c.settings.get(name)?;
                    (*settings == settings_of(p)).then(|| Arc::clone(handle))
                });
                if let Some(handle) = same {
                    return (name.as_str(), handle);
                }
                let handle = ProviderHandle {
                    name: Arc::from(name.as_str()),
                    kind: p.kind,
                    client: providers::build(p, client.clone()),
                    policy: RetryPolicy::from(p),
                    circuit: Circuit::new(
                        p.circuit_failure_threshold,
                        p.circuit_cooldown,
                        metrics.circuit_gauge(name),
                    ),
                };
                (name.as_str(), Arc::new(handle))
            })
            .collect();
        let targets_of = |refs: &[TargetRef]| -> Vec<Target> {
            // The check refuses a target naming an unknown provider.
            refs.iter()
                .map(|t| {
                    let p = &config.providers[t.provider.as_str()];
                    let price = match p.kind {
                        ProviderKind::Mock => Price::default(),
                        _ => p.prices.get(&t.model).copied().unwrap_or_default(),
                    };
                    Target {
                        provider: Arc::clone(&providers[t.provider.as_str()]),
                        model: Arc::from(t.model.as_str()),
                        price,
                    }
                })
                .collect()
        };
        let models = config
            .models
            .iter()
            .map(|(name, m)| {
                let canary = m.canary.as_ref().map(|c| {
                    let seen = previous
                        .and_then(|p| p.models.get(name)?.canary.as_ref())
                        .map_or(0, |c| c.rollout.seen());
                    let rollout = Rollout::new(name, c, metrics, seen);
                    Canary {
                        model: Arc::new(Model {
                            name: Arc::from(name.as_str()),
                            targets: targets_of(c.targets.as_deref().unwrap_or(&m.targets)),
                            max_tokens: c
                                .max_tokens
                                .or(m.max_tokens)
                                .map(std::num::NonZeroU32::get),
                            system_prompt: c
                                .system_prompt
                                .clone()
                                .or_else(|| m.system_prompt.clone()),
                            fallback_message: c
                                .fallback_message
                                .clone()
                                .or_else(|| m.fallback_message.clone()),
                            cache_ttl: m.cache_ttl,
                            variant: Variant::Canary,
                            canary: None,
                            rollout: Some(rollout.clone()),
                        }),
                        rollout,
                    }
                });
                let model = Model {
                    name: Arc::from(name.as_str()),
                    targets: targets_of(&m.targets),
                    max_tokens: m.max_tokens.map(std::num::NonZeroU32::get),
                    system_prompt: m.system_prompt.clone(),
                    fallback_message: m.fallback_message.clone(),
                    cache_ttl: m.cache_ttl,
                    variant: Variant::Stable,
                    canary,
                    rollout: None,
                };
                (name.clone(), Arc::new(model))
            })
            .collect();
        let settings = config
            .providers
            .iter()
            .map(|(name, p)| {
                (
                    name.clone(),
                    (Arc::clone(&providers[name.as_str()]), settings_of(p)),
                )
            })
            .collect();
        Self {
            models,
            providers: providers.into_values().collect(),
            default_model: config.chat.default_model.clone(),
            settings,
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Model>> {
        self.models.get(name)
    }

    /// Every model's canary rollout, by model name.
    pub fn rollouts(&self) -> Vec<Arc<Rollout>> {
        let mut all: Vec<Arc<Rollout>> = self
            .models
            .values()
            .filter_map(|m| Some(m.canary.as_ref()?.rollout.clone()))
            .collect();
        all.sort_by(|a, b| a.model().cmp(b.model()));
        all
    }

    /// How the default model's targets stand, for `/health/ready`: reported,
    /// never failing readiness (an outage is shared by every replica).
    pub fn upstreams(&self) -> Upstreams {
        let Some(model) = self.models.get(&self.default_model) else {
            return Upstreams::Ok;
        };
        let open = model
            .targets
            .iter()
            .filter(|t| t.provider.circuit.state() == CircuitState::Open)
            .count();
        match open {
            0 => Upstreams::Ok,
            n if n == model.targets.len() => Upstreams::AllCircuitsOpen,
            _ => Upstreams::Degraded,
        }
    }
}

/// The default model's targets as `/health/ready` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstreams {
    /// No target has an open circuit.
    Ok,
    /// Some target has an open circuit; others may still serve.
    Degraded,
    /// Every target has an open circuit: chats get the `fallback_message` or 503.
    AllCircuitsOpen,
}

impl Upstreams {
    pub fn as_str(self) -> &'static str {
        match self {
            Upstreams::Ok => "ok",
            Upstreams::Degraded => "degraded",
            Upstreams::AllCircuitsOpen => "all_circuits_open",
        }
    }
}
