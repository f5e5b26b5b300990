//! Text this process did not write — agents' cards and addresses, Consul's records, halt
//! reasons and lock notes another tool may have put in KV, a gateway's error messages — made
//! safe to print on a person's terminal: control characters (C0, DEL, C1: ANSI escape
//! sequences, carriage returns, line breaks that would forge lines) and the bidirectional
//! overrides that reorder what is shown are written as Rust escapes (`\u{1b}`, `\n`).
//!
//! For the tables and lines people read (`agents`, `agents --capabilities`, `halt` and the
//! other control commands, `call`'s error lines); never for `--json`, where JSON's own escaping keeps values exact.

use std::borrow::Cow;

/// `text` with every character a terminal would act on, rather than show, escaped.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(acts_on_terminal) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if acts_on_terminal(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Control characters, and the bidirectional marks, embeddings, overrides and isolates.
fn acts_on_terminal(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests;
