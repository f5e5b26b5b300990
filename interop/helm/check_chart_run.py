#!/usr/bin/env python3
"""Proof that helm/beamline-agent runs an agent binary unchanged: what the chart renders is what
the binary accepts and needs, for the template agent (templates/agent) and the reference one.

    python interop/helm/check_chart_run.py [REPO_ROOT [REFERENCE_BINARY [TEMPLATE_BINARY]]]

For each case the chart is rendered with real Helm (helm-python-sdk, as check_charts.py does)
from the values a user would give, and the Deployment's container `args` and `env` are taken
exactly. The binary stands in for the image ENTRYPOINT (neither case sets `command`). What the
kubelet would do is done here: env vars are resolved in order (downward API: status.podIP and
status.hostIP are 127.0.0.1; `$(NAME)` expands to earlier entries), then `$(NAME)` in args
expands to the container env. Two ports are mapped, as a node would by having things there:
  * the node-local Consul client agent, `http://$(HOST_IP):8500` → after expansion
    `http://127.0.0.1:8500`, is the test registry on 127.0.0.1:<free port>: the expansion is
    the kubelet's, then only that port is rewritten, so the default address is exercised;
  * the pod's gRPC port 9000 (`--listen 0.0.0.0:9000`, `--advertise $(POD_IP):9000`) becomes a
    free port (host parts kept), since 9000 may be taken here.
Then, against `beamline-mesh registry` and `beamline-mesh gateway`, every wait bounded: the agent
prints its listening line, registers and turns passing, answers Describe through the gateway
(`x-beamline`, same instance id as registered), and on SIGTERM deregisters and exits 0 within
drainGrace + 1 s with no warning, though the gateway still holds a connection to it.
A third case turns tls.enabled on: the Secret's mount path is mapped to certificates made here
(a throwaway CA, the agent's for <service>.service.consul, the gateway's for
gateway.beamline-mesh), the health port (--health-listen, where the probes point) to a free
port; the agent must turn passing (Consul's check goes to that port), answer grpc.health.v1 in
plaintext there for both probes' services, refuse plaintext on its gRPC port, and answer through
a gateway run with --upstream-ca/--upstream-cert/--upstream-key. Prints `ok`/`FAIL` per check, then
`chart-run: N passed, M failed`; exits non-zero on a failure.
"""

from __future__ import annotations

import datetime
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import grpc
import helm_python as helm
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ARGV = sys.argv[1:]
ROOT = Path(ARGV[0] if ARGV else Path(__file__).resolve().parents[2]).resolve()
REFERENCE = Path(ARGV[1] if len(ARGV) > 1 else ROOT / "target/debug/beamline-mesh").resolve()
TEMPLATE = Path(ARGV[2] if len(ARGV) > 2 else ROOT / "target/template/debug/thermometer-agent").resolve()
CHART = ROOT / "helm" / "beamline-agent"
sys.path.insert(0, str(ROOT / "interop" / "grpcio"))
import check_grpcio  # noqa: E402 - its stub generation and x-beamline interceptor

# Small timings for a fast run (the chart's `agent` values; drain ones in whole seconds).
FAST = {"checkInterval": "1s", "checkTimeout": "1s", "drainGraceSeconds": 1, "drainTimeoutSeconds": 3}
POD_IP = HOST_IP = "127.0.0.1"
RPC_TIMEOUT = 5.0
passed = failed = 0


class Fail(Exception):
    pass


def check(name: str, fn: Callable[[], Any]) -> Any:
    """Runs one check, prints its line; a failure raises Fail so the case stops there."""
    global passed, failed
    try:
        detail = fn()
    except Exception as e:  # noqa: BLE001 - every failure is reported and counted
        failed += 1
        print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
        raise Fail(name) from e
    passed += 1
    print(f"ok   {name}" + (f" ({detail})" if isinstance(detail, str) else ""), flush=True)
    return detail


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def render_container(values: dict[str, Any]) -> dict:
    with helm.Chart.load(CHART) as c:
        out = c.render(values, name="rel", namespace="beamline", is_install=True)
    docs = [d for p, t in out.items() if not p.endswith("NOTES.txt") for d in yaml.safe_load_all(t) if d]
    deps = [d for d in docs if d["kind"] == "Deployment"]
    assert len(deps) == 1, f"expected one Deployment, got {len(deps)}"
    (container,) = deps[0]["spec"]["template"]["spec"]["containers"]
    return container


