//! Human-readable durations (`"20s"`, `"15m"`, `"7d"`) for config values.
//!
//! Config files are written by admins, so durations are strings in the humantime
//! forms rather than bare numbers whose unit a reader must guess.

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// A duration read from config. Serialises back to the humantime form.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span(pub Duration);

impl Span {
    /// A span of whole seconds.
    pub const fn secs(secs: u64) -> Self {
        Span(Duration::from_secs(secs))
    }

    /// The span in whole seconds (rounded down).
    pub fn as_secs(&self) -> u64 {
        self.0.as_secs()
    }

    /// The wrapped std duration.
    pub fn get(&self) -> Duration {
        self.0
    }
}

/// Parses `"20s"`, `"15m"`, `"7d"`, `"1h 30m"`; an error names what is allowed.
pub fn parse_span(text: &str) -> Result<Span, String> {
    humantime::parse_duration(text.trim())
        .map(Span)
        .map_err(|err| format!("invalid duration {text:?} ({err}); write it like \"20s\", \"15m\", \"1h\" or \"7d\""))
}

impl fmt::Debug for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Span;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string like \"20s\", \"15m\" or \"7d\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Span, E> {
                parse_span(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse_span("20s").unwrap(), Span::secs(20));
        assert_eq!(parse_span("15m").unwrap(), Span::secs(900));
        assert_eq!(parse_span("7d").unwrap(), Span::secs(7 * 86_400));
        assert_eq!(parse_span("1h 30m").unwrap(), Span::secs(5_400));
    }

    #[test]
    fn rejects_garbage_with_a_hint() {
        let err = parse_span("20x").unwrap_err();
        assert!(err.contains("\"20s\""), "{err}");
    }

    #[test]
    fn round_trips_through_display() {
        for text in ["20s", "15m", "7days", "1h 30m"] {
            let span = parse_span(text).unwrap();
            assert_eq!(parse_span(&span.to_string()).unwrap(), span);
        }
    }
}
