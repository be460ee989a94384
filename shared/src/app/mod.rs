//! Services: each use case of the functions and the CLI, generic over the traits in
//! [`crate::ports`], so they run against DynamoDB and S3 in a function and against in-memory fakes
//! in unit tests.

pub mod archive;
pub mod backtest;
pub mod batch;
pub mod events;
pub mod labels;
pub mod list_import;
pub mod models;
pub mod oidc;
pub mod policy_cache;
pub mod reviews;
pub mod rules;
pub mod scoring;

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

/// Runs `futures` with at most `limit` in flight, polled inside the calling task (no spawning,
/// so no runtime). Stops at the first error, dropping the rest. Outputs in completion order.
pub(crate) async fn try_join_bounded<T, E, Fut>(futures: Vec<Fut>, limit: usize) -> Result<Vec<T>, E>
where
    Fut: Future<Output = Result<T, E>>,
{
    let mut waiting = futures.into_iter();
    let mut running: Vec<Pin<Box<Fut>>> = Vec::new();
    let mut out = Vec::with_capacity(waiting.len());
    std::future::poll_fn(|cx| {
        loop {
            while running.len() < limit.max(1) {
                match waiting.next() {
                    Some(f) => running.push(Box::pin(f)),
                    None => break,
                }
            }
            if running.is_empty() {
                return Poll::Ready(Ok(()));
            }
            let before = running.len();
            let mut i = 0;
            while i < running.len() {
                match running[i].as_mut().poll(cx) {
                    Poll::Ready(Ok(v)) => {
                        out.push(v);
                        drop(running.swap_remove(i));
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => i += 1,
                }
            }
            // Nothing finished: every one of them has registered its waker.
            if running.len() == before {
                return Poll::Pending;
            }
        }
    })
    .await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::task::{Context, Waker};

    /// Polls until ready (the futures below wake themselves).
    fn block_on<Fut: Future>(f: Fut) -> Fut::Output {
        let mut f = std::pin::pin!(f);
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
                return v;
            }
        }
    }

    #[test]
    fn bounded_joins_keep_the_limit_and_stop_at_an_error() {
        use std::sync::atomic::AtomicUsize;
        let (in_flight, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let ok: Vec<_> = (0..5)
            .map(|i| {
                let (in_flight, most) = (&in_flight, &most);
                async move {
                    let n = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(n, Ordering::SeqCst);
                    // Pending once, so the others get polled while this one is in flight.
                    let mut yielded = false;
                    std::future::poll_fn(|cx| {
                        if yielded {
                            Poll::Ready(())
                        } else {
                            yielded = true;
                            cx.waker().wake_by_ref();
                            Poll::Pending
                        }
                    })
                    .await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, String>(i)
                }
            })
            .collect();
        let mut got = block_on(try_join_bounded(ok, 2)).unwrap();
        got.sort();
        assert_eq!(got, [0, 1, 2, 3, 4]);
        assert_eq!(most.load(Ordering::SeqCst), 2, "two at a time");
        let failing: Vec<_> = (0..5)
            .map(|i| async move {
                if i == 1 {
                    Err(format!("no {i}"))
                } else {
                    Ok(i)
                }
            })
            .collect();
        assert_eq!(block_on(try_join_bounded(failing, 2)), Err("no 1".to_owned()));
    }
}
