//! `GET /metrics`: Prometheus text format, optionally behind `metrics.token`.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::headers::bearer;
use crate::state::AppState;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn render(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(token) = &state.config.metrics.token {
        let ok = bearer(&headers)
            .is_some_and(|p| bool::from(p.as_bytes().ct_eq(token.expose_secret().as_bytes())));
        if !ok {
            return Err(ApiError::Unauthorized);
        }
    }
    // An open circuit turns half-open by time alone: refresh the gauges first.
    for provider in &state.catalog.providers {
        provider.circuit.publish();
    }
    // The cache settles its pending inserts and evictions only here.
    state.cache.publish().await;
    let mut response = state.metrics.render().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Ok(response)
}
