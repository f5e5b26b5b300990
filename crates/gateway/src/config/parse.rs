//! The policy file's walker: the spanned TOML tree (`toml::de::DeTable`) turned into a
//! [`PolicyConfig`], refusing unknown keys and naming the line and field of every error.
//!
//! Owns walking the tree: spans to lines, typed reads of values, and errors naming the field;
//! what each section (`[[caller]]`, `[jwt]`, `[limits]`) holds is `sections`'.

use std::ops::Range;

use toml::de::{DeString, DeTable, DeValue};
use toml::Spanned;

use super::{ConfigError, PolicyConfig};

mod sections;

/// The policy in `text`, validated; `path` names the file in errors.
pub(super) fn policy(text: &str, path: &str) -> Result<PolicyConfig, ConfigError> {
    let doc = Doc { text, path };
    let root = DeTable::parse(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        doc.invalid(span, "(syntax)", e.message().trim_end())
    })?;
    let mut config = PolicyConfig::default();
    for (key, value) in doc.entries(root.get_ref(), &["caller", "jwt", "limits"], "")? {
        match key.get_ref().as_ref() {
            "caller" => config.callers = doc.callers(value)?,
            "jwt" => config.jwt = Some(doc.jwt(value)?),
            _ => config.limits = doc.limits(value)?,
        }
    }
    Ok(config)
}

type Entry<'t, 'i> = (&'t Spanned<DeString<'i>>, &'t Spanned<DeValue<'i>>);

/// The text being parsed, to turn spans into lines.
struct Doc<'a> {
    text: &'a str,
    path: &'a str,
}

impl Doc<'_> {
    fn line(&self, span: Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn invalid(&self, span: Range<usize>, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_string(),
            line: self.line(span),
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// The table's entries in file order, refusing keys not in `allowed`.
    fn entries<'t, 'i>(
        &self,
        table: &'t DeTable<'i>,
        allowed: &[&str],
        prefix: &str,
    ) -> Result<Vec<Entry<'t, 'i>>, ConfigError> {
        let mut entries: Vec<Entry<'t, 'i>> = table.iter().collect();
        entries.sort_by_key(|(key, _)| key.span().start);
        for (key, _) in &entries {
            let name = key.get_ref().as_ref();
            if !allowed.contains(&name) {
                return Err(self.invalid(
                    key.span(),
                    &join(prefix, name),
                    format!("unknown key (expected one of: {})", allowed.join(", ")),
                ));
            }
        }
        Ok(entries)
    }

    fn table<'t, 'i>(
        &self,
        value: &'t Spanned<DeValue<'i>>,
        field: &str,
    ) -> Result<&'t DeTable<'i>, ConfigError> {
        value.get_ref().as_table().ok_or_else(|| {
            let got = value.get_ref().type_str();
            self.invalid(value.span(), field, format!("expected a table, got {got}"))
        })
    }

    fn string<'t>(
        &self,
        value: &'t Spanned<DeValue<'_>>,
        field: &str,
    ) -> Result<&'t str, ConfigError> {
        value.get_ref().as_str().ok_or_else(|| {
            let got = value.get_ref().type_str();
            self.invalid(value.span(), field, format!("expected a string, got {got}"))
        })
    }

    fn nonempty_string(
        &self,
        value: &Spanned<DeValue<'_>>,
        field: &str,
    ) -> Result<String, ConfigError> {
        let text = self.string(value, field)?;
        if text.trim().is_empty() {
            return Err(self.invalid(value.span(), field, "must not be empty"));
        }
        Ok(text.to_string())
    }

    fn integer(&self, value: &Spanned<DeValue<'_>>, field: &str) -> Result<i64, ConfigError> {
        let Some(int) = value.get_ref().as_integer() else {
            let got = value.get_ref().type_str();
            return Err(self.invalid(
                value.span(),
                field,
                format!("expected an integer, got {got}"),
            ));
        };
        i64::from_str_radix(int.as_str(), int.radix())
            .map_err(|_| self.invalid(value.span(), field, "integer out of range"))
    }

    fn number(&self, value: &Spanned<DeValue<'_>>, field: &str) -> Result<f64, ConfigError> {
        match value.get_ref() {
            DeValue::Float(float) => float
                .as_str()
                .parse::<f64>()
                .map_err(|_| self.invalid(value.span(), field, "not a number")),
            DeValue::Integer(_) => Ok(self.integer(value, field)? as f64),
            other => Err(self.invalid(
                value.span(),
                field,
                format!("expected a number, got {}", other.type_str()),
            )),
        }
    }

    /// `span` locates the table missing `key` (its header, or the inline table).
    fn missing(&self, span: Range<usize>, field: &str) -> ConfigError {
        self.invalid(span, field, "missing (required)")
    }
}

/// `prefix.key`; a key that is not a bare TOML key (empty, blank, dotted, a newline) is quoted,
/// so that the field is always named, on one line.
fn join(prefix: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}
