//! Every route's path, once: the router, the 404 hints and the `route`
//! metric label (bounded: a known template, or `unmatched`) all read them here.

use std::borrow::Cow;

pub const CHAT: &str = "/api/v1/chat";
pub const COMPLETIONS: &str = "/api/v1/chat/completions";
pub const MODELS: &str = "/api/v1/models";
/// Anthropic's Messages format.
pub const MESSAGES: &str = "/api/v1/messages";
/// One model (`models.retrieve`); ids may contain `/`.
pub const MODEL: &str = "/api/v1/models/{*id}";
pub const HEALTH: &str = "/health";
pub const READY: &str = "/health/ready";
pub const METRICS: &str = "/metrics";
/// The OpenAPI document and its Swagger UI (`docs.enabled`).
pub const OPENAPI: &str = "/openapi.json";
pub const DOCS: &str = "/docs";

pub const ADMIN_CONFIG: &str = "/admin/v1/config";
pub const ADMIN_RELOAD: &str = "/admin/v1/reload";
pub const ADMIN_CANARIES: &str = "/admin/v1/canaries";
pub const ADMIN_CANARY: &str = "/admin/v1/canaries/{model}";
pub const ADMIN_BUDGETS: &str = "/admin/v1/budgets";

/// The playground page and its files (only when `playground.enabled`).
pub const PLAYGROUND: &str = "/";
pub const PLAYGROUND_JS: &str = "/playground.js";
pub const PLAYGROUND_CSS: &str = "/playground.css";
pub const PLAYGROUND_FILES: [&str; 3] = [PLAYGROUND, PLAYGROUND_JS, PLAYGROUND_CSS];

/// The admin routes (the `route` label knows them; no 404 hint points there).
pub const ADMIN: [&str; 5] = [
    ADMIN_CONFIG,
    ADMIN_RELOAD,
    ADMIN_CANARIES,
    ADMIN_CANARY,
    ADMIN_BUDGETS,
];

/// Every route a client calls.
pub const ALL: [&str; 8] = [
    CHAT,
    COMPLETIONS,
    MESSAGES,
    MODELS,
    MODEL,
    HEALTH,
    READY,
    METRICS,
];

/// Whether errors on `path` take Anthropic's shape: the Messages route, and
/// any path ending in `/v1/messages`, so an Anthropic SDK pointed at the
/// wrong base URL reads its 404 (with the hint to the right route).
pub fn speaks_anthropic(path: &str) -> bool {
    path.trim_end_matches('/').ends_with("/v1/messages")
}

/// The `route` label (and log field) of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The `route` label of a request whose matched template is `matched`:
/// static for our routes (no allocation per request), owned only for the
/// `extra` routes an embedder adds.
pub fn label(matched: Option<&str>) -> Cow<'static, str> {
    match matched {
        None => Cow::Borrowed(UNMATCHED_ROUTE),
        Some(path) => match ALL
            .iter()
            .chain(&ADMIN)
            .chain(&PLAYGROUND_FILES)
            .find(|known| **known == path)
        {
            Some(known) => Cow::Borrowed(known),
            None => Cow::Owned(path.to_owned()),
        },
    }
}
