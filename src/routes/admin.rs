//! `/admin/v1`: the operator's API, behind `[admin.keys]` (a client key is
//! not an admin key). Without an admin key the routes are not mounted, so
//! every `/admin` path is the fallback's 404. Not under the `/api/v1`
//! guards: never limited by the per-IP chat limits. A new route is one
//! `.route(..)` line in [`router`].

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};

use super::paths;
use crate::config::Percent;
use crate::context::{ClientIp, KeyId};
use crate::error::ApiError;
use crate::headers;
use crate::middleware::auth::verified;
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
        .route(paths::ADMIN_RELOAD, post(reload))
        .route(paths::ADMIN_CANARIES, get(canaries))
        .route(paths::ADMIN_CANARY, put(set_canary))
        .route(paths::ADMIN_BUDGETS, get(budgets));
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
    let id = verified(&state.admin_keys, &req, state.audit.as_ref())?;
    req.extensions_mut().insert(AdminId(id.clone()));
    let (method, path) = (req.method().to_string(), req.uri().path().to_owned());
    let request_id = headers::request_id(req.headers()).map(str::to_owned);
    let client_ip = req
        .extensions()
        .get::<ClientIp>()
        .map(|ip| ip.0.to_string());
    let mut response = next.run(req).await;
    let event = crate::audit::Event {
        event: "admin",
        actor: Some(id.to_string()),
        client_ip,
        request_id,
        detail: json!({"what": format!("{method} {path}"), "result": response.status().as_u16()}),
    };
    crate::audit::record(state.audit.as_ref(), event);
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

/// `GET /admin/v1/canaries`: every model with a canary, as this replica runs it.
async fn canaries(State(state): State<AppState>) -> Json<Value> {
    let list: Vec<Value> = state
        .catalog
        .rollouts()
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r.view()).unwrap_or_default();
            if let Value::Object(map) = &mut v {
                map.insert("model".into(), r.model().to_string().into());
            }
            v
        })
        .collect();
    Json(json!({ "canaries": list, "shared": state.overrides.is_shared() }))
}

/// The body of `PUT /admin/v1/canaries/{model}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SetPercent {
    percent: Percent,
}

/// `PUT /admin/v1/canaries/{model}` `{"percent": 0–100}`: overrides the
/// percent until the next reload (clearing a rollback); with Redis, every
/// replica follows within a poll interval.
async fn set_canary(
    State(state): State<AppState>,
    Path(model): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let rollout = state
        .catalog
        .get(&model)
        .and_then(|m| m.canary.as_ref())
        .map(|c| c.rollout.clone())
        .ok_or_else(|| ApiError::ModelNotFound(model.clone()))?;
    let SetPercent { percent } = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(format!(
            "expected {{\"percent\": a number from 0 to 100}}: {e}"
        ))
    })?;
    let nonce = rollout.override_to(percent);
    let shared = state.overrides.publish(&model, percent.get(), nonce).await;
    if state.overrides.is_shared() && !shared {
        tracing::warn!(
            model,
            "canary override not shared: Redis unreachable; it applies on this replica only"
        );
    }
    let mut body = serde_json::to_value(rollout.view()).unwrap_or_default();
    if let Value::Object(map) = &mut body {
        map.insert("model".into(), model.into());
        map.insert("shared".into(), shared.into());
    }
    Ok(Json(body))
}

/// `GET /admin/v1/budgets`: every gateway and per-key budget now (spent,
/// cap, when it resets), read through the spend store; 503 while a shared
/// store is unreachable under `on_redis_error = "deny"`.
async fn budgets(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let report = state
        .budgets
        .report()
        .await
        .map_err(|_| ApiError::Overloaded)?;
    let budgets: Vec<Value> = report
        .budgets
        .iter()
        .map(|b| {
            json!({
                "scope": b.scope,
                "window": b.window,
                "unit": b.unit,
                "spent": b.spent,
                "cap": b.cap,
                "resets_at": crate::interaction_log::rfc3339_millis(b.resets_at),
            })
        })
        .collect();
    Ok(Json(json!({
        "budgets": budgets,
        "per_user": report.per_user_tokens_per_day.map(|cap| json!({
            "window": "day", "unit": "tokens", "cap": cap,
            "note": "one budget per end user; not listed",
        })),
    })))
}
