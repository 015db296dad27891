//! The `/api/v1` guards, in one layer, in their order: per-IP limit (so
//! floods without a key are limited too) → auth → per-key (and per-user)
//! limit. One layer rather than three: each `from_fn` layer clones the
//! service below it and boxes a future per request.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{auth, rate_limit};
use crate::state::AppState;

pub async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if let Err(limited) = rate_limit::per_ip(&state, req.extensions()).await {
        return limited.into_response();
    }
    let admitted = match auth::admit(&state.keys, state.audit.as_ref(), &mut req).await {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    let mut response = match rate_limit::per_key(&state, req.extensions()).await {
        Ok(()) => next.run(req).await,
        Err(limited) => limited.into_response(),
    };
    if let Some(admitted) = admitted {
        admitted.mark(&mut response);
    }
    response
}
