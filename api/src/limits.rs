//! Per-credential rate limiting (GCRA, via `governor`).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub struct Limiter {
    inner: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl Limiter {
    pub fn new(per_second: u32, burst: u32) -> Limiter {
        let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst.max(per_second).max(1)).unwrap_or(NonZeroU32::MIN);
        Limiter {
            inner: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            clock: DefaultClock::default(),
        }
    }

    /// `Err(wait)` when the key is over its quota.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.inner
            .check_key(&key.to_string())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets keys whose buckets are full again (bounded memory).
    pub fn forget_idle(&self) {
        self.inner.retain_recent();
    }
}
