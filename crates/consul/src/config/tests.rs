use std::collections::HashMap;

use super::*;

fn parse(vars: &[(&str, &str)]) -> Result<ConsulEnv, ConsulError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ConsulEnv::parse(|name| map.get(name).cloned())
}

fn config(flag: Option<&str>, vars: &[(&str, &str)]) -> Result<ConsulConfig, ConsulError> {
    ConsulConfig::from_env(flag, &parse(vars)?)
}

#[test]
fn nothing_set_is_consul_on_localhost_without_a_token() {
    let config = config(None, &[]).unwrap();
    assert_eq!(config.addr, DEFAULT_ADDR);
    assert_eq!(config.token, None);
    assert!(config.tls.is_none());
}

#[test]
fn the_address_comes_from_the_flag_then_consul_http_addr() {
    let env = [("CONSUL_HTTP_ADDR", "https://consul.example:8501")];
    assert_eq!(
        config(None, &env).unwrap().addr,
        "https://consul.example:8501"
    );
    assert_eq!(
        config(Some("10.0.0.1:8500"), &env).unwrap().addr,
        "http://10.0.0.1:8500"
    );
    assert_eq!(
        config(None, &[("CONSUL_HTTP_ADDR", "consul:8500")])
            .unwrap()
            .addr,
        "http://consul:8500"
    );
    // Empty is unset, as in Consul.
    assert_eq!(
        config(None, &[("CONSUL_HTTP_ADDR", "")]).unwrap().addr,
        DEFAULT_ADDR
    );
}

#[test]
fn consul_http_ssl_makes_the_address_https() {
    for addr in ["consul:8501", "http://consul:8501"] {
        let vars = [("CONSUL_HTTP_ADDR", addr), ("CONSUL_HTTP_SSL", "true")];
        assert_eq!(config(None, &vars).unwrap().addr, "https://consul:8501");
    }
    let off = [
        ("CONSUL_HTTP_ADDR", "consul:8500"),
        ("CONSUL_HTTP_SSL", "0"),
    ];
    assert_eq!(config(None, &off).unwrap().addr, "http://consul:8500");
}

#[test]
fn the_token_comes_from_consul_http_token() {
    let config = config(None, &[("CONSUL_HTTP_TOKEN", "secret")]).unwrap();
    assert_eq!(config.token.as_deref(), Some("secret"));
}

#[test]
fn a_token_file_is_read_trimmed_and_wins_over_consul_http_token_as_in_consul() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "  from-file\n").unwrap();
    let path = file.to_str().unwrap();
    let only_file = config(None, &[("CONSUL_HTTP_TOKEN_FILE", path)]).unwrap();
    assert_eq!(only_file.token.as_deref(), Some("from-file"));
    // Consul's api.NewClient: "If the TokenFile is set, always use that, even if a Token is
    // configured."
    let both = config(
        None,
        &[
            ("CONSUL_HTTP_TOKEN_FILE", path),
            ("CONSUL_HTTP_TOKEN", "from-env"),
        ],
    )
    .unwrap();
    assert_eq!(both.token.as_deref(), Some("from-file"));
    // A blank file leaves the variable's token.
    std::fs::write(&file, "\n").unwrap();
    let blank = config(
        None,
        &[
            ("CONSUL_HTTP_TOKEN_FILE", path),
            ("CONSUL_HTTP_TOKEN", "from-env"),
        ],
    )
    .unwrap();
    assert_eq!(blank.token.as_deref(), Some("from-env"));
}

#[test]
fn an_unreadable_token_file_names_consul_http_token_file() {
    let error = config(None, &[("CONSUL_HTTP_TOKEN_FILE", "/nonexistent/token")]).unwrap_err();
    let text = error.to_string();
    assert!(
        text.starts_with("CONSUL_HTTP_TOKEN_FILE: /nonexistent/token: cannot read it"),
        "{text}"
    );
}

#[test]
fn tls_variables_are_parsed_as_consul_reads_them() {
    let env = parse(&[
        ("CONSUL_CACERT", "/etc/consul/ca.pem"),
        ("CONSUL_CLIENT_CERT", "/etc/consul/cli.pem"),
        ("CONSUL_CLIENT_KEY", "/etc/consul/cli-key.pem"),
        ("CONSUL_TLS_SERVER_NAME", "server.dc1.consul:8501"),
    ])
    .unwrap();
    assert_eq!(
        env.tls,
        TlsSettings {
            ca: Some(PemFile::new("CONSUL_CACERT", "/etc/consul/ca.pem")),
            identity: Some((
                PemFile::new("CONSUL_CLIENT_CERT", "/etc/consul/cli.pem"),
                PemFile::new("CONSUL_CLIENT_KEY", "/etc/consul/cli-key.pem"),
            )),
            server_name: Some("server.dc1.consul".into()),
            skip_verify: false,
        }
    );
    assert!(!env.tls.is_default());
}

#[test]
fn consul_tls_server_name_drops_a_port_like_consul() {
    let name = |v: &str| {
        parse(&[("CONSUL_TLS_SERVER_NAME", v)])
            .unwrap()
            .tls
            .server_name
            .unwrap()
    };
    assert_eq!(name("consul.example"), "consul.example");
    assert_eq!(name("consul.example:8501"), "consul.example");
    assert_eq!(name("[::1]:8501"), "::1");
    assert_eq!(name("::1"), "::1");
    assert_eq!(name("10.0.0.1:8501"), "10.0.0.1");
}

#[test]
fn consul_http_ssl_verify_takes_go_booleans_and_refuses_typos() {
    let skip = |v: &str| parse(&[("CONSUL_HTTP_SSL_VERIFY", v)]).map(|e| e.tls.skip_verify);
    for off in ["false", "0", "f", "FALSE", "False"] {
        assert!(skip(off).unwrap(), "{off}");
    }
    for on in ["true", "1", "T"] {
        assert!(!skip(on).unwrap(), "{on}");
    }
    let error = skip("ture").unwrap_err().to_string();
    assert!(
        error.starts_with("CONSUL_HTTP_SSL_VERIFY: \"ture\""),
        "{error}"
    );
}

#[test]
fn a_client_certificate_needs_both_variables() {
    let error = parse(&[("CONSUL_CLIENT_CERT", "/c.pem")]).unwrap_err();
    assert!(
        error.to_string().starts_with("CONSUL_CLIENT_KEY:"),
        "{error}"
    );
    let error = parse(&[("CONSUL_CLIENT_KEY", "/k.pem")]).unwrap_err();
    assert!(
        error.to_string().starts_with("CONSUL_CLIENT_CERT:"),
        "{error}"
    );
}

#[test]
fn consul_capath_alone_is_refused_by_name() {
    let error = parse(&[("CONSUL_CAPATH", "/etc/ssl/consul")]).unwrap_err();
    assert!(error.to_string().contains("CONSUL_CACERT"), "{error}");
    // With CONSUL_CACERT, Consul uses the file; so does this.
    assert!(parse(&[("CONSUL_CAPATH", "/x"), ("CONSUL_CACERT", "/ca.pem")]).is_ok());
}

#[test]
fn an_invalid_server_name_names_its_variable() {
    let env = parse(&[
        ("CONSUL_TLS_SERVER_NAME", "not a name"),
        ("CONSUL_HTTP_ADDR", "https://127.0.0.1:8501"),
    ])
    .unwrap();
    let error = ConsulConfig::from_env(None, &env).unwrap_err();
    assert!(
        error.to_string().starts_with("CONSUL_TLS_SERVER_NAME"),
        "{error}"
    );
}
