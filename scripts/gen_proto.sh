#!/usr/bin/env bash
# Generates the Python gRPC code from proto/ into agent/api/gen/. Never edit the output:
# change the .proto and run this (make proto). tests/unit/test_proto.py fails when stale.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-agent/api/gen}
mkdir -p "$OUT"
.venv/bin/python -m grpc_tools.protoc -Iproto --python_out="$OUT" --grpc_python_out="$OUT" \
    proto/mamori/v1/alerts.proto
# the generated modules import "mamori.v1..." as a top-level package: make it relative
sed -i 's/^from mamori\.v1 import alerts_pb2/from . import alerts_pb2/' \
    "$OUT/mamori/v1/alerts_pb2_grpc.py"
touch "$OUT/__init__.py" "$OUT/mamori/__init__.py" "$OUT/mamori/v1/__init__.py"
