//! Rate limits for the endpoints that guess-resistant secrets depend on (login, token refresh): every request per
//! client address, and failed password checks per username, so that an attacker with many addresses gets a
//! bounded number of guesses at one account.
//!
//! A fixed window per key: at most `limit` counts per `window`. Kept in memory per process, bounded in size:
//! with several instances each limits on its own, which still caps guessing per instance.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use rand::TryRngCore;
use sha2::Sha256;

/// The most keys remembered per limiter.
///
/// The map must not grow without bound when an attacker sends random usernames (or IPv6 addresses), so it has a
/// hard cap. Keying the username limit on existing users only would bound it too, but a username that is never
/// limited would then tell an attacker it does not exist (the logins answer unknown users exactly like wrong
/// passwords). Instead, when the map is full, windows that have ended are forgotten first, then the key with the
/// fewest requests: a name sprayed once loses one count, while an account under attack has many and is the last
/// to go, so flushing it needs as many requests as the map holds keys, all within one window.
///
/// Making room when the map is full of live windows is a pass over the map (a `retain`, then a minimum) under the
/// limiter's one mutex, per new key: O(n) at 100,000 keys is well under a millisecond, and only an attack that
/// fills the map pays it, each of its requests also paying an argon2 verification, which is far dearer. A
/// bucketed eviction would make it O(1) if that ever shows in a profile.
pub const MAX_TRACKED: usize = 100_000;

/// A limiter of requests per key (a client address, a username).
#[derive(Debug)]
pub struct RateLimiter<K = IpAddr> {
    limit: u32,
    window: Duration,
    capacity: usize,
    windows: Mutex<HashMap<K, (Instant, u32)>>,
}

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
        self.count(key, now).map(|_| ())
    }

    /// Like [`RateLimiter::check`], answering the start of the window the request was counted in.
    fn count<Q>(&self, key: &Q, now: Instant) -> Result<Instant, Duration>
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
        Ok(entry.0)
    }

    /// Gives back one count of `key` taken in the window that started at `window` (a reserved attempt that
    /// turned out to be no guess). A count of a window that has since ended (or of a key evicted and seen again)
    /// is not given back: it would take away a count of another window.
    fn refund<Q>(&self, key: &Q, window: Instant)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = windows.get_mut(key)
            && entry.0 == window
        {
            entry.1 = entry.1.saturating_sub(1);
        }
    }

    /// How many keys are remembered.
    pub fn tracked(&self) -> usize {
        self.windows.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// The key of a username in [`UsernameLimiter`]: 16 bytes of an HMAC under a per-process random key. A map
/// of these holds no attacker-chosen text (a username can be a password typed in the wrong field) and stays
/// ~5 MB at [`MAX_TRACKED`] keys, where usernames of up to 600 bytes could take tens of MB; the random key
/// means no one can pick names that collide.
type NameKey = [u8; 16];

/// Failed password checks per username, from whatever addresses they come.
///
/// Only failures count: a login with the right password never uses up the account's budget, so a service
/// account used from many hosts keeps working. An attempt holds a count while its password is verified, so
/// concurrent guesses cannot all pass the check before any of them is counted (which also means that more
/// logins of one account at the same instant than its budget are refused). The count is kept only when the
/// check says the password was wrong ([`Attempt::failed`]); in every other case (the right password, a
/// database error, a request dropped by its timeout or its client, a panic) the attempt gives it back when
/// dropped: its answer was never a verdict on the password, so it was no guess.
pub struct UsernameLimiter {
    key: [u8; 32],
    failures: RateLimiter<NameKey>,
}

impl std::fmt::Debug for UsernameLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsernameLimiter").field("failures", &self.failures).finish_non_exhaustive()
    }
}

/// A password check in progress at one username (see [`UsernameLimiter::attempt`]): its count is given back
/// when it is dropped, unless [`Attempt::failed`] kept it.
#[derive(Debug)]
#[must_use = "a wrong password must be counted with `failed`"]
pub struct Attempt<'a> {
    limiter: &'a UsernameLimiter,
    /// The username's key and the start of the window its count was taken in; `None` for a name no user can have.
    counted: Option<(NameKey, Instant)>,
}

impl Attempt<'_> {
    /// The password was wrong (or the user unknown or disabled): the count stays.
    pub fn failed(mut self) {
        self.counted = None;
    }

    /// The password was right: the count is given back.
    pub fn succeeded(self) {}
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if let Some((key, window)) = self.counted.take() {
            self.limiter.failures.refund(&key, window);
        }
    }
}

