#!/usr/bin/env python3
"""Interop check: Python grpcio, with stubs generated from our proto by grpcio-tools, against a
running `beamline-mesh agent` (the demo agent).

Usage:
    check_grpcio.py HOST:PORT [BEAMLINE]              e.g. 127.0.0.1:40123 5.3.1
    check_grpcio.py --gateway HOST:PORT BEAMLINE      every call through the gateway, routed
                                                      by the x-beamline metadata key

The stubs are generated into a temporary directory from proto/beamline/v1/agent.proto with
grpc_tools.protoc; the well-known types (google/protobuf/struct.proto, timestamp.proto) come
with grpcio-tools, so no system protoc is needed. This is what another team's Python client
does, so names and numbers in the proto must match what the agent serves.

What it does, each step asserting what the contract says:
  1. Describe: the AgentCard names the beamline (BEAMLINE when given), an instance id, a card
     revision, and the demo capabilities status, read_pv, move_motor and scan;
  2. Execute status: every event carries the same task; the first is SUBMITTED or WORKING; the
     stream ends right after the one terminal event, COMPLETED with a result (google.protobuf.
     Struct) holding the motors;
  3. Execute move_motor, a small move of sample_x: progress events with a fraction in [0, 1],
     then COMPLETED with the target position; GetTask reads the task back COMPLETED;
  4. Execute of an unknown capability fails with NOT_FOUND naming it.
Through the gateway, every call carries `x-beamline: BEAMLINE`, and two more checks run: a
call without the key fails with INVALID_ARGUMENT, and one naming an unknown beamline with
NOT_FOUND naming it.
Exits 0 when all pass, 1 with a message naming the step on the first mismatch.
"""

from __future__ import annotations

import importlib.resources
import pathlib
import sys
import tempfile
import time

import grpc
from google.protobuf import json_format
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "proto"
PROTO_FILE = "beamline/v1/agent.proto"
# Every RPC is bounded, so that a hung agent fails the check instead of hanging it.
RPC_TIMEOUT = 30.0
CONNECT_TIMEOUT = 10.0


class Mismatch(Exception):
    pass


def expect(cond: bool, what: str) -> None:
    if not cond:
        raise Mismatch(what)


def generate_stubs(out_dir: pathlib.Path):
    """grpc_tools.protoc → out_dir/beamline/v1/agent_pb2{,_grpc}.py; returns both modules."""
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        PROTO_FILE,
    ]
    code = protoc.main(args)
    if code != 0:
        raise Mismatch(f"grpc_tools.protoc failed (exit {code}) on {PROTO_DIR / PROTO_FILE}")
    # The generated grpc module imports `beamline.v1.agent_pb2`: out_dir is the import root.
    sys.path.insert(0, str(out_dir))
    from beamline.v1 import agent_pb2, agent_pb2_grpc  # noqa: E402 (generated just now)

    return agent_pb2, agent_pb2_grpc


def state_name(pb, task) -> str:
    return pb.TaskState.Name(task.state)


def run_execute(pb, stub, capability: str, params: dict | None, step: str):
    """Execute, consuming the stream to its end; returns the events. Checks the stream shape."""
    request = pb.ExecuteRequest(capability=capability)
    if params is not None:
        request.params.update(params)
    events = list(stub.Execute(request, timeout=RPC_TIMEOUT))
    expect(len(events) >= 1, f"{step}: the Execute stream carried no event")
    for i, event in enumerate(events):
        expect(event.HasField("task"), f"{step}: event {i} carries no task: {event}")
    task_id = events[0].task.task_id
    expect(task_id != "" and "/" in task_id, f"{step}: task_id {task_id!r} is not <instance>/<id>")
    for event in events:
        expect(
            event.task.task_id == task_id,
            f"{step}: events name two tasks ({task_id!r}, {event.task.task_id!r})",
        )
        expect(
            event.task.capability == capability,
            f"{step}: task capability {event.task.capability!r}, expected {capability!r}",
        )
    first = state_name(pb, events[0].task)
    expect(
        first in ("TASK_STATE_SUBMITTED", "TASK_STATE_WORKING"),
        f"{step}: first event is {first}, expected SUBMITTED or WORKING",
    )
    terminal = {"TASK_STATE_COMPLETED", "TASK_STATE_FAILED", "TASK_STATE_CANCELLED",
                "TASK_STATE_REJECTED"}
    states = [state_name(pb, e.task) for e in events]
    expect(
        states[-1] in terminal and all(s not in terminal for s in states[:-1]),
        f"{step}: the stream must end right after its one terminal event; states {states}",
    )
    last = events[-1].task
    expect(
        states[-1] == "TASK_STATE_COMPLETED",
        f"{step}: task ended {states[-1]} ({last.error.code}: {last.error.message})",
    )
    expect(last.HasField("result"), f"{step}: COMPLETED task has no result")
    expect(last.HasField("created_at"), f"{step}: task has no created_at")
    return events


