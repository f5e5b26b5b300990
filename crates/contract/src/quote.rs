//! Caller input as error messages quote it: at most [`QUOTE_MAX_CHARS`] characters, escaped, in
//! double quotes, with `…` when cut. A message travels back in the `grpc-message` trailer; an
//! echoed 10 KB id would push the reply's headers past the client's limit, and the caller would
//! see RESOURCE_EXHAUSTED instead of the error it earned.

/// The most characters of caller input an error message repeats.
pub const QUOTE_MAX_CHARS: usize = 64;

/// `input` quoted for an error message (see the module doc).
pub fn quote(input: &str) -> String {
    let mut chars = input.chars();
    let head: String = chars.by_ref().take(QUOTE_MAX_CHARS).collect();
    let cut = if chars.next().is_some() { "…" } else { "" };
    format!("{head:?}{cut}")
}

#[cfg(test)]
mod tests;
