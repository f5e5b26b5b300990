//! The order of beamline ids people read: natural, so `2.1.1` comes before `10.1.1`. An id is cut
//! into runs of digits and runs of anything else; digit runs compare as numbers (of any length),
//! other runs as text ignoring case, and ids that still tie compare as plain text, so the order
//! is total.
//!
//! Owns the comparison only. The gateway's catalog and status page and the CLI's tables sort
//! with it, so every list of beamlines reads the same.

use std::cmp::Ordering;

/// `a` against `b` in natural order.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let mut left = Runs(a);
    let mut right = Runs(b);
    loop {
        let order = match (left.next(), right.next()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(x), Some(y)) => compare_runs(x, y),
        };
        if order.is_ne() {
            return order;
        }
    }
}

/// Two runs: numbers by value (a number before text at the same place), text by lowercase.
fn compare_runs(x: &str, y: &str) -> Ordering {
    let numeric = |s: &str| s.as_bytes()[0].is_ascii_digit();
    match (numeric(x), numeric(y)) {
        (true, true) => {
            let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
            x.len().cmp(&y.len()).then_with(|| x.cmp(y))
        }
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => x
            .bytes()
            .map(|c| c.to_ascii_lowercase())
            .cmp(y.bytes().map(|c| c.to_ascii_lowercase())),
    }
}

/// The runs of an id, each non-empty: all ASCII digits, or none.
struct Runs<'a>(&'a str);

impl<'a> Iterator for Runs<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let first = *self.0.as_bytes().first()?;
        let digits = first.is_ascii_digit();
        let end = self
            .0
            .bytes()
            .position(|c| c.is_ascii_digit() != digits)
            .unwrap_or(self.0.len());
        let (run, rest) = self.0.split_at(end);
        self.0 = rest;
        Some(run)
    }
}

#[cfg(test)]
mod tests;
