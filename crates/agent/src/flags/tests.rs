//! Unit tests of the standard agent flags: parsing, defaults and the errors that name a flag.

use super::*;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    flags: AgentFlags,
}

fn parse(args: &[&str]) -> Result<AgentFlags, String> {
    Cli::try_parse_from(std::iter::once("agent").chain(args.iter().copied()))
        .map(|c| c.flags)
        .map_err(|e| e.to_string())
}

#[test]
fn tags_and_meta_reach_the_config_and_reserved_keys_are_refused() {
    let flags = parse(&[
        "--beamline",
        "5.3.1",
        "--tag",
        "traefik.enable=true",
        "--tag",
        "sample-env",
        "--meta",
        "team=spectroscopy",
        "--consul",
        "http://127.0.0.1:8500",
    ])
    .unwrap();
    let config = flags.config().unwrap();
    assert_eq!(config.tags, ["traefik.enable=true", "sample-env"]);
    assert_eq!(
        config.meta.get("team").map(String::as_str),
        Some("spectroscopy")
    );

    for reserved in meta::RESERVED {
        let err = parse(&["--beamline", "5.3.1", "--meta", &format!("{reserved}=x")]).unwrap_err();
        assert!(err.contains("reserved"), "{reserved}: {err}");
    }
    for bad in ["novalue", "=x", "bad key=x", "a.b=x"] {
        assert!(
            parse(&["--beamline", "5.3.1", "--meta", bad]).is_err(),
            "{bad}"
        );
    }
    let twice = parse(&["--beamline", "1.1", "--meta", "a=1", "--meta", "a=2"]).unwrap();
    assert!(twice.config().unwrap_err().to_string().contains("twice"));
    assert!(parse(&["--beamline", "5.3.1", "--tag", ""]).is_err());
}

#[test]
fn advertised_addresses_must_be_dialable() {
    assert_eq!(
        parse_host_port("[::1]:9000").unwrap(),
        ("::1".to_string(), 9000)
    );
    for bad in ["host", ":9000", "0.0.0.0:9000", "[::]:9000", "h:0", "h:x"] {
        assert!(parse_host_port(bad).is_err(), "{bad}");
    }
}
