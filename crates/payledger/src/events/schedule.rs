//! When a failed delivery is tried again: a list of waits, one after each failed attempt, each spread by ±20 %
//! so that the deliveries of one outage do not all come back at the same instant, and never shorter than a
//! receiver's `Retry-After`. After the last wait's attempt fails, the delivery is failed. No I/O and no clock:
//! the delivery worker adds the wait to the attempt's time.
//!
//! The operator writes a schedule as `5s,5m,30m,2h,5h,10h,10h` (units `ms`, `s`, `m`, `h`, `d`). `ms` is there
//! so that the integration tests can run a whole schedule in a second; a production schedule has no reason for it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The most waits a schedule holds: with the longest wait that is twenty weeks of retries, past any use.
pub const MAX_STEPS: usize = 20;
/// The longest single wait: a receiver down for longer is better served by a replay than by a retry.
pub const MAX_STEP: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// The spread of each wait, in percent either side of it.
pub const JITTER_PERCENT: u64 = 20;
/// The default schedule, as the setting writes it: eight attempts over about a day and a half.
pub const DEFAULT_SCHEDULE: &str = "5s,5m,30m,2h,5h,10h,10h";

/// The units a wait may be written in, longest name first so that `ms` is not read as `m` followed by junk.
const UNITS: [(&str, Duration); 5] = [
    ("ms", Duration::from_millis(1)),
    ("s", Duration::from_secs(1)),
    ("m", Duration::from_secs(60)),
    ("h", Duration::from_secs(60 * 60)),
    ("d", Duration::from_secs(24 * 60 * 60)),
];

/// The waits after attempt 1, 2, …: a delivery gets one attempt more than the schedule has waits.
///
/// Always 1 to [`MAX_STEPS`] waits, each positive and at most [`MAX_STEP`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

/// Why a schedule's text (or list of waits) is not one; each names the entry at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// No waits at all.
    #[error("a retry schedule has at least one wait, such as 5s,5m,30m")]
    Empty,
    /// More than [`MAX_STEPS`] waits.
    #[error("a retry schedule has at most {MAX_STEPS} waits, not {0}")]
    TooMany(usize),
    /// An entry that is not a positive whole number followed by a unit.
    #[error("retry wait {0:?} is not a whole number followed by ms, s, m, h or d")]
    Malformed(String),
    /// An entry of zero.
    #[error("retry wait {0:?} is zero; every wait is positive")]
    Zero(String),
    /// An entry longer than [`MAX_STEP`].
    #[error("retry wait {0:?} is longer than 7 days")]
    TooLong(String),
}

impl RetrySchedule {
    /// A schedule of `steps`, checked like a parsed one.
    pub fn new(steps: Vec<Duration>) -> Result<RetrySchedule, ScheduleError> {
        if steps.is_empty() {
            return Err(ScheduleError::Empty);
        }
        if steps.len() > MAX_STEPS {
            return Err(ScheduleError::TooMany(steps.len()));
        }
        for step in &steps {
            if step.is_zero() {
                return Err(ScheduleError::Zero(format!("{step:?}")));
            }
            if *step > MAX_STEP {
                return Err(ScheduleError::TooLong(format!("{step:?}")));
            }
        }
        Ok(RetrySchedule(steps))
    }

