//! The ServiceAccount tokens of a pod's projected volumes, kept until 80 % of their lifetime
//! has passed and then requested again, as the kubelet's token manager does.

use std::collections::HashMap;
use std::time::SystemTime;

use parking_lot::Mutex;

use super::objects::{DataSource, ObjectError};

/// Which token: ServiceAccount, audience, requested lifetime in seconds.
type TokenKey = (String, Option<String>, i64);

/// Tokens of one pod, by what was asked for.
#[derive(Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<TokenKey, (String, SystemTime)>>,
}

impl TokenCache {
    /// A token of `account` for `audience` valid `seconds`: the cached one while it is younger
    /// than 80 % of `seconds` at `now`, else a fresh one from `source`.
    pub async fn token(
        &self,
        source: &dyn DataSource,
        account: &str,
        audience: Option<&str>,
        seconds: i64,
        now: SystemTime,
    ) -> Result<String, ObjectError> {
        let key = (account.to_string(), audience.map(str::to_string), seconds);
        let renew_after = crate::k8s::time::wait(seconds) / 10 * 8;
        if let Some((token, issued)) = self.tokens.lock().get(&key) {
            if now.duration_since(*issued).unwrap_or_default() < renew_after {
                return Ok(token.clone());
            }
        }
        let token = source.service_account_token(account, audience, seconds).await?;
        tracing::debug!(%account, ?audience, seconds, "requested a ServiceAccount token");
        self.tokens.lock().insert(key, (token.clone(), now));
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::kubelet::objects::StaticData;
    use std::time::Duration;

    #[tokio::test]
    async fn renews_at_80_percent_of_the_lifetime() {
        let source = StaticData::default();
        let cache = TokenCache::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let first = cache.token(&source, "sa", None, 1000, t0).await.unwrap();
        assert_eq!(source.token_requests(), 1);
        let again = cache.token(&source, "sa", None, 1000, t0 + Duration::from_secs(799)).await.unwrap();
        assert_eq!((again, source.token_requests()), (first.clone(), 1), "still fresh");
        cache.token(&source, "sa", Some("vault"), 1000, t0).await.unwrap();
        assert_eq!(source.token_requests(), 2, "another audience is another token");
        cache.token(&source, "sa", None, 1000, t0 + Duration::from_secs(800)).await.unwrap();
        assert_eq!(source.token_requests(), 3, "renewed at 80 %");
        cache.token(&source, "sa", None, 1000, t0 + Duration::from_secs(1500)).await.unwrap();
        assert_eq!(source.token_requests(), 3, "the renewed token is fresh");
    }
}
