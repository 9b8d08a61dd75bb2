//! A per-endpoint rate limit on outbound deliveries, so that a backlog (a receiver back from an outage, a
//! recovery replay) does not hit one receiver with everything at once: a token bucket per endpoint holding at
//! most `per_second` tokens, refilled at `per_second` tokens a second.
//!
//! In memory and per process: with several worker processes each keeps its own buckets, so a receiver sees at
//! most the rate times the number of processes. The caller holds the [`Throttle`] behind its own lock and gives
//! it the time, which keeps it free of clocks and easy to test.
//!
//! All arithmetic is in integers. A bucket counts credit in units of one nanosecond at one token a second, so a
//! token is [`TOKEN`] units and an endpoint limited to `r` a second gains exactly `r` units per nanosecond.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The most endpoints remembered at once. Endpoints are configured by an administrator, not chosen by a
/// caller, so this is a bound that a real installation should never reach.
pub const MAX_ENDPOINTS: usize = 10_000;
/// How long an endpoint may go without a delivery before its bucket is forgotten. A bucket refills completely
/// in one second (its burst is one second's worth), so forgetting any bucket idle for longer than that changes
/// nothing: the endpoint comes back to a full bucket either way.
pub const IDLE_FORGET: Duration = Duration::from_secs(60);
/// One token, in credit units (nanoseconds at one token a second).
pub const TOKEN: u128 = 1_000_000_000;
/// How long a bucket takes to refill from empty, whatever its rate: the burst is one second's worth.
const FULL_REFILL: Duration = Duration::from_secs(1);

/// The token buckets of the endpoints delivered to recently.
#[derive(Debug)]
pub struct Throttle {
    capacity: usize,
    buckets: HashMap<String, Bucket>,
    /// Per endpoint, the last slot given to a delivery the limit put off ([`Throttle::reserve`]).
    reserved: HashMap<String, Instant>,
    /// When idle buckets were last forgotten; `None` before the first delivery.
    swept: Option<Instant>,
}

/// One endpoint's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Credit in units of [`TOKEN`] per token, at most `per_second` tokens.
    credit: u128,
    /// When `credit` was last brought up to date.
    updated: Instant,
}

impl Default for Throttle {
    fn default() -> Throttle {
        Throttle::new()
    }
}

impl Throttle {
    /// A throttle remembering at most [`MAX_ENDPOINTS`] endpoints.
    pub fn new() -> Throttle {
        Throttle::with_capacity(MAX_ENDPOINTS)
    }

    /// A throttle remembering at most `capacity` endpoints (at least one).
    pub fn with_capacity(capacity: usize) -> Throttle {
        Throttle { capacity: capacity.max(1), buckets: HashMap::new(), reserved: HashMap::new(), swept: None }
    }

    /// How long a delivery to `endpoint` that [`Throttle::admit`] refused waits: until its own slot, one token's
    /// time after the slot of the delivery put off before it, so a backlog comes back spread over the seconds
    /// it needs instead of all at the next token.
    pub fn reserve(&mut self, endpoint: &str, per_second: u32, now: Instant) -> Duration {
        let step = FULL_REFILL / per_second.max(1);
        let last = self.reserved.get(endpoint).copied().filter(|slot| *slot > now).unwrap_or(now);
        let slot = last + step;
        if self.reserved.len() >= self.capacity {
            self.reserved.retain(|_, reserved| *reserved > now);
        }
        if self.reserved.len() < self.capacity || self.reserved.contains_key(endpoint) {
            self.reserved.insert(endpoint.to_owned(), slot);
        }
        slot - now
    }

