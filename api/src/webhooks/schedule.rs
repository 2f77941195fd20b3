//! When to try a failed delivery again.
//!
//! The first attempt is immediate; after the n-th failure the delivery waits
//! `delays[n-1]`, give or take `jitter` (a fraction, so a crowd of failures
//! from one outage does not come back in lock-step). Svix's schedule is the
//! default: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, so eight attempts over
//! about 27 hours. A `Retry-After` longer than the scheduled wait is honoured
//! (capped at the longest delay of the schedule). When the schedule is used up
//! the delivery has failed; a replay starts it again.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    pub delays: Vec<Duration>,
    /// 0.2 spreads each wait over ±20 %.
    pub jitter: f64,
}

impl RetrySchedule {
    pub fn svix() -> RetrySchedule {
        let s = Duration::from_secs;
        RetrySchedule {
            delays: vec![
                s(5),
                s(5 * 60),
                s(30 * 60),
                s(2 * 3600),
                s(5 * 3600),
                s(10 * 3600),
                s(10 * 3600),
            ],
            jitter: 0.2,
        }
    }

    /// The wait after failing at `step` (0 = the first attempt failed), or
    /// `None` when no attempt is left. `unit` in [0, 1) picks the jitter.
    pub fn wait(&self, step: usize, retry_after: Option<Duration>, unit: f64) -> Option<Duration> {
        let base = *self.delays.get(step)?;
        let factor = 1.0 + self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        let jittered = base.mul_f64(factor.max(0.0));
        let longest = self.delays.iter().max().copied().unwrap_or(base);
        Some(match retry_after {
            Some(asked) if asked > jittered => asked.min(longest),
            _ => jittered,
        })
    }

    /// Attempts in all: the first plus one per delay.
    pub fn attempts(&self) -> usize {
        self.delays.len() + 1
    }
}

/// A uniform number in [0, 1) for jitter: no need for a generator's quality.
pub fn jitter_unit() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svix_schedule_with_bounded_jitter() {
        let schedule = RetrySchedule::svix();
        assert_eq!(schedule.attempts(), 8);
        assert_eq!(schedule.wait(0, None, 0.5), Some(Duration::from_secs(5)));
        assert_eq!(schedule.wait(0, None, 0.0), Some(Duration::from_secs(4)));
        assert_eq!(schedule.wait(1, None, 0.5), Some(Duration::from_secs(300)));
        assert_eq!(schedule.wait(7, None, 0.5), None, "schedule used up");
        let w = schedule.wait(2, None, 0.999).unwrap();
        assert!(w <= Duration::from_secs(36 * 60) && w > Duration::from_secs(30 * 60));
    }

    #[test]
    fn retry_after_extends_but_is_capped() {
        let schedule = RetrySchedule::svix();
        let a = Duration::from_secs(120);
        assert_eq!(schedule.wait(0, Some(a), 0.5), Some(a));
        assert_eq!(
            schedule.wait(0, Some(Duration::from_secs(1)), 0.5),
            Some(Duration::from_secs(5)),
            "a shorter Retry-After does not hurry the schedule"
        );
        assert_eq!(
            schedule.wait(0, Some(Duration::from_secs(90_000)), 0.5),
            Some(Duration::from_secs(36_000))
        );
    }
}
