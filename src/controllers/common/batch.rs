//! `slowStartBatch`: run `count` calls in batches of 1, 2, 4, … so a call that fails for
//! every pod (quota, admission) fails once instead of hundreds of times.

use std::future::Future;

/// Runs `call` `count` times in doubling batches, stopping after the first batch with an
/// error. Returns how many calls succeeded and the first error.
pub async fn slow_start<E, F, Fut>(count: usize, call: F) -> (usize, Option<E>)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut done = 0;
    let mut batch = count.min(1);
    while batch > 0 {
        let results = futures::future::join_all((0..batch).map(|_| call())).await;
        let mut first_error = None;
        for r in results {
            match r {
                Ok(()) => done += 1,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if first_error.is_some() {
            return (done, first_error);
        }
        let remaining = count - done;
        batch = (batch * 2).min(remaining);
    }
    (done, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn batches_double_and_stop_at_the_first_failure() {
        let calls = AtomicUsize::new(0);
        let (ok, err) = slow_start::<(), _, _>(10, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .await;
        assert_eq!((ok, err, calls.load(Ordering::SeqCst)), (10, None, 10));

        let calls = AtomicUsize::new(0);
        let (ok, err) = slow_start(10, || async {
            // The 4th call (in the third batch of 4) fails: batches 1 + 2 + 4 run, 3 + 6 = 6 ok.
            if calls.fetch_add(1, Ordering::SeqCst) == 3 {
                Err("quota")
            } else {
                Ok(())
            }
        })
        .await;
        assert_eq!((ok, err, calls.load(Ordering::SeqCst)), (6, Some("quota"), 7));
        assert_eq!(slow_start::<(), _, _>(0, || async { Ok(()) }).await, (0, None));
    }
}
