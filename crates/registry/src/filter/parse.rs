//! The parser behind [`super::Filter::parse`]: go-bexpr's PEG grammar (see the grammar in
//! `filter.rs`), hand-written with the same ordered choices and backtracking so that exactly
//! the expressions Consul accepts are accepted, with pigeon-shaped error messages.

use super::{Expr, FilterError, Op, MAX_DEPTH};
use beamline_contract::quote::quote;
use regex::Regex;

/// A PEG-style parser with backtracking, mirroring go-bexpr's grammar so that the same
/// expressions are accepted and refused. `Ok(None)` means "this alternative does not match";
/// `Err` is a definite error (bexpr's named-rule errors) that ends parsing at once.
#[derive(Default)]
struct Parser<'a> {
    src: &'a str,
    pos: usize,
    depth: usize,
    /// The furthest position where something failed to match, and what was expected there,
    /// for pigeon's "no match found, expected: …" message.
    far: usize,
    expected: Vec<String>,
}

type PResult<T> = Result<Option<T>, FilterError>;

/// Operators after a selector, as `seq` patterns: `?` optional and `_` required whitespace.
const VALUE_OPS: [&str; 6] = [
    "? == ?",
    "? != ?",
    "_ contains _",
    "_ not _ contains _",
    "_ matches _",
    "_ not _ matches _",
];

pub(super) fn parse(src: &str) -> Result<Expr, FilterError> {
    Parser {
        src,
        ..Parser::default()
    }
    .parse()
}

