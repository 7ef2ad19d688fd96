//! UTC civil time, the one formatter of RFC 3339 date-times in the lab: build timestamps in annotations and
//! policies, and the start times of check passes. Conversions are pure arithmetic on seconds since the Unix
//! epoch (the proleptic Gregorian calendar, no leap seconds, as RFC 3339 in UTC needs); no time zone database.

use std::time::{SystemTime, UNIX_EPOCH};

/// Whether `year` has a 29 February.
pub fn is_leap(year: u64) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

/// The number of days of `month` (1 to 12) in `year`.
pub fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a date in or after 1970.
pub fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let before_year: u64 = (1970..year).map(|y| if is_leap(y) { 366 } else { 365 }).sum();
    let before_month: u64 = (1..month).map(|m| days_in_month(year, m)).sum();
    before_year + before_month + day - 1
}

/// The date (year, month, day) of a day count since 1970-01-01, in constant time (the era arithmetic of
/// Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// `secs` since the epoch as RFC 3339 UTC with whole seconds: `2026-11-23T17:20:26Z`.
pub fn rfc3339(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// `time` as RFC 3339 UTC with milliseconds: `2026-11-23T17:40:00.123Z` (times before the epoch as the epoch).
pub fn rfc3339_millis(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let whole = rfc3339(since.as_secs());
    format!("{}.{:03}Z", &whole[..whole.len() - 1], since.subsec_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_825_600), "2000-02-29T12:00:00Z");
        assert_eq!(rfc3339(1_795_454_426), "2026-11-23T17:20:26Z");
        let at = |millis: u64| rfc3339_millis(UNIX_EPOCH + std::time::Duration::from_millis(millis));
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(1_795_459_323_123), "2026-11-23T18:42:03.123Z");
    }

    #[test]
    fn days_and_dates_agree_every_day_for_three_centuries() {
        let mut days = 0;
        for year in 1970..2270 {
            for month in 1..=12 {
                for day in 1..=days_in_month(year, month) {
                    assert_eq!(days_from_civil(year, month, day), days);
                    assert_eq!(civil_from_days(days), (year, month, day));
                    days += 1;
                }
            }
        }
    }
}
