//! HTTP plumbing shared by the OpenAI and Anthropic providers: send a JSON
//! request, map transport failures and statuses to `ProviderError`, read
//! bodies with a size cap, and never keep an upstream's raw error body.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Response, StatusCode};
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{MAX_ANSWER_BYTES, ProviderError};
use crate::config::HttpApi;
use crate::resilience::backoff::parse_retry_after;

/// Most of an error body we look at for its error code.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// A header value for a secret: marked sensitive so hyper/h2 never index or log it.
fn secret_header(value: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(value).ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// One provider endpoint: the shared client, the URL (parsed once) and the
/// headers every request carries, the key among them (built once, marked
/// sensitive). The HTTP providers differ only in their bodies and readers.
pub struct Endpoint {
    client: reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
}

impl Endpoint {
    /// `auth` turns the provider's key into its header; `fixed` adds headers of the API.
    pub fn new(
        client: reqwest::Client,
        config: &HttpApi,
        path: &str,
        auth: impl FnOnce(&str) -> (HeaderName, String),
        fixed: HeaderMap,
    ) -> Self {
        let mut headers = fixed;
        if let Some(key) = &config.api_key {
            let (name, value) = auth(key.expose_secret());
            if let Some(value) = secret_header(&value) {
                headers.insert(name, value);
            }
        }
        Self {
            client,
            url: config.base_url.join(path),
            headers,
        }
    }

    /// Sends `body` (with the request id) and returns the response if its status is 2xx.
    pub async fn post(
        &self,
        request_id: &str,
        body: &impl serde::Serialize,
    ) -> Result<Response, ProviderError> {
        let url = self.url.clone();
        let mut headers = self.headers.clone();
        if let Ok(id) = HeaderValue::from_str(request_id) {
            headers.insert(crate::headers::REQUEST_ID, id);
        }
        crate::otel::inject(&mut headers);
        let response = self
            .client
            .post(url)
            .headers(headers)
            .json(body)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let detail = read_limited(response, MAX_ERROR_BODY)
            .await
            .ok()
            .and_then(|b| error_code(&b));
        Err(ProviderError::Status {
            status: status.as_u16(),
            retry_after,
            detail,
        })
    }
}

/// Reads and parses a whole 2xx JSON body.
pub async fn json_body<T: DeserializeOwned>(response: Response) -> Result<T, ProviderError> {
    let bytes = read_limited(response, MAX_ANSWER_BYTES).await?;
    crate::otel::response_model(&bytes);
    serde_json::from_slice(&bytes).map_err(|e| json_error("body", &e, bytes.len()))
}

/// An unusable-answer error for JSON that did not parse, by kind, position
/// and size only: serde's own message can quote the body (`invalid type:
/// string "…"`), and an upstream's body text must never reach a log.
pub fn json_error(what: &str, error: &serde_json::Error, len: usize) -> ProviderError {
    use serde_json::error::Category;
    let kind = match error.classify() {
        Category::Io => "unreadable",
        Category::Syntax => "not JSON",
        Category::Data => "JSON of an unexpected shape",
        Category::Eof => "truncated JSON",
    };
    ProviderError::Decode(format!(
        "{what} is {kind} (line {} column {}, {len} bytes)",
        error.line(),
        error.column()
    ))
}

/// Reads a body of at most `limit` bytes. Past it the response is dropped at
/// once, which closes the connection (hyper never pools a half-read body).
async fn read_limited(mut response: Response, limit: usize) -> Result<Vec<u8>, ProviderError> {
    let too_large = || ProviderError::Decode(format!("body larger than {limit} bytes"));
    let declared = response.content_length().unwrap_or(0);
    if usize::try_from(declared).map_or(true, |n| n > limit) {
        return Err(too_large());
    }
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if out.len() + chunk.len() > limit {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Maps a reqwest error (which may carry the URL, never a key) to ours.
pub fn transport(err: reqwest::Error) -> ProviderError {
    if err.is_timeout() {
        ProviderError::Timeout
    } else if err.is_decode() {
        // reqwest reports a body cut off mid-way as `decode` (no decompression
        // is enabled, so nothing else is): a broken connection, retried.
        ProviderError::Connect("connection broke while reading the body".into())
    } else if err.is_connect() {
        ProviderError::Connect("could not connect".into())
    } else if err.status() == Some(StatusCode::TOO_MANY_REQUESTS) {
        ProviderError::Status {
            status: 429,
            retry_after: None,
            detail: None,
        }
    } else {
        ProviderError::Connect("connection broke".into())
    }
}

/// The upstream's machine-readable error code (`error.code` or `error.type`),
/// kept only when it is a short identifier: safe to log and to name to clients.
fn error_code(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let err = v.get("error")?;
    let code = err
        .get("code")
        .and_then(Value::as_str)
        .or_else(|| err.get("type").and_then(Value::as_str))?;
    let safe = !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    safe.then(|| code.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_code_keeps_identifiers_only() {
        assert_eq!(
            error_code(br#"{"error":{"code":"context_length_exceeded","message":"secret text"}}"#)
                .as_deref(),
            Some("context_length_exceeded")
        );
        assert_eq!(
            error_code(br#"{"type":"error","error":{"type":"invalid_request_error"}}"#).as_deref(),
            Some("invalid_request_error")
        );
        assert_eq!(
            error_code(br#"{"error":{"code":"has spaces and <html>"}}"#),
            None
        );
        assert_eq!(error_code(b"<html>oops</html>"), None);
    }

    #[test]
    fn json_errors_never_quote_the_body() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Shape {
            choices: Vec<u8>,
        }
        for body in [
            &br#"{"choices": "MARKER-in-a-string"}"#[..],
            br#"{"MARKER-as-a-key": 1, "choices": [300]}"#,
            b"MARKER not json at all",
            br#"{"choices": ["MARKER"#,
        ] {
            let Err(err) = serde_json::from_slice::<Shape>(body) else {
                panic!("parsed");
            };
            let ProviderError::Decode(message) = json_error("body", &err, body.len()) else {
                panic!("not a decode error");
            };
            assert!(!message.contains("MARKER"), "{message}");
            assert!(
                message.contains(&format!("{} bytes", body.len())),
                "{message}"
            );
        }
    }
}
