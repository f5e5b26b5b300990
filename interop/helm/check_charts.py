#!/usr/bin/env python3
"""Render and check the Helm charts under helm/ with real Helm (helm-python-sdk, Helm v4's Go
SDK, no helm binary) and validate every manifest with kubernetes-validate --strict.

    python interop/helm/check_charts.py [REPO_ROOT]

Prints one line per check and a final `helm: N passed, M failed`; exits non-zero on a failure.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2])
MESH = ROOT / "helm" / "beamline-mesh"
AGENT = ROOT / "helm" / "beamline-agent"
# The newest Kubernetes release whose schemas the pinned kubernetes-validate ships (1.37.0).
KUBE_VERSION = os.environ.get("HELM_CHECK_KUBE_VERSION") or kubernetes_validate.latest_version()
# Custom resources have no schema in kubernetes-validate; checked by the assertions instead
# (cert-manager Certificates by check_certificate, field by field, wherever one renders).
CERTIFICATE = ("cert-manager.io/v1", "Certificate")
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), CERTIFICATE}
# cert-manager.io/v1 KeyUsage values (cert-manager's API reference).
CERT_MANAGER_USAGES = {
    "signing", "digital signature", "content commitment", "key encipherment", "key agreement",
    "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any",
    "server auth", "client auth", "code signing", "email protection", "s/mime", "ipsec end system",
    "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc",
}
GO_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
DNS_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")

passed = 0
failed = 0


def check(name: str, fn: Callable[[], None]) -> None:
    global passed, failed
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - every failure is reported and counted
        failed += 1
        print(f"FAIL {name}: {type(e).__name__}: {e}")
        if not isinstance(e, AssertionError):
            traceback.print_exc(limit=3)
    else:
        passed += 1
        print(f"ok   {name}")


def render(chart: Path, values: dict[str, Any], name: str = "rel", ns: str = "beamline") -> list[dict]:
    with helm.Chart.load(chart) as c:
        out = c.render(values, name=name, namespace=ns, is_install=True)
    docs: list[dict] = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt") or not text.strip():
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc["__source__"] = path
                docs.append(doc)
    return docs


def notes(chart: Path, values: dict[str, Any]) -> str:
    with helm.Chart.load(chart) as c:
        out = c.render(values, name="rel", namespace="beamline")
    return next(v for k, v in out.items() if k.endswith("NOTES.txt"))


def validate_all(docs: list[dict]) -> None:
    assert docs, "nothing rendered"
    for d in docs:
        d = {k: v for k, v in d.items() if k != "__source__"}
        if (d.get("apiVersion"), d.get("kind")) == CERTIFICATE:
            check_certificate(d)
        if (d.get("apiVersion"), d.get("kind")) in CRD_KINDS:
            continue
        kubernetes_validate.validate(d, KUBE_VERSION, strict=True)


def check_certificate(d: dict) -> None:
    """A cert-manager.io/v1 Certificate, by hand (kubernetes-validate has no CRD schemas): the
    fields this chart sets, with the types and values cert-manager's CRD accepts."""
    allowed = {"apiVersion", "kind", "metadata", "spec"}
    assert set(d) <= allowed, f"Certificate has {set(d) - allowed}"
    meta = d["metadata"]
    assert DNS_NAME.match(meta["name"]) and len(meta["name"]) <= 253, meta["name"]
    assert isinstance(meta.get("namespace"), str) and meta["namespace"], meta
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in meta.get("labels", {}).items())
    spec = d["spec"]
    known = {"secretName", "dnsNames", "usages", "privateKey", "duration", "renewBefore",
             "issuerRef", "commonName", "ipAddresses", "uris", "secretTemplate"}
    assert set(spec) <= known, f"Certificate spec has unknown fields {set(spec) - known}"
    assert isinstance(spec["secretName"], str) and DNS_NAME.match(spec["secretName"]), spec
    names = spec["dnsNames"]
    assert isinstance(names, list) and names, f"dnsNames {names!r}"
    for n in names:
        assert isinstance(n, str) and DNS_NAME.match(n), f"dnsName {n!r}"
    usages = spec["usages"]
    assert isinstance(usages, list) and set(usages) <= CERT_MANAGER_USAGES, f"usages {usages}"
    ref = spec["issuerRef"]
    assert set(ref) <= {"name", "kind", "group"} and isinstance(ref["name"], str) and ref["name"], ref
    assert isinstance(ref.get("group", "cert-manager.io"), str) and ref.get("group", "x"), ref
    if ref.get("group", "cert-manager.io") == "cert-manager.io":
        assert ref.get("kind", "Issuer") in ("Issuer", "ClusterIssuer"), ref
    for k in ("duration", "renewBefore"):
        if k in spec:
            assert isinstance(spec[k], str) and GO_DURATION.match(spec[k]), f"{k} {spec[k]!r}"
    pk = spec.get("privateKey", {})
    assert set(pk) <= {"algorithm", "size", "rotationPolicy", "encoding"}, pk
    assert pk.get("algorithm", "RSA") in ("RSA", "ECDSA", "Ed25519"), pk
    assert isinstance(pk.get("size", 256), int), pk
    assert pk.get("rotationPolicy", "Never") in ("Never", "Always"), pk


