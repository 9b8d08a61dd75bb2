//! Rate limits for the endpoints that guess-resistant secrets depend on (login, token refresh): per client
//! address, and per username, so that an attacker with many addresses gets no more guesses at one account than
//! one address gets.
//!
//! A fixed window per key: at most `limit` requests per `window`. Kept in memory per process, bounded in size:
//! with several instances each limits on its own, which still caps guessing per instance.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The most keys remembered per limiter.
///
/// The map must not grow without bound when an attacker sends random usernames (or IPv6 addresses), so it has a
/// hard cap. Keying the username limit on existing users only would bound it too, but a username that is never
/// limited would then tell an attacker it does not exist (the logins answer unknown users exactly like wrong
/// passwords). Instead, when the map is full, windows that have ended are forgotten first, then the key with the
/// fewest requests: a name sprayed once loses one count, while an account under attack has many and is the last
/// to go, so flushing it needs as many requests as the map holds keys, all within one window.
pub const MAX_TRACKED: usize = 100_000;

/// A limiter of requests per key (a client address, a username).
#[derive(Debug)]
pub struct RateLimiter<K = IpAddr> {
    limit: u32,
    window: Duration,
    capacity: usize,
    windows: Mutex<HashMap<K, (Instant, u32)>>,
}

/// Logins per username.
pub type UsernameLimiter = RateLimiter<String>;

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// At most `limit` requests per `window` for one key.
    pub fn new(limit: u32, window: Duration) -> RateLimiter<K> {
        RateLimiter::with_capacity(limit, window, MAX_TRACKED)
    }

    /// Like [`RateLimiter::new`], remembering at most `capacity` keys (at least one).
    pub fn with_capacity(limit: u32, window: Duration, capacity: usize) -> RateLimiter<K> {
        RateLimiter { limit: limit.max(1), window, capacity: capacity.max(1), windows: Mutex::new(HashMap::new()) }
    }

    /// Counts a request for `key`: `Ok` if it is within the limit, else how long until it may retry.
    pub fn check<Q>(&self, key: &Q, now: Instant) -> Result<(), Duration>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        if !windows.contains_key(key) && windows.len() >= self.capacity {
            windows.retain(|_, (start, _)| now.duration_since(*start) < self.window);
            if windows.len() >= self.capacity {
                // One pass over a full map, only while it is full of live windows (an attack from many addresses);
                // each request it serves also costs an argon2 verification, which is far dearer.
                let fewest = windows.iter().min_by_key(|(_, (_, count))| *count).map(|(key, _)| key.clone());
                if let Some(fewest) = fewest {
                    windows.remove::<K>(&fewest);
                }
            }
        }
        let entry = match windows.get_mut(key) {
            Some(entry) => entry,
            None => windows.entry(key.to_owned()).or_insert((now, 0)),
        };
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        if entry.1 >= self.limit {
            return Err(self.window.saturating_sub(now.duration_since(entry.0)));
        }
        entry.1 += 1;
        Ok(())
    }

    /// How many keys are remembered.
    pub fn tracked(&self) -> usize {
        self.windows.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl UsernameLimiter {
    /// Counts a login attempt at `username`. A name that no user can have (`check_username` refuses it) is
    /// neither counted nor remembered: it cannot be an account, and the rule is public, so skipping it tells an
    /// attacker nothing.
    pub fn check_username(&self, username: &str, now: Instant) -> Result<(), Duration> {
        if crate::auth::principals::check_username(username).is_err() {
            return Ok(());
        }
        self.check(username, now)
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
        assert!(limiter.check(&a, start).is_ok());
        assert!(limiter.check(&a, start).is_ok());
        let wait = limiter.check(&a, start + Duration::from_secs(10)).err();
        assert_eq!(wait, Some(Duration::from_secs(50)));
        assert!(limiter.check(&b, start).is_ok(), "another address is not limited");
        assert!(limiter.check(&a, start + Duration::from_secs(60)).is_ok(), "a new window");
    }

    #[test]
    fn random_usernames_never_grow_the_map_past_its_capacity() {
        let limiter = UsernameLimiter::with_capacity(3, Duration::from_secs(60), 100);
        let start = Instant::now();
        for n in 0..1_000 {
            assert!(limiter.check(format!("random-{n}").as_str(), start).is_ok());
            assert!(limiter.tracked() <= 100);
        }
    }

    #[test]
    fn an_account_under_attack_outlives_a_spray_of_single_guesses() {
        let limiter = UsernameLimiter::with_capacity(3, Duration::from_secs(60), 100);
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check("alice", start).is_ok());
        }
        for n in 0..1_000 {
            let _ = limiter.check(format!("spray-{n}").as_str(), start);
        }
        assert!(limiter.check("alice", start).is_err(), "alice's window was evicted by the spray");
    }

    #[test]
    fn ended_windows_are_forgotten_before_live_ones() {
        let limiter = UsernameLimiter::with_capacity(1, Duration::from_secs(60), 2);
        let start = Instant::now();
        assert!(limiter.check("old", start).is_ok());
        let later = start + Duration::from_secs(61);
        assert!(limiter.check("alice", later).is_ok());
        assert!(limiter.check("bob", later).is_ok(), "the ended window of `old` made room");
        assert!(limiter.check("alice", later).is_err(), "alice's live window was kept");
    }
}
