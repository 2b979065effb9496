//! Go CurlyQ's exponential backoff, shared by job retries and loop errors.

use std::time::Duration;

/// The delay before retry number `attempt`: `min(max, (1 + r) * 2^attempt / 2)` seconds
/// with `r` uniform in `[0, 1)`, as in Go CurlyQ. So the delay lies in
/// [`backoff_bounds`].
///
/// ```
/// use std::time::Duration;
/// let d = curlyq_core::backoff(3, Duration::from_secs(3600));
/// assert!(d >= Duration::from_secs(4) && d < Duration::from_secs(8));
/// ```
pub fn backoff(attempt: u32, max: Duration) -> Duration {
    backoff_with_jitter(attempt, max, rand::random::<f64>())
}

/// [`backoff`] with the random part given: `jitter` in `[0, 1)` (values outside are
/// clamped), so that a seeded consumer core computes exact delays.
///
/// ```
/// use std::time::Duration;
/// let week = Duration::from_secs(7 * 24 * 3600);
/// assert_eq!(curlyq_core::backoff_with_jitter(3, week, 0.5), Duration::from_secs(6));
/// ```
pub fn backoff_with_jitter(attempt: u32, max: Duration, jitter: f64) -> Duration {
    let jitter = if jitter.is_nan() {
        0.0
    } else {
        jitter.clamp(0.0, 1.0)
    };
    scaled(attempt, 1.0 + jitter, max)
}

/// The lowest and highest delay [`backoff`] can give for `attempt` (the high bound is
/// exclusive unless capped by `max`).
pub fn backoff_bounds(attempt: u32, max: Duration) -> (Duration, Duration) {
    (scaled(attempt, 1.0, max), scaled(attempt, 2.0, max))
}

fn scaled(attempt: u32, factor: f64, max: Duration) -> Duration {
    // 2^attempt overflows f64 only past attempt 1023; the cap applies long before.
    let secs = factor * 2f64.powi(attempt.min(1023) as i32) / 2.0;
    if !secs.is_finite() || secs >= max.as_secs_f64() {
        max
    } else {
        Duration::from_secs_f64(secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_go_bounds_and_capped() {
        let max = Duration::from_secs(7 * 24 * 3600);
        for attempt in 0..40 {
            let (lo, hi) = backoff_bounds(attempt, max);
            for _ in 0..50 {
                let d = backoff(attempt, max);
                assert!(
                    d >= lo && d <= hi,
                    "attempt {attempt}: {d:?} not in {lo:?}..{hi:?}"
                );
            }
        }
        assert_eq!(
            backoff_bounds(0, max),
            (Duration::from_millis(500), Duration::from_secs(1))
        );
        assert_eq!(backoff(u32::MAX, max), max);
    }
}