def one(docs: list[dict], kind: str, name_suffix: str = "") -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind} *{name_suffix}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def kinds(docs: list[dict]) -> list[str]:
    return sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)


def container(workload: dict) -> dict:
    cs = workload["spec"]["template"]["spec"]["containers"]
    assert len(cs) == 1, f"expected one container, got {len(cs)}"
    return cs[0]


def flag(args: list[str], name: str) -> str:
    assert args.count(name) == 1, f"{name} appears {args.count(name)} times in {args}"
    return args[args.index(name) + 1]


def env(c: dict) -> dict[str, dict]:
    return {e["name"]: e for e in c.get("env", [])}


def volumes(workload: dict) -> dict[str, dict]:
    return {v["name"]: v for v in workload["spec"]["template"]["spec"].get("volumes") or []}


def mounts(c: dict) -> dict[str, dict]:
    return {m["mountPath"]: m for m in c.get("volumeMounts") or []}


def secret_file(workload: dict, c: dict, path: str) -> tuple[str, str]:
    """(Secret name, key) that the container file `path` comes from, via a read-only mount."""
    d, name = path.rsplit("/", 1)
    m = mounts(c).get(d)
    assert m, f"{path}: nothing mounted at {d} ({sorted(mounts(c))})"
    assert m.get("readOnly") is True, f"{d} is not mounted read-only"
    sec = volumes(workload)[m["name"]]["secret"]
    items = sec.get("items")
    if items is None:
        return sec["secretName"], name
    keys = [i["key"] for i in items if i["path"] == name]
    assert keys, f"{path}: the {m['name']} volume projects no {name} ({items})"
    return sec["secretName"], keys[0]


def certificates(docs: list[dict]) -> list[dict]:
    return [d for d in docs if (d.get("apiVersion"), d.get("kind")) == CERTIFICATE]


def certificate_for(docs: list[dict], secret: str) -> dict:
    found = [d for d in certificates(docs) if d["spec"]["secretName"] == secret]
    assert len(found) == 1, f"expected one Certificate writing Secret {secret}, got {len(found)}"
    return found[0]


TLS_FLAGS = ("--tls-cert", "--tls-key", "--client-ca", "--health-listen", "--upstream-ca",
             "--upstream-cert", "--upstream-key")
CONSUL_TLS_ENV = ("CONSUL_CACERT", "CONSUL_CLIENT_CERT", "CONSUL_CLIENT_KEY", "CONSUL_TLS_SERVER_NAME")


def grpc_port(c: dict) -> int:
    return next(p["containerPort"] for p in c["ports"] if p["name"] == "grpc")


def assert_grpc_probes(c: dict, port: int, probe_port: int | None = None) -> None:
    """gRPC probes on `probe_port` (default: the gRPC port itself)."""
    assert grpc_port(c) == port, f"grpc containerPort {grpc_port(c)} != {port}"
    port = probe_port or port
    for probe in ("readinessProbe", "livenessProbe"):
        p = c[probe]
        assert "grpc" in p, f"{probe} is not a gRPC probe: {p}"
        assert p["grpc"]["port"] == port, f"{probe} port {p['grpc']['port']} != {port}"
        assert "httpGet" not in p and "tcpSocket" not in p and "exec" not in p
    assert c["readinessProbe"]["grpc"]["service"] == "beamline.v1.BeamlineAgent"
    assert c["livenessProbe"]["grpc"].get("service", "") == ""


def assert_rejected(chart: Path, values: dict[str, Any], why: str) -> None:
    try:
        render(chart, values)
    except helm.HelmError as e:
        msg = str(e)
        assert why in msg, f"rendering failed, but not for {why!r}: {msg}"
        return
    raise AssertionError(f"rendering {values} succeeded; it must fail ({why})")


