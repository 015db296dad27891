//! The playground: one page at `/` to try the gateway from a browser (key,
//! model list, streaming chat), its script and styles embedded in the binary.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::paths;
use crate::state::AppState;

const INDEX: &str = include_str!("../../assets/playground/index.html");
const SCRIPT: &str = include_str!("../../assets/playground/app.js");
const STYLE: &str = include_str!("../../assets/playground/app.css");

/// Only our own files and our own API: the page needs nothing else, and a
/// model's answer that smuggled markup in could reach nothing either. Set here
/// because the stack's `default-src 'none'` only fills an absent header.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
     img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The playground's routes, or `None` when `playground.enabled` is off (then
/// `/` is the JSON 404 it always was).
pub fn router(state: &AppState) -> Option<Router<AppState>> {
    if !state.config.playground.enabled {
        return None;
    }
    Some(
        Router::new()
            .route(
                paths::PLAYGROUND,
                get(|| file(INDEX, "text/html; charset=utf-8")),
            )
            .route(
                paths::PLAYGROUND_JS,
                get(|| file(SCRIPT, "text/javascript; charset=utf-8")),
            )
            .route(
                paths::PLAYGROUND_CSS,
                get(|| file(STYLE, "text/css; charset=utf-8")),
            ),
    )
}

async fn file(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            // The files change with the binary; revalidate rather than serve a stale page.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}
