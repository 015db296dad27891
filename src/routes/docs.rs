//! `GET /openapi.json` (OpenAPI 3.1, built from the reply and error types the
//! routes serialize) and `GET /docs` (Swagger UI from assets vendored into the
//! binary by `utoipa-swagger-ui`'s `vendored` feature: no CDN, works offline).

use std::sync::{Arc, LazyLock};

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Json, Response};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::chat::{OutMessage, Reply, UsageOut};
use super::openai::{ModelList, ModelOut};
use crate::error::{ApiError, Body as ErrorBody, Envelope as Error};

/// `/docs` only: Swagger UI's own files, its inline styles, its inline SVG
/// icons as `data:` images, and fetches of `/openapi.json`; nothing else.
pub const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'";

/// A generic object for the OpenAI and Anthropic formats, whose fields are
/// read one by one and passed through (their own references document them).
#[derive(utoipa::ToSchema)]
#[schema(value_type = Object)]
#[allow(dead_code)]
struct PassThrough(serde_json::Map<String, serde_json::Value>);

#[utoipa::path(post, path = "/api/v1/chat", tag = "chat",
    request_body = super::chat::Body,
    responses(
        (status = 200, description = "The answer (`stream: false`), or with `stream: true` an SSE stream of `delta` events (`{\"content\"}`), then one `done` event (this object without `message`) or one `error` event (`{\"error\": {code, message}}`)",
            body = Reply, content_type = "application/json"),
        (status = "4XX", description = "The request was refused", body = Error),
        (status = "5XX", description = "No upstream could answer", body = Error),
    ),
    security(("bearer" = []), ("api_key" = [])))]
#[allow(dead_code)]
fn chat() {}

#[utoipa::path(post, path = "/api/v1/chat/completions", tag = "openai",
    request_body(content = super::openai::RequestDoc, description = "OpenAI's Chat Completions request; other fields are passed through"),
    responses(
        (status = 200, description = "OpenAI's `chat.completion` (or with `stream: true` SSE `chat.completion.chunk`s ending in `[DONE]`)", body = PassThrough),
        (status = "4XX", description = "The request was refused", body = Error),
        (status = "5XX", description = "No upstream could answer", body = Error),
    ),
    security(("bearer" = []), ("api_key" = [])))]
#[allow(dead_code)]
fn completions() {}

#[utoipa::path(post, path = "/api/v1/messages", tag = "anthropic",
    request_body(content = PassThrough, description = "Anthropic's Messages request"),
    responses(
        (status = 200, description = "Anthropic's `message` (or with `stream: true` its SSE events)", body = PassThrough),
        (status = "4XX", description = "The request was refused, in Anthropic's error shape", body = PassThrough),
        (status = "5XX", description = "No upstream could answer, in Anthropic's error shape", body = PassThrough),
    ),
    security(("bearer" = []), ("api_key" = [])))]
#[allow(dead_code)]
fn messages() {}

#[utoipa::path(get, path = "/api/v1/models", tag = "models",
    responses((status = 200, body = ModelList), (status = "4XX", body = Error)),
    security(("bearer" = []), ("api_key" = [])))]
#[allow(dead_code)]
fn models() {}

#[utoipa::path(get, path = "/api/v1/models/{id}", tag = "models",
    params(("id" = String, Path, description = "A model id (may contain `/`)")),
    responses((status = 200, body = ModelOut), (status = "4XX", body = Error)),
    security(("bearer" = []), ("api_key" = [])))]
#[allow(dead_code)]
fn model() {}

#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = Object)))]
#[allow(dead_code)]
fn health() {}

#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses(
        (status = 200, description = "`{status: \"ready\", degraded, upstreams}`", body = Object),
        (status = 503, description = "Shutting down: `{status: \"unavailable\", error}`", body = Object),
    ))]
#[allow(dead_code)]
fn ready() {}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
        (status = 401, description = "`metrics.token` is set and was not sent", body = Error),
    ),
    security((), ("metrics_bearer" = [])))]
#[allow(dead_code)]
fn metrics() {}

#[utoipa::path(get, path = "/admin/v1/config", tag = "admin",
    responses((status = 200, description = "The effective config, secrets redacted", body = Object),
        (status = "4XX", body = Error)),
    security(("admin_bearer" = [])))]
#[allow(dead_code)]
fn admin_config() {}

#[utoipa::path(post, path = "/admin/v1/reload", tag = "admin",
    responses((status = 200, description = "The reload's outcome", body = Object),
        (status = "4XX", body = Error)),
    security(("admin_bearer" = [])))]
#[allow(dead_code)]
fn admin_reload() {}

/// The security schemes: client keys as a bearer token or `x-api-key`, the
/// admin key (only where `[admin]` is configured), the metrics token.
struct Schemes;

impl Modify for Schemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |what: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(what))
                    .build(),
            )
        };
        components.add_security_scheme("bearer", bearer("A client key (or a JWT)"));
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "A client key",
            ))),
        );
        components.add_security_scheme("admin_bearer", bearer("An admin key"));
        components.add_security_scheme("metrics_bearer", bearer("`metrics.token`"));
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "chatgate", description = "An LLM gateway: one API in front of several providers."),
    paths(chat, completions, messages, models, model, health, ready, metrics, admin_config, admin_reload),
    components(schemas(super::openai::RequestDoc, Reply, OutMessage, UsageOut, ModelList, ModelOut, Error, ErrorBody, PassThrough)),
    modifiers(&Schemes),
)]
struct Spec;

/// Built once: the spec depends on the code only.
static SPEC: LazyLock<serde_json::Value> =
    LazyLock::new(|| serde_json::to_value(Spec::openapi()).unwrap_or_default());

pub async fn openapi() -> Json<serde_json::Value> {
    Json(SPEC.clone())
}

static UI: LazyLock<Arc<utoipa_swagger_ui::Config<'static>>> =
    LazyLock::new(|| Arc::new(utoipa_swagger_ui::Config::from("/openapi.json")));

/// `/docs` and `/docs/` serve the page; `/docs/{file}` its assets.
pub async fn index() -> Response {
    asset(Path(String::new())).await
}

pub async fn asset(Path(file): Path<String>) -> Response {
    let file = if file.is_empty() {
        "index.html"
    } else {
        file.as_str()
    };
    match utoipa_swagger_ui::serve(file, UI.clone()) {
        Ok(Some(found)) => {
            let mut bytes = found.bytes.into_owned();
            if file == "index.html" {
                // Its links are `./x`: from `/docs` (no slash) a browser would
                // resolve them to `/x`, so make them absolute on our origin.
                bytes = String::from_utf8_lossy(&bytes)
                    .replace("\"./", "\"/docs/")
                    .into_bytes();
            }
            let mut response = bytes.into_response();
            let headers = response.headers_mut();
            if let Ok(kind) = HeaderValue::from_str(&found.content_type) {
                headers.insert(header::CONTENT_TYPE, kind);
            }
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(DOCS_CSP),
            );
            response
        }
        _ => ApiError::NotFound { hint: None }.into_response(),
    }
}
