//! The controllers' one error policy: a failed key is retried after a per-key exponential
//! back-off, as kube-controller-manager's workqueue rate limiter does.

use std::collections::HashMap;
use std::fmt::{Debug, Display};
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryFuture, TryFutureExt};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::Resource;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;

/// The first retry's delay: client-go's `DefaultControllerRateLimiter` starts at 5 ms...
const BASE: Duration = Duration::from_millis(5);
/// ...and doubles up to 1000 s (16m40s).
const CAP: Duration = Duration::from_secs(1000);
/// Failures of one key in a row logged at debug level before warnings (their delays add up to
/// 1.3 s): a stale cache or a conflicting write usually clears within these.
const QUIET_FAILURES: u32 = 8;

/// Consecutive failures per key. The n-th failure in a row earns a delay of `base · 2^(n-1)`,
/// at most `cap`; a success forgets the key.
#[derive(Debug)]
pub struct Backoff<Key> {
    base: Duration,
    cap: Duration,
    failures: Mutex<HashMap<Key, u32>>,
}

impl<Key: Hash + Eq> Backoff<Key> {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self { base, cap, failures: Mutex::default() }
    }

    /// Records one more failure of `key`: how many in a row, and the delay before its retry.
    pub fn failed(&self, key: Key) -> (u32, Duration) {
        let mut failures = self.failures.lock();
        let count = failures.entry(key).or_default();
        *count = count.saturating_add(1);
        let factor = 2u32.checked_pow(*count - 1);
        let delay = factor.and_then(|f| self.base.checked_mul(f)).map_or(self.cap, |d| d.min(self.cap));
        (*count, delay)
    }

    /// Forgets `key`'s failures (it reconciled, or is gone).
    pub fn reset(&self, key: &Key) {
        self.failures.lock().remove(key);
    }
}

/// A controller's context with the back-off of its objects.
struct Retrying<K: Resource, C> {
    ctx: Arc<C>,
    backoff: Backoff<ObjectRef<K>>,
}

impl<K, C> Retrying<K, C>
where
    K: Resource,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    /// The error policy: requeue `obj` after its back-off, logging the key and the error.
    fn retry(&self, obj: &K, error: &impl Display) -> Action {
        let key = ObjectRef::from_obj(obj);
        let (failures, delay) = self.backoff.failed(key.clone());
        if failures > QUIET_FAILURES {
            tracing::warn!(%key, %error, failures, "reconcile keeps failing; retrying in {delay:?}");
        } else {
            tracing::debug!(%key, %error, failures, "reconcile failed; retrying in {delay:?}");
        }
        Action::requeue(delay)
    }
}

/// Runs `controller` until it shuts down, with the shared error policy: a key that fails is
/// retried after its back-off (5 ms, doubling per failure in a row, at most 1000 s), which its
/// next success — or the object's deletion — resets. Failed reconciles are logged by the
/// policy; what else the controller reports (a watch error, a queued object gone) at debug.
pub async fn run<K, C, Fut>(controller: Controller<K>, mut reconcile: impl FnMut(Arc<K>, Arc<C>) -> Fut, ctx: Arc<C>)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Debug + Unpin + Send + Sync,
    C: Send + Sync + 'static,
    Fut: TryFuture<Ok = Action> + Send + 'static,
    Fut::Error: std::error::Error + Send + 'static,
{
    let retrying = Arc::new(Retrying { ctx, backoff: Backoff::new(BASE, CAP) });
    let on_gone = retrying.clone();
    controller
        .run(
            move |obj: Arc<K>, retrying: Arc<Retrying<K, C>>| {
                let key = ObjectRef::from_obj(obj.as_ref());
                reconcile(obj, retrying.ctx.clone()).inspect_ok(move |_| retrying.backoff.reset(&key))
            },
            |obj, error, retrying| retrying.retry(obj.as_ref(), error),
            retrying,
        )
        .for_each(move |result| {
            match result {
                Ok(_) | Err(controller::Error::ReconcilerFailed(..)) => {}
                // A deleted object's pending retry finds it gone: nothing will reset its key.
                Err(controller::Error::ObjectNotFound(gone)) => {
                    on_gone.backoff.reset(&gone.as_ref().clone().into_kind_unchecked(Default::default()))
                }
                Err(error) => tracing::debug!(kind = %K::kind(&Default::default()), %error, "controller"),
            }
            futures::future::ready(())
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> Backoff<&'static str> {
        Backoff::new(BASE, CAP)
    }

    fn delays(b: &Backoff<&'static str>, key: &'static str, n: usize) -> Vec<Duration> {
        (0..n).map(|_| b.failed(key).1).collect()
    }

    #[test]
    fn delays_double_from_the_base() {
        let ms = Duration::from_millis;
        assert_eq!(delays(&backoff(), "a", 5), [ms(5), ms(10), ms(20), ms(40), ms(80)]);
    }

    #[test]
    fn delays_stop_at_the_cap_and_never_overflow() {
        let b = backoff();
        let all = delays(&b, "a", 100);
        // 5 ms · 2^17 = 655 s, 5 ms · 2^18 = 1311 s.
        assert_eq!((all[17], all[18], all[99]), (Duration::from_millis(655_360), CAP, CAP));
        assert_eq!(b.failed("a"), (101, CAP));
    }

    #[test]
    fn success_resets_the_key() {
        let b = backoff();
        delays(&b, "a", 3);
        b.reset(&"a");
        assert_eq!(b.failed("a"), (1, BASE));
    }

    #[test]
    fn keys_back_off_independently() {
        let b = backoff();
        delays(&b, "a", 4);
        assert_eq!(b.failed("b"), (1, BASE));
        b.reset(&"b");
        assert_eq!(b.failed("a"), (5, Duration::from_millis(80)));
    }
}
