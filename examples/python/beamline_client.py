#!/usr/bin/env python3
"""Call a beamline through the beamline-mesh gateway with an API key, and print task progress.

Usage:
    python3 -m venv .venv && .venv/bin/pip install -r examples/python/requirements.txt
    export BEAMLINE_API_KEY=...      # a key whose SHA-256 (`beamline-mesh hash-key`) is in the
                                     # gateway's --auth-file, for a caller with role "operator"
    .venv/bin/python examples/python/beamline_client.py \
        --gateway 127.0.0.1:8080 --beamline 5.3.1 [--ca ca.pem] \
        [--capability move_motor] [--params '{"motor": "sample_x", "position": 1.5}']

Without --ca the channel is plaintext (a gateway started with --allow-plaintext or
--insecure-no-auth); with --ca it is TLS, trusting that CA certificate (PEM) for the gateway's
certificate (name: localhost, or --server-name).

Every call carries two metadata keys: `authorization: Bearer <key>` (who is calling) and
`x-beamline: <id>` (where the gateway routes it). The client stubs are generated at start from
proto/beamline/v1/agent.proto with grpcio-tools, as any team's Python client would.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import pathlib
import sys
import tempfile

import grpc
from google.protobuf import json_format
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "proto"
PROTO_FILE = "beamline/v1/agent.proto"
TIMEOUT = 60.0


def generate_stubs(out_dir: pathlib.Path):
    """grpc_tools.protoc → out_dir/beamline/v1/agent_pb2{,_grpc}.py; returns both modules."""
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    code = protoc.main([
        "grpc_tools.protoc", f"-I{PROTO_DIR}", f"-I{well_known}",
        f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", PROTO_FILE,
    ])
    if code != 0:
        sys.exit(f"grpc_tools.protoc failed (exit {code}) on {PROTO_DIR / PROTO_FILE}")
    sys.path.insert(0, str(out_dir))
    from beamline.v1 import agent_pb2, agent_pb2_grpc  # noqa: E402 (generated just now)

    return agent_pb2, agent_pb2_grpc


def open_channel(gateway: str, ca: str | None, server_name: str) -> grpc.Channel:
    if ca is None:
        return grpc.insecure_channel(gateway)
    credentials = grpc.ssl_channel_credentials(root_certificates=pathlib.Path(ca).read_bytes())
    return grpc.secure_channel(
        gateway, credentials, options=[("grpc.ssl_target_name_override", server_name)]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateway", default="127.0.0.1:8080", help="HOST:PORT of the gateway")
    parser.add_argument("--beamline", default="5.3.1")
    parser.add_argument("--ca", help="CA certificate (PEM) to trust: use TLS")
    parser.add_argument("--server-name", default="localhost", help="name in the gateway's cert")
    parser.add_argument("--capability", default="move_motor")
    parser.add_argument("--params", default='{"motor": "sample_x", "position": 1.5}',
                        help="the capability's parameters, as JSON")
    args = parser.parse_args()
    key = os.environ.get("BEAMLINE_API_KEY")
    if not key:
        sys.exit("set BEAMLINE_API_KEY to your API key")
    metadata = [("authorization", f"Bearer {key}"), ("x-beamline", args.beamline)]

    with tempfile.TemporaryDirectory(prefix="beamline-client-") as tmp:
        pb, pb_grpc = generate_stubs(pathlib.Path(tmp))
        with open_channel(args.gateway, args.ca, args.server_name) as channel:
            stub = pb_grpc.BeamlineAgentStub(channel)
            try:
                card = stub.Describe(pb.DescribeRequest(), metadata=metadata, timeout=TIMEOUT)
                print(f"beamline {card.beamline}, instance {card.instance_id}: "
                      f"{', '.join(c.name for c in card.capabilities)}")

                request = pb.ExecuteRequest(capability=args.capability)
                request.params.update(json.loads(args.params))
                last = None
                for event in stub.Execute(request, metadata=metadata, timeout=TIMEOUT):
                    last = event.task
                    line = f"task {last.task_id} {pb.TaskState.Name(last.state)}"
                    if event.HasField("progress"):
                        if event.progress.HasField("fraction"):
                            line += f" {event.progress.fraction:6.1%}"
                        if event.progress.message:
                            line += f" {event.progress.message}"
                    print(line, flush=True)
            except grpc.RpcError as e:
                print(f"error: {e.code().name}: {e.details()}", file=sys.stderr)
                return 1
    if last is None or last.state != pb.TASK_STATE_COMPLETED:
        state = "no task" if last is None else pb.TaskState.Name(last.state)
        print(f"error: the task ended {state}", file=sys.stderr)
        return 1
    print("result:", json.dumps(json_format.MessageToDict(last.result), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
