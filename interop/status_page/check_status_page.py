#!/usr/bin/env python3
"""The gateway's status page at control-room scale, rendered by headless Chromium.

    python3 interop/status_page/check_status_page.py [BINARY [CHROMIUM [OUT_DIR]]]

BINARY is `beamline-mesh` (default target/debug/beamline-mesh), CHROMIUM the browser (default:
`chromium` on PATH), OUT_DIR where the screenshot and the DOM are kept (default: a temporary
directory, removed at the end; give one to look at the screenshot).

What runs, all real and on 127.0.0.1 port 0: `beamline-mesh registry`; four `beamline-mesh agent`
processes (beamlines 2.1.1 and 10.1.1, two instances each); 98 more beamlines × 2 instances
registered through the registry's Consul HTTP API (`PUT /v1/agent/service/register` with a TTL
check, then `PUT /v1/agent/check/pass|fail/...`: one instance of 4.0.1 is critical); a halt of
7.3.1 and a lock of 11.0.2 written with `PUT /v1/kv/beamline-mesh/{halt,lock}/<id>` in the JSON
shape of crates/contract/src/control.rs (the halt's reason carries a `<script>`); `beamline-mesh
gateway --metrics-listen` and a few calls through it with `beamline-mesh call` (so rates show).
Once `/status.json` shows all of it (a bounded poll), Chromium takes a screenshot at 1400×2000
(`--screenshot`) and dumps the DOM after the page's script ran (`--dump-dom`), for `/` and for
`/?filter=halted`. Checks: the screenshot is a real PNG of that size and not blank-small; the
DOM has the totals (100 beamlines, instances healthy/total, halted 1, locked 1), 100 beamline
rows, the halted and locked (and the unhealthy) beamlines in the attention group before every
healthy one, natural order within each group (2.1.1 before 10.1.1), the filter box, the halt
reason as text (the page's script is the only script), and the filter leaving one row shown.

Prints `ok`/`FAIL` per check, then `status-page: N passed, M failed`; exits non-zero on a failure.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Callable

ARGV = sys.argv[1:]
ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(ARGV[0] if ARGV else ROOT / "target/debug/beamline-mesh").resolve()
CHROMIUM = ARGV[1] if len(ARGV) > 1 else (shutil.which("chromium") or shutil.which("chromium-browser") or "chromium")
OUT_DIR = Path(ARGV[2]) if len(ARGV) > 2 else None

REAL = ["2.1.1", "10.1.1"]  # beamlines served by real agents, two instances each
HALTED = "7.3.1"
LOCKED = "11.0.2"
UNHEALTHY = "4.0.1"  # one of its two instances critical
CALLED_FAKE = "3.3.1"  # called through the gateway: its registered ports answer nothing
HALT_REASON = "<script>alert('halted')</script> sample on fire"
START_TIMEOUT = 30.0
SETTLE_TIMEOUT = 60.0
CHROMIUM_TIMEOUT = 90.0

passed = failed = 0


def check(name: str, fn: Callable[[], Any]) -> Any:
    """Runs one check and prints its line; failures are counted, the run goes on."""
    global passed, failed
    try:
        detail = fn()
    except Exception as e:  # noqa: BLE001 - every failure is reported and counted
        failed += 1
        print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
        return None
    passed += 1
    print(f"ok   {name}" + (f" ({detail})" if isinstance(detail, str) else ""), flush=True)
    return detail


def beamline_ids() -> list[str]:
    """100 ids, deliberately mixing one- and two-digit parts so text order and natural order
    differ (2.1.1 / 10.1.1, 2.10.1 / 2.2.1)."""
    ids = list(REAL) + [HALTED, LOCKED, UNHEALTHY, CALLED_FAKE]
    major = 1
    while len(ids) < 100:
        for minor in (1, 2, 10):
            for port in (1, 2):
                bid = f"{major}.{minor}.{port}"
                if bid not in ids and len(ids) < 100:
                    ids.append(bid)
        major += 1
    return ids


def service_name(beamline: str) -> str:
    return "beamline-" + beamline.lower().replace(".", "-")


class Proc:
    """A child process whose stdout is followed line by line (for its listening line)."""

    def __init__(self, name: str, args: list[str], logdir: Path):
        self.name = name
        self.err_path = logdir / f"{name}.err"
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(
            [str(BINARY), *args], stdout=subprocess.PIPE, stderr=open(self.err_path, "wb"),
            text=True, bufsize=1)
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_line(self, prefix: str, timeout: float = START_TIMEOUT) -> str:
        """What follows `prefix` on the first stdout line starting with it."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    if line.startswith(prefix):
                        return line[len(prefix):].split()[0]
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    tail = self.err_path.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{self.name} printed no '{prefix}…' line; stderr:\n{tail}")
                self.cond.wait(min(left, 0.2))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def http(method: str, url: str, body: Any = None, raw: bytes | None = None) -> bytes:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(req, timeout=10) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{method} {url}: HTTP {resp.status}")
        return resp.read()