impl Parser<'_> {
    fn parse(mut self) -> Result<Expr, FilterError> {
        self.seq("?");
        if let Some(expr) = self.or()? {
            self.seq("?");
            if self.pos == self.src.len() {
                return Ok(expr);
            }
            self.fail("EOF");
        }
        let mut expected = std::mem::take(&mut self.expected);
        // pigeon sorts what was expected but always names EOF last.
        expected.sort_unstable_by(|a, b| (a == "EOF", a).cmp(&(b == "EOF", b)));
        let list = match expected.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => "EOF".to_string(),
        };
        let msg = format!("no match found, expected: {list}");
        Err(self.error_at(self.far, None, &msg))
    }

    /// pigeon's error shape: `line:col (offset): [rule "name": ]message`.
    fn error_at(&self, pos: usize, rule: Option<&str>, msg: &str) -> FilterError {
        let before = &self.src[..pos];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        let rule = rule.map(|r| format!("rule \"{r}\": ")).unwrap_or_default();
        FilterError(format!("{line}:{col} ({pos}): {rule}{msg}"))
    }

    fn error(&self, rule: &str, msg: &str) -> FilterError {
        self.error_at(self.pos, Some(rule), msg)
    }

    fn fail(&mut self, what: &str) {
        if self.pos > self.far {
            self.far = self.pos;
            self.expected.clear();
        }
        if self.pos == self.far && !self.expected.iter().any(|e| e == what) {
            self.expected.push(what.to_string());
        }
    }

    fn rest(&self) -> &[u8] {
        &self.src.as_bytes()[self.pos..]
    }

    fn peek(&self) -> Option<u8> {
        self.rest().first().copied()
    }

    fn lit(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s.as_bytes()) {
            self.pos += s.len();
            return true;
        }
        self.fail(&format!("{s:?}"));
        false
    }

    fn ws(&mut self) -> bool {
        let n = (self.rest().iter())
            .take_while(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
            .count();
        self.pos += n;
        // Like pigeon's `[ \t\r\n]+`, the class is "expected" where the run stops.
        self.fail("[ \\t\\r\\n]");
        n > 0
    }

    /// Matches a space-separated pattern of literals, `_` (whitespace) and `?` (optional
    /// whitespace) as a whole, or rewinds.
    fn seq(&mut self, pattern: &str) -> bool {
        let save = self.pos;
        let ok = pattern.split(' ').all(|tok| match tok {
            "_" => self.ws(),
            "?" => {
                self.ws();
                true
            }
            word => self.lit(word),
        });
        if !ok {
            self.pos = save;
        }
        ok
    }

    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> PResult<T>) -> PResult<T> {
        if self.depth >= MAX_DEPTH {
            let msg = format!("expression nested deeper than {MAX_DEPTH} levels");
            return Err(self.error("grouping", &msg));
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    /// `next (sep next)*`, where a separator not followed by an operand is left unconsumed.
    fn chain(&mut self, sep: &str, next: fn(&mut Self) -> PResult<Expr>) -> PResult<Vec<Expr>> {
        let Some(first) = next(self)? else {
            return Ok(None);
        };
        let mut items = vec![first];
        loop {
            let save = self.pos;
            if self.seq(sep) {
                if let Some(e) = next(self)? {
                    items.push(e);
                    continue;
                }
            }
            self.pos = save;
            return Ok(Some(items));
        }
    }

    fn or(&mut self) -> PResult<Expr> {
        Ok(self
            .chain("_ or _", Self::and)?
            .map(|v| flatten(v, Expr::Or)))
    }

    fn and(&mut self) -> PResult<Expr> {
        Ok(self
            .chain("_ and _", Self::not)?
            .map(|v| flatten(v, Expr::And)))
    }

    fn not(&mut self) -> PResult<Expr> {
        let save = self.pos;
        if self.seq("not _") {
            if let Some(e) = self.nested(Self::not)? {
                return Ok(Some(Expr::Not(Box::new(e))));
            }
            self.pos = save;
        }
        self.group()
    }

    fn group(&mut self) -> PResult<Expr> {
        let save = self.pos;
        if self.seq("( ?") {
            if let Some(e) = self.nested(Self::or)? {
                if self.seq("? )") {
                    return Ok(Some(e));
                }
                self.seq("?");
                return Err(self.error("grouping", "Unmatched parentheses"));
            }
            self.pos = save;
        }
        self.match_expr()
    }

    fn match_expr(&mut self) -> PResult<Expr> {
        let save = self.pos;
        if let Some(path) = self.selector()? {
            let after = self.pos;
            if let Some(op) = VALUE_OPS.into_iter().find(|op| self.seq(op)) {
                if let Some(raw) = self.value()? {
                    return Ok(Some(Expr::Match(path, value_op(op, raw)?)));
                }
            }
            self.pos = after;
            if self.seq("_ is _ empty") {
                return Ok(Some(Expr::Match(path, Op::IsEmpty)));
            }
            if self.seq("_ is _ not _ empty") {
                return Ok(Some(Expr::Match(path, Op::IsNotEmpty)));
            }
        }
        self.pos = save;
        if let Some(raw) = self.value()? {
            let op = if self.seq("_ in _") {
                Some(Op::In(raw))
            } else if self.seq("_ not _ in _") {
                Some(Op::NotIn(raw))
            } else {
                None
            };
            if let Some(op) = op {
                let Some(path) = self.selector()? else {
                    return Err(self.error("match", "Invalid selector"));
                };
                return Ok(Some(Expr::Match(path, op)));
            }
        }
        self.pos = save;
        Ok(None)
    }

    fn ident(&mut self) -> Option<String> {
        if !self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            self.fail("[a-zA-Z]");
            return None;
        }
        let n = self
            .rest()
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
            .count();
        let id = self.src[self.pos..self.pos + n].to_string();
        self.pos += n;
        self.fail("[a-zA-Z0-9_]");
        Some(id)
    }

    fn selector(&mut self) -> PResult<Vec<String>> {
        let Some(first) = self.ident() else {
            return Ok(None);
        };
        let mut path = vec![first];
        loop {
            let save = self.pos;
            if self.lit(".") {
                if let Some(id) = self.ident() {
                    path.push(id);
                    continue;
                }
                self.pos = save;
                return Ok(Some(path));
            }
            if !self.lit("[") {
                return Ok(Some(path));
            }
            self.seq("?");
            let Some(key) = self.string()? else {
                return Err(self.error("index", "Invalid index"));
            };
            self.seq("?");
            if !self.lit("]") {
                return Err(self.error("index", "Unclosed index expression"));
            }
            path.push(key);
        }
    }

    fn value(&mut self) -> PResult<String> {
        if let Some(path) = self.selector()? {
            return Ok(Some(path.join(".")));
        }
        if let Some(n) = self.number()? {
            return Ok(Some(n));
        }
        self.string()
    }

    fn number(&mut self) -> PResult<String> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let digits = |p: &Self| p.rest().iter().take_while(|c| c.is_ascii_digit()).count();
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.pos += digits(self),
            _ => {
                self.fail("\"0\"");
                self.fail("[1-9]");
                if self.pos == start {
                    self.fail("\"-\"");
                }
                self.pos = start;
                return Ok(None);
            }
        }
        if self.peek() == Some(b'.') && self.rest().get(1).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
            self.pos += digits(self);
        }
        if !matches!(
            self.peek(),
            None | Some(b' ' | b'\t' | b'\r' | b'\n' | b')')
        ) {
            return Err(self.error("number", "Invalid number literal"));
        }
        Ok(Some(self.src[start..self.pos].to_string()))
    }

    fn string(&mut self) -> PResult<String> {
        let quote = match self.peek() {
            Some(q @ (b'"' | b'`')) => q,
            _ => {
                self.fail("\"\\\"\"");
                self.fail("\"`\"");
                return Ok(None);
            }
        };
        let start = self.pos + 1;
        let Some(len) = self.src.as_bytes()[start..]
            .iter()
            .position(|&c| c == quote)
        else {
            self.pos = self.src.len();
            return Err(self.error("string", "Unterminated string literal"));
        };
        // Both ends are ASCII quotes, so the slice is whole UTF-8.
        let body = &self.src[start..start + len];
        self.pos = start + len + 1;
        if quote == b'`' {
            return Ok(Some(body.replace('\r', "")));
        }
        go_unquote(body)
            .map(Some)
            .ok_or_else(|| self.error("string", "invalid syntax"))
    }
}

