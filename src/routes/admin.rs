//! `/admin/v1`: the operator's API, behind `[admin.keys]` (a client key is
//! not an admin key). Without an admin key the routes are not mounted, so
//! every `/admin` path is the fallback's 404. Not under the `/api/v1`
//! guards: never limited by the per-IP chat limits. A new route is one
//! `.route(..)` line in [`router`].

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::paths;
use crate::context::KeyId;
use crate::error::ApiError;
use crate::headers;
use crate::middleware::auth::presented;
use crate::reload::handle::{self as reload, Source};
use crate::state::AppState;

/// The admin routes, behind the admin-key check; `None` when no admin key
/// is configured (then nothing answers under `/admin` but the 404).
pub fn router(state: &AppState) -> Option<Router<AppState>> {
    if state.admin_keys.is_empty() {
        return None;
    }
    let routes = Router::new()
        .route(paths::ADMIN_CONFIG, get(config))
        .route(paths::ADMIN_RELOAD, post(reload));
    Some(routes.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        require_admin,
    )))
}

/// The admin key id of the request (the audit trail's actor).
#[derive(Debug, Clone)]
pub struct AdminId(pub std::sync::Arc<str>);

/// 401 without a valid admin key.
async fn require_admin(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let id = presented(req.headers())
        .filter(|k| !k.is_empty())
        .and_then(|k| state.admin_keys.verify(k))
        .ok_or(ApiError::Unauthorized)?;
    req.extensions_mut().insert(AdminId(id.clone()));
    let mut response = next.run(req).await;
    // The request log names who called, as for client keys.
    response.extensions_mut().insert(KeyId(id));
    Ok(response)
}

/// `GET /admin/v1/config`: the effective config (secrets redacted) and its hash.
async fn config(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let mut body = serde_json::to_value(&*state.config).map_err(|_| ApiError::Internal)?;
    if let Value::Object(map) = &mut body {
        map.insert("hash".into(), reload::config_hash(&state.config).into());
    }
    Ok(Json(body))
}

/// `POST /admin/v1/reload`: 200 with the new hash, or 422 with every problem.
async fn reload(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match state.reload.reload(Source::Admin).await {
        Ok(hash) => Json(json!({"status": "reloaded", "hash": hash})).into_response(),
        Err(problems) => {
            let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
            let body = json!({"error": {
                "code": "invalid_config",
                "message": format!(
                    "the config was not reloaded ({} problem{}); the running config stays",
                    problems.len(),
                    if problems.len() == 1 { "" } else { "s" }
                ),
                "request_id": headers::request_id(&headers),
                "problems": problems,
            }});
            (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
        }
    }
}
