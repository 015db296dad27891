//! Renders every error as the contract's JSON with the request id: responses
//! carrying an `ErrorInfo` (from `ApiError`), and bare non-2xx responses from
//! axum or tower-http (405, 413, …) that carry no JSON of their own.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::error::{ApiError, ErrorInfo, error_json};
use crate::headers;

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"))
}

pub async fn render_errors(req: Request, next: Next) -> Response {
    let request_id = headers::request_id(req.headers()).map(str::to_owned);
    let mut response = next.run(req).await;
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
    let body = error_json(&info, request_id.as_deref());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.remove(header::CONTENT_LENGTH);
    *response.body_mut() = Body::from(body);
    response
}
