//! `/health` (the process runs) and `/health/ready` (it can serve: not
//! shutting down, and the default model has a target whose circuit is not open).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use serde_json::json;

use crate::error::{ApiError, error_json};
use crate::state::AppState;

pub async fn live() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

pub async fn ready(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let reason = if state.is_shutting_down() {
        Some(("shutting_down", ApiError::Overloaded))
    } else if state.catalog.default_model_down() {
        Some(("all_circuits_open", ApiError::UpstreamUnavailable))
    } else {
        None
    };
    let degraded = state.limiter.degraded();
    match reason {
        None => Json(json!({"status": "ready", "degraded": degraded})).into_response(),
        Some((reason, error)) => {
            let request_id = headers.get("x-request-id").and_then(|v| v.to_str().ok());
            let error: serde_json::Value =
                serde_json::from_str(&error_json(&error.info(), request_id)).unwrap_or_default();
            let body = json!({"status": "unavailable", "reason": reason, "degraded": degraded, "error": error["error"]});
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}