class RoutingKey(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds `x-beamline` to every call, as a gateway caller in any language does."""

    def __init__(self, beamline: str):
        self.beamline = beamline

    def _with_key(self, details):
        metadata = list(details.metadata or []) + [("x-beamline", self.beamline)]
        return details._replace(metadata=metadata)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with_key(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._with_key(details), request)


def expect_code(call, code, needle: str, step: str) -> None:
    try:
        call()
    except grpc.RpcError as e:
        expect(e.code() == code, f"{step}: {e.code()}, expected {code} ({e.details()})")
        expect(needle in (e.details() or ""), f"{step}: {e.details()!r} does not name {needle!r}")
    else:
        raise Mismatch(f"{step}: the call succeeded, expected {code}")


def wait_routable(stub, pb, within: float = 30.0) -> None:
    """A freshly started agent turns passing within its first check interval; until then the
    gateway answers UNAVAILABLE. Poll (bounded) instead of guessing a delay."""
    deadline = time.monotonic() + within
    while True:
        try:
            stub.Describe(pb.DescribeRequest(), timeout=RPC_TIMEOUT)
            return
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise Mismatch(f"gateway: beamline not routable within {within}s: {e.code()}: "
                               f"{e.details()}")
            time.sleep(0.2)


def check_gateway_routing(channel, pb, pb_grpc) -> None:
    bare = pb_grpc.BeamlineAgentStub(channel)
    expect_code(lambda: bare.Describe(pb.DescribeRequest(), timeout=RPC_TIMEOUT),
                grpc.StatusCode.INVALID_ARGUMENT, "x-beamline", "gateway without x-beamline")
    unknown = pb_grpc.BeamlineAgentStub(grpc.intercept_channel(channel, RoutingKey("99.9.9")))
    expect_code(lambda: unknown.Describe(pb.DescribeRequest(), timeout=RPC_TIMEOUT),
                grpc.StatusCode.NOT_FOUND, "99.9.9", "gateway, unknown beamline")
    print("gateway routing errors: ok (INVALID_ARGUMENT, NOT_FOUND)")


def check(addr: str, beamline: str | None, pb, pb_grpc, gateway: bool = False) -> None:
    channel = grpc.insecure_channel(addr)
    try:
        grpc.channel_ready_future(channel).result(timeout=CONNECT_TIMEOUT)
    except grpc.FutureTimeoutError:
        raise Mismatch(f"connect: no connection to {addr} within {CONNECT_TIMEOUT}s")
    if gateway:
        check_gateway_routing(channel, pb, pb_grpc)
        stub = pb_grpc.BeamlineAgentStub(grpc.intercept_channel(channel, RoutingKey(beamline)))
        wait_routable(stub, pb)
    else:
        stub = pb_grpc.BeamlineAgentStub(channel)

    # 1. Describe.
    card = stub.Describe(pb.DescribeRequest(), timeout=RPC_TIMEOUT)
    expect(card.beamline != "", "describe: empty beamline")
    if beamline is not None:
        expect(card.beamline == beamline, f"describe: beamline {card.beamline!r}, expected {beamline!r}")
    expect(card.instance_id != "", "describe: empty instance_id")
    expect(card.card_revision != "", "describe: empty card_revision")
    names = {c.name for c in card.capabilities}
    wanted = {"status", "read_pv", "move_motor", "scan"}
    expect(wanted <= names, f"describe: capabilities {sorted(names)} lack {sorted(wanted - names)}")
    move = next(c for c in card.capabilities if c.name == "move_motor")
    expect(move.actuating, "describe: move_motor is not marked actuating")
    print(f"describe: ok ({card.beamline}, {card.instance_id}, {len(names)} capabilities)")

    # 2. Execute status.
    events = run_execute(pb, stub, "status", None, "execute status")
    result = json_format.MessageToDict(events[-1].task.result)
    expect("sample_x" in result.get("motors", {}), f"execute status: no motors.sample_x in {result}")
    # Through the gateway, Describe and Execute may reach different instances.
    expect(
        gateway or events[-1].task.task_id.startswith(card.instance_id + "/"),
        f"execute status: task id {events[-1].task.task_id!r} is not under {card.instance_id!r}",
    )
    print(f"execute status: ok ({len(events)} events)")

    # 3. Execute move_motor: half a millimetre away from where sample_x is (limits ±10 mm).
    position = float(result["motors"]["sample_x"]["position"])
    target = round(position + 0.5 if position + 0.5 <= 10 else position - 0.5, 3)
    started = time.monotonic()
    events = run_execute(
        pb, stub, "move_motor", {"motor": "sample_x", "position": target}, "execute move_motor"
    )
    fractions = [e.progress.fraction for e in events
                 if e.HasField("progress") and e.progress.HasField("fraction")]
    expect(fractions, "execute move_motor: no progress event with a fraction")
    expect(
        all(0.0 <= f <= 1.0 for f in fractions),
        f"execute move_motor: fractions outside [0, 1]: {fractions}",
    )
    moved = json_format.MessageToDict(events[-1].task.result)
    expect(
        abs(float(moved.get("position", float("nan"))) - target) < 1e-6,
        f"execute move_motor: result {moved}, expected position {target}",
    )
    task = stub.GetTask(pb.GetTaskRequest(task_id=events[-1].task.task_id), timeout=RPC_TIMEOUT)
    expect(
        state_name(pb, task) == "TASK_STATE_COMPLETED",
        f"get task: {state_name(pb, task)}, expected COMPLETED",
    )
    print(
        f"execute move_motor: ok ({position} -> {target} mm, {len(events)} events, "
        f"{time.monotonic() - started:.2f}s)"
    )

    # 4. An unknown capability: NOT_FOUND, as a status on the stream.
    try:
        list(stub.Execute(pb.ExecuteRequest(capability="no_such_capability"), timeout=RPC_TIMEOUT))
    except grpc.RpcError as e:
        expect(
            e.code() == grpc.StatusCode.NOT_FOUND,
            f"execute unknown: {e.code()}, expected NOT_FOUND ({e.details()})",
        )
        expect(
            "no_such_capability" in (e.details() or ""),
            f"execute unknown: message {e.details()!r} does not name the capability",
        )
    else:
        raise Mismatch("execute unknown: the call succeeded, expected NOT_FOUND")
    print("execute unknown capability: ok (NOT_FOUND)")
    channel.close()


def main() -> int:
    args = sys.argv[1:]
    gateway = bool(args) and args[0] == "--gateway"
    if gateway:
        args = args[1:]
    if len(args) not in (1, 2) or (gateway and len(args) != 2):
        print(__doc__, file=sys.stderr)
        return 2
    addr = args[0]
    beamline = args[1] if len(args) == 2 else None
    print(f"grpcio {grpc.__version__} against {'the gateway at ' if gateway else ''}{addr}")
    try:
        with tempfile.TemporaryDirectory(prefix="beamline-grpcio-") as tmp:
            pb, pb_grpc = generate_stubs(pathlib.Path(tmp))
            check(addr, beamline, pb, pb_grpc, gateway)
    except Mismatch as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    except grpc.RpcError as e:
        print(f"FAIL: unexpected gRPC error {e.code()}: {e.details()}", file=sys.stderr)
        return 1
    print("grpcio interop: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
