//! `/health` (the process runs) and `/health/ready` (it can take requests:
//! 503 only while shutting down). An upstream outage is shared by every
//! replica, so failing readiness for it would pull them all out of the load
//! balancer together and hide the `fallback_message`; `"upstreams"` reports it.

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
    let degraded = state.limiter.degraded();
    let upstreams = state.catalog.upstreams().as_str();
    if !state.is_shutting_down() {
        let body = json!({"status": "ready", "degraded": degraded, "upstreams": upstreams});
        return Json(body).into_response();
    }
    let request_id = crate::headers::request_id(&headers);
    let error: serde_json::Value =
        serde_json::from_str(&error_json(&ApiError::Overloaded.info(), request_id))
            .unwrap_or_default();
    let body = json!({
        "status": "unavailable",
        "reason": "shutting_down",
        "degraded": degraded,
        "upstreams": upstreams,
        "error": error["error"],
    });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}
