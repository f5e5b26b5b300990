//! Consul's `?filter=` expressions (the go-bexpr subset that clients use), evaluated against the
//! JSON shape of each result element, so one evaluator serves every endpoint.
//!
//! Owns parsing and matching only; which endpoint filters what is the HTTP layer's business.
//!
//! Grammar (go-bexpr's, as Consul parses it; keywords are lower case and need whitespace around
//! them, `==`/`!=` do not):
//!
//! ```text
//! expr     = and ("or" and)*            precedence: not > and > or
//! and      = not ("and" not)*
//! not      = "not" not | "(" expr ")" | match
//! match    = selector ("==" | "!=" | "contains" | "not contains"
//!                      | "matches" | "not matches") value
//!          | selector "is" ["not"] "empty"
//!          | value ("in" | "not in") selector
//! selector = ident ("." ident | "[" string "]")*     ident = [a-zA-Z][a-zA-Z0-9_]*
//! value    = selector (its dotted text) | number | string
//! number   = -?(0|[1-9][0-9]*)(.[0-9]+)?    followed by whitespace, ")" or the end
//! string   = "…" (Go escapes such as \n, \t, \u00e9; a `"` always ends it, as in bexpr,
//!            so `\"` is refused) | `…` (raw)
//! ```
//!
//! Matching, as go-bexpr does it over Consul's structs:
//! - `==`/`!=` compare text with a string, numerically with a number (`Service.Port == 8080`),
//!   with Go's boolean spellings for a bool (`true`, `T`, `1`, …).
//! - `in`/`contains` test membership in an array, key presence in an object, a substring in a
//!   string.
//! - `is empty`: an empty string, array or object (or a missing value).
//! - `matches`: a regular expression (RE2 syntax, unanchored) against a string.
//! - A selector that passes through an array applies the match to each element and succeeds
//!   if any does (`Checks.Status == critical`).
//! - A selector that does not resolve (a missing key, null, or a step into a scalar) behaves
//!   like bexpr's missing map key: `==`, `in`, `contains`, `matches`, `is not empty` are false;
//!   `!=`, `not in`, `not contains`, `not matches`, `is empty` are true. Consul would reject an
//!   unknown *struct* field when the filter is created; without the Go types we cannot tell
//!   a struct from a map, so every unknown name is a missing key.

use regex::Regex;
use serde_json::Value;

mod parse;

/// A filter Consul would refuse to create, with go-bexpr's message (`1:9 (8): rule "number":
/// Invalid number literal`); Consul answers 400 with the prefix
/// `Failed to create boolean expression evaluator: `.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(pub String);

/// A parsed filter; cheap to share across the elements of one response.
#[derive(Debug, Clone)]
pub struct Filter {
    expr: Expr,
}

impl Filter {
    /// Parses like go-bexpr, so an empty expression is an error too: callers treat an absent or
    /// empty `?filter=` as "no filter", as Consul's endpoints do, before calling this.
    pub fn parse(expr: &str) -> Result<Filter, FilterError> {
        parse::parse(expr).map(|expr| Filter { expr })
    }

    /// Whether one result element (its JSON form) passes; evaluation itself never fails.
    pub fn matches(&self, item: &Value) -> bool {
        self.expr.eval(item)
    }
}

/// Deep nesting would exhaust the stack of a recursive parser; real filters stay far below.
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone)]
enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    Match(Vec<String>, Op),
}

#[derive(Debug, Clone)]
enum Op {
    Equal(String),
    NotEqual(String),
    In(String),
    NotIn(String),
    IsEmpty,
    IsNotEmpty,
    Matches(Regex),
    NotMatches(Regex),
}

impl Expr {
    fn eval(&self, item: &Value) -> bool {
        match self {
            Expr::Or(all) => all.iter().any(|e| e.eval(item)),
            Expr::And(all) => all.iter().all(|e| e.eval(item)),
            Expr::Not(e) => !e.eval(item),
            Expr::Match(path, op) => select(path, op, item),
        }
    }
}

fn select(path: &[String], op: &Op, v: &Value) -> bool {
    let Some((key, rest)) = path.split_first() else {
        return op.test(Some(v));
    };
    match v {
        Value::Object(map) => match map.get(key) {
            Some(child) => select(rest, op, child),
            None => op.test(None),
        },
        // bexpr walks into every element with the same remaining path: an implicit "any".
        Value::Array(items) => items.iter().any(|item| select(path, op, item)),
        _ => op.test(None),
    }
}

impl Op {
    fn test(&self, v: Option<&Value>) -> bool {
        let v = v.filter(|v| !v.is_null());
        match self {
            Op::Equal(raw) => v.is_some_and(|v| scalar_eq(v, raw)),
            Op::NotEqual(raw) => !v.is_some_and(|v| scalar_eq(v, raw)),
            Op::In(raw) => v.is_some_and(|v| contains(v, raw)),
            Op::NotIn(raw) => !v.is_some_and(|v| contains(v, raw)),
            Op::IsEmpty => is_empty(v),
            Op::IsNotEmpty => !is_empty(v),
            Op::Matches(re) => matches!(v, Some(Value::String(s)) if re.is_match(s)),
            Op::NotMatches(re) => !matches!(v, Some(Value::String(s)) if re.is_match(s)),
        }
    }
}

/// bexpr converts the literal to the field's Go type; JSON tells us only string, integer,
/// float or bool, which is enough to pick the same conversion.
fn scalar_eq(v: &Value, raw: &str) -> bool {
    match v {
        Value::String(s) => s == raw,
        Value::Bool(b) => go_bool(raw) == Some(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                raw.parse::<i64>() == Ok(i)
            } else if let Some(u) = n.as_u64() {
                raw.parse::<u64>() == Ok(u)
            } else {
                n.as_f64().is_some_and(|f| raw.parse::<f64>() == Ok(f))
            }
        }
        _ => false,
    }
}

/// Go's `strconv.ParseBool` spellings.
fn go_bool(raw: &str) -> Option<bool> {
    match raw {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

fn contains(v: &Value, raw: &str) -> bool {
    match v {
        Value::String(s) => s.contains(raw),
        Value::Array(items) => items.iter().any(|item| scalar_eq(item, raw)),
        Value::Object(map) => map.contains_key(raw),
        _ => false,
    }
}

fn is_empty(v: Option<&Value>) -> bool {
    match v {
        None => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(m)) => m.is_empty(),
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests;
