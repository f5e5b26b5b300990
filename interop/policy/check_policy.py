#!/usr/bin/env python3
"""Interop check of the gateway's policy layers: Python grpcio over TLS (trusting the CA that
make_certs.py made) with API keys, and the gateway's /metrics parsed by a real Prometheus
parser (prometheus_client's text parser), counting the calls just made.

Usage:
    BEAMLINE_API_KEY=OPERATOR_KEY BEAMLINE_OBSERVER_KEY=OBSERVER_KEY \\
    check_policy.py GATEWAY_HOST:PORT CA.pem METRICS_URL BEAMLINE
        e.g. 127.0.0.1:40123 /tmp/certs/ca.pem http://127.0.0.1:40124 5.3.1

The gateway runs with --auth-file (the operator key for a caller with role "operator", the
observer key for one with role "observer", both allowed on BEAMLINE), --tls-cert/--tls-key and
--metrics-listen. What it checks, each step asserting the contract:
  1. over TLS, an operator's Describe reaches BEAMLINE; plaintext to the TLS port fails;
  2. no credential and a wrong key → UNAUTHENTICATED; the observer's Execute →
     PERMISSION_DENIED naming the beamline and the method;
  3. /metrics parses; beamline_gateway_calls_total for (BEAMLINE, Describe, OK) rose by exactly
     the Describes made, (BEAMLINE, Execute, PERMISSION_DENIED) by one, and
     beamline_gateway_auth_rejections_total{code="UNAUTHENTICATED"} by the refused credentials;
     the latency histogram and the healthy-instance gauge name BEAMLINE;
  4. GET / is an HTML page that lists BEAMLINE.
Exits 0 when all pass, 1 with a message naming the step on the first mismatch.
"""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile
import time
import urllib.request

import grpc
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "grpcio"))
from check_grpcio import Mismatch, expect, generate_stubs  # noqa: E402 (path set just above)

RPC_TIMEOUT = 30.0
HTTP_TIMEOUT = 15.0
DESCRIBES = 5
WRONG = 3


def scrape(metrics_url: str) -> dict[tuple, float]:
    """GET /metrics, parsed: {(sample name, sorted labels): value}."""
    with urllib.request.urlopen(f"{metrics_url}/metrics", timeout=HTTP_TIMEOUT) as resp:
        expect(resp.status == 200, f"metrics: GET /metrics answered {resp.status}")
        text = resp.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    expect(samples, "metrics: /metrics has no sample")
    return samples


def total(samples: dict[tuple, float], name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items()
               if n == name and all(dict(ls).get(k) == want for k, want in labels.items()))


def expect_code(call, code, step: str, needles: tuple[str, ...] = ()) -> None:
    try:
        call()
    except grpc.RpcError as e:
        expect(e.code() == code, f"{step}: {e.code()}, expected {code} ({e.details()})")
        for needle in needles:
            expect(needle in (e.details() or ""), f"{step}: {e.details()!r} does not name {needle!r}")
    else:
        raise Mismatch(f"{step}: the call succeeded, expected {code}")