def rfc3339(t: datetime.datetime) -> str:
    return t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def register_fakes(consul: str, ids: list[str]) -> None:
    """Two instances per beamline through the Consul API, each with a TTL check set passing
    (one of UNHEALTHY's critical). Ports under 1024 on 127.0.0.1 that nothing here listens on:
    the gateway's health watch finds nobody, which is what a called one should show."""
    for n, bid in enumerate(ids):
        for k, suffix in enumerate("ab"):
            sid = f"{service_name(bid)}-{suffix}"
            http("PUT", f"{consul}/v1/agent/service/register", {
                "ID": sid, "Name": service_name(bid), "Address": "127.0.0.1",
                # The tag every agent registers with: discovery follows only tagged services.
                "Tags": ["beamline-agent"],
                "Port": 600 + (2 * n + k) % 400,
                "Meta": {"beamline": bid, "instance_id": sid, "agent_version": "ci-fake"},
                "Check": {"TTL": "30m", "Name": f"TTL of {sid}"},
            })
            verb = "fail" if (bid == UNHEALTHY and suffix == "b") else "pass"
            http("PUT", f"{consul}/v1/agent/check/{verb}/service:{sid}?note=ci")


def halt_and_lock(consul: str) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    halt = {"by": "ci-safety", "reason": HALT_REASON, "since": rfc3339(now)}
    lock = {"holder": "ci-scientist", "note": "aligning the beam by hand", "since": rfc3339(now),
            "expires": rfc3339(now + datetime.timedelta(hours=2))}
    assert http("PUT", f"{consul}/v1/kv/beamline-mesh/halt/{HALTED}", raw=json.dumps(halt).encode()).strip() == b"true"
    assert http("PUT", f"{consul}/v1/kv/beamline-mesh/lock/{LOCKED}", raw=json.dumps(lock).encode()).strip() == b"true"


def wait_settled(metrics: str) -> dict:
    """Polls /status.json until it shows the whole set-up, or fails at the deadline."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    last: dict = {}
    while time.monotonic() < deadline:
        try:
            last = json.loads(http("GET", f"{metrics}/status.json"))
            t = last["totals"]
            real_ok = all(
                sum(i["passing"] for i in b["instances"]) == 2
                for b in last["beamlines"] if b["beamline"] in REAL)
            if (t["beamlines"] == 100 and t["instances"] == 200 and t["halted"] == 1
                    and t["locked"] == 1 and t["instances_passing"] == 199 and real_ok
                    and last.get("control_unreadable") is None):
                return last
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = {"error": str(e)}
        time.sleep(0.25)
    raise RuntimeError(f"/status.json never showed the set-up within {SETTLE_TIMEOUT:.0f} s: "
                       f"{json.dumps(last.get('totals', last))}")


def call_through(gateway: str, beamline: str) -> int:
    out = subprocess.run(
        [str(BINARY), "call", "--gateway", f"http://{gateway}", "--beamline", beamline,
         "--timeout", "5s", "describe"],
        capture_output=True, timeout=30)
    return out.returncode


def chromium(args: list[str], budget_ms: int = 3000,
             timeout: float = CHROMIUM_TIMEOUT) -> subprocess.CompletedProcess:
    """Runs headless Chromium; `budget_ms` of virtual time lets the page's script run before a
    dump or screenshot (the filter is applied on load; the data refreshes after 5 s)."""
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--hide-scrollbars", "--window-size=1400,2000",
            f"--virtual-time-budget={budget_ms}"]
    return subprocess.run(base + args, capture_output=True, timeout=timeout)


class Dom(HTMLParser):
    """What the checks read from the dumped DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []  # data-beamline rows, in order
        self.groups: list[tuple[str, int]] = []  # (group id, number of rows before it)
        self.tiles: dict[str, str] = {}
        self.scripts = 0
        self.filter_box = False
        self.shown_text = ""
        self._tile: str | None = None
        self._in_b = False
        self._in_shown = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "tr" and "data-beamline" in a:
            self.rows.append({"id": a["data-beamline"], "hidden": "hidden" in a,
                              "attention": "att" in (a.get("class") or "").split(),
                              "search": a.get("data-search") or ""})
        if tag == "tr" and (a.get("id") or "").startswith("group-"):
            self.groups.append((a["id"], len(self.rows)))
        if tag == "div" and (a.get("id") or "").startswith("total-"):
            self._tile = a["id"][len("total-"):]
        if tag == "b" and self._tile:
            self._in_b = True
        if tag == "input" and a.get("id") == "filter" and a.get("type") == "search":
            self.filter_box = True
        if tag == "span" and a.get("id") == "shown":
            self._in_shown = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "b":
            self._in_b = False
        if tag == "div":
            self._tile = None
        if tag == "span":
            self._in_shown = False

    def handle_data(self, data: str) -> None:
        if self._in_b and self._tile:
            self.tiles[self._tile] = self.tiles.get(self._tile, "") + data
        if self._in_shown:
            self.shown_text += data


