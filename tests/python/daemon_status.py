#!/usr/bin/env python3
"""Calls outpost.v1.Orchestrator/GetDaemonStatus from Python and prints the
response as JSON (proto3 JSON mapping) on stdout.

The stubs are generated at run time from the repository's proto/ directory
with grpcio-tools, into a temporary directory, so this script always speaks
the protocol of the checkout it lives in.

Usage:
    daemon_status.py TARGET

TARGET is a gRPC target: ``unix:///path/to/outpostd.sock`` (or
``unix:/path/to/outpostd.sock``) for the daemon's Unix socket, or
``HOST:PORT`` for a TCP listener. The channel has grpc's default options:
over the socket grpc sends the socket's path as the HTTP/2 authority, which
the daemon accepts there. For TCP, put the daemon's
token in $OUTPOST_TOKEN; it is sent as ``authorization: Bearer <token>``.

Exit status: 0 on success; 1 when the call fails (the gRPC status code name
and message go to stderr, e.g. ``UNAUTHENTICATED: ...``); 2 on a usage or
setup error (missing Python packages, stub generation failure).
"""

import importlib
import importlib.resources
import os
import sys
import tempfile
from pathlib import Path

# The repository's proto/ directory, next to tests/.
PROTO_DIR = Path(__file__).resolve().parents[2] / "proto"

# How long the call may take before it fails with DEADLINE_EXCEEDED.
CALL_TIMEOUT_SECONDS = 30


def setup_error(message):
    """Reports a usage or setup problem on stderr and exits with status 2."""
    print(f"daemon_status.py: {message}", file=sys.stderr)
    sys.exit(2)


try:
    import grpc
    from google.protobuf import json_format
    from grpc_tools import protoc
except ImportError as missing:
    setup_error(f"{missing}; install the test requirements: pip install -r tests/requirements.txt")


def generate_stubs(out_dir):
    """Generates Python messages and gRPC stubs for every .proto under
    PROTO_DIR into out_dir, resolving google/protobuf/* imports from the
    well-known protos bundled with grpc_tools."""
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    sources = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    if not sources:
        setup_error(f"no .proto files under {PROTO_DIR}")
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"--proto_path={PROTO_DIR}",
            f"--proto_path={well_known}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            *sources,
        ]
    )
    if status != 0:
        setup_error(f"protoc failed with status {status} on {PROTO_DIR}")


def bearer_metadata():
    """The authorization metadata for $OUTPOST_TOKEN, or none when unset."""
    token = os.environ.get("OUTPOST_TOKEN")
    return [("authorization", f"Bearer {token}")] if token else []


def main(argv):
    """Generates the stubs, makes the call and prints the response."""
    if len(argv) != 2:
        setup_error("usage: daemon_status.py TARGET  (unix:///path/to/socket or HOST:PORT)")
    target = argv[1]
    with tempfile.TemporaryDirectory(prefix="outpost-stubs") as out_dir:
        generate_stubs(out_dir)
        sys.path.insert(0, out_dir)
        messages = importlib.import_module("outpost.v1.orchestrator_pb2")
        services = importlib.import_module("outpost.v1.orchestrator_pb2_grpc")
        with grpc.insecure_channel(target) as channel:
            orchestrator = services.OrchestratorStub(channel)
            try:
                response = orchestrator.GetDaemonStatus(
                    messages.GetDaemonStatusRequest(),
                    metadata=bearer_metadata(),
                    timeout=CALL_TIMEOUT_SECONDS,
                )
            except grpc.RpcError as error:
                print(f"{error.code().name}: {error.details()}", file=sys.stderr)
                return 1
    print(json_format.MessageToJson(response))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
