//! Day and month boundaries in UTC, as the dashboard's figures and the payments filter count them.

use time::{Date, Duration, OffsetDateTime, Time};

/// Midnight UTC at the start of `date`.
pub(super) fn start_of_day(date: Date) -> OffsetDateTime {
    date.with_time(Time::MIDNIGHT).assume_utc()
}

/// Midnight UTC on the first of `date`'s month.
pub(super) fn start_of_month(date: Date) -> OffsetDateTime {
    start_of_day(date.replace_day(1).unwrap_or(date))
}

/// Midnight UTC on the first of the month after `date`'s.
pub(super) fn start_of_next_month(date: Date) -> OffsetDateTime {
    let (year, month) = match date.month() {
        time::Month::December => (date.year() + 1, time::Month::January),
        month => (date.year(), month.next()),
    };
    // Only fails past the calendar's last year; 31 days on is then as good a bound as any.
    Date::from_calendar_date(year, month, 1)
        .map(start_of_day)
        .unwrap_or_else(|_| start_of_day(date) + Duration::days(31))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_turn_over_at_the_year_end() {
        let day = time::macros::date!(2026 - 12 - 15);
        assert_eq!(start_of_month(day), time::macros::datetime!(2026-12-01 00:00 UTC));
        assert_eq!(start_of_next_month(day), time::macros::datetime!(2027-01-01 00:00 UTC));
        assert_eq!(start_of_day(day), time::macros::datetime!(2026-12-15 00:00 UTC));
    }
}
