//! Time formatting shared by the stores and the API.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// RFC 3339 text in UTC, e.g. `2024-04-27T21:00:00Z`; falls back to the Unix epoch text for dates
/// outside RFC 3339's range, which input validation never lets in.
pub fn rfc3339(moment: OffsetDateTime) -> String {
    moment.to_offset(time::UtcOffset::UTC).format(&Rfc3339).unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
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
