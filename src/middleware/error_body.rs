//! Renders every error as the contract's JSON with the request id: responses
//! carrying an `ErrorInfo` (from `ApiError`), and bare non-2xx responses from
//! axum or tower-http (405, 413, …) that carry no JSON of their own.
//! On the Anthropic Messages route (known by its path, so the guards' and
//! body limit's errors are covered too) errors take Anthropic's shape, and
//! every response gets Anthropic's `request-id` header beside `x-request-id`.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::header_limit;
use crate::error::{ApiError, ErrorInfo, anthropic_error_json, error_json};
use crate::headers;
use crate::routes::paths;

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"))
}

pub async fn render_errors(req: Request, next: Next) -> Response {
    let request_id = headers::request_id(req.headers()).map(str::to_owned);
    let anthropic = paths::speaks_anthropic(req.uri().path());
    let mut response = if header_limit::oversized(&req) {
        ApiError::HeadersTooLarge.into_response()
    } else {
        next.run(req).await
    };
    if anthropic
        && let Some(id) = request_id
            .as_deref()
            .and_then(|id| HeaderValue::from_str(id).ok())
    {
        response
            .headers_mut()
            .insert(headers::ANTHROPIC_REQUEST_ID, id);
    }
    let status = response.status();
    let info = match response.extensions().get::<ErrorInfo>() {
        Some(info) => info.clone(),
        None if (status.is_client_error() || status.is_server_error()) && !is_json(&response) => {
            let info = ApiError::from_status(status).info();
            response.extensions_mut().insert(info.clone());
            info
        }
        None => return response,
    };
    let body = if anthropic {
        anthropic_error_json(status, &info, request_id.as_deref())
    } else {
        error_json(&info, request_id.as_deref())
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.remove(header::CONTENT_LENGTH);
    *response.body_mut() = Body::from(body);
    response
}
