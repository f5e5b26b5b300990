#!/usr/bin/env python3
"""Interop check: the unmodified PyPI client `py-consul` against `beamline-mesh registry`.

Usage:
    check_py_consul.py [BASE_URL]      e.g. http://127.0.0.1:8500
(without BASE_URL, CONSUL_HTTP_ADDR is read, as Consul's own tools do).

What it does, each step asserting what real Consul would answer:
  1. agent.service.register(..., check=Check.ttl("10s")) -- py-consul sends lowercase keys
     ("name", "id", "checks": [{"ttl": ...}]), which Consul matches case-insensitively;
  2. the new TTL check starts critical, so health.service(passing=True) does not list it;
  3. agent.check.ttl_pass("service:<id>") (one check -> CheckID "service:<ID>");
  4. health.service(name, passing=True) lists it with every check passing;
  5. a blocking read (index=idx, wait="2s") is woken early by a second registration made
     from a thread, and returns a greater index;
  6. a blocking read with no change waits about `wait` and keeps the index;
  7. kv.put / kv.get round-trip (bytes, flags) and kv.delete;
  8. agent.service.deregister of both instances; health.service is empty afterwards.
Exits 0 when all pass, 1 with a message naming the step on the first mismatch.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import urllib.parse
import uuid

import consul
from consul import Check


class Mismatch(Exception):
    pass


def expect(cond: bool, what: str) -> None:
    if not cond:
        raise Mismatch(what)


def client_for(base_url: str | None) -> consul.Consul:
    if not base_url:
        # py-consul reads CONSUL_HTTP_ADDR itself ("host:port" or "scheme://host:port").
        if not os.getenv("CONSUL_HTTP_ADDR"):
            raise SystemExit("usage: check_py_consul.py BASE_URL (or set CONSUL_HTTP_ADDR)")
        return consul.Consul()
    if "//" not in base_url:
        base_url = "//" + base_url
    url = urllib.parse.urlparse(base_url)
    return consul.Consul(host=url.hostname, port=url.port or 8500, scheme=url.scheme or "http")


def step(name: str) -> None:
    print(f"py-consul: {name}", flush=True)


def run(c: consul.Consul, suffix: str) -> None:
    name = f"pyconsul-{suffix}"
    sid1, sid2 = f"{name}-1", f"{name}-2"
    check1 = f"service:{sid1}"
    kv_key = f"interop/pyconsul/{suffix}"

    step(f"register {sid1} with a TTL check")
    ok = c.agent.service.register(
        name,
        service_id=sid1,
        address="127.0.0.1",
        port=18001,
        tags=["interop", "py-consul"],
        meta={"client": "py-consul"},
        check=Check.ttl("10s"),
    )
    expect(ok is True, f"agent.service.register returned {ok!r}, want True")

    checks = c.agent.checks()
    expect(check1 in checks, f"agent.checks() lacks {check1!r}; keys: {sorted(checks)}")
    got = checks[check1]
    expect(got.get("Status") == "critical", f"new TTL check Status {got.get('Status')!r}, want 'critical'")
    expect(got.get("ServiceID") == sid1, f"check ServiceID {got.get('ServiceID')!r}, want {sid1!r}")
    expect(got.get("Type") == "ttl", f"check Type {got.get('Type')!r}, want 'ttl'")

    _, nodes = c.health.service(name, passing=True)
    expect(nodes == [], f"health.service(passing=True) before ttl_pass: want [], got {nodes!r}")

    step(f"ttl_pass {check1}")
    ok = c.agent.check.ttl_pass(check1, notes="interop ok")
    expect(ok is True, f"agent.check.ttl_pass returned {ok!r}, want True")

    step("health.service(passing=True)")
    idx, nodes = c.health.service(name, passing=True)
    expect(isinstance(nodes, list) and len(nodes) == 1, f"want 1 passing entry, got {nodes!r}")
    svc = nodes[0]["Service"]
    expect(svc["ID"] == sid1, f"Service.ID {svc['ID']!r}, want {sid1!r}")
    expect(svc["Service"] == name, f"Service.Service {svc['Service']!r}, want {name!r}")
    expect(svc["Port"] == 18001, f"Service.Port {svc['Port']!r}, want 18001")
    expect(sorted(svc["Tags"]) == ["interop", "py-consul"], f"Service.Tags {svc['Tags']!r}")
    expect(svc.get("Meta") == {"client": "py-consul"}, f"Service.Meta {svc.get('Meta')!r}")
    entry_checks = nodes[0]["Checks"]
    expect(
        any(ch.get("CheckID") == check1 for ch in entry_checks),
        f"entry Checks lack {check1!r}: {entry_checks!r}",
    )
    expect(
        all(ch.get("Status") == "passing" for ch in entry_checks),
        f"?passing returned an entry with a non-passing check: {entry_checks!r}",
    )
    ours = next(ch for ch in entry_checks if ch.get("CheckID") == check1)
    expect(ours.get("Output") == "interop ok", f"ttl_pass note -> Output {ours.get('Output')!r}, want 'interop ok'")
    expect(int(idx) > 0, f"X-Consul-Index {idx!r}, want > 0")

    step(f"blocking read at index {idx}, woken by a second registration")

    def register_second() -> None:
        time.sleep(0.3)
        # Status "passing" so the new instance shows up under ?passing at once.
        c.agent.service.register(
            name,
            service_id=sid2,
            address="127.0.0.1",
            port=18002,
            check={"ttl": "10s", "status": "passing"},
        )

    t = threading.Thread(target=register_second, daemon=True)
    started = time.monotonic()
    t.start()
    idx2, nodes2 = c.health.service(name, passing=True, index=idx, wait="2s")
    elapsed = time.monotonic() - started
    t.join(timeout=5)
    expect(elapsed < 1.8, f"blocking read took {elapsed:.2f}s: not woken by the registration (wait was 2s)")
    expect(int(idx2) > int(idx), f"woken read index {idx2!r}, want > {idx!r}")
    ids = sorted(n["Service"]["ID"] for n in nodes2)
    expect(ids == [sid1, sid2], f"woken read returned {ids!r}, want {[sid1, sid2]!r}")
    print(f"py-consul:   woken after {elapsed * 1000:.0f} ms, index {idx} -> {idx2}", flush=True)

    step(f"blocking read at index {idx2} with no change (wait=1s)")
    started = time.monotonic()
    idx3, nodes3 = c.health.service(name, passing=True, index=idx2, wait="1s")
    elapsed = time.monotonic() - started
    # Consul returns after wait (plus up to wait/16 jitter) with the same index.
    expect(elapsed >= 0.9, f"idle blocking read returned after {elapsed:.2f}s, want about 1s")
    expect(elapsed < 5, f"idle blocking read took {elapsed:.2f}s, want about 1s")
    expect(int(idx3) == int(idx2), f"idle blocking read index {idx3!r}, want unchanged {idx2!r}")
    expect(len(nodes3) == 2, f"idle blocking read returned {len(nodes3)} entries, want 2")

    step(f"kv put/get {kv_key}")
    value = b"hello \x00 beamline"
    expect(c.kv.put(kv_key, value, flags=42) is True, "kv.put returned False")
    kidx, item = c.kv.get(kv_key)
    expect(item is not None, f"kv.get({kv_key!r}) returned None after put")
    expect(item["Key"] == kv_key, f"kv Key {item['Key']!r}, want {kv_key!r}")
    expect(item["Value"] == value, f"kv Value {item['Value']!r}, want {value!r}")
    expect(item["Flags"] == 42, f"kv Flags {item['Flags']!r}, want 42")
    expect(int(kidx) > 0, f"kv X-Consul-Index {kidx!r}, want > 0")
    expect(c.kv.delete(kv_key) is True, "kv.delete returned False")
    _, gone = c.kv.get(kv_key)
    expect(gone is None, f"kv.get after delete returned {gone!r}, want None (404)")

    step("deregister both instances")
    for sid in (sid1, sid2):
        ok = c.agent.service.deregister(sid)
        expect(ok is True, f"agent.service.deregister({sid!r}) returned {ok!r}, want True")
    _, after = c.health.service(name)
    expect(after == [], f"health.service after deregister: want [], got {after!r}")
    checks = c.agent.checks()
    expect(check1 not in checks, f"agent.checks() still has {check1!r} after deregister")


def cleanup(c: consul.Consul, suffix: str) -> None:
    """Best effort, after a failure: leave nothing behind in a long-lived registry."""
    for sid in (f"pyconsul-{suffix}-1", f"pyconsul-{suffix}-2"):
        try:
            c.agent.service.deregister(sid)
        except Exception:
            pass


def main() -> int:
    base = sys.argv[1] if len(sys.argv) > 1 else None
    c = client_for(base)
    print(f"py-consul {consul.__version__} against {c.http.base_uri}", flush=True)
    # Unique names so that a rerun against a durable registry cannot see old state.
    suffix = uuid.uuid4().hex[:8]
    try:
        run(c, suffix)
    except Exception as e:
        if isinstance(e, Mismatch):
            msg = str(e)
        elif isinstance(e, consul.ConsulException):
            # py-consul raises on 4xx/5xx answers; the message holds the status and body.
            msg = f"registry answered an error: {type(e).__name__}: {e}"
        else:  # connection refused, timeouts, an unexpected JSON shape
            msg = f"{type(e).__name__}: {e}"
        print(f"py-consul: FAIL: {msg}", file=sys.stderr, flush=True)
        cleanup(c, suffix)
        return 1
    print("py-consul: OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
