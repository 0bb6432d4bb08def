//! Timestamps as clients see them: RFC 3339 in UTC with exactly three
//! fractional digits, so that they also sort as strings.

use time::OffsetDateTime;
use time::macros::format_description;

pub fn rfc3339(ms: i64) -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_milliseconds_with_fixed_width() {
        assert_eq!(
            super::rfc3339(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(
            super::rfc3339(1_700_000_000_100),
            "2023-11-14T22:13:20.100Z"
        );
        assert_eq!(
            super::rfc3339(1_700_000_000_000),
            "2023-11-14T22:13:20.000Z"
        );
    }
}
