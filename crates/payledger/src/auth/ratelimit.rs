//! Per-address rate limits for endpoints that guess-resistant secrets depend on (login, token refresh).
//!
//! A fixed window per client address: at most `limit` requests per `window`. Kept in memory per process,
//! bounded in size: with several instances each limits on its own, which still caps guessing per instance.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The most addresses remembered; past it, windows that have ended are forgotten.
const MAX_TRACKED: usize = 100_000;

/// A limiter of requests per client address.
#[derive(Debug)]
pub struct RateLimiter {
    limit: u32,
    window: Duration,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl RateLimiter {
    /// At most `limit` requests per `window` from one address.
    pub fn new(limit: u32, window: Duration) -> RateLimiter {
        RateLimiter { limit: limit.max(1), window, windows: Mutex::new(HashMap::new()) }
    }

    /// Counts a request from `address`: `Ok` if it is within the limit, else how long until it may retry.
    pub fn check(&self, address: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        if windows.len() >= MAX_TRACKED {
            windows.retain(|_, (start, _)| now.duration_since(*start) < self.window);
        }
        let entry = windows.entry(address).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        if entry.1 >= self.limit {
            return Err(self.window.saturating_sub(now.duration_since(entry.0)));
        }
        entry.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_own_window() {
        let limiter = RateLimiter::new(2, Duration::from_secs(60));
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let start = Instant::now();
        assert!(limiter.check(a, start).is_ok());
        assert!(limiter.check(a, start).is_ok());
        let wait = limiter.check(a, start + Duration::from_secs(10)).err();
        assert_eq!(wait, Some(Duration::from_secs(50)));
        assert!(limiter.check(b, start).is_ok(), "another address is not limited");
        assert!(limiter.check(a, start + Duration::from_secs(60)).is_ok(), "a new window");
    }
}
