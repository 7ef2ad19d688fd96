//! Build timestamps: whole seconds since the Unix epoch, written as RFC 3339 UTC (`2026-11-23T17:20:26Z`) in
//! our annotations and policy files, and as decimal seconds in the delivery-kit annotation (the value its
//! build passes to `mkfs.erofs -T`). Pure conversions, no clock except [`BuildTimestamp::now`].

use std::fmt;

use crate::utc;
use verity_fuse::ErrorClass;

/// Seconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BuildTimestamp(pub u64);

/// Why a timestamp does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("timestamp {text:?} is not YYYY-MM-DDTHH:MM:SSZ (UTC, RFC 3339) or decimal seconds since the epoch")]
pub struct TimestampError {
    /// The text.
    pub text: String,
}

impl TimestampError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::BadInput
    }
}

impl BuildTimestamp {
    /// The current time, or `SOURCE_DATE_EPOCH` when set (reproducible builds).
    pub fn now() -> Self {
        if let Some(secs) = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|v| v.parse().ok()) {
            return Self(secs);
        }
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self(secs)
    }

    /// Parses RFC 3339 UTC with whole seconds (`Z` only), or decimal seconds since the epoch.
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        let err = || TimestampError { text: text.to_owned() };
        if !text.is_empty() && text.len() <= 19 && text.bytes().all(|b| b.is_ascii_digit()) {
            return text.parse().map(Self).map_err(|_| err());
        }
        let b = text.as_bytes();
        if b.len() != 20
            || b[4] != b'-'
            || b[7] != b'-'
            || !matches!(b[10], b'T' | b't')
            || b[13] != b':'
            || b[16] != b':'
            || !matches!(b[19], b'Z' | b'z')
        {
            return Err(err());
        }
        let num = |range: std::ops::Range<usize>| -> Result<u64, TimestampError> {
            let part = &text[range];
            if part.bytes().all(|c| c.is_ascii_digit()) {
                part.parse().map_err(|_| err())
            } else {
                Err(err())
            }
        };
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if year < 1970 || !(1..=12).contains(&month) || day == 0 || day > utc::days_in_month(year, month) {
            return Err(err());
        }
        if hour > 23 || minute > 59 || second > 59 {
            return Err(err());
        }
        let days = utc::days_from_civil(year, month, day);
        Ok(Self(days * 86_400 + hour * 3600 + minute * 60 + second))
    }

    /// RFC 3339 UTC, whole seconds.
    pub fn rfc3339(self) -> String {
        self.to_string()
    }
}

impl fmt::Display for BuildTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&utc::rfc3339(self.0))
    }
}

impl serde::Serialize for BuildTimestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for BuildTimestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates_round_trip() {
        for (text, secs) in [
            ("1970-01-01T00:00:00Z", 0),
            ("2000-02-29T12:00:00Z", 951_825_600),
            ("2026-11-23T17:20:26Z", 1_795_454_426),
        ] {
            assert_eq!(BuildTimestamp::parse(text), Ok(BuildTimestamp(secs)), "{text}");
            assert_eq!(BuildTimestamp(secs).to_string(), text);
        }
        assert_eq!(BuildTimestamp::parse("1795454426"), Ok(BuildTimestamp(1_795_454_426)));
    }

    #[test]
    fn malformed_dates_are_refused() {
        for bad in [
            "",
            "2026-11-23",
            "2026-11-23T17:20:26+01:00",
            "2026-02-30T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-23T24:00:00Z",
            "1969-12-31T23:59:59Z",
            "2026-1a-23T17:20:26Z",
            "+026-11-23T17:20:26Z",
        ] {
            assert!(BuildTimestamp::parse(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn formatting_then_parsing_is_the_identity(secs in 0u64..10_000_000_000) {
            proptest::prop_assert_eq!(BuildTimestamp::parse(&BuildTimestamp(secs).to_string()), Ok(BuildTimestamp(secs)));
        }
    }
}