fn flatten(mut v: Vec<Expr>, many: fn(Vec<Expr>) -> Expr) -> Expr {
    if v.len() == 1 {
        v.remove(0)
    } else {
        many(v)
    }
}

/// Builds the operator for one of `VALUE_OPS`; regexes compile now so bad ones fail the parse.
fn value_op(op: &str, raw: String) -> Result<Op, FilterError> {
    let regex = |raw: &str| {
        Regex::new(raw).map_err(|e| {
            FilterError(format!(
                "Failed to compile regular expression {}: {}",
                quote(raw),
                regex_problem(&e)
            ))
        })
    };
    Ok(match op {
        "? == ?" => Op::Equal(raw),
        "? != ?" => Op::NotEqual(raw),
        "_ contains _" => Op::In(raw),
        "_ not _ contains _" => Op::NotIn(raw),
        "_ matches _" => Op::Matches(regex(&raw)?),
        _ => Op::NotMatches(regex(&raw)?),
    })
}

/// The body of a Go double-quoted string literal (`strconv.Unquote`), or None where Go says
/// "invalid syntax". Escapes that would produce invalid UTF-8 (`\xff`) are refused too.
fn go_unquote(body: &str) -> Option<String> {
    if body.contains('\n') {
        return None;
    }
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let decoded = match chars.next()? {
            'a' => '\x07',
            'b' => '\x08',
            'f' => '\x0c',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'v' => '\x0b',
            '\\' => '\\',
            'x' => char::from_u32(hex(&mut chars, 2).filter(|v| *v < 0x80)?)?,
            'u' => char::from_u32(hex(&mut chars, 4)?)?,
            'U' => char::from_u32(hex(&mut chars, 8)?)?,
            d @ '0'..='7' => {
                let rest: String = chars.by_ref().take(2).collect();
                let v = u32::from_str_radix(&format!("{d}{rest}"), 8).ok()?;
                (rest.len() == 2 && v < 0x80).then_some(())?;
                char::from_u32(v)?
            }
            _ => return None,
        };
        out.push(decoded);
    }
    Some(out)
}

fn hex(chars: &mut std::str::Chars<'_>, n: usize) -> Option<u32> {
    let digits: String = chars.take(n).collect();
    (digits.len() == n && digits.bytes().all(|b| b.is_ascii_hexdigit())).then_some(())?;
    u32::from_str_radix(&digits, 16).ok()
}

/// The longest regex error repeated whole; a longer one quotes a long pattern.
const MAX_REGEX_ERROR: usize = 256;

/// What is wrong with a regular expression, without the copy of the whole pattern the regex
/// crate's syntax errors start with (a filter is caller input of any length): their last
/// `error: …` line.
fn regex_problem(e: &regex::Error) -> String {
    let text = e.to_string();
    match text.lines().rev().find(|l| l.starts_with("error:")) {
        Some(line) if text.len() > MAX_REGEX_ERROR => line.to_string(),
        _ => text,
    }
}
