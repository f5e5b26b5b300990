//! An error as one line with every cause under it (`cannot reach Consul: error sending request:
//! Too many open files (os error 24)`): the root cause is what an operator acts on, and most
//! libraries' `Display` leaves it out.

use std::error::Error;

/// `error` and every error under it, joined with ": ". A cause whose text the error above it
/// already ends with (reqwest and hyper sometimes repeat it) is written once.
pub fn chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    for cause in std::iter::successors(error.source(), |&e| e.source()) {
        let next = cause.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
    }
    text
}

/// The first `std::io::Error` among `error` and its causes: the OS error (`Too many open
/// files`, `Connection refused`) a higher-level error wraps.
pub fn io_cause<'a>(error: &'a (dyn Error + 'static)) -> Option<&'a std::io::Error> {
    std::iter::successors(Some(error), |&e| e.source()).find_map(|e| e.downcast_ref())
}

#[cfg(test)]
mod tests;
