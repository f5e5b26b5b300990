//! `beamline-mesh demo --mtls` and `beamline-mesh dev --mtls` end to end: the same stacks as in
//! `cli_demo`, with the gateway and the agents over mutual TLS on throwaway certificates.
//!
//! - `demo --mtls` exits 0 with its usual tour (0 failed calls during the failover) and its
//!   step 5: a direct Describe to an agent without a client certificate, and with a gateway
//!   certificate from another CA, both refused in the handshake (the agent says why), while the
//!   gateway is answered; its certificate directory is gone afterwards.
//! - `dev --mtls` serves Describe through its gateway and, on SIGTERM, stops and removes its
//!   certificates.

use std::path::PathBuf;

use crate::cli_demo::{last_chars, stack_addresses, wait_closed, Dev, DEMO_DEADLINE};
use crate::support::agent::run_to_exit;
use crate::support::cli::call;
use crate::support::*;

/// The certificate directory from the line `… certificates in DIR (removed on exit)`.
fn certificate_dir(stdout: &str) -> Option<PathBuf> {
    let line = stdout.lines().find(|l| l.contains("mutual TLS between"))?;
    let (_, rest) = line.split_once("certificates in ")?;
    let (dir, _) = rest.rsplit_once(" (removed on exit)")?;
    Some(PathBuf::from(dir))
}

#[test]
fn demo_mtls_refuses_forged_direct_calls_and_serves_the_gateway() {
    let out = run_to_exit(&["demo", "--mtls"], DEMO_DEADLINE);
    let report = format!(
        "--- stdout ---\n{}\n--- stderr (tail) ---\n{}",
        out.stdout,
        last_chars(&out.stderr, 4000)
    );
    assert!(
        out.status.success(),
        "demo --mtls exited {}\n{report}",
        out.status
    );
    for needle in [
        // The usual tour still works over mutual TLS.
        "200 calls: 200 succeeded, 0 failed",
        "COMPLETED",
        "critical",
        // The refusal step.
        "5. A forged call: Describe straight to 7.0.1's agent",
        "without a client certificate: refused",
        "error=peer sent no certificates",
        "with a certificate for gateway.beamline-mesh from another CA: refused",
        "error=invalid peer certificate: UnknownIssuer",
        "through the gateway (its client certificate from the stack's CA): answered by \
         beamline-7-0-1-",
        "forged direct calls refused in the TLS handshake",
    ] {
        assert!(out.stdout.contains(needle), "no {needle:?}\n{report}");
    }
    assert!(!out.stdout.contains("ANSWERED"), "{report}");
    assert!(!out.stdout.contains("plaintext on loopback"), "{report}");

    let dir = certificate_dir(&out.stdout).unwrap_or_else(|| panic!("no directory\n{report}"));
    assert!(!dir.exists(), "{} is still there\n{report}", dir.display());
    let addrs = stack_addresses(&out.stdout);
    assert_eq!(addrs.len(), 6, "{addrs:?}\n{report}");
    for (name, addr) in addrs {
        wait_closed(&name, addr, secs(5));
    }
}

#[test]
fn dev_mtls_serves_describe_through_its_gateway_and_removes_its_certificates() {
    let mut dev = Dev::start(&[
        "--mtls",
        "--registry-listen",
        "127.0.0.1:0",
        "--gateway-listen",
        "127.0.0.1:0",
    ]);
    dev.wait_line("Ctrl-C stops everything", secs(60));
    let stdout = dev.stdout.join("\n");
    let dir = certificate_dir(&stdout).unwrap_or_else(|| panic!("no directory:\n{stdout}"));
    for file in ["ca.pem", "gateway.pem", "gateway.key", "beamline-5-3-1.pem"] {
        assert!(dir.join(file).is_file(), "no {file} in {}", dir.display());
    }
    let addrs = stack_addresses(&stdout);
    let gateway = addrs
        .iter()
        .find(|(n, _)| n == "gateway")
        .map(|(_, a)| *a)
        .expect("gateway address");

    let url = format!("http://{gateway}");
    for beamline in ["5.3.1", "7.0.1", "12.3.1"] {
        let card = call(&["--gateway", &url, "--beamline", beamline, "describe"])
            .expect_code(0)
            .json();
        assert_eq!(card["beamline"], beamline);
    }

    dev.sigterm();
    let status = dev.wait_exit(secs(30));
    assert!(status.success(), "dev --mtls exited {status}");
    assert!(!dir.exists(), "{} is still there", dir.display());
    for (name, addr) in addrs {
        wait_closed(&name, addr, secs(5));
    }
}
