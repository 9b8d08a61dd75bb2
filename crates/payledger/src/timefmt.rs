//! Time formatting shared by the stores and the API.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// RFC 3339 text in UTC, e.g. `2024-04-27T21:00:00Z`; falls back to the Unix epoch text for dates
/// outside RFC 3339's range, which input validation never lets in.
pub fn rfc3339(moment: OffsetDateTime) -> String {
    moment.to_offset(time::UtcOffset::UTC).format(&Rfc3339).unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// The instant truncated to whole microseconds, the finest precision PostgreSQL stores: what is returned
/// to a client is then exactly what either backend reads back later.
pub fn to_micros(moment: OffsetDateTime) -> OffsetDateTime {
    moment.replace_nanosecond(moment.nanosecond() / 1_000 * 1_000).unwrap_or(moment)
}

/// A calendar date as SQLite stores it: `YYYY-MM-DD` text, which sorts and compares as the date does.
pub fn sqlite_date(date: time::Date) -> String {
    date.to_string()
}

/// The fixed-width UTC text SQLite stores times as, e.g. `2024-04-27T21:00:00.000000Z`. Every stored time
/// has the same width, so text order is time order and range queries compare correctly.
pub fn sqlite_text(moment: OffsetDateTime) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    moment.to_offset(time::UtcOffset::UTC).format(FORMAT).unwrap_or_else(|_| "1970-01-01T00:00:00.000000Z".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_text_has_one_width_so_text_order_is_time_order() {
        let whole = time::macros::datetime!(2024-07-01 00:00:00 UTC);
        let later = time::macros::datetime!(2024-07-01 00:00:00.5 UTC);
        assert_eq!(sqlite_text(whole), "2024-07-01T00:00:00.000000Z");
        assert_eq!(sqlite_text(later), "2024-07-01T00:00:00.500000Z");
        assert!(sqlite_text(whole) < sqlite_text(later));
        assert_eq!(to_micros(time::macros::datetime!(2024-07-01 00:00:00.123456789 UTC)).nanosecond(), 123_456_000);
    }
}

/// Serde helpers writing times as RFC 3339 strings in UTC.
pub mod serde_rfc3339 {
    use serde::Serializer;
    use time::OffsetDateTime;

    /// Serializes a time as RFC 3339 in UTC.
    pub fn serialize<S: Serializer>(moment: &OffsetDateTime, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::rfc3339(*moment))
    }

    /// Serializes an optional time as RFC 3339 in UTC, or null.
    pub mod option {
        use serde::Serializer;
        use time::OffsetDateTime;

        /// Serializes an optional time.
        pub fn serialize<S: Serializer>(moment: &Option<OffsetDateTime>, serializer: S) -> Result<S::Ok, S::Error> {
            match moment {
                Some(moment) => serializer.serialize_str(&super::super::rfc3339(*moment)),
                None => serializer.serialize_none(),
            }
        }
    }
}