    /// Takes a token for one delivery to `endpoint`, limited to `per_second` deliveries a second with a burst of
    /// as many: `Ok` to send now, or `Err` with how long until a token is due (nothing is taken then).
    ///
    /// A rate of zero is taken as one a second: the limit slows an endpoint down and never stops it, which is
    /// what disabling it is for. `now` should not go backwards; if it does, no time is taken to have passed.
    pub fn admit(&mut self, endpoint: &str, per_second: u32, now: Instant) -> Result<(), Duration> {
        let rate = u128::from(per_second.max(1));
        let burst = rate * TOKEN;
        self.forget_idle(now);
        if !self.buckets.contains_key(endpoint) {
            self.make_room(now);
        }
        let bucket = match self.buckets.get_mut(endpoint) {
            Some(bucket) => bucket,
            None => self.buckets.entry(endpoint.to_owned()).or_insert(Bucket { credit: burst, updated: now }),
        };
        let elapsed = now.saturating_duration_since(bucket.updated).as_nanos();
        // The minimum also lowers the credit of an endpoint whose rate was lowered since its last delivery.
        bucket.credit = bucket.credit.saturating_add(elapsed.saturating_mul(rate)).min(burst);
        bucket.updated = bucket.updated.max(now);
        if bucket.credit >= TOKEN {
            bucket.credit -= TOKEN;
            return Ok(());
        }
        // Rounded up, so that a caller who waits exactly this long finds a whole token.
        let wait_nanos = (TOKEN - bucket.credit).div_ceil(rate);
        Err(Duration::from_nanos(u64::try_from(wait_nanos).unwrap_or(u64::MAX)))
    }

    /// How many endpoints are remembered.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    /// Forgets the buckets idle for [`IDLE_FORGET`], at most once per that period, so that memory follows the
    /// endpoints in use even when the map is far from full.
    fn forget_idle(&mut self, now: Instant) {
        let due = self.swept.is_none_or(|swept| now.saturating_duration_since(swept) >= IDLE_FORGET);
        if due {
            self.buckets.retain(|_, bucket| now.saturating_duration_since(bucket.updated) < IDLE_FORGET);
            self.swept = Some(now);
        }
    }