impl UsernameLimiter {
    /// At most `limit` failed checks per `window` for one username, under a fresh random key.
    pub fn new(limit: u32, window: Duration) -> Result<UsernameLimiter, rand::rand_core::OsError> {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.try_fill_bytes(&mut key)?;
        Ok(UsernameLimiter::with_key(limit, window, MAX_TRACKED, key))
    }

    /// Like [`UsernameLimiter::new`], remembering at most `capacity` usernames, under `key`.
    pub fn with_key(limit: u32, window: Duration, capacity: usize, key: [u8; 32]) -> UsernameLimiter {
        UsernameLimiter { key, failures: RateLimiter::with_capacity(limit, window, capacity) }
    }

    fn name_key(&self, username: &str) -> NameKey {
        let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key) {
            Ok(mac) => mac,
            // HMAC takes keys of any length; this cannot happen.
            Err(_) => return [0; 16],
        };
        mac.update(username.as_bytes());
        let mut key = [0u8; 16];
        key.copy_from_slice(&mac.finalize().into_bytes()[..16]);
        key
    }

    /// Starts a password check at `username`: `Err` with how long until it may retry if the username is past
    /// its failures, else the attempt, counted until it is dropped and kept only by [`Attempt::failed`].
    /// A name that no user can have (`check_username` refuses it) is neither counted nor remembered: it cannot
    /// be an account, and the rule is public, so skipping it tells an attacker nothing.
    pub fn attempt(&self, username: &str, now: Instant) -> Result<Attempt<'_>, Duration> {
        if crate::auth::principals::check_username(username).is_err() {
            return Ok(Attempt { limiter: self, counted: None });
        }
        let key = self.name_key(username);
        let window = self.failures.count(&key, now)?;
        Ok(Attempt { limiter: self, counted: Some((key, window)) })
    }

    /// How many usernames are remembered.
    pub fn tracked(&self) -> usize {
        self.failures.tracked()
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
        let limiter = UsernameLimiter::with_key(3, Duration::from_secs(60), 100, [7; 32]);
        let start = Instant::now();
        for n in 0..1_000 {
            limiter.attempt(&format!("random-{n}"), start).expect("one guess each").failed();
            assert!(limiter.tracked() <= 100);
        }
    }

    #[test]
    fn an_account_under_attack_outlives_a_spray_of_single_guesses() {
        let limiter = UsernameLimiter::with_key(3, Duration::from_secs(60), 100, [7; 32]);
        let start = Instant::now();
        for _ in 0..3 {
            limiter.attempt("alice", start).expect("within the limit").failed();
        }
        for n in 0..1_000 {
            limiter.attempt(&format!("spray-{n}"), start).map(Attempt::failed).ok();
        }
        assert!(limiter.attempt("alice", start).is_err(), "alice's window was evicted by the spray");
    }

    #[test]
    fn ended_windows_are_forgotten_before_live_ones() {
        let limiter = UsernameLimiter::with_key(1, Duration::from_secs(60), 2, [7; 32]);
        let start = Instant::now();
        limiter.attempt("old", start).map(Attempt::failed).ok();
        let later = start + Duration::from_secs(61);
        limiter.attempt("alice", later).expect("a first guess").failed();
        limiter.attempt("bob", later).expect("the ended window of `old` made room").failed();
        assert!(limiter.attempt("alice", later).is_err(), "alice's live window was kept");
    }

    #[test]
    fn a_check_outliving_its_window_gives_nothing_back_to_the_next() {
        let limiter = UsernameLimiter::with_key(1, Duration::from_secs(60), 100, [7; 32]);
        let start = Instant::now();
        let slow = limiter.attempt("alice", start).expect("the first window");
        let later = start + Duration::from_secs(61);
        limiter.attempt("alice", later).expect("a new window").failed();
        drop(slow);
        assert!(limiter.attempt("alice", later).is_err(), "the new window's failure was not taken back");
    }

    #[test]
    fn only_failed_checks_count_against_a_username() {
        let limiter = UsernameLimiter::with_key(2, Duration::from_secs(60), 100, [7; 32]);
        let start = Instant::now();
        for _ in 0..10 {
            limiter.attempt("service", start).expect("successes never use up the budget").succeeded();
        }
        // A check that ended without a verdict (a dropped request, a database error) is given back too.
        drop(limiter.attempt("service", start).expect("an interrupted check"));
        limiter.attempt("service", start).expect("a first failure").failed();
        limiter.attempt("service", start).expect("a second failure").failed();
        assert_eq!(limiter.attempt("service", start).err(), Some(Duration::from_secs(60)), "past two failures");
        assert!(limiter.attempt("other", start).is_ok(), "another username is not limited");
    }
}
