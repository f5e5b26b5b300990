//! Go-style durations as Consul reads and writes them: "10s", "1m30s", "250ms", or integer
//! nanoseconds in JSON.
//!
//! Parsing follows Go's `time.ParseDuration` rule for rule (including its overflow limit of
//! 2^63 ns and its error texts), because clients copy values straight from Consul docs and from
//! Go programs; anything Consul would refuse must be refused here too.

use std::time::Duration;

/// A duration Consul would refuse. Holds Go's full error text (`time: invalid duration "nope"`,
/// `time: missing unit in duration "10"`, …) because the HTTP layer forwards it verbatim.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct DurationError(pub String);

impl DurationError {
    /// Go's generic `time: invalid duration "<input>"`.
    pub fn invalid(input: &str) -> Self {
        DurationError(format!("time: invalid duration {}", go_quote(input)))
    }
}

/// Go's `strconv.Quote`, close enough for error texts: printable text kept, controls escaped.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's limit: the magnitude of a `time.Duration` is at most 2^63 ns (2^63 itself only when
/// negative).
const LIMIT: u64 = 1 << 63;

fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => 1,
        // Go accepts the micro sign (U+00B5) and the Greek mu (U+03BC).
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// Parses Go's `time.ParseDuration` syntax (units ns, us, µs, ms, s, m, h; decimals; a sign).
/// Negative durations parse to zero (Consul treats them as unset).
pub fn parse_go(s: &str) -> Result<Duration, DurationError> {
    let orig = s;
    let invalid = || DurationError::invalid(orig);
    let mut rest = s.as_bytes();
    let mut neg = false;
    if let Some(&c) = rest.first() {
        if c == b'-' || c == b'+' {
            neg = c == b'-';
            rest = &rest[1..];
        }
    }
    // Go special-cases a bare zero: it is the only number allowed without a unit.
    if rest == b"0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        if !(rest[0] == b'.' || rest[0].is_ascii_digit()) {
            return Err(invalid());
        }
        let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut whole: u64 = 0;
        for &c in &rest[..digits] {
            if whole > LIMIT / 10 {
                return Err(invalid());
            }
            whole = whole * 10 + u64::from(c - b'0');
            if whole > LIMIT {
                return Err(invalid());
            }
        }
        let has_whole = digits > 0;
        rest = &rest[digits..];

        // Like Go, fraction digits past what fits are dropped rather than rejected.
        let (mut frac, mut scale, mut has_frac) = (0u64, 1f64, false);
        if rest.first() == Some(&b'.') {
            rest = &rest[1..];
            let n = rest.iter().take_while(|c| c.is_ascii_digit()).count();
            let mut overflow = false;
            for &c in &rest[..n] {
                if overflow {
                    continue;
                }
                if frac > (LIMIT - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let y = frac * 10 + u64::from(c - b'0');
                if y > LIMIT {
                    overflow = true;
                    continue;
                }
                frac = y;
                scale *= 10.0;
            }
            has_frac = n > 0;
            rest = &rest[n..];
        }
        if !has_whole && !has_frac {
            return Err(invalid());
        }

        let unit_len = rest
            .iter()
            .take_while(|&&c| !(c == b'.' || c.is_ascii_digit()))
            .count();
        if unit_len == 0 {
            return Err(DurationError(format!(
                "time: missing unit in duration {}",
                go_quote(orig)
            )));
        }
        // The unit ends at an ASCII byte or at the end, so it is whole UTF-8.
        let unit_text = String::from_utf8_lossy(&rest[..unit_len]);
        rest = &rest[unit_len..];
        let Some(unit) = unit_nanos(&unit_text) else {
            return Err(DurationError(format!(
                "time: unknown unit {} in duration {}",
                go_quote(&unit_text),
                go_quote(orig)
            )));
        };
        if whole > LIMIT / unit {
            return Err(invalid());
        }
        let mut v = whole * unit;
        if frac > 0 {
            // Go computes the fractional part in float64 and truncates; so do we.
            v += (frac as f64 * (unit as f64 / scale)) as u64;
            if v > LIMIT {
                return Err(invalid());
            }
        }
        total = match total.checked_add(v) {
            Some(t) if t <= LIMIT => t,
            _ => return Err(invalid()),
        };
    }
    if neg {
        return Ok(Duration::ZERO);
    }
    if total > LIMIT - 1 {
        return Err(invalid());
    }
    Ok(Duration::from_nanos(total))
}

/// Appends `v`'s last `prec` decimal digits to `out` as a fraction (trailing zeros and a bare
/// point dropped) and returns `v` without them, as Go's `fmtFrac` does.
fn frac_prefix(v: u128, prec: u32, out: &mut String) -> u128 {
    let scale = 10u128.pow(prec);
    let mut f = v % scale;
    let mut digits = prec;
    while digits > 0 && f % 10 == 0 {
        f /= 10;
        digits -= 1;
    }
    if digits > 0 {
        out.push('.');
        out.push_str(&format!("{:0width$}", f, width = digits as usize));
    }
    v / scale
}

/// Go's `time.Duration.String()`: "0s", "1.5s", "100ms", "1m30s", "1h0m0s".
pub fn format_go(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".to_string();
    }
    if ns < 1_000_000_000 {
        let (prec, unit) = match ns {
            n if n < 1_000 => return format!("{n}ns"),
            n if n < 1_000_000 => (3, "µs"),
            _ => (6, "ms"),
        };
        let mut frac = String::new();
        let whole = frac_prefix(ns, prec, &mut frac);
        return format!("{whole}{frac}{unit}");
    }
    let mut frac = String::new();
    let secs = frac_prefix(ns, 9, &mut frac);
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}{frac}s")
    } else if m > 0 {
        format!("{m}m{s}{frac}s")
    } else {
        format!("{s}{frac}s")
    }
}

/// A JSON duration: a Go duration string or a number of nanoseconds.
///
/// Numbers follow Consul's decoder (a float64 cast to an int64 of nanoseconds): fractions are
/// truncated, negatives mean zero, and anything past Go's range is refused.
pub fn from_json(v: &serde_json::Value) -> Result<Duration, DurationError> {
    use serde_json::Value;
    let refuse = || DurationError(format!("time: invalid duration {v}"));
    match v {
        Value::String(s) => parse_go(s),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(Duration::from_nanos(i.max(0) as u64))
            } else if n.as_u64().is_some() {
                // Not an i64, so above i64::MAX: past Go's range.
                Err(refuse())
            } else {
                let f = n.as_f64().ok_or_else(refuse)?;
                if f <= 0.0 {
                    Ok(Duration::ZERO)
                } else if f < LIMIT as f64 {
                    Ok(Duration::from_nanos(f as u64))
                } else {
                    Err(refuse())
                }
            }
        }
        _ => Err(refuse()),
    }
}

#[cfg(test)]
mod tests;
