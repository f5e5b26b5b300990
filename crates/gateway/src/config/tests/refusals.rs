//! Refused policy files: every error names the line and the field.

use super::*;

#[test]
fn bad_role_names_line_and_field() {
    let text = full().replace("role = \"observer\"", "role = \"admin\"");
    let (line, field, message) = error(&text);
    assert_eq!((line, field.as_str()), (11, "caller[2].role"));
    assert_eq!(
        message,
        r#"expected "operator", "observer" or "safety", got "admin""#
    );
    let shown = PolicyConfig::parse(&text, "policy.toml")
        .unwrap_err()
        .to_string();
    assert_eq!(
        shown,
        r#"policy.toml:11: caller[2].role: expected "operator", "observer" or "safety", got "admin""#
    );
}

#[test]
fn unknown_keys_are_refused_everywhere() {
    let (line, field, _) = error(&full().replace("role = \"operator\"", "rol = \"operator\""));
    assert_eq!((line, field.as_str()), (5, "caller[1].rol"));
    let (line, field, _) = error(&format!("{}\nextra = 1\n", full()));
    // A key after [limits.beamline."8.3.2"] belongs to that table.
    assert_eq!(
        (line, field.as_str()),
        (26, r#"limits.beamline."8.3.2".extra"#)
    );
    let (line, field, _) = error("callers = []\n");
    assert_eq!((line, field.as_str()), (1, "callers"));
    let (line, field, _) = error(&full().replace("audience =", "audiences ="));
    assert_eq!((line, field.as_str()), (16, "jwt.audiences"));
    let (line, field, _) = error(&full().replace("burst = 100 }", "burst = 100, x = 1 }"));
    assert_eq!((line, field.as_str()), (20, "limits.per_beamline.x"));
}

#[test]
fn syntax_errors_name_the_line() {
    let (line, field, message) = error("[[caller]]\nname = \"a\"\nrole = \n");
    assert_eq!((line, field.as_str()), (3, "(syntax)"), "{message}");
    let (line, _, message) = error("[[caller]]\nname = \"a\"\nname = \"b\"\n");
    assert_eq!(line, 3, "{message}");
}

#[test]
fn caller_fields_are_validated() {
    let caller = |name: &str, digest: &str, beamlines: &str| {
        format!(
            "[[caller]]\nname = {name}\napi_key_sha256 = {digest}\nrole = \"observer\"\n\
             beamlines = {beamlines}\n"
        )
    };
    let d = format!("\"{DIGEST}\"");
    let (line, field, message) = error(&caller("\"\"", &d, "[\"*\"]"));
    assert_eq!((line, field.as_str()), (2, "caller[1].name"));
    assert!(message.contains("empty"), "{message}");
    let (line, field, _) = error(&caller("\"a\"", "\"abc\"", "[\"*\"]"));
    assert_eq!((line, field.as_str()), (3, "caller[1].api_key_sha256"));
    let (_, field, _) = error(&caller(
        "\"a\"",
        &format!("\"{}\"", "g".repeat(64)),
        "[\"*\"]",
    ));
    assert_eq!(field, "caller[1].api_key_sha256");
    let (line, field, _) = error(&caller("\"a\"", &d, "[]"));
    assert_eq!((line, field.as_str()), (5, "caller[1].beamlines"));
    let (_, field, message) = error(&caller("\"a\"", &d, "[\"5.3.1\", \"5..3\"]"));
    assert_eq!(field, "caller[1].beamlines[2]");
    assert!(message.contains("invalid beamline id"), "{message}");
    let (_, field, _) = error(&caller("\"a\"", &d, "[\"*\", \"5.3.1\"]"));
    assert_eq!(field, "caller[1].beamlines[1]");
    let (_, field, _) = error(&caller("\"a\"", &d, "\"*\""));
    assert_eq!(field, "caller[1].beamlines");
    let (_, field, _) = error(&caller("7", &d, "[\"*\"]"));
    assert_eq!(field, "caller[1].name");

    let missing = "[[caller]]\nname = \"a\"\nrole = \"observer\"\nbeamlines = [\"*\"]\n";
    let (line, field, message) = error(missing);
    assert_eq!((line, field.as_str()), (1, "caller[1].api_key_sha256"));
    assert!(message.contains("missing"), "{message}");
}

#[test]
fn caller_names_and_keys_are_unique() {
    let two = full().replace("bl531-team", "ops-console");
    let (line, field, message) = error(&two);
    assert_eq!((line, field.as_str()), (9, "caller[2].name"));
    assert!(message.contains("duplicate"), "{message}");
    let same_key = full().replace(&"ab".repeat(32), &DIGEST.to_ascii_lowercase());
    let (line, field, message) = error(&same_key);
    assert_eq!((line, field.as_str()), (10, "caller[2].api_key_sha256"));
    assert!(message.contains("ops-console"), "{message}");
}

#[test]
fn jwt_needs_exactly_one_key_source() {
    let none = "[jwt]\nissuer = \"i\"\naudience = \"a\"\n";
    let (line, field, message) = error(none);
    assert_eq!((line, field.as_str()), (1, "jwt"));
    assert!(message.contains("exactly one key source"), "{message}");
    let two = format!("{none}hs256_secret_env = \"S\"\nes256_public_key_file = \"k.pem\"\n");
    let (line, field, _) = error(&two);
    assert_eq!((line, field.as_str()), (5, "jwt.es256_public_key_file"));
    let (_, field, _) = error("[jwt]\naudience = \"a\"\nhs256_secret_env = \"S\"\n");
    assert_eq!(field, "jwt.issuer");
    let ok = format!("{none}hs256_secret_env = \"S\"\nleeway_secs = 5\n");
    let jwt = PolicyConfig::parse(&ok, "p").unwrap().jwt.unwrap();
    assert_eq!(jwt.hs256_secret_env.as_deref(), Some("S"));
    assert_eq!((jwt.leeway_secs, jwt.key_line), (5, 4));
    let (_, field, _) = error(&format!(
        "{none}hs256_secret_env = \"S\"\nleeway_secs = -1\n"
    ));
    assert_eq!(field, "jwt.leeway_secs");
}

#[test]
fn limits_are_validated() {
    let (line, field, _) = error("[limits]\nper_caller = { rate = 0, burst = 1 }\n");
    assert_eq!((line, field.as_str()), (2, "limits.per_caller.rate"));
    let (_, field, _) = error("[limits]\nper_caller = { rate = 1, burst = 0 }\n");
    assert_eq!(field, "limits.per_caller.burst");
    let (_, field, _) = error("[limits]\nper_caller = { rate = 1, burst = 1.5 }\n");
    assert_eq!(field, "limits.per_caller.burst");
    let (_, field, _) = error("[limits]\nper_caller = { rate = \"fast\", burst = 1 }\n");
    assert_eq!(field, "limits.per_caller.rate");
    let (_, field, _) = error("[limits]\nper_caller = { rate = 1 }\n");
    assert_eq!(field, "limits.per_caller.burst");
    let (line, field, message) = error("[limits.beamline.\"8..3\"]\nrate = 1\nburst = 1\n");
    assert_eq!((line, field.as_str()), (1, r#"limits.beamline."8..3""#));
    assert!(message.contains("invalid beamline id"), "{message}");
    let (line, field, _) = error("\n[limits.beamline.\"8.3.2\"]\nrate = 1\nburst = -3\n");
    assert_eq!(
        (line, field.as_str()),
        (4, r#"limits.beamline."8.3.2".burst"#)
    );
}

#[test]
fn odd_keys_are_named_quoted() {
    // Found by the property tests below: an empty key's error named no field.
    let (line, field, _) = error("\"\" = \"operator\"");
    assert_eq!((line, field.as_str()), (1, r#""""#));
    let (_, field, _) = error("\" \" = 1\n");
    assert_eq!(field, r#"" ""#);
    let (line, field, _) = error("[[caller]]\n\"a\\nb\" = 1\n");
    assert_eq!((line, field.as_str()), (2, r#"caller[1]."a\nb""#));
    let (_, field, _) = error("[limits]\n\"per_caller.rate\" = 1\n");
    assert_eq!(field, r#"limits."per_caller.rate""#);
}