# --- the value sets ---------------------------------------------------------------------------
MESH_DEFAULT: dict[str, Any] = {}
MESH_PRODUCTION: dict[str, Any] = {
    "gateway": {
        "replicas": 3,
        "authFile": {"secretName": "beamline-gateway-auth", "key": "policy.toml"},
        "tls": {"enabled": True, "secretName": "beamline-gateway-tls"},
        "allowPlaintext": False,
    },
    "registry": {"embedded": False},
    "consul": {
        "address": "http://consul-server.consul.svc:8500",
        "token": {"secretName": "beamline-gateway-consul-token", "key": "token"},
    },
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
}
MESH_EMBEDDED: dict[str, Any] = {
    "registry": {"embedded": True, "storage": {"size": "2Gi", "storageClassName": "local-path"}},
    "gateway": {"replicas": 1, "insecureNoAuth": True},
}
AGENT_SET: dict[str, Any] = {
    "beamline": "12.3.1-SST",
    "replicas": 3,
    "image": {"repository": "registry.example/bl1231/agent", "tag": "2.4.0"},
    "consul": {
        "address": "http://consul-server.consul.svc:8500",
        "token": {"secretName": "bl1231-consul-token"},
    },
    "agent": {"drainTimeoutSeconds": 120, "drainGraceSeconds": 5},
    "extraArgs": ["--seed", "7"],
    "extraEnv": [{"name": "EPICS_CA_ADDR_LIST", "value": "10.0.0.255"}],
}
AGENT_MINIMAL: dict[str, Any] = {"beamline": "5.3.1"}
# Mutual TLS from a Secret the team made.
AGENT_TLS: dict[str, Any] = {"beamline": "5.3.1", "tls": {"enabled": True, "secretName": "bl531-tls"}}
# Mutual TLS with a cert-manager Certificate, another health port, Consul over HTTPS.
AGENT_TLS_CM: dict[str, Any] = {
    "beamline": "12.3.1-SST",
    "tls": {
        "enabled": True,
        "healthPort": 9100,
        "certManager": {"issuerRef": {"name": "mesh-ca", "kind": "ClusterIssuer"},
                        "duration": "2160h", "renewBefore": "360h"},
    },
    "consul": {
        "address": "https://consul-server.consul.svc:8501",
        "token": {"secretName": "bl1231-consul-token"},
        "tls": {"caSecretName": "consul-ca", "clientSecretName": "bl1231-consul-client",
                "serverName": "server.dc1.consul"},
    },
}
# Agents to gateway over mutual TLS from a Secret; an existing Consul over HTTPS.
MESH_TLS: dict[str, Any] = {
    **MESH_PRODUCTION,
    "gateway": {**MESH_PRODUCTION["gateway"],
                "upstreamTls": {"enabled": True, "secretName": "beamline-gateway-upstream"}},
    "consul": {
        "address": "https://consul-server.consul.svc:8501",
        "token": {"secretName": "beamline-gateway-consul-token", "key": "token"},
        "tls": {"caSecretName": "consul-ca", "caKey": "consul-agent-ca.pem",
                "serverName": "server.dc1.consul"},
    },
}
# The embedded registry over HTTPS with client certificates, every certificate by cert-manager.
MESH_EMBEDDED_TLS_CM: dict[str, Any] = {
    "registry": {"embedded": True, "tls": {
        "enabled": True, "clientCa": True, "extraDnsNames": ["registry.beamline.example"],
        "certManager": {"issuerRef": {"name": "mesh-ca", "kind": "ClusterIssuer"}}}},
    "gateway": {"replicas": 1, "insecureNoAuth": True, "upstreamTls": {
        "enabled": True, "certManager": {"issuerRef": {"name": "mesh-ca", "kind": "ClusterIssuer"}}}},
    "consul": {"token": {"secretName": "registry-acl"}},
}
# The embedded registry over HTTPS from a Secret, no client certificates.
MESH_EMBEDDED_TLS: dict[str, Any] = {
    "registry": {"embedded": True, "tls": {"enabled": True, "secretName": "registry-tls"}},
    "gateway": {"replicas": 1, "insecureNoAuth": True},
}


def lint(chart: Path, values: dict[str, Any]) -> None:
    report = helm.lint(chart, values, kube_version=f"v{KUBE_VERSION}")
    errors = list(report.get("errors") or []) + [
        m for m in report.get("messages") or [] if m.get("severity", 0) >= 3
    ]
    assert report.get("total_charts_linted") == 1, report
    assert not errors, f"lint errors: {errors}"
    for m in report.get("messages") or []:
        print(f"     lint {chart.name}: severity {m.get('severity')} {m.get('path')}: {m.get('error')}")