def expand(s: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: `$$` is a literal `$`, `$(NAME)` of an undefined NAME stays."""
    return re.sub(r"\$(?:\$|\(([^)]*)\))",
                  lambda m: "$" if m.group(1) is None else env.get(m.group(1), m.group(0)), s)


def resolve_env(entries: list[dict]) -> dict[str, str]:
    """The container env as the kubelet builds it, in order."""
    fields = {"status.podIP": POD_IP, "status.hostIP": HOST_IP}
    env: dict[str, str] = {}
    for e in entries:
        if "valueFrom" not in e:
            env[e["name"]] = expand(e.get("value", ""), env)
        elif "fieldRef" in e["valueFrom"]:
            path = e["valueFrom"]["fieldRef"]["fieldPath"]
            assert path in fields, f"env {e['name']}: no stand-in for downward-API field {path}"
            env[e["name"]] = fields[path]
        elif e["valueFrom"].get("secretKeyRef", {}).get("optional"):
            continue  # an optional Secret that this test does not create
        else:
            raise AssertionError(f"env {e['name']} needs {e['valueFrom']}, which this test cannot provide")
    return env


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free now and not handed out before: the kernel may give the same ephemeral port to
    two binds in a row once the first socket is closed (CI once got one port for both the gRPC
    and the health listener, and the agent could not bind the second)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def with_port(hostport: str, port: int) -> str:
    return f"{hostport.rsplit(':', 1)[0]}:{port}"


class Proc:
    """A child process; a thread queues its stdout lines, stderr goes to a file shown on failure."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logdir: Path):
        self.name, self.log = name, logdir / f"{name}.stderr"
        self.lines: queue.Queue[str] = queue.Queue()
        with open(self.log, "wb") as err:
            self.p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=err,
                                      stdin=subprocess.DEVNULL, text=True, cwd=logdir)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.p.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_line(self, prefix: str, within: float = 30.0) -> str:
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.p.poll() is not None:
                    raise AssertionError(f"{self.name} exited {self.p.returncode}: {self.tail()}")
                continue
            if line.startswith(prefix):
                return line[len(prefix):].strip()
        raise AssertionError(f"no '{prefix}...' line from {self.name} within {within}s: {self.tail()}")

    def tail(self) -> str:
        return " | ".join(self.log.read_text(errors="replace").splitlines()[-5:])

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(timeout=10)


def poll(what: str, fn: Callable[[], Any], within: float) -> Any:
    """fn() until it returns something truthy, for at most `within` seconds."""
    deadline, last = time.monotonic() + within, None
    while time.monotonic() < deadline:
        try:
            if got := fn():
                return got
        except Exception as e:  # noqa: BLE001 - retried until the deadline, then reported
            last = e
        time.sleep(0.2)
    raise AssertionError(f"{what} not within {within}s" + (f" (last error: {last!r})" if last else ""))


def health(registry: str, service: str, passing: bool) -> list[dict]:
    url = f"{registry}/v1/health/service/{service}" + ("?passing" if passing else "")
    with urllib.request.urlopen(url, timeout=RPC_TIMEOUT) as r:
        return json.load(r)


