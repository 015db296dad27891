//! Streams: an attempt succeeds only once its first event arrived, so retries
//! and failover happen before the client sees a byte; afterwards a guard
//! bounds the stream by the request deadline and an idle timeout.

use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use tokio::time::Instant;

use super::Attempt;
use crate::chat::{StreamEvent, Usage};
use crate::providers::{EventStream, Provider, ProviderError, ProviderRequest};

/// Opens a stream and waits for its first event.
pub struct OpenStream;

impl Attempt for OpenStream {
    type Output = (StreamEvent, EventStream);

    fn attempt<'a>(
        &self,
        provider: &'a dyn Provider,
        req: &'a ProviderRequest,
    ) -> BoxFuture<'a, Result<Self::Output, ProviderError>> {
        async move {
            let mut stream = provider.stream(req).await?;
            match stream.next().await {
                Some(Ok(first)) => Ok((first, stream)),
                Some(Err(e)) => Err(e),
                None => Err(ProviderError::Connect(
                    "stream closed before its first event".into(),
                )),
            }
        }
        .boxed()
    }

    /// Streamed tokens are counted when the stream ends, not per attempt.
    fn usage(_: &Self::Output) -> Option<Usage> {
        None
    }
}

/// Ends `stream` with `ProviderError::Timeout` at `deadline` or after `idle`
/// without an event; it ends after its first error.
pub fn guard(stream: EventStream, deadline: Instant, idle: Duration) -> EventStream {
    futures_util::stream::unfold(Some(stream), move |state| async move {
        let mut stream = state?;
        let limit = deadline.min(Instant::now() + idle);
        match tokio::time::timeout_at(limit, stream.next()).await {
            Ok(Some(Ok(event))) => Some((Ok(event), Some(stream))),
            Ok(Some(Err(e))) => Some((Err(e), None)),
            Ok(None) => None,
            Err(_) => Some((Err(ProviderError::Timeout), None)),
        }
    })
    .boxed()
}