def main() -> int:
    print(f"helm SDK {helm.helm_sdk_version()}, kubernetes-validate {kubernetes_validate.__version__}, "
          f"schemas for Kubernetes {KUBE_VERSION} (strict)")

    # 1. lint
    check("lint beamline-mesh (defaults)", lambda: lint(MESH, MESH_DEFAULT))
    check("lint beamline-mesh (production)", lambda: lint(MESH, MESH_PRODUCTION))
    check("lint beamline-mesh (embedded registry)", lambda: lint(MESH, MESH_EMBEDDED))
    check("lint beamline-agent (beamline=5.3.1)", lambda: lint(AGENT, AGENT_MINIMAL))
    check("lint beamline-agent (full set)", lambda: lint(AGENT, AGENT_SET))
    check("lint beamline-mesh (upstream mTLS, Consul over HTTPS)", lambda: lint(MESH, MESH_TLS))
    check("lint beamline-mesh (embedded registry HTTPS, cert-manager)",
          lambda: lint(MESH, MESH_EMBEDDED_TLS_CM))
    check("lint beamline-agent (mTLS from a Secret)", lambda: lint(AGENT, AGENT_TLS))
    check("lint beamline-agent (mTLS, cert-manager, Consul over HTTPS)", lambda: lint(AGENT, AGENT_TLS_CM))

    # 2. render and validate
    rendered: dict[str, list[dict]] = {}

    def render_validate(key: str, chart: Path, values: dict[str, Any]) -> Callable[[], None]:
        def run() -> None:
            docs = render(chart, values)
            validate_all(docs)
            rendered[key] = docs
            print(f"     {key}: {', '.join(kinds(docs))}")
        return run

    sets = [
        ("mesh-default", MESH, MESH_DEFAULT),
        ("mesh-production", MESH, MESH_PRODUCTION),
        ("mesh-embedded", MESH, MESH_EMBEDDED),
        ("agent-minimal", AGENT, AGENT_MINIMAL),
        ("agent-set", AGENT, AGENT_SET),
        ("agent-required-anti-affinity", AGENT, {"beamline": "SST-1", "antiAffinity": "required"}),
        ("mesh-tls", MESH, MESH_TLS),
        ("mesh-embedded-tls-cert-manager", MESH, MESH_EMBEDDED_TLS_CM),
        ("mesh-embedded-tls", MESH, MESH_EMBEDDED_TLS),
        ("agent-tls", AGENT, AGENT_TLS),
        ("agent-tls-cert-manager", AGENT, AGENT_TLS_CM),
    ]
    for key, chart, values in sets:
        check(f"render + kubernetes-validate --strict: {key}", render_validate(key, chart, values))

    def need(key: str) -> list[dict]:
        assert key in rendered, f"{key} did not render"
        return rendered[key]

    # 3. assertions: the framework chart
    def mesh_default() -> None:
        docs = need("mesh-default")
        dep = one(docs, "Deployment", "-gateway")
        c = container(dep)
        assert c["args"][0] == "gateway"
        assert flag(c["args"], "--listen") == "0.0.0.0:8080"
        assert_grpc_probes(c, 8080)
        assert flag(c["args"], "--auth-file").startswith("/etc/beamline-mesh/auth/")
        assert "--insecure-no-auth" not in c["args"]
        assert flag(c["args"], "--metrics-listen") == "0.0.0.0:9090"
        ann = dep["spec"]["template"]["metadata"]["annotations"]
        assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/port"] == "9090"
        assert flag(c["args"], "--consul") == "http://$(HOST_IP):8500"
        assert env(c)["HOST_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
        one(docs, "Service", "-gateway")
        pdb = one(docs, "PodDisruptionBudget", "-gateway")
        assert pdb["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
        assert not [d for d in docs if d["kind"] in ("StatefulSet", "ServiceMonitor")]
        assert not [f for f in TLS_FLAGS if f in c["args"]], c["args"]
        assert not [e for e in CONSUL_TLS_ENV if e in env(c)] and not certificates(docs)

    def mesh_production() -> None:
        docs = need("mesh-production")
        dep = one(docs, "Deployment", "-gateway")
        c = container(dep)
        assert dep["spec"]["replicas"] == 3
        args = c["args"]
        assert flag(args, "--auth-file") == "/etc/beamline-mesh/auth/policy.toml"
        assert flag(args, "--tls-cert") == "/etc/beamline-mesh/tls/tls.crt"
        assert flag(args, "--tls-key") == "/etc/beamline-mesh/tls/tls.key"
        assert "--allow-plaintext" not in args and "--insecure-no-auth" not in args
        assert flag(args, "--consul") == "http://consul-server.consul.svc:8500"
        vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
        assert vols["auth"]["secret"]["secretName"] == "beamline-gateway-auth"
        assert vols["tls"]["secret"]["secretName"] == "beamline-gateway-tls"
        tok = env(c)["CONSUL_HTTP_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert tok == {"name": "beamline-gateway-consul-token", "key": "token"}
        # The kubelet's gRPC probe has no TLS: with TLS on, gRPC probes on the plaintext
        # health-only port the gateway serves with --health-listen.
        assert_grpc_probes(c, 8080, probe_port=8081)
        args = c["args"]
        assert args[args.index("--health-listen") + 1] == "0.0.0.0:8081", args
        sm = one(docs, "ServiceMonitor")
        assert sm["spec"]["endpoints"][0]["port"] == "metrics"
        assert sm["metadata"]["labels"]["release"] == "prometheus"
        svc = one(docs, "Service", "-gateway")
        assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
        assert not [d for d in docs if d["kind"] == "StatefulSet"]

    def mesh_embedded() -> None:
        docs = need("mesh-embedded")
        sts = one(docs, "StatefulSet", "-registry")
        c = container(sts)
        assert c["args"][0] == "registry"
        assert flag(c["args"], "--listen") == "0.0.0.0:8500"
        assert flag(c["args"], "--data-dir") == "/data"
        vct = sts["spec"]["volumeClaimTemplates"][0]
        assert vct["spec"]["resources"]["requests"]["storage"] == "2Gi"
        assert vct["spec"]["storageClassName"] == "local-path"
        assert c["readinessProbe"]["httpGet"]["path"] == "/v1/status/leader"
        svc = one(docs, "Service", "-registry")
        gw = container(one(docs, "Deployment", "-gateway"))
        assert flag(gw["args"], "--consul") == (
            f"http://{svc['metadata']['name']}.beamline.svc:8500"), gw["args"]
        assert "--insecure-no-auth" in gw["args"] and "--auth-file" not in gw["args"]
        assert "--allow-plaintext" not in gw["args"]
        assert_grpc_probes(gw, 8080)
        assert "--tls-cert" not in c["args"] and not volumes(sts).get("tls")
        assert not [f for f in TLS_FLAGS if f in gw["args"]] and "CONSUL_CACERT" not in env(gw)
        assert svc["spec"]["ports"][0]["appProtocol"] == "http"

    def mesh_tls() -> None:
        docs = need("mesh-tls")
        dep = one(docs, "Deployment", "-gateway")
        c = container(dep)
        args = c["args"]
        # Agents over mutual TLS, as gateway.beamline-mesh, from the Secret's three keys.
        for f, key in (("--upstream-ca", "ca.crt"), ("--upstream-cert", "tls.crt"),
                       ("--upstream-key", "tls.key")):
            assert secret_file(dep, c, flag(args, f)) == ("beamline-gateway-upstream", key), f
        # The front door is unchanged.
        assert flag(args, "--tls-cert") == "/etc/beamline-mesh/tls/tls.crt"
        assert_grpc_probes(c, 8080, probe_port=8081)
        # Consul over HTTPS: its CA from consul.tls, the server name, the token as before.
        assert flag(args, "--consul") == "https://consul-server.consul.svc:8501"
        e = env(c)
        assert secret_file(dep, c, e["CONSUL_CACERT"]["value"]) == ("consul-ca", "consul-agent-ca.pem")
        assert e["CONSUL_TLS_SERVER_NAME"]["value"] == "server.dc1.consul"
        assert "CONSUL_CLIENT_CERT" not in e and "CONSUL_CLIENT_KEY" not in e
        assert e["CONSUL_HTTP_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "beamline-gateway-consul-token"
        assert not certificates(docs), "no issuer named: no Certificate"

    def mesh_embedded_tls_cm() -> None:
        docs = need("mesh-embedded-tls-cert-manager")
        sts = one(docs, "StatefulSet", "-registry")
        reg = container(sts)
        svc = one(docs, "Service", "-registry")
        name = svc["metadata"]["name"]
        # The registry: HTTPS from the Certificate's Secret, client certificates from its CA.
        secret = secret_file(sts, reg, flag(reg["args"], "--tls-cert"))[0]
        for f, key in (("--tls-cert", "tls.crt"), ("--tls-key", "tls.key"), ("--client-ca", "ca.crt")):
            assert secret_file(sts, reg, flag(reg["args"], f)) == (secret, key), f
        cert = certificate_for(docs, secret)
        assert cert["spec"]["dnsNames"] == [name, f"{name}.beamline", f"{name}.beamline.svc",
                                            "registry.beamline.example"], cert["spec"]["dnsNames"]
        assert "server auth" in cert["spec"]["usages"] and "client auth" not in cert["spec"]["usages"]
        assert cert["spec"]["issuerRef"] == {"name": "mesh-ca", "kind": "ClusterIssuer",
                                             "group": "cert-manager.io"}
        # The kubelet has no client certificate: TCP probes.
        for probe in ("readinessProbe", "livenessProbe"):
            assert reg[probe]["tcpSocket"]["port"] == "http" and "httpGet" not in reg[probe]
        assert svc["spec"]["ports"][0]["appProtocol"] == "https"
        # The gateway: https:// to the Service name the certificate carries, its CA only (the
        # registry's key is not projected), its own client certificate from a second Certificate.
        dep = one(docs, "Deployment", "-gateway")
        gw = container(dep)
        assert flag(gw["args"], "--consul") == f"https://{name}.beamline.svc:8500"
        e = env(gw)
        assert secret_file(dep, gw, e["CONSUL_CACERT"]["value"]) == (secret, "ca.crt")
        ca_items = volumes(dep)[mounts(gw)["/etc/beamline-mesh/consul-ca"]["name"]]["secret"]["items"]
        assert [i["key"] for i in ca_items] == ["ca.crt"], ca_items
        client = secret_file(dep, gw, e["CONSUL_CLIENT_CERT"]["value"])
        assert client[1] == "tls.crt" and secret_file(dep, gw, e["CONSUL_CLIENT_KEY"]["value"]) == (client[0], "tls.key")
        ccert = certificate_for(docs, client[0])
        assert "client auth" in ccert["spec"]["usages"] and "server auth" not in ccert["spec"]["usages"]
        assert "CONSUL_TLS_SERVER_NAME" not in e
        # Agents over mutual TLS, with a Certificate for gateway.beamline-mesh.
        up = secret_file(dep, gw, flag(gw["args"], "--upstream-cert"))[0]
        for f, key in (("--upstream-ca", "ca.crt"), ("--upstream-key", "tls.key")):
            assert secret_file(dep, gw, flag(gw["args"], f)) == (up, key), f
        ucert = certificate_for(docs, up)
        assert ucert["spec"]["dnsNames"] == ["gateway.beamline-mesh"], ucert["spec"]["dnsNames"]
        assert "client auth" in ucert["spec"]["usages"] and "server auth" not in ucert["spec"]["usages"]
        assert len(certificates(docs)) == 3, [d["metadata"]["name"] for d in certificates(docs)]
        assert_grpc_probes(gw, 8080)

    def mesh_embedded_tls() -> None:
        docs = need("mesh-embedded-tls")
        sts = one(docs, "StatefulSet", "-registry")
        reg = container(sts)
        assert secret_file(sts, reg, flag(reg["args"], "--tls-cert")) == ("registry-tls", "tls.crt")
        assert secret_file(sts, reg, flag(reg["args"], "--tls-key")) == ("registry-tls", "tls.key")
        assert "--client-ca" not in reg["args"]
        for probe in ("readinessProbe", "livenessProbe"):
            assert reg[probe]["httpGet"]["scheme"] == "HTTPS", reg[probe]
        dep = one(docs, "Deployment", "-gateway")
        gw = container(dep)
        assert flag(gw["args"], "--consul").startswith("https://")
        assert secret_file(dep, gw, env(gw)["CONSUL_CACERT"]["value"]) == ("registry-tls", "ca.crt")
        assert "CONSUL_CLIENT_CERT" not in env(gw)
        assert not [f for f in TLS_FLAGS if f in gw["args"]], gw["args"]
        assert not certificates(docs)

    check("beamline-mesh defaults: gRPC probes on 8080, auth file, metrics, PDB", mesh_default)
    check("beamline-mesh production: 3 replicas, TLS + auth secrets, Consul token, ServiceMonitor",
          mesh_production)
    check("beamline-mesh embedded registry: StatefulSet + PVC + Service, gateway points at it",
          mesh_embedded)
    check("beamline-mesh refuses auth on + TLS off without allowPlaintext",
          lambda: assert_rejected(MESH, {"gateway": {"allowPlaintext": False}}, "allowPlaintext"))
    check("beamline-mesh refuses TLS without a Secret",
          lambda: assert_rejected(MESH, {"gateway": {"tls": {"enabled": True}}}, "tls.secretName"))
    check("beamline-mesh upstream mTLS from a Secret: --upstream-* from tls.crt/tls.key/ca.crt; "
          "Consul over HTTPS with CONSUL_CACERT and CONSUL_TLS_SERVER_NAME", mesh_tls)
    check("beamline-mesh embedded registry HTTPS + client CA, cert-manager: 3 Certificates, gateway "
          "dials https:// with the registry's CA and its own client certificate, TCP probes",
          mesh_embedded_tls_cm)
    check("beamline-mesh embedded registry HTTPS from a Secret: HTTPS probes, gateway trusts its CA",
          mesh_embedded_tls)
    check("beamline-mesh refuses registry.tls.clientCa without a gateway client certificate",
          lambda: assert_rejected(MESH, {"registry": {"embedded": True, "tls": {
              "enabled": True, "clientCa": True, "secretName": "r"}}, "gateway": {"insecureNoAuth": True}},
              "registry.tls.clientCa needs a client certificate"))
    for bad, where in (({"gateway": {"upstreamTls": {"enabled": "true"}}}, "/gateway/upstreamTls/enabled"),
                       ({"gateway": {"upstreamTls": {"secretName": 5}}}, "/gateway/upstreamTls/secretName"),
                       ({"gateway": {"upstreamTls": {"ca": "x"}}}, "/gateway/upstreamTls"),
                       ({"registry": {"tls": {"clientCa": 1}}}, "/registry/tls/clientCa"),
                       ({"registry": {"tls": {"extraDnsNames": "a.b"}}}, "/registry/tls/extraDnsNames"),
                       ({"registry": {"tls": {"certManager": {"issuerRef": {"name": 3}}}}},
                        "/registry/tls/certManager/issuerRef/name"),
                       ({"registry": {"tls": {"certManager": {"duration": "90d"}}}},
                        "/registry/tls/certManager/duration"),
                       ({"consul": {"tls": {"caSecretName": True}}}, "/consul/tls/caSecretName")):
        check(f"beamline-mesh schema rejects {bad}",
              lambda bad=bad, where=where: assert_rejected(MESH, bad, where))
    check("beamline-mesh NOTES: how to call the gateway, client agents, ACL policies",
          lambda: _notes_mesh())

    # 3. assertions: one beamline's agent
    def agent(key: str, values: dict[str, Any]) -> Callable[[], None]:
        def run() -> None:
            docs = need(key)
            dep = one(docs, "Deployment")
            c = container(dep)
            spec = dep["spec"]["template"]["spec"]
            args = c["args"]
            # The exact id given, passed through: the service name is the agent's business.
            assert flag(args, "--beamline") == values["beamline"], args
            consul = values.get("consul", {}).get("address", "http://$(HOST_IP):8500")
            assert flag(args, "--consul") == consul, args
            assert env(c)["CONSUL_HTTP_ADDR"]["value"] == consul
            assert env(c)["HOST_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
            assert env(c)["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
            assert flag(args, "--advertise") == "$(POD_IP):9000"
            assert flag(args, "--listen") == "0.0.0.0:9000"
            assert_grpc_probes(c, 9000)
            assert dep["spec"]["replicas"] == values.get("replicas", 2)
            a = values.get("agent", {})
            drain, grace = a.get("drainTimeoutSeconds", 30), a.get("drainGraceSeconds", 2)
            assert flag(args, "--drain-timeout") == f"{drain}s"
            assert flag(args, "--drain-grace") == f"{grace}s"
            tgp = spec["terminationGracePeriodSeconds"]
            assert tgp > drain + grace, f"terminationGracePeriodSeconds {tgp} <= drain {drain}+{grace}"
            anti = spec["affinity"]["podAntiAffinity"]
            sel = dep["spec"]["selector"]["matchLabels"]
            if values.get("antiAffinity") == "required":
                term = anti["requiredDuringSchedulingIgnoredDuringExecution"][0]
            else:
                term = anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
            assert term["topologyKey"] == "kubernetes.io/hostname"
            assert term["labelSelector"]["matchLabels"] == sel
            pdb = one(docs, "PodDisruptionBudget")
            assert pdb["spec"]["minAvailable"] == 1 and pdb["spec"]["selector"]["matchLabels"] == sel
            for e in values.get("extraEnv", []):
                assert env(c)[e["name"]] == e
            extra = values.get("extraArgs", [])
            if extra:
                assert args[-len(extra):] == extra, args
            if "token" in values.get("consul", {}):
                ref = env(c)["CONSUL_HTTP_TOKEN"]["valueFrom"]["secretKeyRef"]
                assert ref["name"] == values["consul"]["token"]["secretName"]
            else:
                assert "CONSUL_HTTP_TOKEN" not in env(c)
            if "image" in values:
                im = values["image"]
                assert c["image"] == f"{im['repository']}:{im['tag']}"
            # TLS off: exactly the plaintext rendering, nothing mounted, no Certificate.
            assert not [f for f in TLS_FLAGS if f in args], args
            assert [p["name"] for p in c["ports"]] == ["grpc"], c["ports"]
            assert "volumes" not in spec and "volumeMounts" not in c and not certificates(docs)
            assert not [e for e in CONSUL_TLS_ENV if e in env(c)]
        return run

    def agent_tls(key: str, values: dict[str, Any], service: str, health: int) -> Callable[[], None]:
        def run() -> None:
            docs = need(key)
            dep = one(docs, "Deployment")
            c = container(dep)
            args = c["args"]
            assert flag(args, "--listen") == "0.0.0.0:9000" and flag(args, "--advertise") == "$(POD_IP):9000"
            secret = values["tls"].get("secretName") or "rel-beamline-agent-tls"
            for f, k in (("--tls-cert", "tls.crt"), ("--tls-key", "tls.key"), ("--client-ca", "ca.crt")):
                assert secret_file(dep, c, flag(args, f)) == (secret, k), f
            # The plaintext health-only port: in the args, the container ports, and both probes.
            assert flag(args, "--health-listen") == f"0.0.0.0:{health}"
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            assert ports == {"grpc": 9000, "health": health}, ports
            assert_grpc_probes(c, 9000, probe_port=health)
            cm = values["tls"].get("certManager")
            if cm:
                cert = certificate_for(docs, secret)
                assert cert["spec"]["dnsNames"] == [f"{service}.service.consul"], cert["spec"]["dnsNames"]
                assert "server auth" in cert["spec"]["usages"] and "client auth" not in cert["spec"]["usages"]
                assert cert["spec"]["issuerRef"] == {"group": "cert-manager.io", **cm["issuerRef"]}
                for k in ("duration", "renewBefore"):
                    assert cert["spec"].get(k) == cm.get(k), k
            else:
                assert not certificates(docs)
            ctls = values.get("consul", {}).get("tls", {})
            e = env(c)
            if ctls:
                assert flag(args, "--consul") == e["CONSUL_HTTP_ADDR"]["value"] == values["consul"]["address"]
                assert secret_file(dep, c, e["CONSUL_CACERT"]["value"]) == (ctls["caSecretName"], "ca.crt")
                assert secret_file(dep, c, e["CONSUL_CLIENT_CERT"]["value"]) == (ctls["clientSecretName"], "tls.crt")
                assert secret_file(dep, c, e["CONSUL_CLIENT_KEY"]["value"]) == (ctls["clientSecretName"], "tls.key")
                assert e["CONSUL_TLS_SERVER_NAME"]["value"] == ctls["serverName"]
            else:
                assert not [v for v in CONSUL_TLS_ENV if v in e]
        return run

    check("beamline-agent 5.3.1: --beamline, Consul via HOST_IP, gRPC probes, anti-affinity, PDB, grace",
          agent("agent-minimal", AGENT_MINIMAL))
    check("beamline-agent full set: own image, Consul + token, drain 120 s, extra env/args",
          agent("agent-set", AGENT_SET))
    check("beamline-agent required anti-affinity",
          agent("agent-required-anti-affinity", {"beamline": "SST-1", "antiAffinity": "required"}))
    check("beamline-agent TLS from a Secret: --tls-cert/--tls-key/--client-ca mounted read-only, "
          "--health-listen 0.0.0.0:9001, health port exposed, probes on it",
          agent_tls("agent-tls", AGENT_TLS, "beamline-5-3-1", 9001))
    check("beamline-agent TLS with cert-manager: Certificate for beamline-12-3-1-sst.service.consul "
          "(server auth), health port 9100; Consul over HTTPS (CA, client certificate, server name)",
          agent_tls("agent-tls-cert-manager", AGENT_TLS_CM, "beamline-12-3-1-sst", 9100))

    def agent_tls_no_client_ca() -> None:
        docs = render(AGENT, {"beamline": "5.3.1", "tls": {"enabled": True, "clientCa": False}})
        validate_all(docs)
        dep = one(docs, "Deployment")
        c = container(dep)
        assert "--client-ca" not in c["args"] and "--tls-cert" in c["args"]
        items = volumes(dep)["tls"]["secret"]["items"]
        assert [i["key"] for i in items] == ["tls.crt", "tls.key"], items

    check("beamline-agent tls.clientCa=false: TLS without --client-ca, ca.crt not needed",
          agent_tls_no_client_ca)
    check("beamline-agent refuses tls.healthPort == port",
          lambda: assert_rejected(AGENT, {"beamline": "5.3.1", "tls": {"enabled": True, "healthPort": 9000}},
                                  "tls.healthPort must differ"))
    for bad, where in (({"tls": {"enabled": "yes"}}, "/tls/enabled"),
                       ({"tls": {"healthPort": "9001"}}, "/tls/healthPort"),
                       ({"tls": {"healthPort": 70000}}, "/tls/healthPort"),
                       ({"tls": {"clientCa": "false"}}, "/tls/clientCa"),
                       ({"tls": {"secret": "x"}}, "/tls"),
                       ({"tls": {"certManager": {"issuerRef": {"name": "ca", "namespace": "x"}}}},
                        "/tls/certManager/issuerRef"),
                       ({"tls": {"certManager": {"renewBefore": 360}}}, "/tls/certManager/renewBefore"),
                       ({"consul": {"tls": {"serverName": ["a"]}}}, "/consul/tls/serverName")):
        check(f"beamline-agent schema rejects {bad}",
              lambda bad=bad, where=where: assert_rejected(AGENT, {"beamline": "5.3.1", **bad}, where))
    check("beamline-agent schema rejects a missing beamline",
          lambda: assert_rejected(AGENT, {}, "beamline"))
    check("beamline-agent schema rejects beamline 5..3",
          lambda: assert_rejected(AGENT, {"beamline": "5..3"}, "does not match pattern"))
    check("beamline-agent schema rejects a 33-character beamline",
          lambda: assert_rejected(AGENT, {"beamline": "a" * 33}, "maxLength"))
    for bad in ("", "-5.3", "5.3.", "5_3_1", "5.3.1 ", "béam"):
        check(f"beamline-agent schema rejects beamline {bad!r}",
              lambda bad=bad: assert_rejected(AGENT, {"beamline": bad}, "/beamline"))
    check("beamline-agent accepts a 32-character beamline",
          lambda: one(render(AGENT, {"beamline": "A" * 16 + "-" + "b" * 15}), "Deployment"))
    check("beamline-agent refuses terminationGracePeriodSeconds <= drain",
          lambda: assert_rejected(AGENT, {"beamline": "5.3.1", "terminationGracePeriodSeconds": 30},
                                  "must exceed"))

    print(f"helm: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


def _notes_mesh() -> None:
    text = notes(MESH, MESH_DEFAULT)
    for needle in ("port-forward svc/rel-beamline-mesh-gateway", "x-beamline",
                   "client.enabled=true", "service:write", 'policy = "read"', "node_prefix"):
        assert needle in text, f"NOTES.txt lacks {needle!r}"
    emb = notes(MESH, MESH_EMBEDDED)
    assert "rel-beamline-mesh-registry.beamline.svc:8500" in emb


if __name__ == "__main__":
    sys.exit(main())