def make_certs(d: Path, beamline_service: str) -> None:
    """A throwaway CA and, in the layout of the kubernetes.io/tls Secrets the charts mount (as
    cert-manager writes them): agent/{tls.crt,tls.key,ca.crt} for <service>.service.consul
    (server auth) and gateway/{...} for gateway.beamline-mesh (client auth). EC P-256, a day."""
    now = datetime.datetime.now(datetime.timezone.utc)

    def pem_key(k: ec.EllipticCurvePrivateKey) -> bytes:
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())

    def cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer: ec.EllipticCurvePrivateKey,
             exts: list[tuple[x509.ExtensionType, bool]]) -> x509.Certificate:
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
             .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1)))
        for ext, critical in exts:
            b = b.add_extension(ext, critical)
        return b.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert("chart-run test CA", ca_key, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "chart-run test CA")]),
              ca_key, [(x509.BasicConstraints(ca=True, path_length=None), True),
                       (x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                      data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                      crl_sign=True, encipher_only=False, decipher_only=False), True)])
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    for name, dns, eku in (("agent", f"{beamline_service}.service.consul", ExtendedKeyUsageOID.SERVER_AUTH),
                           ("gateway", "gateway.beamline-mesh", ExtendedKeyUsageOID.CLIENT_AUTH)):
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = cert(name, key, ca.subject, ca_key,
                    [(x509.BasicConstraints(ca=False, path_length=None), True),
                     (x509.SubjectAlternativeName([x509.DNSName(dns)]), False),
                     (x509.ExtendedKeyUsage([eku]), False)])
        (d / name).mkdir()
        (d / name / "tls.crt").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        (d / name / "tls.key").write_bytes(pem_key(key))
        (d / name / "ca.crt").write_bytes(ca_pem)


def health_check(addr: str, service: str) -> int:
    """grpc.health.v1.Health/Check in plaintext, as the kubelet's gRPC probe does; the status
    (1 = SERVING). The messages are encoded by hand: one string field, one enum field."""
    svc = service.encode()
    req = b"\x0a" + bytes([len(svc)]) + svc if svc else b""
    with grpc.insecure_channel(addr) as ch:
        call = ch.unary_unary("/grpc.health.v1.Health/Check",
                              request_serializer=lambda b: b, response_deserializer=lambda b: b)
        resp = call(req, timeout=RPC_TIMEOUT)
    return resp[1] if resp[:1] == b"\x08" else 0


