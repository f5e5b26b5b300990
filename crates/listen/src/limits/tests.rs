//! Unit tests of `Limits`: defaults and the environment overrides.

use super::*;

fn with(vars: &[(&str, &str)]) -> Result<Limits, LimitsError> {
    Limits::default().with_vars(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    })
}

#[test]
fn the_environment_overrides_the_defaults_and_bad_values_name_the_variable() {
    assert_eq!(with(&[]).unwrap(), Limits::default());
    let set = with(&[(MAX_CONNECTIONS_ENV, "8"), (HANDSHAKE_TIMEOUT_ENV, "500ms")]).unwrap();
    assert_eq!(set.max_connections, 8);
    assert_eq!(set.handshake_timeout, Duration::from_millis(500));
    for (value, secs) in [("2s", 2.0), ("1.5", 1.5), ("1m", 60.0)] {
        let set = with(&[(HANDSHAKE_TIMEOUT_ENV, value)]).unwrap();
        assert_eq!(set.handshake_timeout.as_secs_f64(), secs, "{value}");
    }
    for (name, bad) in [
        (MAX_CONNECTIONS_ENV, "0"),
        (MAX_CONNECTIONS_ENV, "many"),
        (HANDSHAKE_TIMEOUT_ENV, "0s"),
        (HANDSHAKE_TIMEOUT_ENV, "-1s"),
        (HANDSHAKE_TIMEOUT_ENV, "soon"),
    ] {
        let err = with(&[(name, bad)]).unwrap_err().to_string();
        assert!(err.starts_with(name), "{err}");
    }
}
