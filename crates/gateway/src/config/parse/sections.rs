//! The sections of the policy file: `[[caller]]` entries (unique names and keys, roles,
//! beamlines), `[jwt]` (exactly one key source) and `[limits]` (with per-beamline overrides),
//! each read through the walker's typed reads so that every refusal names its line and field.
//!
//! Owns what each section may hold; it must not walk TOML itself (`parse`'s).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use toml::de::DeValue;
use toml::Spanned;

use super::{join, Doc, Entry};
use crate::config::{
    is_caller_name, CallerConfig, ConfigError, JwtConfig, Limit, LimitsConfig, Role,
    DEFAULT_LEEWAY_SECS, JWT_KEY_SOURCES,
};
use beamline_contract::beamline::BeamlineId;

impl Doc<'_> {
    pub(super) fn callers(
        &self,
        value: &Spanned<DeValue<'_>>,
    ) -> Result<Vec<CallerConfig>, ConfigError> {
        let Some(array) = value.get_ref().as_array() else {
            let got = value.get_ref().type_str();
            let message = format!("expected [[caller]] entries, got {got}");
            return Err(self.invalid(value.span(), "caller", message));
        };
        let mut callers: Vec<CallerConfig> = Vec::new();
        let mut names = BTreeSet::new();
        let mut digests = BTreeMap::new();
        for (i, entry) in array.iter().enumerate() {
            let prefix = format!("caller[{}]", i + 1);
            let (caller, name_span, digest_span) = self.caller(entry, &prefix)?;
            if !names.insert(caller.name.clone()) {
                let message = format!("duplicate caller name {:?}", caller.name);
                return Err(self.invalid(name_span, &format!("{prefix}.name"), message));
            }
            if let Some(other) = digests.insert(caller.api_key_sha256.clone(), caller.name.clone())
            {
                // One key, two identities: which one a call would get must not be a guess.
                let message = format!("the same key as caller {other:?}");
                return Err(self.invalid(
                    digest_span,
                    &format!("{prefix}.api_key_sha256"),
                    message,
                ));
            }
            callers.push(caller);
        }
        Ok(callers)
    }

    /// The caller, with the spans of its name and key for the uniqueness checks.
    fn caller(
        &self,
        value: &Spanned<DeValue<'_>>,
        prefix: &str,
    ) -> Result<(CallerConfig, Range<usize>, Range<usize>), ConfigError> {
        let table = self.table(value, prefix)?;
        let (mut name, mut digest, mut role, mut beamlines) = (None, None, None, None);
        let (mut name_span, mut digest_span) = (value.span(), value.span());
        for (key, v) in self.entries(
            table,
            &["name", "api_key_sha256", "role", "beamlines"],
            prefix,
        )? {
            let key = key.get_ref().as_ref();
            let field = join(prefix, key);
            match key {
                "name" => (name, name_span) = (Some(self.caller_name(v, &field)?), v.span()),
                "api_key_sha256" => {
                    (digest, digest_span) = (Some(self.digest(v, &field)?), v.span())
                }
                "role" => role = Some(self.role(v, &field)?),
                _ => beamlines = Some(self.beamlines(v, &field)?),
            }
        }
        let need = |field: &str| self.missing(value.span(), &join(prefix, field));
        let caller = CallerConfig {
            name: name.ok_or_else(|| need("name"))?,
            api_key_sha256: digest.ok_or_else(|| need("api_key_sha256"))?,
            role: role.ok_or_else(|| need("role"))?,
            beamlines: beamlines.ok_or_else(|| need("beamlines"))?,
        };
        Ok((caller, name_span, digest_span))
    }

    /// Names travel as the `x-caller` header and into logs: printable ASCII only.
    fn caller_name(
        &self,
        value: &Spanned<DeValue<'_>>,
        field: &str,
    ) -> Result<String, ConfigError> {
        let name = self.nonempty_string(value, field)?;
        if !is_caller_name(&name) {
            let message = "must be printable ASCII without leading or trailing spaces";
            return Err(self.invalid(value.span(), field, message));
        }
        Ok(name)
    }

    fn digest(&self, value: &Spanned<DeValue<'_>>, field: &str) -> Result<String, ConfigError> {
        let text = self.string(value, field)?;
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            let message = format!(
                "expected 64 hex digits (the SHA-256 of the key; see `beamline-mesh hash-key`), \
                 got {} characters",
                text.chars().count()
            );
            return Err(self.invalid(value.span(), field, message));
        }
        Ok(text.to_ascii_lowercase())
    }

    fn role(&self, value: &Spanned<DeValue<'_>>, field: &str) -> Result<Role, ConfigError> {
        let name = self.string(value, field)?;
        Role::parse(name).ok_or_else(|| {
            self.invalid(
                value.span(),
                field,
                format!("expected \"operator\", \"observer\" or \"safety\", got {name:?}"),
            )
        })
    }

    fn beamlines(
        &self,
        value: &Spanned<DeValue<'_>>,
        field: &str,
    ) -> Result<Vec<String>, ConfigError> {
        let Some(array) = value.get_ref().as_array() else {
            let got = value.get_ref().type_str();
            let message = format!("expected an array of beamline ids or [\"*\"], got {got}");
            return Err(self.invalid(value.span(), field, message));
        };
        if array.is_empty() {
            let message = "must list at least one beamline id, or \"*\" for all";
            return Err(self.invalid(value.span(), field, message));
        }
        let mut ids = Vec::new();
        for (i, item) in array.iter().enumerate() {
            let item_field = format!("{field}[{}]", i + 1);
            let id = self.string(item, &item_field)?;
            if id == "*" {
                if array.len() > 1 {
                    let message = "\"*\" (all beamlines) must be the only entry";
                    return Err(self.invalid(item.span(), &item_field, message));
                }
            } else if let Err(e) = BeamlineId::parse(id) {
                return Err(self.invalid(item.span(), &item_field, e.to_string()));
            }
            ids.push(id.to_string());
        }
        Ok(ids)
    }

    pub(super) fn jwt(&self, value: &Spanned<DeValue<'_>>) -> Result<JwtConfig, ConfigError> {
        let table = self.table(value, "jwt")?;
        let mut allowed = vec!["issuer", "audience", "leeway_secs"];
        allowed.extend(JWT_KEY_SOURCES);
        let mut jwt = JwtConfig {
            issuer: String::new(),
            audience: String::new(),
            hs256_secret_file: None,
            hs256_secret_env: None,
            rs256_public_key_file: None,
            es256_public_key_file: None,
            leeway_secs: DEFAULT_LEEWAY_SECS,
            file: self.path.to_string(),
            key_line: 0,
        };
        let (mut issuer, mut audience, mut source) = (false, false, None::<String>);
        for (key, v) in self.entries(table, &allowed, "jwt")? {
            let key = key.get_ref().as_ref();
            let field = join("jwt", key);
            if JWT_KEY_SOURCES.contains(&key) {
                if let Some(first) = &source {
                    let message = format!("only one key source may be set, and jwt.{first} is");
                    return Err(self.invalid(v.span(), &field, message));
                }
                source = Some(key.to_string());
                jwt.key_line = self.line(v.span());
            }
            match key {
                "issuer" => (jwt.issuer, issuer) = (self.nonempty_string(v, &field)?, true),
                "audience" => (jwt.audience, audience) = (self.nonempty_string(v, &field)?, true),
                "leeway_secs" => {
                    let secs = self.integer(v, &field)?;
                    if !(0..=3600).contains(&secs) {
                        let message = format!("expected 0 to 3600 seconds, got {secs}");
                        return Err(self.invalid(v.span(), &field, message));
                    }
                    jwt.leeway_secs = secs as u64;
                }
                "hs256_secret_env" => jwt.hs256_secret_env = Some(self.nonempty_string(v, &field)?),
                "hs256_secret_file" => {
                    jwt.hs256_secret_file = Some(self.nonempty_string(v, &field)?.into())
                }
                "rs256_public_key_file" => {
                    jwt.rs256_public_key_file = Some(self.nonempty_string(v, &field)?.into())
                }
                _ => jwt.es256_public_key_file = Some(self.nonempty_string(v, &field)?.into()),
            }
        }
        if !issuer {
            return Err(self.missing(value.span(), "jwt.issuer"));
        }
        if !audience {
            return Err(self.missing(value.span(), "jwt.audience"));
        }
        if source.is_none() {
            let message = format!(
                "needs exactly one key source: {}",
                JWT_KEY_SOURCES.join(", ")
            );
            return Err(self.invalid(value.span(), "jwt", message));
        }
        Ok(jwt)
    }

    pub(super) fn limits(&self, value: &Spanned<DeValue<'_>>) -> Result<LimitsConfig, ConfigError> {
        let table = self.table(value, "limits")?;
        let mut limits = LimitsConfig::default();
        for (key, v) in
            self.entries(table, &["per_beamline", "per_caller", "beamline"], "limits")?
        {
            let key = key.get_ref().as_ref();
            let field = join("limits", key);
            match key {
                "per_beamline" => limits.per_beamline = Some(self.limit(v, &field)?),
                "per_caller" => limits.per_caller = Some(self.limit(v, &field)?),
                _ => {
                    let overrides = self.table(v, &field)?;
                    let mut entries: Vec<Entry<'_, '_>> = overrides.iter().collect();
                    entries.sort_by_key(|(id, _)| id.span().start);
                    for (id, limit) in entries {
                        let id_field = format!("{field}.{:?}", id.get_ref().as_ref());
                        let id = BeamlineId::parse(id.get_ref())
                            .map_err(|e| self.invalid(id.span(), &id_field, e.to_string()))?;
                        let limit = self.limit(limit, &id_field)?;
                        limits.beamline.insert(id.as_str().to_string(), limit);
                    }
                }
            }
        }
        Ok(limits)
    }

    fn limit(&self, value: &Spanned<DeValue<'_>>, prefix: &str) -> Result<Limit, ConfigError> {
        let table = self.table(value, prefix)?;
        let (mut rate, mut burst) = (None, None);
        for (key, v) in self.entries(table, &["rate", "burst"], prefix)? {
            let key = key.get_ref().as_ref();
            let field = join(prefix, key);
            if key == "rate" {
                let r = self.number(v, &field)?;
                if !(r.is_finite() && r > 0.0) {
                    let message = format!("expected calls per second > 0, got {r}");
                    return Err(self.invalid(v.span(), &field, message));
                }
                rate = Some(r);
            } else {
                let b = self.integer(v, &field)?;
                let Some(b) = u32::try_from(b).ok().filter(|&b| b >= 1) else {
                    let message = format!("expected a whole number of calls >= 1, got {b}");
                    return Err(self.invalid(v.span(), &field, message));
                };
                burst = Some(b);
            }
        }
        Ok(Limit {
            rate: rate.ok_or_else(|| self.missing(value.span(), &join(prefix, "rate")))?,
            burst: burst.ok_or_else(|| self.missing(value.span(), &join(prefix, "burst")))?,
        })
    }
}