def run_case(label: str, binary: Path, values: dict[str, Any], registry: str, gateway: str,
             stubs: tuple, procs: list[Proc], logdir: Path, tls_dir: Path | None = None) -> None:
    beamline = values["beamline"]
    service = "beamline-" + beamline.lower().replace(".", "-")
    reg_port = int(registry.rsplit(":", 1)[1])
    grpc_port = free_port()
    case: dict[str, Any] = {}  # what one step finds and a later one needs

    def prepare() -> str:
        c = render_container(values)
        assert "command" not in c, f"the chart set command {c['command']}; this test runs the binary"
        assert not c.get("envFrom"), f"envFrom {c['envFrom']} needs objects this test cannot provide"
        env = resolve_env(c.get("env", []))
        args = [expand(a, env) for a in c["args"]]
        # The kubelet's expansion made `http://$(HOST_IP):8500` `http://127.0.0.1:8500`: the
        # node-local Consul client agent. Here the registry plays it on a free port (8500 may be
        # taken, and HOST_IP is an IP, not HOST:PORT), so that port alone is rewritten afterwards.
        node_consul = f"http://{HOST_IP}:8500"
        env = {k: (f"http://{HOST_IP}:{reg_port}" if v == node_consul else v) for k, v in env.items()}
        args = [f"http://{HOST_IP}:{reg_port}" if a == node_consul else a for a in args]
        for flag in ("--listen", "--advertise"):  # 9000 → a free port, host part as rendered
            i = args.index(flag) + 1
            assert args[i].endswith(":9000"), f"{flag} {args[i]}: not the chart's port 9000"
            args[i] = with_port(args[i], grpc_port)
        assert args[args.index("--consul") + 1] == env["CONSUL_HTTP_ADDR"] == registry, (args, env)
        mapped = ""
        if tls_dir is not None:
            # The Secret's mount: each file the args name under it is the same key in tls_dir.
            (mount,) = [m["mountPath"] for m in c["volumeMounts"] if m["name"] == "tls"]
            args = [str(tls_dir / a[len(mount) + 1:]) if a.startswith(mount + "/") else a for a in args]
            for f in ("--tls-cert", "--tls-key", "--client-ca"):
                assert Path(args[args.index(f) + 1]).is_file(), f"{f}: not a key of the Secret"
            # The health port: the probes' port, moved like the gRPC port.
            i = args.index("--health-listen") + 1
            rendered = int(args[i].rsplit(":", 1)[1])
            probes = {c[p]["grpc"]["port"] for p in ("readinessProbe", "livenessProbe")}
            assert probes == {rendered}, f"probes on {probes}, --health-listen {args[i]}"
            case["health"] = free_port()
            args[i] = with_port(args[i], case["health"])
            case["probe_services"] = [c[p]["grpc"].get("service", "") for p in ("readinessProbe", "livenessProbe")]
            mapped = f", {mount} → {tls_dir}, health port {rendered} → {case['health']}"
        case["args"], case["env"] = args, env
        return (f"args {' '.join(args)}; env {' '.join(f'{k}={v}' for k, v in env.items())}; "
                f"Consul $(HOST_IP):8500 → 127.0.0.1:{reg_port}, gRPC port 9000 → {grpc_port}{mapped}")

    check(f"{label}: render helm/beamline-agent, resolve args/env as the kubelet does", prepare)
    outer = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}
    agent = Proc(f"agent-{beamline}", [str(binary), *case["args"]], {**outer, **case["env"]}, logdir)
    procs.append(agent)
    check(f"{label}: {binary.name} starts with exactly those args",
          lambda: "listening on " + agent.wait_line(f"agent beamline {beamline} listening on ", 30))

    def registered() -> str:
        entries = poll(f"a passing {service} instance", lambda: health(registry, service, True), 20)
        (e,) = entries
        s = e["Service"]
        assert f"{s['Address']}:{s['Port']}" == f"{POD_IP}:{grpc_port}", s
        case["instance"] = s["Meta"]["instance_id"]
        return f"{service} at {s['Address']}:{s['Port']}, instance {case['instance']}"

    check(f"{label}: registered and passing in the registry", registered)

    if tls_dir is not None:
        def probes() -> str:
            got = {svc: health_check(f"127.0.0.1:{case['health']}", svc) for svc in case["probe_services"]}
            assert all(v == 1 for v in got.values()), f"health on the probe port: {got}"

            def plaintext_refused() -> None:
                try:
                    health_check(f"127.0.0.1:{grpc_port}", "")
                except grpc.RpcError as e:
                    assert e.code() == grpc.StatusCode.UNAVAILABLE, e
                    return
                raise AssertionError("the gRPC port answered plaintext")
            plaintext_refused()
            return f"{got} on {case['health']} in plaintext; the TLS port refuses plaintext"

        check(f"{label}: the probes' port serves grpc.health.v1 in plaintext", probes)

    def describe() -> str:
        pb, pb_grpc = stubs
        with grpc.insecure_channel(gateway) as ch:
            stub = pb_grpc.BeamlineAgentStub(grpc.intercept_channel(ch, check_grpcio.RoutingKey(beamline)))
            card = poll("Describe through the gateway",
                        lambda: stub.Describe(pb.DescribeRequest(), timeout=RPC_TIMEOUT), 15)
        assert card.beamline == beamline, card.beamline
        assert card.instance_id == case["instance"], (card.instance_id, case["instance"])
        return f"{card.beamline}, {card.instance_id}, capabilities {sorted(c.name for c in card.capabilities)}"

    check(f"{label}: Describe through the gateway answers from it", describe)

    agent.p.send_signal(signal.SIGTERM)
    started = time.monotonic()

    def deregistered() -> str:
        poll(f"{service} gone from the registry", lambda: not health(registry, service, False), 10)
        return f"after {time.monotonic() - started:.1f}s"

    check(f"{label}: SIGTERM deregisters it", deregistered)
    # Nothing runs, so the drain ends after the grace: with the gateway still connected, the
    # agent must close its connections at once (GOAWAY), not wait out its stop bound.
    bound = FAST["drainGraceSeconds"] + 1

    def exits() -> str:
        try:
            code = agent.p.wait(timeout=max(0.0, bound - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {bound}s after SIGTERM: {agent.tail()}")
        assert code == 0, f"exit code {code}: {agent.tail()}"
        warns = [ln.split(" WARN ", 1)[1] for ln in agent.log.read_text().splitlines() if " WARN " in ln]
        assert not warns, f"the agent warned while stopping: {' | '.join(warns)}"
        return f"exit 0 after {time.monotonic() - started:.1f}s, bound {bound}s, no warning"

    check(f"{label}: exits 0 within drainGrace + 1 s, with no warning, the gateway connected", exits)

def main() -> int:
    print(f"helm SDK {helm.helm_sdk_version()}, grpcio {grpc.__version__}; chart {CHART}", flush=True)
    template_values = yaml.safe_load((ROOT / "templates/agent/values.yaml").read_text())
    cases = [
        ("template agent", TEMPLATE, merge(template_values, {"beamline": "7.3.3", "agent": FAST})),
        ("reference agent", REFERENCE, {"beamline": "5.3.1", "agent": FAST}),
    ]
    # Mutual TLS (tls.enabled): the chart's Secret paths point at certificates made here, and a
    # gateway with --upstream-* (as helm/beamline-mesh's gateway.upstreamTls renders it) calls it.
    tls_values = {"beamline": "8.0.1", "agent": FAST, "tls": {"enabled": True}}
    procs: list[Proc] = []
    base_env = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}
    with tempfile.TemporaryDirectory(prefix="beamline-chart-run-") as tmp:
        logdir = Path(tmp)
        try:
            (logdir / "stubs").mkdir()
            stubs = check_grpcio.generate_stubs(logdir / "stubs")
            reg = Proc("registry", [str(REFERENCE), "registry", "--listen", "127.0.0.1:0"], base_env, logdir)
            procs.append(reg)
            registry = "http://" + check("registry starts", lambda: reg.wait_line("registry listening on http://"))
            gw = Proc("gateway", [str(REFERENCE), "gateway", "--listen", "127.0.0.1:0", "--consul", registry,
                                  "--insecure-no-auth"], base_env, logdir)
            procs.append(gw)
            gateway = check("gateway starts", lambda: gw.wait_line("gateway listening on "))
            print(f"     registry {registry}, gateway {gateway}", flush=True)
            for label, binary, values in cases:
                try:
                    run_case(label, binary, values, registry, gateway, stubs, procs, logdir)
                except Fail:
                    pass  # reported; the next case still runs
            tls = logdir / "tls"
            tls.mkdir()
            check("a throwaway CA, the agent's and the gateway's certificates",
                  lambda: make_certs(tls, "beamline-8-0-1"))
            up = tls / "gateway"
            tgw = Proc("gateway-mtls", [str(REFERENCE), "gateway", "--listen", "127.0.0.1:0", "--consul",
                                        registry, "--insecure-no-auth", "--upstream-ca", str(up / "ca.crt"),
                                        "--upstream-cert", str(up / "tls.crt"), "--upstream-key",
                                        str(up / "tls.key")], base_env, logdir)
            procs.append(tgw)
            tls_gateway = check("gateway with --upstream-* starts", lambda: tgw.wait_line("gateway listening on "))
            try:
                run_case("reference agent, mutual TLS", REFERENCE, tls_values, registry, tls_gateway,
                         stubs, procs, logdir, tls_dir=tls / "agent")
            except Fail:
                pass
        except Fail:
            pass
        finally:
            for p in reversed(procs):
                p.stop()
    print(f"chart-run: {passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
