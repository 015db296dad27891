//! The response cache shared by every replica: one Redis string per entry
//! (`chatgate:cache:<hex key>`, JSON, `EX` = the model's TTL) on the shared
//! connection. Any Redis failure is a miss (or a store skipped), never an error.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::{AnswerStore, CacheKey, Entry};
use crate::redis_link::RedisLink;

pub struct RedisCache {
    link: Arc<RedisLink>,
}

impl RedisCache {
    pub fn new(link: Arc<RedisLink>) -> Self {
        Self { link }
    }
}

fn redis_key(key: &CacheKey) -> String {
    format!("chatgate:cache:{}", hex::encode(key))
}

impl AnswerStore for RedisCache {
    fn get<'a>(&'a self, key: &'a CacheKey) -> BoxFuture<'a, Option<Arc<Entry>>> {
        async move {
            let k = redis_key(key);
            let value = self
                .link
                .run(|mut conn| async move {
                    redis::cmd("GET")
                        .arg(k)
                        .query_async::<Option<String>>(&mut conn)
                        .await
                })
                .await??;
            // An entry that does not parse (another version wrote it) is a miss.
            serde_json::from_str::<Entry>(&value).ok().map(Arc::new)
        }
        .boxed()
    }

    fn put(&self, key: CacheKey, entry: Arc<Entry>, ttl: Duration) -> BoxFuture<'_, ()> {
        async move {
            let Ok(value) = serde_json::to_string(&*entry) else {
                return;
            };
            let secs = ttl.as_secs().max(1);
            let k = redis_key(&key);
            self.link
                .run(|mut conn| async move {
                    redis::cmd("SET")
                        .arg(k)
                        .arg(value)
                        .arg("EX")
                        .arg(secs)
                        .query_async::<()>(&mut conn)
                        .await
                })
                .await;
        }
        .boxed()
    }
}