def check(gateway: str, ca: pathlib.Path, metrics_url: str, beamline: str, pb, pb_grpc) -> None:
    operator = os.environ["BEAMLINE_API_KEY"]
    observer = os.environ["BEAMLINE_OBSERVER_KEY"]

    def md(key: str | None):
        meta = [("x-beamline", beamline)]
        return meta + [("authorization", f"Bearer {key}")] if key else meta

    credentials = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
    channel = grpc.secure_channel(gateway, credentials,
                                  options=[("grpc.ssl_target_name_override", "localhost")])
    stub = pb_grpc.BeamlineAgentStub(channel)

    # 1. TLS: routable (bounded poll while the agent turns passing); plaintext fails.
    deadline = time.monotonic() + 30
    while True:
        try:
            card = stub.Describe(pb.DescribeRequest(), metadata=md(operator), timeout=RPC_TIMEOUT)
            break
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise Mismatch(f"tls: Describe of {beamline}: {e.code()}: {e.details()}")
            time.sleep(0.2)
    expect(card.beamline == beamline, f"tls: card names {card.beamline!r}, expected {beamline!r}")
    print(f"tls describe: ok ({card.instance_id})")
    with grpc.insecure_channel(gateway) as plain:
        try:
            pb_grpc.BeamlineAgentStub(plain).Describe(pb.DescribeRequest(), metadata=md(operator),
                                                      timeout=10)
        except grpc.RpcError as e:
            print(f"plaintext to the TLS port: refused ({e.code()})")
        else:
            raise Mismatch("plaintext to the TLS port: the call succeeded")

    # 2. Refusals, counted from a baseline scrape.
    before = scrape(metrics_url)
    for _ in range(DESCRIBES):
        stub.Describe(pb.DescribeRequest(), metadata=md(operator), timeout=RPC_TIMEOUT)
    expect_code(lambda: stub.Describe(pb.DescribeRequest(), metadata=md(None), timeout=RPC_TIMEOUT),
                grpc.StatusCode.UNAUTHENTICATED, "no credential")
    for _ in range(WRONG):
        expect_code(lambda: stub.Describe(pb.DescribeRequest(), metadata=md("not-a-key"),
                                          timeout=RPC_TIMEOUT),
                    grpc.StatusCode.UNAUTHENTICATED, "a wrong key")
    expect_code(lambda: list(stub.Execute(pb.ExecuteRequest(capability="status"),
                                          metadata=md(observer), timeout=RPC_TIMEOUT)),
                grpc.StatusCode.PERMISSION_DENIED, "observer Execute", (beamline, "Execute"))
    print(f"refusals: ok (UNAUTHENTICATED x{WRONG + 1}, PERMISSION_DENIED)")

    # 3. /metrics counts them (bounded poll: a streamed call is counted as its stream ends).
    name = "beamline_gateway_calls_total"
    want = {
        "Describe OK": (dict(beamline=beamline, method="Describe", code="OK"), DESCRIBES),
        "Execute PERMISSION_DENIED": (
            dict(beamline=beamline, method="Execute", code="PERMISSION_DENIED"), 1),
    }
    deadline = time.monotonic() + 10
    while True:
        after = scrape(metrics_url)
        got = {what: total(after, name, **labels) - total(before, name, **labels)
               for what, (labels, _) in want.items()}
        rejected = (total(after, "beamline_gateway_auth_rejections_total", code="UNAUTHENTICATED")
                    - total(before, "beamline_gateway_auth_rejections_total",
                            code="UNAUTHENTICATED"))
        if all(got[w] >= n for w, (_, n) in want.items()) and rejected >= WRONG + 1:
            break
        if time.monotonic() > deadline:
            raise Mismatch(f"metrics: after the calls, {name} rose by {got} (wanted "
                           f"{ {w: n for w, (_, n) in want.items()} }), auth rejections by "
                           f"{rejected} (wanted {WRONG + 1})")
        time.sleep(0.2)
    for what, (_, n) in want.items():
        expect(got[what] == n, f"metrics: {name} {what} rose by {got[what]}, expected exactly {n}")
    expect(rejected == WRONG + 1,
           f"metrics: UNAUTHENTICATED auth rejections rose by {rejected}, expected {WRONG + 1}")
    expect(total(after, "beamline_gateway_call_duration_seconds_count", beamline=beamline) > 0,
           "metrics: no latency histogram for the beamline")
    expect(total(after, "beamline_gateway_healthy_instances", beamline=beamline) >= 1,
           "metrics: healthy_instances for the beamline is not >= 1")
    print(f"metrics: ok ({len(after)} samples; {got}, auth rejections +{rejected:g})")

    # 4. The status page.
    with urllib.request.urlopen(f"{metrics_url}/", timeout=HTTP_TIMEOUT) as resp:
        content_type = resp.headers.get("content-type", "")
        page = resp.read().decode()
    expect(content_type.startswith("text/html"), f"status page: content type {content_type!r}")
    expect(beamline in page, f"status page: does not list {beamline}")
    print("status page: ok")
    channel.close()


def main() -> int:
    args = sys.argv[1:]
    if len(args) != 4 or not {"BEAMLINE_API_KEY", "BEAMLINE_OBSERVER_KEY"} <= os.environ.keys():
        print(__doc__, file=sys.stderr)
        return 2
    gateway, ca, metrics_url, beamline = args
    print(f"grpcio {grpc.__version__} over TLS to the gateway at {gateway}; metrics {metrics_url}")
    try:
        with tempfile.TemporaryDirectory(prefix="beamline-policy-") as tmp:
            pb, pb_grpc = generate_stubs(pathlib.Path(tmp))
            check(gateway, pathlib.Path(ca), metrics_url.rstrip("/"), beamline, pb, pb_grpc)
    except Mismatch as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    except grpc.RpcError as e:
        print(f"FAIL: unexpected gRPC error {e.code()}: {e.details()}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    print("policy interop: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
