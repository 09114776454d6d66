//! Waiting on a condition nothing can notify the test of (an external process's output
//! on request, a metrics scrape, a file on disk, the Docker engine): check it, pause a
//! short interval, check again, until it holds or a deadline passes. The one place the
//! tests pause between checks; every wait ends on the condition or fails at its deadline
//! with what was last seen.

use std::time::{Duration, Instant};

/// Calls `check` every `every` until it returns `Ok`, and returns that value.
///
/// # Panics
/// When `within` has passed since the call and `check` still returns `Err(seen)`: the
/// message names `what`, the time allowed and `seen` (the last state `check` described).
pub fn poll_until<T>(
    what: &str,
    within: Duration,
    every: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = held(what, within, deadline, check()) {
            return v;
        }
        std::thread::sleep(every);
    }
}

/// One check's outcome: its value, or `None` to check again (a panic past the deadline).
fn held<T>(what: &str, within: Duration, deadline: Instant, r: Result<T, String>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(seen) => {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {within:?}; last seen: {seen}"
            );
            None
        }
    }
}

/// [`poll_until`] inside a tokio runtime: pauses with the runtime's timer, so the tasks
/// the condition depends on keep running on the same thread.
///
/// # Panics
/// As [`poll_until`].
pub async fn poll_until_async<T>(
    what: &str,
    within: Duration,
    every: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = held(what, within, deadline, check()) {
            return v;
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_value_that_holds() {
        let mut calls = 0;
        let v = poll_until(
            "three calls",
            Duration::from_secs(5),
            Duration::ZERO,
            || {
                calls += 1;
                if calls == 3 {
                    Ok(calls * 10)
                } else {
                    Err(format!("call {calls}"))
                }
            },
        );
        assert_eq!((v, calls), (30, 3));
    }

    #[test]
    #[should_panic(expected = "never: not within 0ns; last seen: still no")]
    fn fails_at_the_deadline_with_the_last_state() {
        poll_until::<()>("never", Duration::ZERO, Duration::ZERO, || {
            Err("still no".into())
        });
    }
}