    /// Makes room for one more endpoint when the map is full: first by forgetting the buckets that have refilled
    /// (which loses nothing), else by forgetting the one idle longest, which at worst gives that endpoint a new
    /// burst. One pass over the map, only when it is full.
    fn make_room(&mut self, now: Instant) {
        if self.buckets.len() < self.capacity {
            return;
        }
        self.buckets.retain(|_, bucket| now.saturating_duration_since(bucket.updated) < FULL_REFILL);
        if self.buckets.len() < self.capacity {
            return;
        }
        let idlest = self.buckets.iter().min_by_key(|(_, bucket)| bucket.updated).map(|(endpoint, _)| endpoint.clone());
        if let Some(idlest) = idlest {
            self.buckets.remove(&idlest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_put_off_get_successive_slots() {
        let mut throttle = Throttle::new();
        let start = Instant::now();
        let waits: Vec<Duration> = (0..4).map(|_| throttle.reserve("ep", 10, start)).collect();
        assert_eq!(waits, [100, 200, 300, 400].map(Duration::from_millis));
        // Once the slots have passed, the next starts from now again.
        assert_eq!(throttle.reserve("ep", 10, start + Duration::from_secs(1)), Duration::from_millis(100));
        assert_eq!(throttle.reserve("other", 2, start), Duration::from_millis(500));
    }

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn a_burst_of_the_rate_passes_then_the_next_waits_for_a_token() {
        let mut throttle = Throttle::new();
        let start = Instant::now();
        for _ in 0..5 {
            assert_eq!(throttle.admit("ep_a", 5, start), Ok(()));
        }
        assert_eq!(throttle.admit("ep_a", 5, start), Err(ms(200)));
        // A refusal takes nothing: asking again at once gets the same answer.
        assert_eq!(throttle.admit("ep_a", 5, start), Err(ms(200)));
        assert_eq!(throttle.admit("ep_a", 5, start + ms(199)), Err(ms(1)));
        assert_eq!(throttle.admit("ep_a", 5, start + ms(200)), Ok(()));
        assert_eq!(throttle.admit("ep_a", 5, start + ms(200)), Err(ms(200)));
    }

    #[test]
    fn a_steady_caller_gets_the_burst_then_exactly_the_rate() {
        let mut throttle = Throttle::new();
        let start = Instant::now();
        let admitted = (0..=10_000).filter(|t| throttle.admit("ep_a", 10, start + ms(*t)).is_ok()).count();
        // Ten at once, then one every 100 ms for ten seconds.
        assert_eq!(admitted, 10 + 100);
    }

    #[test]
    fn the_wait_is_rounded_up_to_a_whole_token() {
        let mut throttle = Throttle::new();
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(throttle.admit("ep_a", 3, start), Ok(()));
        }
        // A third of a second is not a whole number of nanoseconds; waiting the rounded-up figure is enough.
        let wait = throttle.admit("ep_a", 3, start).expect_err("over the rate");
        assert_eq!(wait, Duration::from_nanos(333_333_334));
        assert_eq!(throttle.admit("ep_a", 3, start + wait - Duration::from_nanos(1)).map_err(|_| ()), Err(()));
        assert_eq!(throttle.admit("ep_a", 3, start + wait), Ok(()));
    }

    #[test]
    fn endpoints_are_limited_apart() {
        let mut throttle = Throttle::new();
        let start = Instant::now();
        assert_eq!(throttle.admit("ep_a", 1, start), Ok(()));
        assert_eq!(throttle.admit("ep_a", 1, start), Err(ms(1000)));
        assert_eq!(throttle.admit("ep_b", 1, start), Ok(()));
        assert_eq!(throttle.tracked(), 2);
    }

    #[test]
    fn a_bucket_never_holds_more_than_one_second_of_tokens() {
        let mut throttle = Throttle::new();
        let start = Instant::now();
        assert_eq!(throttle.admit("ep_a", 2, start), Ok(()));
        let later = start + ms(30_000);
        assert_eq!(throttle.admit("ep_a", 2, later), Ok(()));
        assert_eq!(throttle.admit("ep_a", 2, later), Ok(()));
        assert_eq!(throttle.admit("ep_a", 2, later), Err(ms(500)));
    }

    #[test]
    fn a_lowered_rate_lowers_the_burst_at_once() {
        let mut throttle = Throttle::new();
        let start = Instant::now();
        assert_eq!(throttle.admit("ep_a", 100, start), Ok(()));
        assert_eq!(throttle.admit("ep_a", 2, start), Ok(()));
        assert_eq!(throttle.admit("ep_a", 2, start), Ok(()));
        assert_eq!(throttle.admit("ep_a", 2, start), Err(ms(500)));
    }

    #[test]
    fn a_rate_of_zero_is_one_a_second() {
        let mut throttle = Throttle::new();
        let start = Instant::now();
        assert_eq!(throttle.admit("ep_a", 0, start), Ok(()));
        assert_eq!(throttle.admit("ep_a", 0, start), Err(ms(1000)));
    }

    #[test]
    fn a_clock_that_steps_back_refills_nothing() {
        let mut throttle = Throttle::new();
        let start = Instant::now() + ms(5_000);
        assert_eq!(throttle.admit("ep_a", 1, start), Ok(()));
        assert_eq!(throttle.admit("ep_a", 1, start - ms(3_000)), Err(ms(1000)));
        assert_eq!(throttle.admit("ep_a", 1, start + ms(1_000)), Ok(()));
    }

    #[test]
    fn endpoints_idle_for_a_minute_are_forgotten() {
        let mut throttle = Throttle::new();
        let start = Instant::now();
        assert_eq!(throttle.admit("ep_a", 1, start), Ok(()));
        assert_eq!(throttle.admit("ep_b", 1, start + ms(30_000)), Ok(()));
        assert_eq!(throttle.admit("ep_c", 1, start + ms(60_000)), Ok(()));
        assert_eq!(throttle.tracked(), 2, "ep_a idle for a minute is forgotten");
        assert_eq!(throttle.admit("ep_c", 1, start + ms(120_000)), Ok(()));
        assert_eq!(throttle.tracked(), 1, "ep_b is forgotten in the next sweep");
    }

    #[test]
    fn a_full_map_forgets_refilled_buckets_then_the_idlest() {
        let mut throttle = Throttle::with_capacity(3);
        let start = Instant::now();
        for (n, endpoint) in ["ep_a", "ep_b", "ep_c"].into_iter().enumerate() {
            let at = start + ms(u64::try_from(n).expect("small") * 10);
            assert_eq!(throttle.admit(endpoint, 1, at), Ok(()));
        }
        // All three are live (used within a second): the idlest, ep_a, makes room.
        assert_eq!(throttle.admit("ep_d", 1, start + ms(100)), Ok(()));
        assert_eq!(throttle.tracked(), 3);
        assert_eq!(throttle.admit("ep_b", 1, start + ms(100)), Err(ms(910)));
        assert_eq!(throttle.admit("ep_a", 1, start + ms(100)), Ok(()), "ep_a came back with a new bucket");
        assert_eq!(throttle.tracked(), 3);
        // Two seconds on, every bucket has refilled, so a new endpoint clears them all and loses nothing.
        assert_eq!(throttle.admit("ep_e", 1, start + ms(2_100)), Ok(()));
        assert_eq!(throttle.tracked(), 1);
    }
}