    /// Reads a schedule such as `5s,5m,30m,2h` (spaces around the commas are allowed).
    pub fn parse(text: &str) -> Result<RetrySchedule, ScheduleError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ScheduleError::Empty);
        }
        let entries: Vec<&str> = text.split(',').map(str::trim).collect();
        if entries.len() > MAX_STEPS {
            return Err(ScheduleError::TooMany(entries.len()));
        }
        let steps = entries.into_iter().map(parse_step).collect::<Result<Vec<_>, _>>()?;
        RetrySchedule::new(steps)
    }

    /// The waits, in order.
    pub fn steps(&self) -> &[Duration] {
        &self.0
    }

    /// How many attempts a delivery gets in all: one more than the schedule has waits.
    pub fn attempts(&self) -> u32 {
        // At most MAX_STEPS + 1, so the conversion cannot fail; saturate rather than panic all the same.
        u32::try_from(self.0.len()).unwrap_or(u32::MAX).saturating_add(1)
    }

    /// How long to wait after `attempts_made` attempts have failed before the next one, or `None` when they were
    /// all the attempts the schedule gives (the delivery is failed).
    ///
    /// The wait is the schedule's step with a uniform ±[`JITTER_PERCENT`] spread, raised to `retry_after` (the
    /// receiver's `Retry-After`, which the caller has capped) when that is longer: a receiver that names its
    /// recovery time is not called earlier. With no attempt made yet the first one is due at once.
    pub fn next_attempt(
        &self,
        attempts_made: u32,
        retry_after: Option<Duration>,
        rng: &mut impl rand::Rng,
    ) -> Option<Duration> {
        let floor = retry_after.unwrap_or(Duration::ZERO);
        let Some(index) = attempts_made.checked_sub(1) else {
            return Some(floor);
        };
        let step = *self.0.get(usize::try_from(index).ok()?)?;
        Some(jittered(step, rng).max(floor))
    }
}

impl Default for RetrySchedule {
    /// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: eight attempts, the last about 33 hours after the first.
    fn default() -> RetrySchedule {
        const HOUR: u64 = 60 * 60;
        RetrySchedule(vec![
            Duration::from_secs(5),
            Duration::from_secs(5 * 60),
            Duration::from_secs(30 * 60),
            Duration::from_secs(2 * HOUR),
            Duration::from_secs(5 * HOUR),
            Duration::from_secs(10 * HOUR),
            Duration::from_secs(10 * HOUR),
        ])
    }
}

impl FromStr for RetrySchedule {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<RetrySchedule, ScheduleError> {
        RetrySchedule::parse(text)
    }
}

impl fmt::Display for RetrySchedule {
    /// The setting's form, each wait in the largest unit that writes it exactly (so parsing it gives it back).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, step) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            write_step(f, *step)?;
        }
        Ok(())
    }
}

/// One entry: digits, then a unit.
fn parse_step(entry: &str) -> Result<Duration, ScheduleError> {
    let malformed = || ScheduleError::Malformed(entry.to_owned());
    let digits_end = entry.find(|c: char| !c.is_ascii_digit()).unwrap_or(entry.len());
    let (digits, unit) = entry.split_at(digits_end);
    if digits.is_empty() {
        return Err(malformed());
    }
    let (_, size) = UNITS.iter().find(|(name, _)| *name == unit).ok_or_else(malformed)?;
    // Many digits overflow u64; they are far past the longest wait, so say that rather than "malformed".
    let count: u64 = digits.parse().map_err(|_| ScheduleError::TooLong(entry.to_owned()))?;
    if count == 0 {
        return Err(ScheduleError::Zero(entry.to_owned()));
    }
    let count = u32::try_from(count).map_err(|_| ScheduleError::TooLong(entry.to_owned()))?;
    let step = size.checked_mul(count).ok_or_else(|| ScheduleError::TooLong(entry.to_owned()))?;
    if step > MAX_STEP {
        return Err(ScheduleError::TooLong(entry.to_owned()));
    }
    Ok(step)
}

/// One wait in the largest unit that divides it; a wait finer than a millisecond (only [`RetrySchedule::new`]
/// makes one) is written in whole milliseconds, rounded up so that it stays positive.
fn write_step(f: &mut fmt::Formatter<'_>, step: Duration) -> fmt::Result {
    let nanos = step.as_nanos();
    for (name, size) in UNITS.iter().rev() {
        let unit = size.as_nanos();
        if nanos.is_multiple_of(unit) {
            return write!(f, "{}{name}", nanos / unit);
        }
    }
    write!(f, "{}ms", nanos.div_ceil(1_000_000))
}

