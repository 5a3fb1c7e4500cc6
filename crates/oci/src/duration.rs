//! Go's `time.ParseDuration`, which HEALTHCHECK flags (and so image configs) and
//! `prune --filter until=` take: `30s`, `1m30s`, `1.5h`, `500ms`.

/// A parsed duration: sign and magnitude in nanoseconds (at most `i64::MAX`, as in Go).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoDuration {
    pub negative: bool,
    pub nanos: u64,
}

const UNITS: [(&str, u64); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),
    ("\u{3bc}s", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Go allows magnitudes up to 2^63 while summing and checks the sign at the end.
const LIMIT: u64 = 1 << 63;

/// Parses `text` the way Go does; the error says what is wrong with it.
pub fn parse_go_duration(text: &str) -> Result<GoDuration, String> {
    let invalid = || format!("invalid duration {text:?}: expected e.g. 30s, 1m30s or 500ms");
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Ok(GoDuration { negative, nanos: 0 });
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        if !rest.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
            return Err(invalid());
        }
        let (whole, after_whole) = leading_integer(rest).ok_or_else(invalid)?;
        let had_whole = after_whole.len() != rest.len();
        rest = after_whole;
        let mut fraction = (0, 1.0);
        let mut had_fraction = false;
        if let Some(after_dot) = rest.strip_prefix('.') {
            let (digits, scale, after_fraction) = leading_fraction(after_dot);
            had_fraction = after_fraction.len() != after_dot.len();
            fraction = (digits, scale);
            rest = after_fraction;
        }
        if !had_whole && !had_fraction {
            return Err(invalid());
        }
        let unit_length = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (unit, after_unit) = rest.split_at(unit_length);
        rest = after_unit;
        if unit.is_empty() {
            return Err(format!(
                "invalid duration {text:?}: missing unit (ns, us, ms, s, m or h)"
            ));
        }
        let Some(&(_, unit_nanos)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(format!(
                "invalid duration {text:?}: unknown unit {unit:?} (expected ns, us, ms, s, m or h)"
            ));
        };
        if whole > LIMIT / unit_nanos {
            return Err(invalid());
        }
        let mut value = whole * unit_nanos;
        let (digits, scale) = fraction;
        if digits > 0 {
            // Go computes the fractional part in floating point; so do we, to round alike.
            value += (digits as f64 * (unit_nanos as f64 / scale)) as u64;
            if value > LIMIT {
                return Err(invalid());
            }
        }
        total = total.checked_add(value).ok_or_else(invalid)?;
        if total > LIMIT {
            return Err(invalid());
        }
    }
    if !negative && total > LIMIT - 1 {
        return Err(invalid());
    }
    Ok(GoDuration {
        negative,
        nanos: total,
    })
}

/// Consumes leading ASCII digits; `None` on overflow past 2^63.
fn leading_integer(text: &str) -> Option<(u64, &str)> {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, rest) = text.split_at(end);
    let mut value: u64 = 0;
    for digit in digits.bytes() {
        if value > LIMIT / 10 {
            return None;
        }
        value = value * 10 + u64::from(digit - b'0');
        if value > LIMIT {
            return None;
        }
    }
    Some((value, rest))
}

/// Consumes leading fraction digits; digits past what fits are read but ignored, as in Go.
/// Returns the digits as an integer, the power of ten they are scaled by, and the rest.
fn leading_fraction(text: &str) -> (u64, f64, &str) {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, rest) = text.split_at(end);
    let mut value: u64 = 0;
    let mut scale = 1.0;
    for digit in digits.bytes() {
        let Some(next) = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(digit - b'0')))
            .filter(|&v| v <= LIMIT && value <= (LIMIT - 1) / 10)
        else {
            break;
        };
        value = next;
        scale *= 10.0;
    }
    (value, scale, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nanos(text: &str) -> u64 {
        let parsed = parse_go_duration(text).unwrap();
        assert!(!parsed.negative);
        parsed.nanos
    }

    #[test]
    fn common_forms() {
        assert_eq!(nanos("30s"), 30_000_000_000);
        assert_eq!(nanos("1m30s"), 90_000_000_000);
        assert_eq!(nanos("500ms"), 500_000_000);
        assert_eq!(nanos("1h"), 3_600_000_000_000);
        assert_eq!(nanos("1.5h"), 5_400_000_000_000);
        assert_eq!(nanos(".5s"), 500_000_000);
        assert_eq!(nanos("1.s"), 1_000_000_000);
        assert_eq!(nanos("10us"), 10_000);
        assert_eq!(nanos("10µs"), 10_000);
        assert_eq!(nanos("10μs"), 10_000);
        assert_eq!(nanos("7ns"), 7);
        assert_eq!(nanos("+5s"), 5_000_000_000);
        assert_eq!(nanos("0"), 0);
        assert_eq!(nanos("0s"), 0);
        assert_eq!(nanos("1h2m3s4ms"), 3_723_004_000_000);
    }

    #[test]
    fn negative_durations_are_parsed() {
        let parsed = parse_go_duration("-2s").unwrap();
        assert!(parsed.negative);
        assert_eq!(parsed.nanos, 2_000_000_000);
    }

    #[test]
    fn long_fractions_are_truncated_not_rejected() {
        assert_eq!(nanos("1.0000000000000000000000001s"), 1_000_000_000);
    }

    #[test]
    fn errors() {
        for bad in ["", "s", "30", "1x", "1.2.3s", ".s", "-", "abc", "1 s", "5S"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} should fail");
        }
        assert!(
            parse_go_duration("30")
                .unwrap_err()
                .contains("missing unit")
        );
        assert!(
            parse_go_duration("1d")
                .unwrap_err()
                .contains("unknown unit \"d\"")
        );
    }

    #[test]
    fn overflow_is_an_error() {
        assert!(parse_go_duration("9223372036854775807ns").is_ok());
        assert!(parse_go_duration("9223372036854775808ns").is_err());
        assert!(parse_go_duration("3000000h").is_err());
        assert!(parse_go_duration("99999999999999999999s").is_err());
    }
}
