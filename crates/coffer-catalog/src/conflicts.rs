//! Lock conflicts between concurrent writers, resolved by running the transaction again.
//!
//! Workers write one backup's index, links and tasks at the same time. InnoDB settles a
//! deadlock by rolling one transaction back (error 1213), and a long wait ends in error 1205;
//! both are normal under concurrency, and MySQL's documented remedy is to run the transaction
//! again. [`rerun_on_lock_conflict`] does that a few times, after a short randomised pause, so
//! that a conflict costs milliseconds instead of a failed task and a redelivery. Only
//! operations that are one whole transaction, idempotent when repeated, go through it.

use std::future::Future;
use std::time::Duration;

use rand::Rng as _;

use crate::CatalogError;

/// Runs beyond the first before the conflict is returned (still classified retryable, so the
/// queue's own retry takes over).
const RERUNS: u32 = 4;

/// The pause before the first rerun; it doubles after each, with up to as much again at random
/// so the two sides of a deadlock do not meet again in step.
const FIRST_PAUSE: Duration = Duration::from_millis(20);

/// Runs `transaction` until it does not lose a lock conflict, at most `1 + RERUNS` times.
pub(crate) async fn rerun_on_lock_conflict<T, F, Fut>(
    what: &str,
    mut transaction: F,
) -> Result<T, CatalogError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CatalogError>>,
{
    let mut rerun = 0;
    loop {
        match transaction().await {
            Err(e) if e.is_lock_conflict() && rerun < RERUNS => {
                let pause = pause_before(rerun);
                rerun += 1;
                tracing::debug!(what, rerun, pause_ms = pause.as_millis() as u64, error = %e, "lock conflict; running the transaction again");
                tokio::time::sleep(pause).await;
            }
            done => return done,
        }
    }
}

fn pause_before(rerun: u32) -> Duration {
    let base = FIRST_PAUSE * 2u32.pow(rerun);
    let jitter = rand::rng().random_range(0..=base.as_millis() as u64);
    base + Duration::from_millis(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conflict() -> CatalogError {
        CatalogError::Query {
            code: "1213".to_owned(),
            message: "Deadlock found when trying to get lock".to_owned(),
        }
    }

    #[tokio::test]
    async fn a_conflict_is_run_again_and_other_errors_are_not() {
        let mut runs = 0;
        let done = rerun_on_lock_conflict("test", || {
            runs += 1;
            let result = if runs < 3 { Err(conflict()) } else { Ok(runs) };
            async move { result }
        })
        .await;
        assert_eq!(done.ok(), Some(3));

        let mut runs = 0;
        let refused = rerun_on_lock_conflict("test", || {
            runs += 1;
            async { Err::<(), _>(CatalogError::Refused("no".to_owned())) }
        })
        .await;
        assert!(refused.is_err());
        assert_eq!(runs, 1, "a permanent error is not run again");
    }

    #[tokio::test]
    async fn a_conflict_that_persists_is_returned_after_the_reruns() {
        let mut runs = 0;
        let lost = rerun_on_lock_conflict("test", || {
            runs += 1;
            async { Err::<(), _>(conflict()) }
        })
        .await;
        assert!(lost.is_err_and(|e| e.is_lock_conflict()));
        assert_eq!(runs, 1 + RERUNS);
    }
}