/// `step` moved by a uniform random amount of at most [`JITTER_PERCENT`] of it, either way, in whole nanoseconds.
fn jittered(step: Duration, rng: &mut impl rand::Rng) -> Duration {
    // A step is at most MAX_STEP (about 6 × 10^14 ns), so it fits in u64 and 2 × spread cannot overflow.
    let nanos = u64::try_from(step.as_nanos()).unwrap_or(u64::MAX);
    let spread = nanos / 100 * JITTER_PERCENT + nanos % 100 * JITTER_PERCENT / 100;
    let offset = rng.random_range(0..=spread.saturating_mul(2));
    Duration::from_nanos(nanos.saturating_sub(spread).saturating_add(offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(15)
    }

    #[test]
    fn the_default_schedule_reads_and_writes_as_the_setting() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.to_string(), DEFAULT_SCHEDULE);
        assert_eq!(RetrySchedule::parse(DEFAULT_SCHEDULE), Ok(schedule.clone()));
        assert_eq!(schedule.attempts(), 8);
    }

    #[test]
    fn a_schedule_parses_every_unit() {
        let schedule: RetrySchedule = " 250ms, 5s ,2m,3h,7d".parse().expect("schedule");
        assert_eq!(
            schedule.steps(),
            [
                Duration::from_millis(250),
                Duration::from_secs(5),
                Duration::from_secs(120),
                Duration::from_secs(3 * 3600),
                MAX_STEP,
            ]
        );
        assert_eq!(schedule.attempts(), 6);
    }

    #[test]
    fn display_writes_each_wait_in_its_largest_exact_unit_and_parses_back() {
        for text in ["1s", "90s,1m,60m,1d", "1500ms,2000ms,24h,25h", "1ms,59s,61m,7d"] {
            let schedule = RetrySchedule::parse(text).expect("schedule");
            let written = schedule.to_string();
            assert_eq!(RetrySchedule::parse(&written), Ok(schedule), "{text} written as {written}");
        }
        assert_eq!(RetrySchedule::parse("90s,60m,2000ms,24h").map(|s| s.to_string()), Ok("90s,1h,2s,1d".into()));
        let fine = RetrySchedule::new(vec![Duration::from_micros(1500)]).expect("schedule");
        assert_eq!(fine.to_string(), "2ms");
    }

    #[test]
    fn a_bad_unit_is_refused_naming_the_entry() {
        for (text, entry) in [("5s,5x", "5x"), ("5", "5"), ("s", "s"), ("5 s", "5 s"), ("-5s", "-5s"), ("5S", "5S")] {
            assert_eq!(RetrySchedule::parse(text), Err(ScheduleError::Malformed(entry.into())), "{text}");
        }
        let message = RetrySchedule::parse("5s,10y").expect_err("bad unit").to_string();
        assert!(message.contains("\"10y\""), "{message}");
    }

    #[test]
    fn a_zero_wait_is_refused() {
        assert_eq!(RetrySchedule::parse("5s,0m"), Err(ScheduleError::Zero("0m".into())));
        assert_eq!(RetrySchedule::parse("000s"), Err(ScheduleError::Zero("000s".into())));
        assert!(matches!(RetrySchedule::new(vec![Duration::ZERO]), Err(ScheduleError::Zero(_))));
    }

    #[test]
    fn an_empty_schedule_or_entry_is_refused() {
        assert_eq!(RetrySchedule::parse(""), Err(ScheduleError::Empty));
        assert_eq!(RetrySchedule::parse("  "), Err(ScheduleError::Empty));
        assert_eq!(RetrySchedule::parse("5s,,5m"), Err(ScheduleError::Malformed(String::new())));
        assert_eq!(RetrySchedule::parse("5s,"), Err(ScheduleError::Malformed(String::new())));
        assert_eq!(RetrySchedule::new(Vec::new()), Err(ScheduleError::Empty));
    }

    #[test]
    fn more_than_twenty_waits_are_refused() {
        let twenty = vec!["1s"; MAX_STEPS].join(",");
        assert_eq!(RetrySchedule::parse(&twenty).map(|s| s.attempts()), Ok(21));
        let twenty_one = vec!["1s"; MAX_STEPS + 1].join(",");
        assert_eq!(RetrySchedule::parse(&twenty_one), Err(ScheduleError::TooMany(21)));
    }

    #[test]
    fn a_wait_longer_than_a_week_is_refused() {
        assert_eq!(RetrySchedule::parse("8d"), Err(ScheduleError::TooLong("8d".into())));
        assert_eq!(RetrySchedule::parse("169h"), Err(ScheduleError::TooLong("169h".into())));
        assert_eq!(RetrySchedule::parse("604801s"), Err(ScheduleError::TooLong("604801s".into())));
        assert_eq!(RetrySchedule::parse("168h,604800s"), Ok(RetrySchedule(vec![MAX_STEP, MAX_STEP])));
        let huge = "99999999999999999999999s";
        assert_eq!(RetrySchedule::parse(huge), Err(ScheduleError::TooLong(huge.into())));
        assert!(matches!(RetrySchedule::new(vec![MAX_STEP + Duration::from_secs(1)]), Err(ScheduleError::TooLong(_))));
    }

    #[test]
    fn every_wait_stays_within_twenty_percent_of_its_step_and_spreads() {
        let schedule = RetrySchedule::default();
        let mut rng = rng();
        for (index, step) in schedule.steps().iter().enumerate() {
            let attempts_made = u32::try_from(index).expect("small") + 1;
            let (low, high) = (*step * 4 / 5, *step * 6 / 5);
            let (mut below, mut above) = (false, false);
            for _ in 0..2_000 {
                let wait = schedule.next_attempt(attempts_made, None, &mut rng).expect("a wait");
                assert!(low <= wait && wait <= high, "step {step:?}: {wait:?}");
                below |= wait < *step * 9 / 10;
                above |= wait > *step * 11 / 10;
            }
            assert!(below && above, "step {step:?} is spread both ways");
        }
    }

    #[test]
    fn a_tiny_step_is_never_jittered_below_zero_or_above_its_bound() {
        let schedule = RetrySchedule::parse("1ms").expect("schedule");
        let mut rng = rng();
        for _ in 0..1_000 {
            let wait = schedule.next_attempt(1, None, &mut rng).expect("a wait");
            assert!(Duration::from_micros(800) <= wait && wait <= Duration::from_micros(1200), "{wait:?}");
        }
    }

    #[test]
    fn the_delivery_gives_up_after_the_last_step() {
        let schedule = RetrySchedule::default();
        let mut rng = rng();
        assert!(schedule.next_attempt(7, None, &mut rng).is_some());
        assert_eq!(schedule.next_attempt(8, None, &mut rng), None);
        assert_eq!(schedule.next_attempt(schedule.attempts(), None, &mut rng), None);
        assert_eq!(schedule.next_attempt(u32::MAX, Some(Duration::from_secs(1)), &mut rng), None);
    }

    #[test]
    fn the_first_attempt_is_due_at_once() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.next_attempt(0, None, &mut rng()), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_raises_the_wait_but_never_lowers_it() {
        let schedule = RetrySchedule::default();
        let mut rng = rng();
        let hour = Duration::from_secs(3600);
        assert_eq!(schedule.next_attempt(1, Some(hour), &mut rng), Some(hour));
        let wait = schedule.next_attempt(5, Some(Duration::from_secs(1)), &mut rng).expect("a wait");
        assert!(wait >= Duration::from_secs(4 * 3600), "{wait:?}");
        // Retry-After does not buy attempts past the schedule.
        assert_eq!(schedule.next_attempt(8, Some(hour), &mut rng), None);
    }
}