def natural_key(bid: str) -> list:
    return [(0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in re.findall(r"\d+|\D+", bid)]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise AssertionError(f"{path} is not a PNG")
    return struct.unpack(">II", data[16:24])


def main() -> int:
    out = Path(OUT_DIR) if OUT_DIR else Path(tempfile.mkdtemp(prefix="status-page-"))
    out.mkdir(parents=True, exist_ok=True)
    logdir = out / "logs"
    logdir.mkdir(exist_ok=True)
    procs: list[Proc] = []
    try:
        print(f"chromium: {CHROMIUM}; binary: {BINARY}; output in {out}", flush=True)
        version = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=30)
        print(f"chromium version: {version.stdout.strip() or version.stderr.strip()}", flush=True)

        registry = Proc("registry", ["registry", "--listen", "127.0.0.1:0"], logdir)
        procs.append(registry)
        consul = registry.wait_line("registry listening on ")
        for bid in REAL:
            for k in range(2):
                agent = Proc(f"agent-{bid}-{k}", ["agent", "--beamline", bid, "--consul", consul,
                                                  "--listen", "127.0.0.1:0"], logdir)
                procs.append(agent)
                agent.wait_line(f"agent beamline {bid} listening on ")
        ids = beamline_ids()
        fakes = [b for b in ids if b not in REAL]
        check("98 beamlines × 2 instances registered through the Consul API (TTL checks)",
              lambda: register_fakes(consul, fakes))
        check(f"halt {HALTED} and lock {LOCKED} written to KV", lambda: halt_and_lock(consul))
        gateway = Proc("gateway", ["gateway", "--listen", "127.0.0.1:0", "--consul", consul,
                                   "--insecure-no-auth", "--metrics-listen", "127.0.0.1:0"], logdir)
        procs.append(gateway)
        gateway_addr = gateway.wait_line("gateway listening on ")
        metrics = gateway.wait_line("metrics listening on ")
        status = check("/status.json shows 100 beamlines, 200 instances (199 passing), 1 halted, "
                       "1 locked", lambda: wait_settled(metrics))
        if status is None:
            return 1
        codes = [call_through(gateway_addr, REAL[0]) for _ in range(5)]
        codes += [call_through(gateway_addr, CALLED_FAKE) for _ in range(2)]
        print(f"calls through the gateway: exit codes {codes}", flush=True)

        shot = out / "status-page.png"
        url = f"{metrics}/"
        run = chromium([f"--screenshot={shot}", url])
        print(f"chromium --screenshot: exit {run.returncode}", flush=True)

        def screenshot_ok() -> str:
            assert shot.exists(), f"no screenshot; chromium stderr:\n{run.stderr.decode(errors='replace')[-2000:]}"
            w, h = png_size(shot)
            size = shot.stat().st_size
            assert (w, h) == (1400, 2000), f"{w}×{h}"
            # A blank or error page compresses to a few KB; 100 rows of text do not.
            assert size > 60_000, f"only {size} bytes: blank?"
            return f"{w}×{h}, {size} bytes"

        check("the screenshot is a 1400×2000 PNG with content", screenshot_ok)

        dump = chromium(["--dump-dom", url])
        html = dump.stdout.decode(errors="replace")
        (out / "status-page.dom.html").write_text(html)
        dom = Dom()
        dom.feed(html)
        ids_in_order = [r["id"] for r in dom.rows]

        def totals() -> str:
            t = dom.tiles
            assert t.get("beamlines") == "100", t
            assert t.get("instances") == "199/200", t
            assert t.get("halted") == "1" and t.get("locked") == "1", t
            assert float(t.get("calls", "0").replace("–", "0")) > 0, f"no calls/s: {t}"
            return ", ".join(f"{k} {v}" for k, v in t.items())

        check("the DOM has the totals", totals)

        def rows() -> str:
            assert len(dom.rows) == 100, f"{len(dom.rows)} rows"
            assert sorted(ids_in_order) == sorted(ids), "rows differ from the registered beamlines"
            assert not any(r["hidden"] for r in dom.rows), "rows hidden without a filter"
            return "100 rows"

        check("one row per beamline, 100 rows", rows)

        def attention_first() -> str:
            att = [r for r in dom.rows if r["attention"]]
            first_ok = next(i for i, r in enumerate(dom.rows) if not r["attention"])
            assert all(not r["attention"] for r in dom.rows[first_ok:]), "attention rows after healthy ones"
            for bid in (HALTED, LOCKED, UNHEALTHY):
                assert ids_in_order.index(bid) < first_ok, f"{bid} after the first healthy row"
            assert [g for g, _ in dom.groups] == ["group-attention", "group-ok"], dom.groups
            return f"{len(att)} need attention: {', '.join(r['id'] for r in att)}"

        check("halted, locked and unhealthy beamlines come before the healthy ones", attention_first)

        def natural() -> str:
            groups = [[r["id"] for r in dom.rows if r["attention"]],
                      [r["id"] for r in dom.rows if not r["attention"]]]
            for g in groups:
                assert g == sorted(g, key=natural_key), f"not in natural order: {g}"
            assert ids_in_order.index("2.1.1") < ids_in_order.index("10.1.1"), "10.1.1 before 2.1.1"
            assert ids_in_order.index("2.2.1") < ids_in_order.index("2.10.1"), "2.10.1 before 2.2.1"
            return "2.1.1 before 10.1.1"

        check("natural order within each group", natural)

        def filter_box_and_escaping() -> str:
            assert dom.filter_box, "no <input type=search id=filter>"
            assert dom.scripts == 1, f"{dom.scripts} <script> elements: the halt reason ran as HTML"
            row = next(r for r in dom.rows if r["id"] == HALTED)
            assert "halted" in row["search"] and "ci-safety" in row["search"], row
            assert "&lt;script&gt;alert(" in html, "the halt reason is not shown as text"
            return "filter box present, the halt reason is text"

        check("the filter box, and a <script> in the halt reason stays text", filter_box_and_escaping)

        filtered = chromium(["--dump-dom", f"{metrics}/?filter=halted"]).stdout.decode(errors="replace")
        fdom = Dom()
        fdom.feed(filtered)

        def filtered_rows() -> str:
            shown = [r["id"] for r in fdom.rows if not r["hidden"]]
            assert shown == [HALTED], f"shown with ?filter=halted: {shown}"
            assert "showing 1 of 100" in fdom.shown_text, repr(fdom.shown_text)
            return fdom.shown_text

        check("?filter=halted leaves the halted row only", filtered_rows)

        # Past the page's 5 s refresh: the script fetched the page, swapped the data in place
        # (its note says when) and applied the filter again to the new rows.
        refreshed = chromium(["--dump-dom", f"{metrics}/?filter=halted"], budget_ms=8000)
        rhtml = refreshed.stdout.decode(errors="replace")
        rdom = Dom()
        rdom.feed(rhtml)

        def refreshed_in_place() -> str:
            note = re.search(r'id="refresh-note"[^>]*>([^<]*)<', rhtml)
            assert note and note.group(1).startswith("updated "), f"refresh note: {note and note.group(1)!r}"
            shown = [r["id"] for r in rdom.rows if not r["hidden"]]
            assert len(rdom.rows) == 100 and shown == [HALTED], f"after the refresh: {shown}"
            return note.group(1)

        check("the script refreshes the data in place and keeps the filter", refreshed_in_place)
    finally:
        for p in reversed(procs):
            p.stop()
        if failed:
            for p in procs:
                tail = p.err_path.read_text(errors="replace")[-1500:] if p.err_path.exists() else ""
                if tail.strip():
                    print(f"--- {p.name} stderr (tail)\n{tail}", flush=True)
        if OUT_DIR is None:
            shutil.rmtree(out, ignore_errors=True)
    print(f"status-page: {passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
