#!/usr/bin/env python3
"""Render and check the Helm charts under helm/ with real Helm (helm-python-sdk, Helm v4's Go
SDK, no helm binary) and validate every manifest with kubernetes-validate --strict.

    python interop/helm/check_charts.py [REPO_ROOT]

Prints one line per check and a final `helm: N passed, M failed`; exits non-zero on a failure.
"""

from __future__ import annotations

import os
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
# Custom resources have no schema in kubernetes-validate; checked by the assertions instead.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}

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
        if (d.get("apiVersion"), d.get("kind")) in CRD_KINDS:
            continue
        kubernetes_validate.validate(d, KUBE_VERSION, strict=True)


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

    check("beamline-mesh defaults: gRPC probes on 8080, auth file, metrics, PDB", mesh_default)
    check("beamline-mesh production: 3 replicas, TLS + auth secrets, Consul token, ServiceMonitor",
          mesh_production)
    check("beamline-mesh embedded registry: StatefulSet + PVC + Service, gateway points at it",
          mesh_embedded)
    check("beamline-mesh refuses auth on + TLS off without allowPlaintext",
          lambda: assert_rejected(MESH, {"gateway": {"allowPlaintext": False}}, "allowPlaintext"))
    check("beamline-mesh refuses TLS without a Secret",
          lambda: assert_rejected(MESH, {"gateway": {"tls": {"enabled": True}}}, "tls.secretName"))
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
        return run

    check("beamline-agent 5.3.1: --beamline, Consul via HOST_IP, gRPC probes, anti-affinity, PDB, grace",
          agent("agent-minimal", AGENT_MINIMAL))
    check("beamline-agent full set: own image, Consul + token, drain 120 s, extra env/args",
          agent("agent-set", AGENT_SET))
    check("beamline-agent required anti-affinity",
          agent("agent-required-anti-affinity", {"beamline": "SST-1", "antiAffinity": "required"}))
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
