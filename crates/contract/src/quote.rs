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
mod tests {
    use super::*;

    #[test]
    fn long_input_is_cut_and_marked_and_short_input_is_whole() {
        assert_eq!(quote("5.3.1"), "\"5.3.1\"");
        assert_eq!(quote(""), "\"\"");
        let long = "x".repeat(10_000);
        let quoted = quote(&long);
        assert_eq!(quoted, format!("\"{}\"…", "x".repeat(QUOTE_MAX_CHARS)));
        // Characters, not bytes: a multi-byte character is never split.
        assert_eq!(quote(&"é".repeat(100)).chars().count(), QUOTE_MAX_CHARS + 3);
        // Control characters are escaped, never written raw.
        assert_eq!(quote("a\nb"), "\"a\\nb\"");
    }
}
