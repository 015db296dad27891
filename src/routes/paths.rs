//! Every route's path, once: the router, the 404 hints and the `route`
//! metric label (bounded: a known template, or `unmatched`) all read them here.

use std::borrow::Cow;

pub const CHAT: &str = "/api/v1/chat";
pub const COMPLETIONS: &str = "/api/v1/chat/completions";
pub const MODELS: &str = "/api/v1/models";
/// One model (`models.retrieve`); ids may contain `/`.
pub const MODEL: &str = "/api/v1/models/{*id}";
pub const HEALTH: &str = "/health";
pub const READY: &str = "/health/ready";
pub const METRICS: &str = "/metrics";

pub const ADMIN_CONFIG: &str = "/admin/v1/config";
pub const ADMIN_RELOAD: &str = "/admin/v1/reload";
pub const ADMIN_CANARIES: &str = "/admin/v1/canaries";
pub const ADMIN_CANARY: &str = "/admin/v1/canaries/{model}";
pub const ADMIN_BUDGETS: &str = "/admin/v1/budgets";

/// The admin routes (the `route` label knows them; no 404 hint points there).
pub const ADMIN: [&str; 5] = [
    ADMIN_CONFIG,
    ADMIN_RELOAD,
    ADMIN_CANARIES,
    ADMIN_CANARY,
    ADMIN_BUDGETS,
];

/// Every route a client calls.
pub const ALL: [&str; 7] = [CHAT, COMPLETIONS, MODELS, MODEL, HEALTH, READY, METRICS];

/// The `route` label (and log field) of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The `route` label of a request whose matched template is `matched`:
/// static for our routes (no allocation per request), owned only for the
/// `extra` routes an embedder adds.
pub fn label(matched: Option<&str>) -> Cow<'static, str> {
    match matched {
        None => Cow::Borrowed(UNMATCHED_ROUTE),
        Some(path) => match ALL.iter().chain(&ADMIN).find(|known| **known == path) {
            Some(known) => Cow::Borrowed(known),
            None => Cow::Owned(path.to_owned()),
        },
    }
}
